package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// slowSaves is a session store whose blind saves take a while, as a
// store across the network (NATS KV) does: the time a closing socket's
// session is on its way to the store.
type slowSaves struct {
	broker.SessionStore
	delay time.Duration
}

func (s *slowSaves) Save(ctx context.Context, st broker.Session) error {
	time.Sleep(s.delay)
	return s.SessionStore.Save(ctx, st)
}

type slowSavesBroker struct {
	broker.Broker
	store *slowSaves
}

func (b *slowSavesBroker) Sessions() broker.SessionStore { return b.store }

// TestImmediateReconnectIsNeverRefused closes the websockets of many
// clients and has each come back at once with its clientId and no
// handshake, as the soak's clients do with no reconnect jitter: on the node
// it left, or on another one. The session is on its way to the store
// meanwhile (the saves are slowed down); no reconnect may be refused, and
// every client must still get what is published on its channel.
func TestImmediateReconnectIsNeverRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other bool // reconnect on the other node
	}{
		{"same node", false},
		{"other node", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := broker.NewMemory(broker.MemoryOptions{})
			slow := &slowSavesBroker{Broker: br, store: &slowSaves{SessionStore: br.Sessions(), delay: 30 * time.Millisecond}}
			var nodes []*node
			for i := range 2 {
				nodes = append(nodes, startNode(t, func(c *Config) {
					c.NodeID = fmt.Sprintf("n%d", i)
					c.Broker = slow
					c.SharedSessions = true
				}))
			}
			const clients, rounds = 20, 3
			peers := make([]*wsPeer, clients)
			for i := range peers {
				peers[i] = dialWS(t, nodes[0])
				peers[i].handshake(nil)
				if r := peers[i].subscribe("/r", nil); r["successful"] != true {
					t.Fatalf("subscribe: %v", r)
				}
			}
			at := 0
			for round := range rounds {
				if tc.other {
					at = 1 - at
				}
				var wg sync.WaitGroup
				refused := make(chan msg, clients)
				for i, p := range peers {
					wg.Go(func() {
						p.c.CloseNow()
						q := dialWS(t, nodes[at])
						q.clientID = p.clientID
						q.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket", "advice": msg{"timeout": 0}})
						if r := q.next(onChannel(bayeux.ChannelConnect)); r["successful"] != true {
							refused <- r
						}
						peers[i] = q
					})
				}
				wg.Wait()
				close(refused)
				n := 0
				for r := range refused {
					if n == 0 {
						t.Errorf("round %d: reconnect refused: %v", round, r)
					}
					n++
				}
				if n > 0 {
					t.Fatalf("round %d: %d of %d immediate reconnects refused", round, n, clients)
				}
				nodes[0].publish(fmt.Sprintf(`{"channel":"/r","data":%d}`, round))
				for _, p := range peers {
					if m := p.next(isData); m["data"] != float64(round) {
						t.Fatalf("round %d: got %v", round, m)
					}
				}
			}
		})
	}
}

// connectCycler is a websocket client that sends a /meta/connect after
// connect replies, reading the socket frame by frame. Like faye's client
// (_cycleConnection, then connect, on its event loop) it sends one connect
// for all the replies of a frame, and none while it believes one is in
// flight when guard is set; without guard it sends one per reply and
// ignores advice: the worst a client can do.
type connectCycler struct {
	t        *testing.T
	c        *websocket.Conn
	clientID string
	guard    bool
	next     int

	replies  int  // connect replies received
	advised  bool // a reply advised an interval
	closedBy websocket.StatusCode
}

func dialCycler(t *testing.T, n *node, guard bool) *connectCycler {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.url, "http")+"/bayeux", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	cc := &connectCycler{t: t, c: c, guard: guard}
	cc.write(msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})
	for cc.clientID == "" {
		for _, m := range cc.read(context.Background()) {
			if id, ok := m["clientId"].(string); ok && m["channel"] == bayeux.ChannelHandshake {
				cc.clientID = id
			}
		}
	}
	return cc
}

func (cc *connectCycler) write(ms ...msg) {
	for _, m := range ms {
		cc.next++
		m["id"] = fmt.Sprint(cc.next)
		if cc.clientID != "" {
			m["clientId"] = cc.clientID
		}
	}
	b, _ := json.Marshal(ms)
	if err := cc.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		cc.t.Fatal(err)
	}
}

func (cc *connectCycler) connect() {
	cc.write(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
}

// read returns the messages of the next frame; nil when the socket is
// closed or ctx ends.
func (cc *connectCycler) read(ctx context.Context) []msg {
	_, b, err := cc.c.Read(ctx)
	if err != nil {
		cc.closedBy = websocket.CloseStatus(err)
		return nil
	}
	var ms []msg
	if err := json.Unmarshal(b, &ms); err != nil {
		cc.t.Fatalf("frame %q: %v", b, err)
	}
	return ms
}

// run starts with two connects in flight, as after a fast reconnect, and
// cycles them for d.
func (cc *connectCycler) run(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cc.connect()
	cc.connect()
	inFlight := true
	for {
		ms := cc.read(ctx)
		if ms == nil {
			return
		}
		got := 0
		for _, m := range ms {
			if m["channel"] != bayeux.ChannelConnect {
				continue
			}
			got++
			inFlight = false
			if a, ok := m["advice"].(map[string]any); ok && a["interval"] != nil && a["interval"] != float64(0) {
				cc.advised = true
			}
		}
		cc.replies += got
		switch {
		case got == 0:
		case !cc.guard:
			for range got {
				cc.connect()
			}
		case !inFlight:
			cc.connect()
			inFlight = true
		}
	}
}

// TestCyclingConnectsAreBounded is the connect amplification: a client
// with two connects in flight that sends a connect after connect replies.
// A faye-like one must settle to one held connect; one that renews on
// every reply and ignores advice must be slowed down and cut off. Either
// way the node holds at most one connect for the session.
func TestCyclingConnectsAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name       string
		guard      bool
		maxReplies int
	}{
		// both in-flight connects answered together, then one held
		{"faye-like", true, 2},
		// advised to wait past connectBurst, closed past connectAbuse:
		// each of the connectAbuse+1 connects answered at once may carry
		// the held reply too (two replies), the last one's before the close
		{"renews on every reply", false, 2 * (connectAbuse + 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.Timeout = 5 * time.Second })
			cc := dialCycler(t, n, tc.guard)
			done := make(chan struct{})
			maxHeld := 0
			go func() {
				defer close(done)
				cc.run(time.Second)
			}()
			for running := true; running; {
				select {
				case <-done:
					running = false
				case <-time.After(5 * time.Millisecond):
				}
				maxHeld = max(maxHeld, n.srv.holds.len())
			}
			if cc.replies > tc.maxReplies {
				t.Fatalf("%d connect replies in 1s, want at most %d", cc.replies, tc.maxReplies)
			}
			if maxHeld > 1 {
				t.Fatalf("%d connects held at once, want at most 1", maxHeld)
			}
			if !tc.guard {
				if !cc.advised {
					t.Errorf("no reply advised an interval")
				}
				if cc.closedBy != websocket.StatusPolicyViolation {
					t.Errorf("socket closed with %d, want %d", cc.closedBy, websocket.StatusPolicyViolation)
				}
			}
		})
	}
}

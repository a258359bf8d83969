package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"wsfleet/client"
	"wsfleet/internal/nodetest"
)

// cutProxy forwards TCP to a server and can cut every connection and
// refuse new ones for a while: a network blip between one client and a
// server that stays up, which is when a server should keep the session.
type cutProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
	paused bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		paused, target := p.paused, p.target
		p.mu.Unlock()
		if paused {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// cut closes every connection through the proxy.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// retarget sends new connections to another server, as a load balancer
// does when an instance leaves it.
func (p *cutProxy) retarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *cutProxy) pause(on bool) {
	p.mu.Lock()
	p.paused = on
	p.mu.Unlock()
}

// suite starts the wsfleet nodes (and Faye) the tests run the client
// against; its nodes hold a /meta/connect for 5s.
var suite = &nodetest.Suite{Name: "client", AdminToken: "client-test", Flags: []string{"--timeout", "5s"}}

func TestMain(m *testing.M) { suite.Main(m) }

// startWsfleet starts a real `wsfleet serve`, built once per test run.
func startWsfleet(t *testing.T) *nodetest.Node { return suite.Start(t) }

// dialSubscriber dials a client with cfg that retries every 50 to 200ms,
// waits for it to be up, and subscribes it to /room, whose deliveries box
// collects; states gets its state changes from then on. The test's
// cleanup closes it.
func dialSubscriber(ctx context.Context, t *testing.T, cfg client.Config) (sub *client.Client, states chan client.State, box *inbox) {
	t.Helper()
	states = make(chan client.State, 16)
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 200*time.Millisecond
	cfg.OnState = func(s client.State) { states <- s }
	sub, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	<-states // the first up
	box = newInbox()
	if err := sub.Subscribe(ctx, "/room", box.add); err != nil {
		t.Fatal(err)
	}
	return sub, states, box
}

// TestSessionKeptAcrossCut cuts the network under a subscribed client
// while the server stays up, publishes while it is away, and lets it
// back. The server still knows the session, so the client must come back
// with the same clientId (no new handshake) and receive what was
// published meanwhile, once each and in order.
func TestSessionKeptAcrossCut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	// exact says whether the server must deliver every message published
	// while the client was away. Faye need not: it writes a message into
	// a connection that has died without knowing it, and drops it (at most
	// once). A wsfleet node must: the client sends ext.since on its
	// resuming connect, and the node writes again what it wrote after
	// that (websocket) or what of its last answer lies after it
	// (long-polling).
	servers := []struct {
		name  string
		start func(t *testing.T) *nodetest.Node
		exact bool
	}{
		{"faye", startFaye, false},
		{"wsfleet", startWsfleet, true},
	}
	for _, server := range servers {
		for _, transport := range []string{client.WebSocket, client.LongPolling} {
			exact := server.exact
			t.Run(server.name+"/"+transport, func(t *testing.T) {
				srv := server.start(t)
				proxy := newCutProxy(t, srv.Addr)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				sub, states, box := dialSubscriber(ctx, t, client.Config{URL: "http://" + proxy.addr() + "/bayeux", Transport: transport})
				id := sub.ID()
				pub, err := client.Dial(ctx, client.Config{URL: srv.Bayeux(), Transport: transport})
				if err != nil {
					t.Fatal(err)
				}
				defer pub.Close()
				for i := range 3 {
					if err := pub.Publish(ctx, "/room", i); err != nil {
						t.Fatal(err)
					}
				}
				box.waitN(t, 3, 10*time.Second)

				proxy.pause(true)
				proxy.cut()
				if s := <-states; s.Up {
					t.Fatalf("state after the cut: %+v, want down", s)
				}
				for i := 3; i < 8; i++ {
					if err := pub.Publish(ctx, "/room", i); err != nil {
						t.Fatal(err)
					}
				}
				proxy.pause(false)
				if s := <-states; !s.Up || s.Rehandshake {
					t.Fatalf("state after the cut healed: %+v, want up on the same session", s)
				}
				if err := pub.Publish(ctx, "/room", 8); err != nil {
					t.Fatal(err)
				}
				want := 9
				if !exact {
					want = 4 // 0, 1, 2 and 8 at least
				}
				got := box.waitN(t, want, 15*time.Second)
				time.Sleep(300 * time.Millisecond)
				box.mu.Lock()
				got = append(got[:0:0], box.got...)
				box.mu.Unlock()
				prev := -1
				for _, d := range got {
					var n int
					if err := json.Unmarshal(d.Data, &n); err != nil || n <= prev {
						t.Fatalf("delivery %s after %d: out of order or repeated", d.Data, prev)
					}
					prev = n
				}
				if prev != 8 || (exact && len(got) != 9) {
					t.Fatalf("%d deliveries ending with %d, want 0…8", len(got), prev)
				}
				if sub.ID() != id {
					t.Fatalf("clientId changed from %s to %s", id, sub.ID())
				}
				if st := sub.Stats(); st.Handshakes != 1 || st.Reconnects != 1 || st.Duplicates != 0 {
					t.Fatalf("stats %+v, want 1 handshake, 1 reconnect, no duplicates", st)
				}
			})
		}
	}
}

// TestReplayAfterNodeCrash runs two real ws nodes clustered over NATS
// behind a proxy standing in for the load balancer. The client's node is
// killed; the proxy sends the client to the other node. Unless that node
// can restore the session, the client must re-handshake, resubscribe with
// ext.since = its cursor, and get from the cluster's history exactly what
// was published while it was away.
func TestReplayAfterNodeCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	cases := []struct {
		name      string
		transport string
		noReplay  bool
	}{
		{client.WebSocket, client.WebSocket, false},
		{client.LongPolling, client.LongPolling, false},
		// An unmodified client (faye, halley) asks for no replay: after
		// a re-handshake it gets only what is published from then on.
		{"websocket no replay", client.WebSocket, true},
	}
	for _, tc := range cases {
		transport := tc.transport
		t.Run(tc.name, func(t *testing.T) {
			nodes := suite.StartCluster(t, 2)
			a, b := nodes[0], nodes[1]
			proxy := newCutProxy(t, b.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sub, states, box := dialSubscriber(ctx, t, client.Config{URL: "http://" + proxy.addr() + "/bayeux", Transport: transport, NoReplay: tc.noReplay})
			publish := func(from, to int) {
				t.Helper()
				for i := from; i < to; i++ {
					if err := adminPublish(ctx, a.Addr, "/room", i); err != nil {
						t.Fatal(err)
					}
				}
			}
			publish(0, 3)
			box.waitN(t, 3, 10*time.Second)
			cursor := sub.Cursor()
			if cursor == 0 {
				t.Fatal("no ext.seq on deliveries from wsfleet")
			}

			proxy.pause(true)
			b.Kill()
			proxy.cut()
			if s := <-states; s.Up {
				t.Fatalf("state after the crash: %+v, want down", s)
			}
			publish(3, 8)
			proxy.retarget(a.Addr)
			proxy.pause(false)
			// Node a either restores the session (if the cluster shares
			// sessions as they change) or does not know the clientId, and
			// the client re-handshakes and asks for the replay itself.
			// Either way nothing may be missing or repeated.
			s := <-states
			if !s.Up || s.ReplayGone {
				t.Fatalf("state after moving to node a: %+v, want up with the replay", s)
			}
			wantHandshakes := int64(1)
			if s.Rehandshake {
				wantHandshakes = 2
			}
			t.Logf("back on node a, new handshake: %v", s.Rehandshake)
			if tc.noReplay {
				if !s.Rehandshake {
					t.Skip("node a restored the session, so nothing was missed to replay")
				}
				publish(8, 9)
				box.waitN(t, 4, 10*time.Second)
				time.Sleep(300 * time.Millisecond)
				var ns []int
				for _, d := range box.waitN(t, 0, time.Second) {
					var n int
					json.Unmarshal(d.Data, &n)
					ns = append(ns, n)
				}
				if fmt.Sprint(ns) != "[0 1 2 8]" {
					t.Fatalf("deliveries %v; want [0 1 2 8]: without replay the messages published while away are missed", ns)
				}
				return
			}
			got := box.waitN(t, 8, 15*time.Second)
			for i, d := range got {
				var n int
				if err := json.Unmarshal(d.Data, &n); err != nil || n != i {
					t.Fatalf("delivery %d = %s, want %d", i, d.Data, i)
				}
			}
			publish(8, 9)
			box.waitN(t, 9, 10*time.Second)
			time.Sleep(300 * time.Millisecond)
			box.mu.Lock()
			n := len(box.got)
			box.mu.Unlock()
			if st := sub.Stats(); n != 9 || st.Duplicates != 0 || st.Handshakes != wantHandshakes {
				t.Fatalf("%d deliveries, stats %+v; want 9, no duplicates, %d handshakes", n, st, wantHandshakes)
			}
		})
	}
}

// adminPublish publishes through the node's POST /publish.
func adminPublish(ctx context.Context, addr, channel string, data any) error {
	body, err := json.Marshal(map[string]any{"channel": channel, "data": data})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer client-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("publish: %d %s", resp.StatusCode, b)
	}
	return nil
}

package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// twoNodes returns two nodes sharing one memory broker: a cluster in one
// process, enough to hand a session from one node to the other.
func twoNodes(t *testing.T) (*node, *node) {
	br := broker.NewMemory(broker.MemoryOptions{})
	a := startNode(t, func(c *Config) { c.NodeID = "a"; c.Broker = br })
	b := startNode(t, func(c *Config) { c.NodeID = "b"; c.Broker = br })
	return a, b
}

// publishing publishes /h messages 0..n-1 through node n, paced, and
// closes done when finished.
func publishing(t *testing.T, via *node, count int, every time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range count {
			via.publish(fmt.Sprintf(`{"channel":"/h","data":%d}`, i))
			time.Sleep(every)
		}
	}()
	return done
}

// checkExactlyOnce asserts that got holds 0..n-1 once each, in order.
func checkExactlyOnce(t *testing.T, got []msg, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("received %d messages, want %d: %v", len(got), n, got)
	}
	for i, m := range got {
		if m["data"] != float64(i) {
			t.Fatalf("message %d is %v: loss, duplicate or reordering", i, m)
		}
	}
}

func TestDrainHandsWebsocketSessionOver(t *testing.T) {
	a, b := twoNodes(t)
	p := dialWS(t, a)
	p.handshake(nil)
	p.subscribe("/h", nil)
	id := p.clientID

	const total = 60
	done := publishing(t, b, total, 5*time.Millisecond)
	var got []msg
	for len(got) < 10 {
		got = append(got, p.next(isData))
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drained <- a.srv.Drain(ctx, DrainOptions{Window: 0, MaxRate: 1000, Deadline: 5 * time.Second})
	}()
	// The held connect is answered at once; like faye and halley, the
	// client sends the next one on the same socket, which is answered
	// (retry, after an interval) and the socket closed with "going away".
	untilConnect := func() msg {
		return p.next(func(m msg) bool {
			if isData(m) {
				got = append(got, m)
			}
			return m["channel"] == bayeux.ChannelConnect
		})
	}
	if c := untilConnect(); c["successful"] != true {
		t.Fatalf("released connect: %v", c)
	}
	p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	c := untilConnect()
	if adv, _ := c["advice"].(map[string]any); c["successful"] != true || adv["reconnect"] != "retry" || adv["interval"] != float64(250) {
		t.Fatalf("connect after release: %v", c)
	}
	<-p.closed
	if websocket.CloseStatus(p.closeErr) != websocket.StatusGoingAway {
		t.Fatalf("socket closed with %v", p.closeErr)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	for len(p.in) > 0 {
		if m := <-p.in; isData(m) {
			got = append(got, m)
		}
	}
	// as faye and halley do: reconnect (here to the other node) and send
	// /meta/connect with the same client id
	q := dialWS(t, b)
	q.clientID = id
	q.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	<-done
	for len(got) < total {
		got = append(got, q.next(isData))
	}
	q.noData(100 * time.Millisecond)
	checkExactlyOnce(t, got, total)
	if st := a.srv.Status(); st.State != StateDrained || st.Drain.Released != 1 {
		t.Fatalf("drained node status %+v", st)
	}
}

func TestDrainHandsLongPollSessionOver(t *testing.T) {
	a, b := twoNodes(t)
	p := &lpPeer{t: t, n: a}
	p.handshake(nil)
	p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/h"})

	const total = 60
	done := publishing(t, a, total, 5*time.Millisecond)
	var mu sync.Mutex
	var got []msg
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		time.Sleep(100 * time.Millisecond)
		a.srv.Drain(context.Background(), DrainOptions{Window: 0, MaxRate: 1000, Deadline: 5 * time.Second})
	}()
	// the client polls node a until its connect comes back empty-handed
	// after the drain, then (through the load balancer) node b.
	for {
		reply, data := p.connect()
		mu.Lock()
		got = append(got, data...)
		mu.Unlock()
		if reply["successful"] != true {
			t.Fatalf("connect on a: %v", reply)
		}
		select {
		case <-drained:
		default:
			continue
		}
		break
	}
	p.n = b
	<-done
	for len(got) < total {
		reply, data := p.connect()
		if reply["successful"] != true {
			t.Fatalf("connect on b: %v", reply)
		}
		got = append(got, data...)
	}
	checkExactlyOnce(t, got, total)
}

func TestDrainPacing(t *testing.T) {
	n := startNode(t, nil)
	var peers []*wsPeer
	for range 5 {
		p := dialWS(t, n)
		p.handshake(nil)
		peers = append(peers, p)
	}
	// 5 clients at 10/s take at least 400 ms whatever the window says
	start := time.Now()
	if err := n.srv.Drain(context.Background(), DrainOptions{Window: 0, MaxRate: 10, Deadline: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("5 releases at 10/s took %v", took)
	}
	for _, p := range peers {
		<-p.closed
	}
	if st := n.srv.Status(); st.Drain.Released != 5 || st.Drain.Remaining != 0 || st.State != StateDrained {
		t.Fatalf("status %+v", st)
	}
}

func TestDrainDeadlineClosesTheRest(t *testing.T) {
	n := startNode(t, nil)
	for range 3 {
		p := dialWS(t, n)
		p.handshake(nil)
	}
	start := time.Now()
	// at 1/s, three releases would take 2 s; the deadline cuts at 300 ms
	n.srv.Drain(context.Background(), DrainOptions{Window: time.Minute, MaxRate: 1, Deadline: 300 * time.Millisecond})
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("drain took %v despite a 300ms deadline", took)
	}
	if st := n.srv.Status(); st.Sessions != 0 || st.State != StateDrained {
		t.Fatalf("status %+v", st)
	}
	// a second call returns at once
	if err := n.srv.Drain(context.Background(), DrainOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseStep(t *testing.T) {
	tests := []struct {
		n    int
		o    DrainOptions
		want time.Duration
	}{
		{100, DrainOptions{Window: 10 * time.Second, MaxRate: 200}, 100 * time.Millisecond},
		{10000, DrainOptions{Window: 10 * time.Second, MaxRate: 200}, 5 * time.Millisecond},
		{10, DrainOptions{Window: 0, MaxRate: 0}, 0},
		{0, DrainOptions{Window: time.Second, MaxRate: 10}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := releaseStep(tt.n, tt.o); got != tt.want {
			t.Errorf("releaseStep(%d, %+v) = %v, want %v", tt.n, tt.o, got, tt.want)
		}
	}
}

// copyReleasedDuringAdopt sets up the race of the two tests below: a
// long-polling client subscribed to /x on node A, with one message there,
// polled once on node B, which keeps a copy of its session; B's next read
// of the record starts B's drain and waits until the drain released that
// copy. It returns A, B, the client (pointed at B) and the store.
func copyReleasedDuringAdopt(t *testing.T) (a, b *node, p *lpPeer, store broker.SessionStore) {
	a, b, hooks, store := hookedNodes(t)
	p = subscribedToX(t, a)
	p.n = b
	if reply, data := p.connect(); reply["successful"] != true || len(data) != 1 {
		t.Fatalf("first connect on B: %v %v", reply, data)
	}
	if b.srv.lookup(p.clientID) == nil {
		t.Fatal("B keeps no copy after the poll: the test cannot release one")
	}
	hooks.armLoad(func() {
		b.srv.StartDrain(DrainOptions{Window: 0, Deadline: time.Second})
		for deadline := time.Now().Add(2 * time.Second); b.srv.lookup(p.clientID) != nil; {
			if time.Now().After(deadline) {
				t.Error("the drain did not release B's copy")
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	return a, b, p, store
}

// nextOnAGetsTheDrainMessage publishes on A and checks that p's connect
// there gets that message.
func nextOnAGetsTheDrainMessage(t *testing.T, a *node, p *lpPeer) {
	t.Helper()
	a.publish(`{"channel":"/x","data":2}`)
	p.n = a
	if reply, data := p.connect(); reply["successful"] != true || len(data) != 1 || data[0]["data"] != float64(2) {
		t.Fatalf("next connect on A: %v %v, want the message published during the drain", reply, data)
	}
}

// TestDrainReleasingACopyDuringAdoptSendsTheClientOn is the faye
// long-polling re-handshake seen in the cluster test: a long-polling
// client's connect reaches node B, which holds a copy of the session from
// an earlier poll; B's drain starts after the connect passed B's readiness
// check and releases that copy while B reads the record to adopt it. The
// client must be sent to another node (successful, reconnect=retry), not
// told it is unknown, which makes it handshake again and lose what was
// published meanwhile.
func TestDrainReleasingACopyDuringAdoptSendsTheClientOn(t *testing.T) {
	a, _, p, _ := copyReleasedDuringAdopt(t)
	reply, _ := p.connect()
	if reply["successful"] != true {
		t.Fatalf("connect on B while its drain released the copy: %v, want a successful reply that sends the client on", reply)
	}
	if adv, _ := reply["advice"].(msg); adv["reconnect"] != bayeux.ReconnectRetry {
		t.Fatalf("advice %v, want reconnect=retry", reply["advice"])
	}
	nextOnAGetsTheDrainMessage(t, a, p)
}

// TestDrainReleasingACopyDuringWebsocketAdoptKeepsTheRecord is the same
// race for a websocket connect, whose adopt deletes the record it reads:
// when the drain released the copy meanwhile, the record must go back to
// the store, or the node the client is sent to does not know it.
func TestDrainReleasingACopyDuringWebsocketAdoptKeepsTheRecord(t *testing.T) {
	a, b, p, store := copyReleasedDuringAdopt(t)
	ws := dialWS(t, b)
	ws.clientID = p.clientID
	ws.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	if reply := ws.next(onChannel(bayeux.ChannelConnect)); reply["successful"] != true {
		t.Fatalf("websocket connect on B while its drain released the copy: %v", reply)
	}
	if _, err := store.Load(context.Background(), p.clientID); err != nil {
		t.Fatalf("stored session after B's refused adopt: %v", err)
	}
	nextOnAGetsTheDrainMessage(t, a, p)
}

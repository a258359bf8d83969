package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
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
	checkExactlyOnce(t, p.pollUntil(got, total, "b"), total)
}

// drainSeed seeds Config.Rand in the drain tests, which draw the
// expected release schedule from a generator seeded alike.
const drainSeed = 7

func drainRand() *rand.Rand { return rand.New(rand.NewPCG(drainSeed, drainSeed)) }

// startDrainNode runs a node on clk with n websocket clients held in
// their connect, and starts draining it with o in the background. It
// returns the node, its clients, the drain's result and the schedule the
// drain must follow: the first draws of Config.Rand.
func startDrainNode(t *testing.T, clk *fakeClock, n int, o DrainOptions) (*node, []*wsPeer, <-chan error, []time.Time) {
	t.Helper()
	nd, peers := startHeldNode(t, clk, n)
	schedule := releaseSchedule(n, o.Window, o.MaxRate, drainRand(), clk.Now())
	drained := make(chan error, 1)
	go func() { drained <- nd.srv.Drain(context.Background(), o) }()
	return nd, peers, drained, schedule
}

// startHeldNode runs a node on clk, its Rand seeded with drainSeed, with
// n websocket clients held in their connect.
func startHeldNode(t *testing.T, clk *fakeClock, n int) (*node, []*wsPeer) {
	t.Helper()
	nd := startNode(t, func(c *Config) { clk.use(c); c.Rand = drainRand() })
	var peers []*wsPeer
	for range n {
		p := dialWS(t, nd)
		p.handshake(nil)
		peers = append(peers, p)
	}
	waitFor(t, func() bool { return heldConnects(nd.srv) == n }, "the %d clients' connects are not all held", n)
	return nd, peers
}

// pollUntil has the long-polling client p connect until got, to which it
// appends what it receives, holds total messages; where names the node in
// failures.
func (p *lpPeer) pollUntil(got []msg, total int, where string) []msg {
	p.t.Helper()
	for len(got) < total {
		reply, data := p.connect()
		if reply["successful"] != true {
			p.t.Fatalf("connect on %s: %v", where, reply)
		}
		got = append(got, data...)
	}
	return got
}

// awaitDrain advances clk by step until the drain's result arrives on
// drained, failing the test on an error or after 10 s of wall time.
func awaitDrain(t *testing.T, clk *fakeClock, drained <-chan error, step time.Duration, what string) {
	t.Helper()
	waitFor(t, func() bool {
		select {
		case err := <-drained:
			if err != nil {
				t.Fatal(err)
			}
			return true
		default:
			clk.advance(step)
			return false
		}
	}, "%s", what)
}

// heldConnects counts the sessions whose connect the node holds.
func heldConnects(s *Server) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, ss := range s.sessions {
		ss.mu.Lock()
		if ss.held != nil {
			n++
		}
		ss.mu.Unlock()
	}
	return n
}

// TestDrainPacing checks that a drain releases its clients at the instants
// releaseSchedule gives, one by one: 5 clients at 10/s, whatever the
// window says, take 400 ms at least (TestReleaseSchedule).
func TestDrainPacing(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	o := DrainOptions{Window: 0, MaxRate: 10, Deadline: 10 * time.Second}
	n, peers, drained, schedule := startDrainNode(t, clk, 5, o)
	for i, at := range schedule {
		clk.waitArmed(t, at, fmt.Sprintf("release %d", i))
		if r := n.srv.Status().Drain.Released; r != i {
			t.Fatalf("%d released before %v, want %d", r, at, i)
		}
		clk.advanceTo(at)
		waitFor(t, func() bool { return n.srv.Status().Drain.Released == i+1 }, "release %d not done at %v", i, at)
		// its held connect is answered, and its socket closed
		// ReleaseGrace later
		clk.waitArmed(t, at.Add(n.srv.cfg.ReleaseGrace), fmt.Sprintf("release %d's close", i))
	}
	clk.advanceTo(schedule[len(schedule)-1].Add(n.srv.cfg.ReleaseGrace))
	for i, p := range peers {
		select {
		case <-p.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d's socket not closed after its grace", i)
		}
	}
	awaitDrain(t, clk, drained, 20*time.Millisecond, "drain not finished once every socket closed")
	if st := n.srv.Status(); st.Drain.Released != 5 || st.Drain.Remaining != 0 || st.State != StateDrained {
		t.Fatalf("status %+v", st)
	}
}

// TestDrainDeadlineClosesTheRest checks that a drain whose schedule runs
// past its deadline ends at the deadline, closing what is left.
func TestDrainDeadlineClosesTheRest(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	start := clk.Now()
	// at 1/s, three releases would take 2 s at least; the deadline cuts
	// at 300 ms
	o := DrainOptions{Window: time.Minute, MaxRate: 1, Deadline: 300 * time.Millisecond}
	n, _, drained, schedule := startDrainNode(t, clk, 3, o)
	deadline := start.Add(o.Deadline)
	if !schedule[0].After(deadline) {
		t.Fatalf("schedule %v releases before the deadline: pick another drainSeed", schedule)
	}
	clk.waitArmed(t, schedule[0], "first release")
	clk.waitArmed(t, deadline, "deadline")
	clk.advanceTo(deadline.Add(-time.Nanosecond))
	select {
	case <-drained:
		t.Fatal("drain finished before its deadline")
	default:
	}
	clk.advanceTo(deadline)
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain not finished at its deadline")
	}
	if st := n.srv.Status(); st.Sessions != 0 || st.State != StateDrained || st.Drain.Released != 3 {
		t.Fatalf("status %+v", st)
	}
	// a second call returns at once
	if err := n.srv.Drain(context.Background(), DrainOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseStep(t *testing.T) {
	tests := []struct {
		n       int
		window  time.Duration
		maxRate float64
		want    time.Duration
	}{
		{100, 10 * time.Second, 200, 100 * time.Millisecond},
		{10000, 10 * time.Second, 200, 5 * time.Millisecond},
		{10, 0, 0, 0},
		{0, time.Second, 10, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := releaseStep(tt.n, tt.window, tt.maxRate); got != tt.want {
			t.Errorf("releaseStep(%d, %v, %v) = %v, want %v", tt.n, tt.window, tt.maxRate, got, tt.want)
		}
	}
}

// scriptedJitter is a source of jitter that puts each release at the
// given fraction of its slot, in turn; it fails the test when drawn from
// more often.
type scriptedJitter struct {
	t    *testing.T
	frac []float64
}

func (s *scriptedJitter) Int64N(n int64) int64 {
	if len(s.frac) == 0 {
		s.t.Fatalf("jitter drawn once too often (slot %v)", time.Duration(n))
	}
	f := s.frac[0]
	s.frac = s.frac[1:]
	return int64(f * float64(n))
}

// checkSchedule checks what every release schedule must hold: n instants,
// none before start nor closer than 1/maxRate to the one before, all
// within the window, or within n/maxRate when that is longer.
func checkSchedule(t *testing.T, got []time.Time, n int, window time.Duration, maxRate float64, start time.Time) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d instants, want %d", len(got), n)
	}
	gap := releaseGap(maxRate)
	span := max(window, time.Duration(n)*gap)
	for i, at := range got {
		switch {
		case at.Before(start):
			t.Errorf("release %d at %v, before the start", i, at.Sub(start))
		case span > 0 && !at.Before(start.Add(span)), span == 0 && !at.Equal(start):
			t.Errorf("release %d at %v, past the window (%v)", i, at.Sub(start), span)
		case i > 0 && at.Sub(got[i-1]) < gap:
			t.Errorf("releases %d and %d %v apart, faster than %v/s", i-1, i, at.Sub(got[i-1]), maxRate)
		}
	}
}

func TestReleaseSchedule(t *testing.T) {
	ms := func(ds ...float64) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = time.Duration(d * float64(time.Millisecond))
		}
		return out
	}
	tests := []struct {
		name    string
		n       int
		window  time.Duration
		maxRate float64
		jitter  []float64 // fraction of its slot each release is drawn at
		want    []time.Duration
	}{
		{"window spread over the clients, jitter within each slot", 4, time.Second, 100,
			[]float64{0, 0.5, 0.2, 0.99}, ms(0, 375, 550, 997.5)},
		{"a release at its slot's end pushes the next one on", 3, 300 * time.Millisecond, 20,
			[]float64{0.9, 0, 0.3}, ms(90, 140, 230)},
		{"the rate stretches a window too short", 5, 0, 10,
			[]float64{0.5, 0, 0.99, 0, 0}, ms(50, 150, 299, 399, 499)},
		{"no window, no rate: all at once, nothing drawn", 3, 0, 0, nil, ms(0, 0, 0)},
		{"one client gets the whole window", 1, 10 * time.Second, 200, []float64{0.25}, ms(2500)},
		{"no clients", 0, time.Second, 10, nil, ms()},
	}
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &scriptedJitter{t: t, frac: tt.jitter}
			got := releaseSchedule(tt.n, tt.window, tt.maxRate, src, start)
			if len(src.frac) != 0 {
				t.Errorf("%d jitter draws left unused", len(src.frac))
			}
			offsets := make([]time.Duration, len(got))
			for i, at := range got {
				offsets[i] = at.Sub(start)
			}
			if !slices.Equal(offsets, tt.want) {
				t.Fatalf("schedule %v, want %v", offsets, tt.want)
			}
			checkSchedule(t, got, tt.n, tt.window, tt.maxRate, start)
		})
	}
}

// TestReleaseScheduleSeeded checks schedules drawn from seeded generators:
// the same seed gives the same schedule, another seed another one, and
// each keeps to the window and the rate.
func TestReleaseScheduleSeeded(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		n       int
		window  time.Duration
		maxRate float64
	}{
		{"window", 1000, 30 * time.Second, 200},
		{"rate", 1000, time.Second, 200},
		{"tight", 50, 250 * time.Millisecond, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seeded := func(seed uint64) []time.Time {
				return releaseSchedule(tt.n, tt.window, tt.maxRate, rand.New(rand.NewPCG(seed, seed)), start)
			}
			a, again, other := seeded(1), seeded(1), seeded(2)
			if !slices.Equal(a, again) {
				t.Fatal("one seed, two schedules")
			}
			if slices.Equal(a, other) {
				t.Fatal("two seeds, one schedule: no jitter")
			}
			checkSchedule(t, a, tt.n, tt.window, tt.maxRate, start)
			checkSchedule(t, other, tt.n, tt.window, tt.maxRate, start)
		})
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

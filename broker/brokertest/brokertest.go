// Package brokertest is the conformance suite every broker.Broker passes:
// the memory broker and the NATS broker run the same tests, so the ws node
// can rely on one contract whichever engine is under it.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// Options are the broker settings a test needs; zero means the broker's
// default.
type Options struct {
	// HistoryMsgs caps the history window by count.
	HistoryMsgs int
}

// Factory returns a broker for t, closed by t's cleanup. Calls with the same
// t must return brokers sharing one backend, like the nodes of one cluster
// (for the memory broker: the same instance).
type Factory func(t *testing.T, o Options) broker.Broker

// waitTimeout bounds every wait for a delivery; generous because CI
// machines are shared, and never reached when the broker is correct.
const waitTimeout = 15 * time.Second

// Run runs the suite against brokers made by newBroker.
func Run(t *testing.T, newBroker Factory) {
	tests := []struct {
		name string
		run  func(t *testing.T, f Factory)
	}{
		{"PublishSubscribeOrder", testPublishSubscribeOrder},
		{"SubscribeFromNow", testSubscribeFromNow},
		{"StopEndsDelivery", testStopEndsDelivery},
		{"TwoNodesExactlyOnce", testTwoNodesExactlyOnce},
		{"History", testHistory},
		{"HistoryGone", testHistoryGone},
		{"LastSeq", testLastSeq},
		{"Sessions", testSessions},
		{"SessionsCompareAndSet", testSessionsCAS},
		{"SessionsConcurrentUpdaters", testSessionsConcurrentUpdaters},
		{"Concurrent", testConcurrent},
		{"Healthy", testHealthy},
		{"Closed", testClosed},
		{"InterestOnlyWanted", testInterestOnlyWanted},
		{"InterestWildcards", testInterestWildcards},
		{"InterestChurn", testInterestChurn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newBroker) })
	}
}

// collector gathers delivered messages and lets a test wait for them.
type collector struct {
	mu   sync.Mutex
	msgs []broker.Message
	ch   chan struct{} // pinged after each delivery
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) handle(m broker.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() []broker.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// waitSeq waits until a message with seq >= want has been delivered and
// returns everything delivered so far.
func (c *collector) waitSeq(t *testing.T, want uint64) []broker.Message {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		msgs := c.snapshot()
		if len(msgs) > 0 && msgs[len(msgs)-1].Seq >= want {
			return msgs
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for seq %d; have %d messages", want, len(msgs))
		}
	}
}

func subscribe(t *testing.T, b broker.Broker) *collector {
	t.Helper()
	c := newCollector()
	stop, err := b.Subscribe(context.Background(), c.handle)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(stop)
	return c
}

func publish(t *testing.T, b broker.Broker, channel, payload string) uint64 {
	t.Helper()
	seq, err := b.Publish(context.Background(), channel, []byte(payload))
	if err != nil {
		t.Fatalf("Publish(%s): %v", channel, err)
	}
	return seq
}

type sent struct {
	seq     uint64
	channel string
	payload string
}

// checkDelivered asserts got is exactly want, in order.
func checkDelivered(t *testing.T, got []broker.Message, want []sent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("delivered %d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Seq != w.seq || g.Channel != w.channel || string(g.Payload) != w.payload {
			t.Fatalf("message %d = {%d %s %q}, want {%d %s %q}", i, g.Seq, g.Channel, g.Payload, w.seq, w.channel, w.payload)
		}
		if g.Published.IsZero() {
			t.Fatalf("message %d has no Published time", i)
		}
	}
}

func testPublishSubscribeOrder(t *testing.T, f Factory) {
	b := f(t, Options{})
	c := subscribe(t, b)
	channels := []string{"/chat/room-1", "/chat/room-2", "/a/b/c"}
	var want []sent
	var last uint64
	for i := range 60 {
		ch := channels[i%len(channels)]
		p := fmt.Sprintf(`{"n":%d}`, i)
		seq := publish(t, b, ch, p)
		if seq <= last {
			t.Fatalf("Publish returned seq %d after %d: not increasing", seq, last)
		}
		last = seq
		want = append(want, sent{seq, ch, p})
	}
	checkDelivered(t, c.waitSeq(t, last), want)
}

func testSubscribeFromNow(t *testing.T, f Factory) {
	b := f(t, Options{})
	for i := range 3 {
		publish(t, b, "/before", fmt.Sprint(i))
	}
	c := subscribe(t, b)
	want := []sent{}
	for i := range 2 {
		p := fmt.Sprint(i)
		want = append(want, sent{publish(t, b, "/after", p), "/after", p})
	}
	checkDelivered(t, c.waitSeq(t, want[1].seq), want)
}

func testStopEndsDelivery(t *testing.T, f Factory) {
	b := f(t, Options{})
	stopped := newCollector()
	stop, err := b.Subscribe(context.Background(), stopped.handle)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	live := subscribe(t, b)
	s1 := publish(t, b, "/x", "1")
	stopped.waitSeq(t, s1)
	stop()
	s2 := publish(t, b, "/x", "2")
	live.waitSeq(t, s2)
	if got := stopped.snapshot(); len(got) != 1 {
		t.Fatalf("stopped subscription got %d messages, want 1", len(got))
	}
}

// testTwoNodesExactlyOnce publishes from two brokers on one backend at once
// and checks that each node receives every message once, in seq order.
func testTwoNodesExactlyOnce(t *testing.T, f Factory) {
	a, b := f(t, Options{}), f(t, Options{})
	ca, cb := subscribe(t, a), subscribe(t, b)
	const each = 40
	var mu sync.Mutex
	var all []sent
	var wg sync.WaitGroup
	for i, node := range []broker.Broker{a, b} {
		wg.Go(func() {
			for j := range each {
				ch := fmt.Sprintf("/node-%d", i)
				p := fmt.Sprintf("%d-%d", i, j)
				seq, err := node.Publish(context.Background(), ch, []byte(p))
				if err != nil {
					t.Errorf("node %d Publish: %v", i, err)
					return
				}
				mu.Lock()
				all = append(all, sent{seq, ch, p})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// A final message from a: in seq order, its arrival means everything
	// before it has arrived, so the counts below are exact, not a sleep.
	end := publish(t, a, "/end", "end")
	all = append(all, sent{end, "/end", "end"})
	slices.SortFunc(all, func(x, y sent) int { return int(x.seq) - int(y.seq) })
	for name, c := range map[string]*collector{"a": ca, "b": cb} {
		t.Run(name, func(t *testing.T) { checkDelivered(t, c.waitSeq(t, end), all) })
	}
}

func testHistory(t *testing.T, f Factory) {
	b := f(t, Options{})
	ctx := context.Background()
	chans := []string{"/a/b", "/a/c", "/a/b/c", "/x/y", "/a", "/a/b/c/d"}
	var pub []sent
	for round := range 3 {
		for _, ch := range chans {
			p := fmt.Sprintf("%s#%d", ch, round)
			pub = append(pub, sent{publish(t, b, ch, p), ch, p})
		}
	}
	mid := pub[len(pub)/2-1].seq
	tests := []struct {
		name     string
		patterns []string
		after    uint64
	}{
		{"exact", []string{"/a/b"}, 0},
		{"one segment wildcard", []string{"/a/*"}, 0},
		{"deep wildcard", []string{"/a/**"}, 0},
		{"everything", []string{"/**"}, 0},
		{"top level star", []string{"/*"}, 0},
		{"overlapping patterns", []string{"/a/*", "/a/b", "/a/**", "/a/b/*"}, 0},
		{"disjoint patterns", []string{"/x/y", "/a/b/c"}, 0},
		{"after middle", []string{"/a/**", "/x/*"}, mid},
		{"after last", []string{"/**"}, pub[len(pub)-1].seq},
		{"no match", []string{"/nothing/**"}, 0},
		{"no patterns", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.History(ctx, tc.patterns, tc.after)
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			var want []sent
			for _, s := range pub {
				if s.seq <= tc.after {
					continue
				}
				if slices.ContainsFunc(tc.patterns, func(p string) bool { return bayeux.Match(p, s.channel) }) {
					want = append(want, s)
				}
			}
			checkDelivered(t, got, want)
		})
	}
}

func testHistoryGone(t *testing.T, f Factory) {
	const window = 5
	b := f(t, Options{HistoryMsgs: window})
	ctx := context.Background()
	var pub []sent
	for i := range 12 {
		p := fmt.Sprint(i)
		pub = append(pub, sent{publish(t, b, "/r", p), "/r", p})
	}
	firstKept := pub[len(pub)-window]
	tests := []struct {
		name  string
		after uint64
		want  []sent
		gone  bool
	}{
		{"from the start", 0, nil, true},
		{"one before the window", firstKept.seq - 2, nil, true},
		{"window edge", firstKept.seq - 1, pub[len(pub)-window:], false},
		{"inside the window", pub[len(pub)-2].seq, pub[len(pub)-1:], false},
		{"up to date", pub[len(pub)-1].seq, nil, false},
		{"cursor ahead of the history", pub[len(pub)-1].seq + 5, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.History(ctx, []string{"/r"}, tc.after)
			if tc.gone {
				if !errors.Is(err, broker.ErrHistoryGone) {
					t.Fatalf("History after %d: err %v, want ErrHistoryGone", tc.after, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("History after %d: %v", tc.after, err)
			}
			checkDelivered(t, got, tc.want)
		})
	}
}

func testLastSeq(t *testing.T, f Factory) {
	b := f(t, Options{})
	ctx := context.Background()
	if got, err := b.LastSeq(ctx); err != nil || got != 0 {
		t.Fatalf("LastSeq on empty broker = %d, %v; want 0", got, err)
	}
	seq := publish(t, b, "/s", "x")
	if got, err := b.LastSeq(ctx); err != nil || got != seq {
		t.Fatalf("LastSeq = %d, %v; want %d", got, err, seq)
	}
}

func testSessions(t *testing.T, f Factory) {
	a, b := f(t, Options{}), f(t, Options{})
	ctx := context.Background()
	saved := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ids := []string{"abc123", "with.dot", "with/slash", "*", ">", "ünïcode", "=abc", "a b", "MiXeD-_09"}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			if _, err := a.Sessions().Load(ctx, id); !errors.Is(err, broker.ErrNoSession) {
				t.Fatalf("Load before Save: err %v, want ErrNoSession", err)
			}
			s := broker.Session{ClientID: id, Subscriptions: []string{"/a/**", "/b"}, Cursor: 42,
				Subject: "user-1", Grants: []string{"/a/**"}, AuthExpires: saved.Add(time.Hour), Node: "ws-01", SavedAt: saved}
			if err := a.Sessions().Save(ctx, s); err != nil {
				t.Fatalf("Save: %v", err)
			}
			s.Cursor = 43 // a later save replaces the earlier one
			if err := a.Sessions().Save(ctx, s); err != nil {
				t.Fatalf("Save again: %v", err)
			}
			got, err := b.Sessions().Load(ctx, id) // another node reads it
			if err != nil {
				t.Fatalf("Load from other node: %v", err)
			}
			if got.ClientID != s.ClientID || got.Cursor != 43 || !slices.Equal(got.Subscriptions, s.Subscriptions) ||
				got.Subject != s.Subject || !slices.Equal(got.Grants, s.Grants) || !got.AuthExpires.Equal(s.AuthExpires) ||
				got.Node != s.Node || !got.SavedAt.Equal(s.SavedAt) {
				t.Fatalf("Load = %+v, want %+v", got, s)
			}
			if err := b.Sessions().Delete(ctx, id); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := a.Sessions().Load(ctx, id); !errors.Is(err, broker.ErrNoSession) {
				t.Fatalf("Load after Delete: err %v, want ErrNoSession", err)
			}
			if err := a.Sessions().Delete(ctx, id); err != nil {
				t.Fatalf("Delete of a missing session: %v", err)
			}
		})
	}
	// Distinct IDs never share a slot, even when one looks like another's
	// encoding.
	for _, id := range ids {
		if err := a.Sessions().Save(ctx, broker.Session{ClientID: id, SavedAt: saved}); err != nil {
			t.Fatalf("Save %q: %v", id, err)
		}
	}
	for _, id := range ids {
		got, err := b.Sessions().Load(ctx, id)
		if err != nil || got.ClientID != id {
			t.Fatalf("Load %q = %q, %v", id, got.ClientID, err)
		}
	}
}

// testSessionsCAS checks the revisions of Update and DeleteRev: a write
// based on a stale read loses, whichever node made it.
func testSessionsCAS(t *testing.T, f Factory) {
	a, b := f(t, Options{}), f(t, Options{})
	ctx := context.Background()
	for _, id := range []string{"cas-1", "with/slash"} {
		t.Run(id, func(t *testing.T) {
			s := broker.Session{ClientID: id, Subscriptions: []string{"/a"}, Cursor: 1}
			if _, _, err := a.Sessions().LoadRev(ctx, id); !errors.Is(err, broker.ErrNoSession) {
				t.Fatalf("LoadRev before any write: err %v, want ErrNoSession", err)
			}
			if _, err := a.Sessions().Update(ctx, s, 7); !errors.Is(err, broker.ErrSessionChanged) {
				t.Fatalf("Update of a missing record at rev 7: err %v, want ErrSessionChanged", err)
			}
			rev1, err := a.Sessions().Update(ctx, s, 0) // create
			if err != nil || rev1 == 0 {
				t.Fatalf("Update create = %d, %v; want a revision", rev1, err)
			}
			if _, err := b.Sessions().Update(ctx, s, 0); !errors.Is(err, broker.ErrSessionChanged) {
				t.Fatalf("second create: err %v, want ErrSessionChanged", err)
			}
			got, rev, err := b.Sessions().LoadRev(ctx, id)
			if err != nil || rev != rev1 || got.Cursor != 1 {
				t.Fatalf("LoadRev = cursor %d rev %d, %v; want cursor 1 rev %d", got.Cursor, rev, err, rev1)
			}
			s.Subscriptions = []string{"/a", "/b"}
			rev2, err := b.Sessions().Update(ctx, s, rev1)
			if err != nil || rev2 == rev1 {
				t.Fatalf("Update at the current rev = %d, %v; want a new revision", rev2, err)
			}
			stale := s
			stale.Subscriptions = []string{"/a"}
			if _, err := a.Sessions().Update(ctx, stale, rev1); !errors.Is(err, broker.ErrSessionChanged) {
				t.Fatalf("Update at a stale rev: err %v, want ErrSessionChanged", err)
			}
			if got, err := a.Sessions().Load(ctx, id); err != nil || !slices.Equal(got.Subscriptions, s.Subscriptions) {
				t.Fatalf("after a lost Update: %v, %v; want %v kept", got.Subscriptions, err, s.Subscriptions)
			}
			if err := a.Sessions().DeleteRev(ctx, id, rev1); !errors.Is(err, broker.ErrSessionChanged) {
				t.Fatalf("DeleteRev at a stale rev: err %v, want ErrSessionChanged", err)
			}
			// a blind Save moves the revision on too
			if err := a.Sessions().Save(ctx, s); err != nil {
				t.Fatalf("Save: %v", err)
			}
			if err := b.Sessions().DeleteRev(ctx, id, rev2); !errors.Is(err, broker.ErrSessionChanged) {
				t.Fatalf("DeleteRev after a Save: err %v, want ErrSessionChanged", err)
			}
			_, rev3, err := b.Sessions().LoadRev(ctx, id)
			if err != nil {
				t.Fatalf("LoadRev: %v", err)
			}
			if err := b.Sessions().DeleteRev(ctx, id, rev3); err != nil {
				t.Fatalf("DeleteRev at the current rev: %v", err)
			}
			if _, _, err := a.Sessions().LoadRev(ctx, id); !errors.Is(err, broker.ErrNoSession) {
				t.Fatalf("LoadRev after DeleteRev: err %v, want ErrNoSession", err)
			}
			if err := b.Sessions().DeleteRev(ctx, id, rev3); !errors.Is(err, broker.ErrSessionChanged) {
				t.Fatalf("DeleteRev of a missing record: err %v, want ErrSessionChanged", err)
			}
			if _, err := a.Sessions().Update(ctx, s, 0); err != nil { // created again after a delete
				t.Fatalf("create after delete: %v", err)
			}
		})
	}
}

// testSessionsConcurrentUpdaters has several nodes add their own entry to
// one record at once, each in a read-modify-write loop: exactly one
// updater wins per revision, and no entry is lost.
func testSessionsConcurrentUpdaters(t *testing.T, f Factory) {
	ctx := context.Background()
	const nodes, each = 4, 10
	stores := make([]broker.SessionStore, nodes)
	for i := range stores {
		stores[i] = f(t, Options{}).Sessions()
	}
	const id = "shared-1"
	if _, err := stores[0].Update(ctx, broker.Session{ClientID: id}, 0); err != nil {
		t.Fatalf("create: %v", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins = map[uint64]int{} // revision updated from -> winners
	)
	for n, st := range stores {
		wg.Go(func() {
			for i := range each {
				entry := fmt.Sprintf("/n%d/%d", n, i)
				for {
					cur, rev, err := st.LoadRev(ctx, id)
					if err != nil {
						t.Errorf("LoadRev: %v", err)
						return
					}
					cur.Subscriptions = append(cur.Subscriptions, entry)
					_, err = st.Update(ctx, cur, rev)
					if errors.Is(err, broker.ErrSessionChanged) {
						continue
					}
					if err != nil {
						t.Errorf("Update: %v", err)
						return
					}
					mu.Lock()
					wins[rev]++
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for rev, n := range wins {
		if n != 1 {
			t.Errorf("%d updates won from revision %d, want 1", n, rev)
		}
	}
	got, err := stores[0].Load(ctx, id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(got.Subscriptions) != nodes*each {
		t.Fatalf("record has %d entries, want %d: updates were lost", len(got.Subscriptions), nodes*each)
	}
}

// testConcurrent publishes from several goroutines while History and
// sessions are used; run with -race. Every message must arrive once, in
// strictly increasing seq order, and per channel in publish order.
func testConcurrent(t *testing.T, f Factory) {
	b := f(t, Options{})
	c := subscribe(t, b)
	ctx := context.Background()
	const writers, each = 4, 25
	var wg sync.WaitGroup
	bySeq := make([][]uint64, writers)
	for w := range writers {
		wg.Go(func() {
			ch := fmt.Sprintf("/w/%d", w)
			for i := range each {
				seq, err := b.Publish(ctx, ch, []byte(fmt.Sprint(i)))
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				bySeq[w] = append(bySeq[w], seq)
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			if _, err := b.History(ctx, []string{"/w/**"}, 0); err != nil {
				t.Errorf("History: %v", err)
				return
			}
			id := fmt.Sprintf("c%d", i)
			if err := b.Sessions().Save(ctx, broker.Session{ClientID: id}); err != nil {
				t.Errorf("Save: %v", err)
				return
			}
			if _, err := b.Sessions().Load(ctx, id); err != nil {
				t.Errorf("Load: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	end := publish(t, b, "/end", "")
	got := c.waitSeq(t, end)
	if len(got) != writers*each+1 {
		t.Fatalf("delivered %d messages, want %d", len(got), writers*each+1)
	}
	next := map[string]int{}
	for i, m := range got {
		if i > 0 && m.Seq <= got[i-1].Seq {
			t.Fatalf("seq %d delivered after %d", m.Seq, got[i-1].Seq)
		}
		if m.Channel == "/end" {
			continue
		}
		n := next[m.Channel]
		if string(m.Payload) != fmt.Sprint(n) {
			t.Fatalf("%s: got payload %s, want %d (per-channel order)", m.Channel, m.Payload, n)
		}
		var w int
		fmt.Sscanf(m.Channel, "/w/%d", &w)
		if bySeq[w][n] != m.Seq {
			t.Fatalf("%s #%d: delivered seq %d, Publish returned %d", m.Channel, n, m.Seq, bySeq[w][n])
		}
		next[m.Channel] = n + 1
	}
	hist, err := b.History(ctx, []string{"/w/*"}, 0)
	if err != nil || len(hist) != writers*each {
		t.Fatalf("History after the run: %d messages, %v; want %d", len(hist), err, writers*each)
	}
}

func testHealthy(t *testing.T, f Factory) {
	b := f(t, Options{})
	hc, ok := b.(broker.HealthChecker)
	if !ok {
		t.Fatalf("%T does not implement broker.HealthChecker", b)
	}
	if err := hc.Healthy(); err != nil {
		t.Fatalf("Healthy on a fresh broker: %v", err)
	}
}

func testClosed(t *testing.T, f Factory) {
	b := f(t, Options{})
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Publish(context.Background(), "/x", []byte("1")); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after Close: err %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(context.Background(), func(broker.Message) {}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Subscribe after Close: err %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

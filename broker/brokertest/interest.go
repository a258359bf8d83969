package brokertest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// interestNode is a node's side of interest-based delivery as the server
// does it: a set of patterns (the index), the broker subscription that
// follows it, and what it delivered.
type interestNode struct {
	b   broker.Broker
	sub broker.InterestSub
	c   *collector

	mu   sync.Mutex
	pats map[string]int // pattern -> subscribers
}

func (n *interestNode) patterns() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Collect(maps.Keys(n.pats))
}

// add subscribes to p and waits for the broker to cover it, as the
// server's indexAddAll does.
func (n *interestNode) add(t *testing.T, p string) {
	t.Helper()
	n.mu.Lock()
	n.pats[p]++
	n.mu.Unlock()
	if err := n.sub.Want(context.Background(), []string{p}); err != nil {
		t.Fatalf("Want(%s): %v", p, err)
	}
}

// remove drops one subscriber of p and tells the broker when it was the
// last.
func (n *interestNode) remove(p string) {
	n.mu.Lock()
	n.pats[p]--
	gone := n.pats[p] == 0
	if gone {
		delete(n.pats, p)
	}
	n.mu.Unlock()
	if gone {
		n.sub.Changed()
	}
}

// newInterestNode subscribes b by interest, starting with patterns; it
// skips the test for a broker without interest-based delivery.
func newInterestNode(t *testing.T, b broker.Broker, patterns ...string) *interestNode {
	t.Helper()
	ib, ok := b.(broker.Interest)
	if !ok {
		t.Skipf("%T has no interest-based delivery", b)
	}
	n := &interestNode{b: b, c: newCollector(), pats: map[string]int{}}
	for _, p := range patterns {
		n.pats[p]++
	}
	sub, err := ib.SubscribeInterest(context.Background(), n.c.handle, n.patterns)
	if err != nil {
		t.Fatalf("SubscribeInterest: %v", err)
	}
	t.Cleanup(sub.Stop)
	n.sub = sub
	return n
}

// multiFilter reports whether b's backend filters one consumer on several
// patterns (false for NATS 2.9, which then reads the whole stream).
func multiFilter(b broker.Broker) bool {
	if m, ok := b.(interface{ MultiFilter() bool }); ok {
		return m.MultiFilter()
	}
	return true
}

// testInterestOnlyWanted: a node receives the messages of the channels it
// subscribes to and nothing else (its Received counter), a node with no
// subscriber receives nothing, and a whole-stream Subscribe still gets
// everything.
func testInterestOnlyWanted(t *testing.T, f Factory) {
	pub, b, idle := f(t, Options{}), f(t, Options{}), f(t, Options{})
	nb := newInterestNode(t, b, "/room/a")
	ni := newInterestNode(t, idle)
	all := subscribe(t, pub)
	var want []sent
	var last uint64
	for i := range 40 {
		ch := "/room/b"
		if i%4 == 0 {
			ch = "/room/a"
		}
		p := fmt.Sprint(i)
		last = publish(t, pub, ch, p)
		if ch == "/room/a" {
			want = append(want, sent{last, ch, p})
		}
	}
	all.waitSeq(t, last)
	end := publish(t, pub, "/room/a", "end")
	want = append(want, sent{end, "/room/a", "end"})
	checkDelivered(t, nb.c.waitSeq(t, end), want)
	if got := nb.sub.Received(); got != uint64(len(want)) {
		t.Errorf("node subscribed to /room/a received %d messages from the broker, want %d (only its channel)", got, len(want))
	}
	// the idle node's consumer, if any, had the time the busy one took
	time.Sleep(100 * time.Millisecond)
	if got := ni.sub.Received(); got != 0 || len(ni.c.snapshot()) != 0 {
		t.Errorf("node without subscribers received %d messages (%d delivered), want 0", got, len(ni.c.snapshot()))
	}
}

// testInterestWildcards: /* matches one segment below, /** any depth, and
// a node receives exactly the channels its patterns match.
func testInterestWildcards(t *testing.T, f Factory) {
	pub, b := f(t, Options{}), f(t, Options{})
	pats := []string{"/w/*", "/x/**", "/w/a/b"}
	n := newInterestNode(t, b, pats...)
	chans := []string{"/w/a", "/w/a/b", "/w/a/c", "/x", "/x/a", "/x/a/b/c", "/y/a", "/w", "/wx/a"}
	var want []sent
	var last uint64
	for i := range 3 {
		for _, ch := range chans {
			p := fmt.Sprint(i, ch)
			last = publish(t, pub, ch, p)
			match := false
			for _, q := range pats {
				match = match || bayeux.Match(q, ch)
			}
			if match {
				want = append(want, sent{last, ch, p})
			}
		}
	}
	end := publish(t, pub, "/x/end", "end")
	want = append(want, sent{end, "/x/end", "end"})
	checkDelivered(t, n.c.waitSeq(t, end), want)
	got := n.sub.Received()
	switch {
	case multiFilter(b) && got != uint64(len(want)):
		t.Errorf("received %d messages from the broker, want %d (only matching channels)", got, len(want))
	case got < uint64(len(want)):
		t.Errorf("received %d messages from the broker, fewer than the %d delivered", got, len(want))
	}
}

// testInterestChurn publishes steadily on a few channels while a node
// subscribes and unsubscribes patterns (wildcards included) many times,
// as sessions come and go. Every message on a pattern published between
// the return of its Want and its removal must be delivered, none twice,
// in sequence order; a pattern subscribed throughout loses nothing across
// the switches; a subscribe with a replay (History after Want, merged by
// sequence) has no hole between history and live.
func testInterestChurn(t *testing.T, f Factory) {
	pub, b := f(t, Options{}), f(t, Options{})
	ctx := context.Background()
	const steady = "/churn/steady"
	n := newInterestNode(t, b, steady)
	chans := []string{"/churn/c0", "/churn/c1", "/churn/c2", "/churn/deep/x", steady}
	pool := []string{"/churn/c0", "/churn/c1", "/churn/c2", "/churn/*", "/churn/**", "/churn/deep/*"}

	var (
		pmu    sync.Mutex
		pubbed []sent
	)
	stopPub := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			default:
			}
			ch := chans[i%len(chans)]
			seq, err := pub.Publish(ctx, ch, []byte(fmt.Sprint(i)))
			if err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
			pmu.Lock()
			pubbed = append(pubbed, sent{seq, ch, fmt.Sprint(i)})
			pmu.Unlock()
			time.Sleep(time.Millisecond)
		}
	})

	type period struct {
		pattern  string
		from, to uint64 // wanted: from < seq <= to
	}
	var periods []period
	type replay struct {
		pattern     string
		msgs        []broker.Message
		since, upTo uint64 // the merge must hold since < seq <= upTo
	}
	var replays []replay
	rng := rand.New(rand.NewPCG(1, 2))
	active := map[string]uint64{} // pattern -> from
	for round := range 40 {
		p := pool[rng.IntN(len(pool))]
		if from, on := active[p]; on {
			to, err := pub.LastSeq(ctx)
			if err != nil {
				t.Fatalf("LastSeq: %v", err)
			}
			n.remove(p)
			delete(active, p)
			periods = append(periods, period{p, from, to})
		} else {
			since, _ := pub.LastSeq(ctx)
			n.add(t, p)
			from, err := pub.LastSeq(ctx)
			if err != nil {
				t.Fatalf("LastSeq: %v", err)
			}
			active[p] = from
			if round%3 == 0 {
				// a subscribe with a replay from before the switch
				h, err := b.History(ctx, []string{p}, since)
				if err != nil {
					t.Fatalf("History: %v", err)
				}
				replays = append(replays, replay{p, h, since, from})
			}
		}
		time.Sleep(time.Duration(2+rng.IntN(15)) * time.Millisecond)
	}
	close(stopPub)
	wg.Wait()
	if t.Failed() {
		return
	}
	end := publish(t, pub, steady, "end")
	for p, from := range active {
		periods = append(periods, period{p, from, end})
	}
	periods = append(periods, period{steady, 0, end})
	got := n.c.waitSeq(t, end)
	delivered := map[uint64]broker.Message{}
	for i, m := range got {
		if i > 0 && m.Seq <= got[i-1].Seq {
			t.Fatalf("seq %d delivered after %d: a duplicate or out of order", m.Seq, got[i-1].Seq)
		}
		delivered[m.Seq] = m
	}
	pmu.Lock()
	all := slices.Clone(pubbed)
	pmu.Unlock()
	missing := 0
	for _, pd := range periods {
		for _, s := range all {
			if s.seq > pd.from && s.seq <= pd.to && bayeux.Match(pd.pattern, s.channel) {
				if m, ok := delivered[s.seq]; !ok || m.Channel != s.channel || string(m.Payload) != s.payload {
					if missing < 5 {
						t.Errorf("seq %d on %s (pattern %s wanted from %d to %d) not delivered", s.seq, s.channel, pd.pattern, pd.from, pd.to)
					}
					missing++
				}
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d wanted messages not delivered", missing)
	}
	// a replay read after Want, merged with the live messages by
	// sequence, has every message of its pattern from since on
	for _, r := range replays {
		merged := map[uint64]bool{}
		for _, m := range r.msgs {
			merged[m.Seq] = true
		}
		for _, m := range got {
			if bayeux.Match(r.pattern, m.Channel) {
				merged[m.Seq] = true
			}
		}
		for _, s := range all {
			if s.seq > r.since && s.seq <= r.upTo && bayeux.Match(r.pattern, s.channel) && !merged[s.seq] {
				t.Errorf("replay of %s: seq %d in neither the history nor the live path", r.pattern, s.seq)
			}
		}
	}
	if len(got) == 0 || got[len(got)-1].Seq != end {
		t.Fatalf("last delivered is not the end marker")
	}
}

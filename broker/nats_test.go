package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"wsfleet/broker"
	"wsfleet/broker/brokertest"
)

// startNATS starts an embedded NATS on a random loopback port for t.
func startNATS(t *testing.T, storeDir string) *broker.Embedded {
	t.Helper()
	e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: storeDir})
	if err != nil {
		t.Fatalf("StartEmbeddedNATS: %v", err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e
}

func newNATS(t *testing.T, url string, o broker.NATSOptions) *broker.NATS {
	t.Helper()
	o.URLs = url
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := broker.NewNATS(ctx, o)
	if err != nil {
		t.Fatalf("NewNATS: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestNATSConformance(t *testing.T) {
	var mu sync.Mutex
	perTest := map[*testing.T]*broker.Embedded{}
	brokertest.Run(t, func(t *testing.T, o brokertest.Options) broker.Broker {
		mu.Lock()
		e, ok := perTest[t]
		if !ok {
			e = startNATS(t, t.TempDir())
			perTest[t] = e
		}
		mu.Unlock()
		return newNATS(t, e.ClientURL(), broker.NATSOptions{Name: fmt.Sprintf("node-%p", t), HistoryMsgs: int64(o.HistoryMsgs)})
	})
}

// TestNATSConcurrentStart starts several nodes at once on a fresh server:
// they all create the same stream and bucket, and none may fail.
func TestNATSConcurrentStart(t *testing.T) {
	e := startNATS(t, t.TempDir())
	const nodes = 4
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	brokers := make([]*broker.NATS, nodes)
	for i := range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			brokers[i], errs[i] = broker.NewNATS(ctx, broker.NATSOptions{URLs: e.ClientURL(), Name: fmt.Sprint("n", i)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
			continue
		}
		t.Cleanup(func() { brokers[i].Close() })
	}
	if t.Failed() {
		return
	}
	seq, err := brokers[0].Publish(context.Background(), "/x", []byte("1"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got, err := brokers[nodes-1].LastSeq(context.Background()); err != nil || got != seq {
		t.Fatalf("LastSeq on another node = %d, %v; want %d", got, err, seq)
	}
}

func TestNATSOptionErrors(t *testing.T) {
	e := startNATS(t, t.TempDir())
	tests := []struct {
		name string
		o    broker.NATSOptions
	}{
		{"no urls", broker.NATSOptions{}},
		{"bad prefix", broker.NATSOptions{URLs: e.ClientURL(), SubjectPrefix: "a.*"}},
		{"nothing listening", broker.NATSOptions{URLs: "nats://127.0.0.1:1", ConnectTimeout: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := broker.NewNATS(context.Background(), tc.o)
			if err == nil {
				b.Close()
				t.Fatal("NewNATS succeeded, want an error")
			}
		})
	}
}

func TestNATSPublishInvalidChannel(t *testing.T) {
	e := startNATS(t, t.TempDir())
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{})
	for _, ch := range []string{"/a/*", "/a/**", "a", "/a.b", "/"} {
		if _, err := b.Publish(context.Background(), ch, []byte("x")); err == nil {
			t.Errorf("Publish(%q) succeeded, want an error", ch)
		}
	}
	if _, err := b.History(context.Background(), []string{"/a/*/b"}, 0); err == nil {
		t.Error("History with an invalid pattern succeeded, want an error")
	}
}

// TestNATSSharedPrefixIsolation runs two fleets with different streams and
// prefixes on one NATS: neither sees the other's messages.
func TestNATSSharedPrefixIsolation(t *testing.T) {
	e := startNATS(t, t.TempDir())
	a := newNATS(t, e.ClientURL(), broker.NATSOptions{Stream: "A", SubjectPrefix: "fleet-a", SessionBucket: "a_sessions"})
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{Stream: "B", SubjectPrefix: "fleet-b", SessionBucket: "b_sessions"})
	ctx := context.Background()
	if _, err := a.Publish(ctx, "/x", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.History(ctx, []string{"/**"}, 0); err != nil || len(got) != 0 {
		t.Fatalf("fleet b history = %d messages, %v; want none", len(got), err)
	}
	if err := a.Sessions().Save(ctx, broker.Session{ClientID: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sessions().Load(ctx, "c"); err != broker.ErrNoSession {
		t.Fatalf("fleet b sees fleet a's session: %v", err)
	}
}

// TestNATSCloseWhileDelivering closes a node while another keeps
// publishing to it: no race, no panic, and no delivery after Close.
func TestNATSCloseWhileDelivering(t *testing.T) {
	e := startNATS(t, t.TempDir())
	pub := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "pub"})
	sub := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "sub"})
	var mu sync.Mutex
	closed, late := false, 0
	got := make(chan struct{}, 1)
	if _, err := sub.Subscribe(context.Background(), func(broker.Message) {
		mu.Lock()
		if closed {
			late++
		}
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if _, err := pub.Publish(context.Background(), "/flow", []byte(fmt.Sprint(i))); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	}()
	<-got
	sub.Close()
	mu.Lock()
	closed = true
	mu.Unlock()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if late != 0 {
		t.Fatalf("%d deliveries after Close returned", late)
	}
}

// subscribeInterest subscribes h to b by interest, with the patterns
// given at first and then those the returned function sets; the
// subscription stops with the test.
func subscribeInterest(t *testing.T, b *broker.NATS, h func(broker.Message), initial ...string) (broker.InterestSub, func(...string)) {
	t.Helper()
	var mu sync.Mutex
	pats := slices.Clone(initial)
	sub, err := b.SubscribeInterest(context.Background(), h, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(pats)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	return sub, func(p ...string) {
		mu.Lock()
		pats = p
		mu.Unlock()
	}
}

// TestNATSInterestSwitchesLeaveNoConsumers switches an interest
// subscription many times: each switch stops an ordered consumer, whose
// server-side consumer must be deleted rather than left to the server's
// inactivity reaper (minutes, thousands of them on a busy node).
func TestNATSInterestSwitchesLeaveNoConsumers(t *testing.T) {
	e := startNATS(t, t.TempDir())
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "switcher", SwitchInterval: time.Millisecond})
	sub, setInterest := subscribeInterest(t, b, func(broker.Message) {})
	for i := range 30 {
		setInterest(fmt.Sprintf("/room/%d", i))
		if err := sub.Want(context.Background(), []string{fmt.Sprintf("/room/%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var consumers int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s := wsfleetStream(t, e.ClientURL())
		if consumers = s.CachedInfo().State.Consumers; consumers <= 1 {
			return
		}
	}
	t.Fatalf("%d consumers on the stream after 30 switches, want the one in use", consumers)
}

// TestNATSInterestWantCovered: a Want whose patterns the running consumer
// already reads returns at once, even while a switch for other patterns
// is pending (a node taking over clients on channels it serves already,
// while it adds another channel); a Want for a pattern not yet read waits
// for the switch that adds it.
func TestNATSInterestWantCovered(t *testing.T) {
	const interval = 1500 * time.Millisecond
	tests := []struct {
		name     string
		want     string
		fast     bool
		received bool // a message published after Want reaches the handler
	}{
		{"covered while a switch is pending", "/room/a", true, true},
		{"added by the pending switch", "/room/b", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startNATS(t, t.TempDir())
			b := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "wanter", SwitchInterval: interval})
			got := make(chan string, 16)
			sub, setInterest := subscribeInterest(t, b, func(m broker.Message) { got <- m.Channel }, "/room/a")
			// another channel arrives: its switch waits out the interval
			setInterest("/room/a", "/room/b")
			other := make(chan error, 1)
			go func() { other <- sub.Want(context.Background(), []string{"/room/b"}) }()
			time.Sleep(100 * time.Millisecond)

			start := time.Now()
			if err := sub.Want(context.Background(), []string{tt.want}); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if tt.fast && took > interval/3 {
				t.Errorf("Want(%s) took %v: it waited for a switch it does not need", tt.want, took)
			}
			if !tt.fast && took < interval/3 {
				t.Errorf("Want(%s) took %v: it returned before the switch that adds it", tt.want, took)
			}
			if _, err := b.Publish(context.Background(), tt.want, []byte(`"x"`)); err != nil {
				t.Fatal(err)
			}
			select {
			case ch := <-got:
				if ch != tt.want {
					t.Errorf("received on %s, want %s", ch, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("a message on %s published after Want never arrived", tt.want)
			}
			if err := <-other; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNATSInterestManyPatterns: above MaxFilterSubjects an interest
// subscription's consumer reads the whole stream (one filter, not one a
// pattern) and delivers only what the patterns match; at or below it,
// one filter a pattern.
func TestNATSInterestManyPatterns(t *testing.T) {
	for _, tc := range []struct {
		name        string
		max         int
		wantFilters []string
	}{
		{"above the bound: the whole stream, filtered here", 2, []string{"wsfleet.>"}},
		{"within it: one filter a pattern", 3, []string{"wsfleet.room.0", "wsfleet.room.1", "wsfleet.room.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startNATS(t, t.TempDir())
			b := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "many", MaxFilterSubjects: tc.max})
			pats := []string{"/room/0", "/room/1", "/room/2"}
			var mu sync.Mutex
			var got []string
			sub, err := b.SubscribeInterest(context.Background(), func(m broker.Message) {
				mu.Lock()
				got = append(got, m.Channel)
				mu.Unlock()
			}, func() []string { return pats })
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Stop()
			if err := sub.Want(context.Background(), pats); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := b.Publish(context.Background(), fmt.Sprintf("/room/%d", i), []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			want := []string{"/room/0", "/room/1", "/room/2"}
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n >= len(want) {
					break
				}
			}
			time.Sleep(200 * time.Millisecond) // anything unwanted would come meanwhile
			mu.Lock()
			if !slices.Equal(got, want) {
				t.Errorf("delivered %v, want %v", got, want)
			}
			mu.Unlock()
			s := wsfleetStream(t, e.ClientURL())
			var filters [][]string
			lister := s.ListConsumers(context.Background())
			for ci := range lister.Info() {
				f := slices.Clone(ci.Config.FilterSubjects)
				if ci.Config.FilterSubject != "" {
					f = append(f, ci.Config.FilterSubject)
				}
				slices.Sort(f)
				filters = append(filters, f)
			}
			if len(filters) != 1 || !slices.Equal(filters[0], tc.wantFilters) {
				t.Errorf("consumers' filters %v, want one consumer on %v", filters, tc.wantFilters)
			}
		})
	}
}

// wsfleetStream is the nodes' stream on the server at url, read through a
// connection of the test's own that the test's cleanup closes.
func wsfleetStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), "WSFLEET")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// consumerFilters lists the filter subjects of every consumer on the
// nodes' stream at url, each sorted.
func consumerFilters(t *testing.T, url string) [][]string {
	t.Helper()
	var filters [][]string
	for ci := range wsfleetStream(t, url).ListConsumers(context.Background()).Info() {
		f := slices.Clone(ci.Config.FilterSubjects)
		if ci.Config.FilterSubject != "" {
			f = append(f, ci.Config.FilterSubject)
		}
		slices.Sort(f)
		filters = append(filters, f)
	}
	return filters
}

// TestNATSInterestGrowth: a node taking sessions on many channels new to
// it (a fresh instance receiving a drain's clients) reads the whole
// stream once its patterns grow fast, so that its Wants stop waiting for
// consumer switches, and goes back to one filtered consumer when no new
// pattern came for InterestSettle. Throughout, while another node
// publishes, every message on a room published after its Want returned is
// delivered once, in order, and nothing on a channel never wanted.
func TestNATSInterestGrowth(t *testing.T) {
	const (
		interval = 200 * time.Millisecond
		settle   = 600 * time.Millisecond
		rooms    = 20
	)
	e := startNATS(t, t.TempDir())
	pub := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "pub"})
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "fresh", SwitchInterval: interval, InterestSettle: settle})
	var (
		mu  sync.Mutex
		got []broker.Message
	)
	sub, setInterest := subscribeInterest(t, b, func(m broker.Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	switches := sub.(interface{ Switches() uint64 })

	// another node publishes on every room and on /other, one message
	// every 2 ms, until the end
	type sent struct {
		seq uint64
		ch  string
	}
	var pubbed []sent // the publisher's until pubDone
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for n := 0; pubCtx.Err() == nil; n++ {
			ch := "/other"
			if k := n % (rooms + 1); k < rooms {
				ch = fmt.Sprintf("/room/%d", k)
			}
			seq, err := pub.Publish(context.Background(), ch, []byte(`"x"`))
			if err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
			pubbed = append(pubbed, sent{seq, ch})
			select {
			case <-pubCtx.Done():
			case <-tick.C:
			}
		}
	}()

	from := map[string]uint64{} // room -> last seq when its Want returned
	want := func(room string, pats []string) time.Duration {
		t.Helper()
		setInterest(pats...)
		start := time.Now()
		if err := sub.Want(context.Background(), []string{room}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		seq, err := pub.LastSeq(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		from[room] = seq
		return took
	}
	var pats []string
	slow := 0
	for i := range rooms {
		room := fmt.Sprintf("/room/%d", i)
		pats = append(pats, room)
		if want(room, slices.Clone(pats)) > interval/2 {
			slow++
		}
		time.Sleep(10 * time.Millisecond)
	}
	grown := switches.Switches()
	if slow > 4 {
		t.Errorf("%d of %d Wants for new rooms waited for a switch: growth did not take the switches out", slow, rooms)
	}
	if grown > 4 {
		t.Errorf("%d consumer switches while %d rooms came, want at most 4 (three filtered, one to the whole stream)", grown, rooms)
	}

	// settled: one switch back to a filtered consumer on every room
	var filters [][]string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		// (the switch counts once its consumer consumes, after the server made it)
		if filters = consumerFilters(t, e.ClientURL()); len(filters) == 1 && len(filters[0]) == rooms && switches.Switches() > grown {
			break
		}
	}
	if len(filters) != 1 || len(filters[0]) != rooms {
		t.Fatalf("consumers' filters %v after the rooms settled, want one consumer on the %d rooms", filters, rooms)
	}
	if n := switches.Switches(); n != grown+1 {
		t.Errorf("%d switches after settling, want %d (one back to filtered)", n, grown+1)
	}
	// a room new after that is a filtered switch again
	pats = append(pats, "/room/late")
	if took := want("/room/late", slices.Clone(pats)); took > 5*time.Second {
		t.Errorf("Want(/room/late) took %v", took)
	}
	if n := switches.Switches(); n != grown+2 {
		t.Errorf("%d switches after a late room, want %d", n, grown+2)
	}
	if _, err := pub.Publish(context.Background(), "/room/late", []byte(`"late"`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	stopPub()
	<-pubDone
	end, err := pub.Publish(context.Background(), "/room/0", []byte(`"end"`))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		done := len(got) > 0 && got[len(got)-1].Seq == end
		mu.Unlock()
		if done {
			break
		}
	}

	mu.Lock()
	defer mu.Unlock()
	delivered := map[uint64]bool{}
	for i, m := range got {
		if i > 0 && m.Seq <= got[i-1].Seq {
			t.Fatalf("seq %d delivered after %d: a duplicate or out of order", m.Seq, got[i-1].Seq)
		}
		if m.Channel == "/other" {
			t.Errorf("seq %d on /other delivered: never wanted", m.Seq)
		}
		delivered[m.Seq] = true
	}
	if !delivered[end] {
		t.Fatalf("the end marker %d was not delivered", end)
	}
	missing := 0
	for _, s := range pubbed {
		if f, ok := from[s.ch]; ok && s.seq > f && !delivered[s.seq] {
			if missing < 5 {
				t.Errorf("seq %d on %s (wanted from %d) not delivered", s.seq, s.ch, f)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d wanted messages not delivered of %d published", missing, len(pubbed))
	}
}

// TestNATSInterestOneNewChannelIsNoGrowth: sessions subscribing to one new
// channel at once (a check's probe clients on /probe/0) are one new
// pattern: their Wants share one switch to a filtered consumer, and the
// node does not read the whole stream for them.
func TestNATSInterestOneNewChannelIsNoGrowth(t *testing.T) {
	e := startNATS(t, t.TempDir())
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "probed", SwitchInterval: 200 * time.Millisecond, InterestSettle: 2 * time.Second})
	sub, setInterest := subscribeInterest(t, b, func(broker.Message) {}, "/room/a")
	setInterest("/room/a", "/probe/0")
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() { errs <- sub.Want(context.Background(), []string{"/probe/0"}) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"wsfleet.probe.0", "wsfleet.room.a"}
	var filters [][]string
	// within the settle time: a growth consumer would still read all
	// (the stopped consumer's deletion is asynchronous: wait for it)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if filters = consumerFilters(t, e.ClientURL()); len(filters) == 1 && slices.Equal(filters[0], want) {
			break
		}
	}
	if len(filters) != 1 || !slices.Equal(filters[0], want) {
		t.Errorf("consumers' filters %v, want one on %v (no growth for one new channel)", filters, want)
	}
	if n := sub.(interface{ Switches() uint64 }).Switches(); n != 2 {
		t.Errorf("%d switches, want 2 (the subscribe's, the new channel's)", n)
	}
}

package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stopper is a subscription Close ends.
type stopper interface{ stop() }

// window is what a subscription wanted up to stream sequence to.
type window struct {
	to  uint64
	set interestSet
}

// natsInterestSub is a NATS broker's interest subscription: a JetStream
// ordered consumer filtered on the node's patterns (FilterSubjects, one
// consumer, one filter per reduced pattern), recreated on a switch. An
// ordered consumer cannot change its filters, so a switch stops it, notes
// L, the last stream sequence it gave the handler, and starts a new one
// at L+1 on the new filters: the old patterns lose nothing. Messages on
// the new patterns up to S, the stream's last sequence when the switch
// began, are dropped rather than delivered: they predate the subscribe
// that asked for them (whose replay, if any, History gives).
// When the old consumer had nothing left to read up to S (caughtUp), the
// new one starts at S+1 and reads nothing twice.
//
// While the patterns grow fast (growthWants subscribes asking for
// patterns the consumer does not read within InterestSettle), the
// subscription reads the whole stream and filters it here (growth): a
// Want then adds its patterns to the local filter in place, with no
// switch and no wait, and the first switch after InterestSettle without a
// new pattern goes back to a filtered consumer.
type natsInterestSub struct {
	b        *NATS
	h        func(Message)
	interest func() []string // nil: none
	whole    bool            // read the whole stream, never switch (Subscribe, WholeStream)
	received atomic.Uint64
	stopped  atomic.Bool
	quit     chan struct{}

	mu       sync.Mutex // serialises delivery with switches and stop
	gen      uint64     // the current consumer's generation; older ones' deliveries are dropped
	cc       jetstream.ConsumeContext
	cons     jetstream.Consumer
	last     uint64   // stream seq of the last message taken (delivered or dropped)
	patterns []string // reduced patterns the current consumer reads
	all      bool     // the current consumer reads the whole stream
	broken   bool     // a switch stopped the old consumer and could not start the new one
	// local is set when the consumer reads the whole stream for want of
	// multi-subject consumers (2.9): deliver then filters on set.
	local bool
	set   interestSet
	// grow is set while the consumer is a growth one: it reads the whole
	// stream, deliver filters on set, and Want widens set in place.
	grow bool
	// windows say what was wanted before the recent switches: a message
	// with seq at or below a window's to (and above the previous one's)
	// is delivered only if the window's set matches it. Above the last
	// window, the consumer's filters are the set.
	windows []window

	sw struct {
		sync.Mutex
		covered   interestSet // what the last successful switch covers
		pending   bool        // a switch is asked for
		running   bool        // the switch loop runs
		switching bool        // a switch is under way (its interest may predate a Want)
		reqGen    uint64      // numbers the requests
		doneGen   uint64      // the newest request a finished switch served
		err       error       // that switch's error
		done      chan struct{}
		lastAt    time.Time
		// next is what the switch under way read (nextRead: it has read
		// it): the patterns it keeps reading, so that a Want whose
		// patterns both the running consumer and next cover waits for
		// nothing.
		next     interestSet
		nextRead bool
		// growing is what the next switch applies: the whole stream,
		// filtered here (the patterns grow fast), or a filtered
		// consumer; grown says that the last switch installed a growth
		// consumer. asks counts the Wants for patterns not read, each
		// less than InterestSettle after the one before (lastAsk), and
		// asked is their patterns: a Want counts only with a pattern
		// none of them asked for (several sessions subscribing to one
		// new channel at once are one new pattern, not several).
		// lastNew is when a pattern new to the growth filter came
		// last, and settle fires InterestSettle after it.
		growing, grown bool
		asks           int
		asked          map[string]bool
		lastAsk        time.Time
		lastNew        time.Time
		settle         *time.Timer
	}
	switches atomic.Uint64
}

// growthWants is how many Wants for patterns the consumer does not read,
// each less than InterestSettle after the one before, make a subscription
// read the whole stream until its patterns settle (no new one for
// InterestSettle: the same measure both ways). Each such Want waits for a
// consumer switch; four in a row is a node taking sessions on channels
// new to it (a fresh instance in a drain took nearly one a take-over, the
// demo's gap tail), while a node whose sessions join a new channel less
// often than every InterestSettle keeps its filtered consumer.
const growthWants = 4

// SubscribeInterest implements Interest. With WholeStream it reads the
// whole stream, gives h every message (as Subscribe does) and never
// switches. On a server without multi-subject consumers (nats-server 2.9)
// an interest of more than one pattern is read as the whole stream and
// filtered here: correct, at the cost interest-based delivery removes.
// ctx bounds the setup only.
func (b *NATS) SubscribeInterest(ctx context.Context, h func(Message), interest func() []string) (InterestSub, error) {
	return b.subscribe(ctx, h, interest, b.opts.WholeStream)
}

// subscribe starts an interest subscription, or with whole one that reads
// the whole stream.
func (b *NATS) subscribe(ctx context.Context, h func(Message), interest func() []string, whole bool) (*natsInterestSub, error) {
	if _, err := b.connected(); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	s := &natsInterestSub{b: b, h: h, interest: interest, whole: whole, quit: make(chan struct{})}
	s.sw.done = make(chan struct{})
	pats := reducePatterns(s.patternsWanted())
	all, err := s.apply(ctx, pats, false)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	s.sw.covered = newInterestSet(all && s.whole, pats)
	s.sw.lastAt = b.opts.Now()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		s.stop()
		return nil, ErrClosed
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// Want implements InterestSub.
func (s *natsInterestSub) Want(ctx context.Context, patterns []string) error {
	s.sw.Lock()
	if s.stopped.Load() {
		s.sw.Unlock()
		return ErrClosed
	}
	if s.sw.grown && s.sw.err == nil && (!s.sw.switching || s.sw.nextRead && s.sw.next.coversAll(patterns)) {
		// A growth consumer reads everything: the patterns join its
		// local filter now. Should a switch replace it meanwhile, that
		// switch read the interest after the caller indexed the
		// patterns (none was under way, or the one under way read
		// them), so its consumer reads them too.
		s.sw.Unlock()
		if s.widen(patterns) {
			s.sw.Lock()
			s.sw.lastNew = s.b.opts.Now()
			if !s.sw.growing && !s.sw.switching {
				// still growing: the pending switch out stays in place
				s.sw.growing = true
				s.armLocked(s.b.opts.InterestSettle)
			}
			s.sw.Unlock()
		}
		return nil
	}
	if s.sw.err == nil && s.sw.covered.coversAll(patterns) && (!s.sw.switching || s.sw.nextRead && s.sw.next.coversAll(patterns)) {
		// The consumer reads the patterns now (the last switch did not
		// fail), and goes on reading them: a switch under way read an
		// interest that has them, and one still pending reads the
		// interest after the caller indexed them (it calls Want after
		// indexAdd), so it has them too. Waiting for those switches
		// made every take-over on a node that was still adding
		// channels (a new instance receiving a drain's clients) wait
		// for one or two consumer switches.
		s.sw.Unlock()
		return nil
	}
	if !s.sw.covered.coversAll(patterns) {
		s.askedLocked(patterns)
	}
	my := s.requestLocked()
	for {
		if s.sw.doneGen >= my {
			err := s.sw.err
			s.sw.Unlock()
			return err
		}
		ch := s.sw.done
		s.sw.Unlock()
		select {
		case <-ch:
		case <-s.quit:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("interest switch: %w", ctx.Err())
		}
		s.sw.Lock()
	}
}

// widen adds patterns to a growth consumer's local filter, and reports
// whether one was new to it; false too when the consumer is not one.
func (s *natsInterestSub) widen(patterns []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.grow {
		return false
	}
	added := false
	for _, p := range patterns {
		if !s.set.covers(p) {
			s.set.patterns[p] = true // s.set's map is this consumer's own
			added = true
		}
	}
	return added
}

// askedLocked notes a Want for patterns the consumer does not read, and
// turns growth on at the growthWants-th in a row (see growthWants).
func (s *natsInterestSub) askedLocked(patterns []string) {
	settle := s.b.opts.InterestSettle
	if settle < 0 || s.whole || s.sw.growing {
		return
	}
	now := s.b.opts.Now()
	if s.sw.asks == 0 || now.Sub(s.sw.lastAsk) >= settle {
		s.sw.asks, s.sw.asked = 0, map[string]bool{}
	}
	fresh := false
	for _, p := range patterns {
		if !s.sw.asked[p] {
			s.sw.asked[p], fresh = true, true
		}
	}
	if !fresh {
		return // asked for already, its switch still to come
	}
	s.sw.asks++
	s.sw.lastAsk = now
	if s.sw.asks < growthWants {
		return
	}
	s.sw.asks, s.sw.asked = 0, nil
	s.sw.growing, s.sw.lastNew = true, now
	s.armLocked(settle)
	s.b.log.Debug("interest growing: reading the whole stream until it settles", "settle", settle)
}

// armLocked (re)starts the settle timer to fire after d.
func (s *natsInterestSub) armLocked(d time.Duration) {
	if s.sw.settle != nil {
		s.sw.settle.Stop()
	}
	s.sw.settle = time.AfterFunc(d, s.settleCheck)
}

// settleCheck ends growth once no pattern came for InterestSettle: the
// next switch filters again. Otherwise it waits for the rest.
func (s *natsInterestSub) settleCheck() {
	s.sw.Lock()
	defer s.sw.Unlock()
	if s.stopped.Load() || !s.sw.growing {
		return
	}
	if !s.sw.grown {
		// the switch to the whole stream is still to come
		s.armLocked(s.b.opts.InterestSettle)
		return
	}
	if wait := s.b.opts.InterestSettle - s.b.opts.Now().Sub(s.sw.lastNew); wait > 0 {
		s.armLocked(wait)
		return
	}
	s.sw.growing = false
	s.requestLocked()
}

// Changed implements InterestSub. A growth consumer keeps delivering a
// pattern that lost its sessions (the server drops what no session
// wants) until the switch that ends growth reads the interest again.
func (s *natsInterestSub) Changed() {
	if s.whole {
		return
	}
	s.sw.Lock()
	if !s.sw.grown || !s.sw.growing {
		s.requestLocked()
	}
	s.sw.Unlock()
}

// requestLocked asks for a switch and returns the request's number; the
// switch loop starts if it does not run.
func (s *natsInterestSub) requestLocked() uint64 {
	s.sw.reqGen++
	s.sw.pending = true
	if !s.sw.running && !s.stopped.Load() {
		s.sw.running = true
		go s.loop()
	}
	return s.sw.reqGen
}

// loop runs the switches asked for, at most one per SwitchInterval (one
// per second after a failed one), each serving every request made before
// it read the interest.
func (s *natsInterestSub) loop() {
	for {
		s.sw.Lock()
		if !s.sw.pending || s.stopped.Load() {
			s.sw.running = false
			s.sw.Unlock()
			return
		}
		gap := s.b.opts.SwitchInterval
		if s.sw.err != nil {
			gap = time.Second
		}
		wait := gap - s.b.opts.Now().Sub(s.sw.lastAt)
		s.sw.Unlock()
		if wait > 0 {
			select {
			case <-s.quit:
				continue
			case <-time.After(wait):
			}
		}
		s.sw.Lock()
		s.sw.pending, s.sw.switching, s.sw.nextRead = false, true, false
		g, grow := s.sw.reqGen, s.sw.growing
		s.sw.Unlock()

		pats := reducePatterns(s.patternsWanted())
		s.sw.Lock()
		s.sw.next, s.sw.nextRead = newInterestSet(false, pats), true
		s.sw.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.b.opts.PublishTimeout)
		all, err := s.apply(ctx, pats, grow)
		cancel()

		s.sw.Lock()
		s.sw.switching, s.sw.nextRead = false, false
		s.sw.lastAt = s.b.opts.Now()
		if err == nil && grow && !s.sw.grown {
			s.sw.lastNew = s.sw.lastAt // settling counts from the growth consumer on
		}
		s.sw.grown = err == nil && grow
		if err == nil {
			s.sw.covered = newInterestSet(all && s.whole, pats)
		} else if !s.stopped.Load() {
			s.sw.pending = true // retried
			s.b.log.Warn("interest switch failed, retrying", "err", err)
		}
		s.sw.doneGen, s.sw.err = g, err
		close(s.sw.done)
		s.sw.done = make(chan struct{})
		s.sw.Unlock()
	}
}

// patternsWanted is the interest now.
func (s *natsInterestSub) patternsWanted() []string {
	if s.interest == nil {
		return nil
	}
	return s.interest()
}

// filters returns the filter subjects for the reduced patterns pats, and
// whether they are the whole stream (WholeStream, growth, more patterns
// than MaxFilterSubjects, or several patterns on
// a server that takes one filter per consumer).
func (s *natsInterestSub) filters(pats []string, grow bool) ([]string, bool, error) {
	b := s.b
	if s.whole || grow || (len(pats) > 1 && !b.multiFilter.Load()) || len(pats) > b.opts.MaxFilterSubjects {
		return []string{b.opts.SubjectPrefix + ".>"}, true, nil
	}
	out := make([]string, 0, len(pats))
	for _, p := range pats {
		f, err := patternSubject(b.opts.SubjectPrefix, p)
		if err != nil {
			return nil, false, err
		}
		out = append(out, f)
	}
	return out, false, nil
}

// apply switches the consumer to the reduced patterns pats (see the type's
// comment), as a growth consumer with grow, and reports whether it now
// reads the whole stream.
func (s *natsInterestSub) apply(ctx context.Context, pats []string, grow bool) (bool, error) {
	b := s.b
	filters, all, err := s.filters(pats, grow)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	if s.cons != nil && !s.broken && s.all && all && !s.whole && (grow || s.grow) {
		// From or to growth on a consumer that reads the whole stream
		// either way: only the local filter changes, in place. A
		// pattern added here is delivered from the consumer's position
		// on (as Want's widening does), one dropped at once.
		s.patterns, s.set, s.grow = pats, newInterestSet(false, pats), grow
		s.mu.Unlock()
		return all, nil
	}
	// (reading the whole stream for want of multi-subject consumers, the
	// local filter and its windows still change with the patterns)
	same := s.cons != nil && !s.broken && s.all == all && (s.whole || slices.Equal(s.patterns, pats))
	empty := s.cons == nil && !s.broken && !all && len(pats) == 0
	cons := s.cons
	s.mu.Unlock()
	if same || empty {
		return all, nil
	}
	last, err := b.LastSeq(ctx)
	if err != nil {
		return false, err
	}
	caught := cons == nil && !s.broken // nothing was read: nothing is pending
	if cons != nil {
		caught = s.caughtUp(ctx, last)
	}
	s.mu.Lock()
	s.gen++
	gen, old := s.gen, s.cc
	s.cc, s.cons = nil, nil
	// Up to last, what was wanted before: a growth consumer's local
	// filter as Wants widened it (none widens it from here on).
	was := newInterestSet(s.all && !s.local, s.patterns)
	if s.grow {
		was = s.set
	}
	s.grow = false
	s.mu.Unlock()
	if old != nil {
		old.Stop()
		b.deleteConsumer(cons)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := s.last + 1
	if caught {
		// nothing the old filters match is unread up to last, and the
		// new patterns want nothing from before it
		s.last = max(s.last, last)
		start = s.last + 1
	}
	if len(filters) == 0 {
		s.patterns, s.all, s.broken, s.last, s.windows = nil, false, false, max(s.last, last), nil
		s.switches.Add(1)
		return false, nil
	}
	err = b.retry(ctx, b.opts.ProbeTimeout, func(ctx context.Context) error {
		var err error
		cons, err = b.js.OrderedConsumer(ctx, b.opts.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: filters,
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    start,
		})
		return err
	})
	if err != nil {
		s.broken = true // s.patterns stay what was read up to s.last
		return false, fmt.Errorf("interest: ordered consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { s.deliver(gen, m) },
		jetstream.ConsumeErrHandler(b.consumeErr), jetstream.PullHeartbeat(time.Second), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		s.broken = true
		return false, fmt.Errorf("interest: consume: %w", err)
	}
	// Up to last, what was wanted before; windows the new consumer
	// starts after are done with.
	s.windows = append(s.windows, window{to: last, set: was})
	s.windows = slices.DeleteFunc(s.windows, func(w window) bool { return w.to < start })
	s.patterns, s.all, s.broken = pats, all, false
	s.local, s.set, s.grow = all && !s.whole, newInterestSet(false, pats), grow
	s.cc, s.cons = cc, cons
	s.switches.Add(1)
	b.log.Debug("interest switched", "patterns", len(pats), "whole_stream", all, "growth", grow, "start", start, "caught_up", caught)
	return all, nil
}

// caughtProbes bounds the stream reads caughtUp makes; a consumer with
// more filters is taken as not caught up (its switch then reads again,
// and drops, what its new patterns had before the switch).
const caughtProbes = 4

// caughtUp reports whether the current consumer has given the handler
// every message its filters match up to last: for each filter, the
// stream's leader is asked for the next matching message after the last
// one taken. (The consumer's own info is no proof: its pending count can
// lag the stream, which the churn conformance case caught.)
func (s *natsInterestSub) caughtUp(ctx context.Context, last uint64) bool {
	s.mu.Lock()
	from, pats, all := s.last+1, s.patterns, s.all
	s.mu.Unlock()
	if from > last {
		return true
	}
	var filters []string
	if all {
		filters = []string{s.b.opts.SubjectPrefix + ".>"}
	} else {
		for _, p := range pats {
			f, err := patternSubject(s.b.opts.SubjectPrefix, p)
			if err != nil {
				return false
			}
			filters = append(filters, f)
		}
	}
	if len(filters) > caughtProbes {
		return false
	}
	for _, f := range filters {
		m, err := s.b.getNext(ctx, from, f)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil, m.Sequence <= last:
			return false
		}
	}
	return true
}

// wanted reports whether a message with seq on ch was wanted when it was
// stored (see windows), dropping the windows it has passed.
func (s *natsInterestSub) wantedLocked(seq uint64, ch string) bool {
	for len(s.windows) > 0 && s.windows[0].to < seq {
		s.windows = s.windows[1:]
	}
	if len(s.windows) == 0 {
		return !s.local || s.set.matches(ch)
	}
	return s.windows[0].set.matches(ch)
}

// deliver takes one message of the consumer of generation gen.
func (s *natsInterestSub) deliver(gen uint64, m jetstream.Msg) {
	if s.stopped.Load() {
		return
	}
	md, err := m.Metadata()
	if err != nil {
		s.b.log.Warn("subscribe: message without metadata", "subject", m.Subject(), "err", err)
		return
	}
	seq := md.Sequence.Stream
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped.Load() || gen != s.gen {
		return // a stopped consumer's: the next one reads it again
	}
	s.received.Add(1)
	if seq <= s.last {
		return
	}
	s.last = seq
	s.b.seen(seq)
	ch, err := subjectChannel(s.b.opts.SubjectPrefix, m.Subject())
	if err != nil {
		s.b.log.Warn("subscribe: skipping message", "seq", seq, "err", err)
		return
	}
	if !s.wantedLocked(seq, ch) {
		return // on a pattern a switch added, from before it
	}
	s.h(Message{Seq: seq, Channel: ch, Payload: m.Data(), Published: md.Timestamp})
}

// Received implements InterestSub.
func (s *natsInterestSub) Received() uint64 { return s.received.Load() }

// Switches is how many consumer switches the subscription made.
func (s *natsInterestSub) Switches() uint64 { return s.switches.Load() }

// Stop implements InterestSub.
func (s *natsInterestSub) Stop() {
	s.b.mu.Lock()
	if s.b.subs != nil {
		delete(s.b.subs, s)
	}
	s.b.mu.Unlock()
	s.stop()
}

func (s *natsInterestSub) stop() {
	if s.stopped.Swap(true) {
		return
	}
	close(s.quit)
	s.sw.Lock()
	if s.sw.settle != nil {
		s.sw.settle.Stop()
	}
	s.sw.Unlock()
	s.mu.Lock()
	s.gen++
	cc, cons := s.cc, s.cons
	s.cc, s.cons = nil, nil
	s.mu.Unlock()
	if cc != nil {
		cc.Stop()
		s.b.deleteConsumer(cons)
	}
	s.mu.Lock()
	//nolint:staticcheck // empty critical section: waits for a running h
	s.mu.Unlock()
}

// refilter makes every interest subscription switch again: the server
// changed (a reconnect to an older one), and what its consumers may
// filter on with it.
func (b *NATS) refilter() {
	b.mu.Lock()
	var subs []*natsInterestSub
	for s := range b.subs {
		if is, ok := s.(*natsInterestSub); ok {
			subs = append(subs, is)
		}
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.sw.Lock()
		s.requestLocked()
		s.sw.Unlock()
	}
}

// consumeErr is the ordered consumers' error handler.
func (b *NATS) consumeErr(_ jetstream.ConsumeContext, err error) {
	// Heartbeats go missing during every outage, which Healthy already
	// reports; anything else is worth a line.
	if errors.Is(err, jetstream.ErrNoHeartbeat) || b.Healthy() != nil {
		b.log.Debug("subscribe: consumer error, the ordered consumer recovers", "err", err)
		return
	}
	b.log.Warn("subscribe: consumer error, the ordered consumer recovers", "err", err)
}

// MultiFilter reports whether the connected server's consumers take
// several filter subjects (nats-server 2.10+). Without them an interest of
// more than one pattern is read as the whole stream.
func (b *NATS) MultiFilter() bool { return b.multiFilter.Load() }

// deleteConsumer deletes a stopped ordered consumer's server-side
// consumer in the background: stopping one leaves it to the server's
// inactivity reaper (minutes), and every switch stops one.
func (b *NATS) deleteConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.ProbeTimeout)
		defer cancel()
		if err := b.js.DeleteConsumer(ctx, b.opts.Stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			b.log.Debug("interest: delete stopped consumer", "consumer", info.Name, "err", err)
		}
	}()
}

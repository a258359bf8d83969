package broker

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"wsfleet/bayeux"
)

// interestSet is a reduced set of patterns that a subscription's delivery
// covers, or every channel.
type interestSet struct {
	all      bool
	patterns map[string]bool
}

func newInterestSet(all bool, patterns []string) interestSet {
	m := make(map[string]bool, len(patterns))
	for _, p := range patterns {
		m[p] = true
	}
	return interestSet{all: all, patterns: m}
}

// covers reports whether every channel matching p is in the set: p
// itself, or a pattern above it. Cost: the pattern's depth.
func (s interestSet) covers(p string) bool {
	return s.all || s.patterns[p] || s.above(p)
}

// above reports whether a pattern of the set other than p covers p: "/**",
// a/** for an ancestor a, and the parent's /* for a concrete channel (the
// covering relation of covers, looked up rather than compared pairwise).
func (s interestSet) above(p string) bool {
	if p != "/**" && s.patterns["/**"] {
		return true
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	concrete := !bayeux.IsWildcard(p)
	prefix := ""
	for i, seg := range segs[:len(segs)-1] {
		prefix += "/" + seg
		if w := prefix + "/**"; w != p && s.patterns[w] {
			return true
		}
		if i == len(segs)-2 && concrete && s.patterns[prefix+"/*"] {
			return true
		}
	}
	return len(segs) == 1 && concrete && s.patterns["/*"]
}

// coversAll reports whether the set covers every one of patterns.
func (s interestSet) coversAll(patterns []string) bool {
	for _, p := range patterns {
		if !s.covers(p) {
			return false
		}
	}
	return true
}

// matches reports whether channel is in the set.
func (s interestSet) matches(channel string) bool {
	if s.all {
		return true
	}
	for _, p := range bayeux.Expand(channel) {
		if s.patterns[p] {
			return true
		}
	}
	return false
}

// memInterestSub is a memory broker's interest subscription: the filter
// is applied where Publish calls the handlers, under the broker's lock, so
// a switch takes effect between two publishes and needs no coalescing.
type memInterestSub struct {
	b        *Memory
	id       int
	interest func() []string
	received atomic.Uint64

	swMu    sync.Mutex // orders the snapshots of interest with their use
	set     interestSet
	changed atomic.Bool // a Changed waits for its goroutine
}

// SubscribeInterest implements Interest.
func (b *Memory) SubscribeInterest(ctx context.Context, h func(Message), interest func() []string) (InterestSub, error) {
	s := &memInterestSub{b: b, interest: interest, set: newInterestSet(false, reducePatterns(interest()))}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	s.id = b.nextHandle
	b.nextHandle++
	b.handlers[s.id] = func(m Message) {
		if s.set.matches(m.Channel) { // under b.mu, as the switches
			s.received.Add(1)
			h(m)
		}
	}
	return s, nil
}

// refresh takes the interest as it is now.
func (s *memInterestSub) refresh() {
	s.swMu.Lock()
	defer s.swMu.Unlock()
	set := newInterestSet(false, reducePatterns(s.interest()))
	s.b.mu.Lock()
	s.set = set
	s.b.mu.Unlock()
}

// Want implements InterestSub: the switch is immediate, and skipped when
// the set covers patterns already (under swMu, so that a Changed's switch
// cannot apply an interest read before the caller's).
func (s *memInterestSub) Want(ctx context.Context, patterns []string) error {
	s.swMu.Lock()
	s.b.mu.Lock()
	covered := s.set.coversAll(patterns)
	s.b.mu.Unlock()
	s.swMu.Unlock()
	if !covered {
		s.refresh()
	}
	return nil
}

// Changed implements InterestSub. It may be called from a handler, which
// runs under the broker's lock: the switch runs on its own goroutine.
func (s *memInterestSub) Changed() {
	if s.changed.CompareAndSwap(false, true) {
		go func() {
			s.changed.Store(false)
			s.refresh()
		}()
	}
}

// Received implements InterestSub.
func (s *memInterestSub) Received() uint64 { return s.received.Load() }

// Stop implements InterestSub.
func (s *memInterestSub) Stop() {
	s.b.mu.Lock()
	delete(s.b.handlers, s.id)
	s.b.mu.Unlock()
}

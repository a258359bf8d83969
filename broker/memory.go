package broker

import (
	"context"
	"slices"
	"sync"
	"time"

	"wsfleet/bayeux"
)

// Memory is the broker of a node that runs alone: sequence numbers, history
// and sessions live in this process.
type Memory struct {
	now        func() time.Time
	maxAge     time.Duration
	maxMsgs    int
	mu         sync.Mutex
	seq        uint64
	base       uint64    // seq before the first message: see NewMemory
	history    []Message // oldest first
	dropped    uint64    // highest seq that has left the window
	handlers   map[int]func(Message)
	nextHandle int
	sessions   *memorySessions
	closed     bool
}

// MemoryOptions configure a Memory broker. Zero values mean: 5 minutes of
// history, at most 100,000 messages, time.Now.
type MemoryOptions struct {
	HistoryAge  time.Duration
	HistoryMsgs int
	Now         func() time.Time
}

// NewMemory returns a memory broker.
func NewMemory(o MemoryOptions) *Memory {
	if o.HistoryAge <= 0 {
		o.HistoryAge = 5 * time.Minute
	}
	if o.HistoryMsgs <= 0 {
		o.HistoryMsgs = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// Sequence numbers continue from the clock (microseconds since the
	// epoch) rather than from 1, so that a node restarted on a fresh
	// memory broker never reuses numbers its clients already hold as
	// cursors: a client's dedup would otherwise drop the new node's first
	// messages as old ones. A cursor from before the restart then asks
	// for history this broker never had, which History reports as gone.
	base := uint64(o.Now().UnixMicro())
	return &Memory{now: o.Now, maxAge: o.HistoryAge, maxMsgs: o.HistoryMsgs, seq: base, base: base,
		handlers: map[int]func(Message){}, sessions: &memorySessions{m: map[string]memoryRecord{}}}
}

var _ Broker = (*Memory)(nil)

// Publish implements Broker. Handlers run synchronously under the broker's
// lock, which is what keeps delivery in sequence order.
func (b *Memory) Publish(ctx context.Context, channel string, payload []byte) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, ErrClosed
	}
	b.seq++
	m := Message{Seq: b.seq, Channel: channel, Payload: payload, Published: b.now()}
	b.history = append(b.history, m)
	b.trimLocked()
	for _, h := range b.handlers {
		h(m)
	}
	return m.Seq, nil
}

// trimLocked drops the messages that left the window (too many, or too
// old) from the front of the history. The slice is cut, not copied: a
// full history loses a message at every publish, and copying the rest
// each time (some 7 MB at 100,000 messages) made a busy node spend its
// core on memmove once its history was full. The array is copied only
// when append outgrows it, which amortizes to a few messages per publish.
func (b *Memory) trimLocked() {
	cut := 0
	oldest := b.now().Add(-b.maxAge)
	for cut < len(b.history) && (len(b.history)-cut > b.maxMsgs || b.history[cut].Published.Before(oldest)) {
		b.dropped = b.history[cut].Seq
		cut++
	}
	if cut > 0 {
		clear(b.history[:cut]) // their payloads can go before the array does
		b.history = b.history[cut:]
	}
}

// Subscribe implements Broker.
func (b *Memory) Subscribe(ctx context.Context, h func(Message)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	id := b.nextHandle
	b.nextHandle++
	b.handlers[id] = h
	return func() {
		b.mu.Lock()
		delete(b.handlers, id)
		b.mu.Unlock()
	}, nil
}

// History implements Broker.
func (b *Memory) History(ctx context.Context, patterns []string, after uint64) ([]Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trimLocked()
	// A cursor ahead of the sequence came from another history (a broker
	// that restarted): what it missed cannot be known.
	if after < b.dropped || after > b.seq || (after != 0 && after < b.base) {
		return nil, ErrHistoryGone
	}
	var out []Message
	for _, m := range b.history {
		if m.Seq <= after {
			continue
		}
		for _, p := range patterns {
			if bayeux.Match(p, m.Channel) {
				out = append(out, m)
				break
			}
		}
	}
	return out, nil
}

// LastSeq implements Broker.
func (b *Memory) LastSeq(ctx context.Context) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seq == b.base {
		return 0, nil
	}
	return b.seq, nil
}

// Sessions implements Broker.
func (b *Memory) Sessions() SessionStore { return b.sessions }

// Close implements Broker.
func (b *Memory) Close() error {
	b.mu.Lock()
	b.closed = true
	b.handlers = map[int]func(Message){}
	b.mu.Unlock()
	return nil
}

type memorySessions struct {
	mu   sync.Mutex
	m    map[string]memoryRecord
	last uint64 // the newest revision handed out
}

// memoryRecord is a saved session with its revision.
type memoryRecord struct {
	s   Session
	rev uint64
}

// detached returns s with slices of its own: a caller that changes what
// it loaded or saved must not change the stored record, as with a store
// that keeps an encoded copy.
func detached(s Session) Session {
	s.Subscriptions = slices.Clone(s.Subscriptions)
	s.Grants = slices.Clone(s.Grants)
	return s
}

func (s *memorySessions) Save(ctx context.Context, sess Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last++
	s.m[sess.ClientID] = memoryRecord{detached(sess), s.last}
	return nil
}

func (s *memorySessions) Load(ctx context.Context, id string) (Session, error) {
	sess, _, err := s.LoadRev(ctx, id)
	return sess, err
}

func (s *memorySessions) LoadRev(ctx context.Context, id string) (Session, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[id]
	if !ok {
		return Session{}, 0, ErrNoSession
	}
	return detached(r.s), r.rev, nil
}

func (s *memorySessions) Update(ctx context.Context, sess Session, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[sess.ClientID].rev != rev { // a missing record has revision 0
		return 0, ErrSessionChanged
	}
	s.last++
	s.m[sess.ClientID] = memoryRecord{detached(sess), s.last}
	return s.last, nil
}

func (s *memorySessions) Delete(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func (s *memorySessions) DeleteRev(ctx context.Context, id string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.m[id]; !ok || r.rev != rev {
		return ErrSessionChanged
	}
	delete(s.m, id)
	return nil
}

var _ HealthChecker = (*Memory)(nil)

// Healthy implements HealthChecker: a memory broker has no backend to lose.
func (b *Memory) Healthy() error { return nil }

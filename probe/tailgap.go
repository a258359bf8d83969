package probe

import (
	"container/heap"
	"sort"
	"sync"
	"time"
)

// Gap is one disconnection a client lived through, kept among the longest
// of the run (Config.TailGaps): when it began and ended, so that a caller
// who knows what the fleet was doing then (a rollout's phase, the node the
// client left) can tell what made the tail of the gaps.
type Gap struct {
	// Client is the client's index (its ClientParam value).
	Client int `json:"client"`
	// Down is when the client lost its subscription, Up when it could
	// receive again; Len is Up - Down.
	Down time.Time     `json:"down"`
	Up   time.Time     `json:"up"`
	Len  time.Duration `json:"len"`
	// Reconnect is which of the client's reconnects ended the gap: 1 for
	// its first.
	Reconnect int `json:"reconnect"`
	// Rehandshake is set when the server had not kept the client's session
	// and it had to handshake anew.
	Rehandshake bool `json:"rehandshake,omitempty"`
	// Reason is why the client went down, as its library said (cut to
	// maxGapReason bytes).
	Reason string `json:"reason,omitempty"`
}

// maxGapReason bounds the text kept per gap.
const maxGapReason = 120

// tailGaps keeps the n longest gaps seen: a min-heap by length, so that a
// gap shorter than all n kept costs one comparison under the lock and
// memory stays at n records however long the run.
type tailGaps struct {
	mu   sync.Mutex
	n    int
	heap gapHeap
}

// add offers one gap.
func (t *tailGaps) add(g Gap) {
	if t == nil || t.n <= 0 {
		return
	}
	if len(g.Reason) > maxGapReason {
		g.Reason = g.Reason[:maxGapReason]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case len(t.heap) < t.n:
		heap.Push(&t.heap, g)
	case longer(g, t.heap[0]):
		t.heap[0] = g
		heap.Fix(&t.heap, 0)
	}
}

// sorted returns the kept gaps, longest first.
func (t *tailGaps) sorted() []Gap {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	out := append([]Gap(nil), t.heap...)
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return longer(out[i], out[j]) })
	return out
}

// longer orders gaps by length, then (for a stable order among equal
// ones) by the earlier start and the lower client.
func longer(a, b Gap) bool {
	if a.Len != b.Len {
		return a.Len > b.Len
	}
	if !a.Down.Equal(b.Down) {
		return a.Down.Before(b.Down)
	}
	return a.Client < b.Client
}

// gapHeap is a min-heap: its root is the shortest kept gap.
type gapHeap []Gap

func (h gapHeap) Len() int           { return len(h) }
func (h gapHeap) Less(i, j int) bool { return longer(h[j], h[i]) }
func (h gapHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *gapHeap) Push(x any)        { *h = append(*h, x.(Gap)) }
func (h *gapHeap) Pop() any {
	old := *h
	g := old[len(old)-1]
	*h = old[:len(old)-1]
	return g
}

// TailGaps returns the longest disconnection gaps of the run so far,
// longest first, at most Config.TailGaps of them; gaps still open are not
// among them (the report counts those up to now).
func (p *Probe) TailGaps() []Gap {
	return p.tail.sorted()
}

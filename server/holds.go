package server

import (
	"container/heap"
	"sync"
	"time"
)

// holdQueue answers held websocket /meta/connects when their hold ends,
// from one timer for the whole node. A timer per session (time.AfterFunc
// and its closure, about 300 bytes) was a tenth of what an idle session
// cost; an entry here is a few words. An entry is not removed when its
// connect is answered early or dropped: remove takes it out at once, so a
// client that cycles its connects leaves nothing behind.
// It runs on the node's clock (Config.Now and Config.AfterFunc).
type holdQueue struct {
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) Timer

	mu    sync.Mutex
	items holdHeap
	timer Timer
}

type holdItem struct {
	due int64 // unix nanos
	ss  *session
	h   *heldConnect
}

// add schedules h, held by ss, to be released after hold.
func (q *holdQueue) add(hold time.Duration, ss *session, h *heldConnect) {
	q.mu.Lock()
	defer q.mu.Unlock()
	heap.Push(&q.items, holdItem{due: q.now().Add(hold).UnixNano(), ss: ss, h: h})
	if q.items[0].h == h {
		q.armLocked()
	}
}

// remove takes h out of the queue, if it is still there: its connect was
// answered early, or its socket went.
func (q *holdQueue) remove(h *heldConnect) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if h.idx < 0 || int(h.idx) >= len(q.items) || q.items[h.idx].h != h {
		return
	}
	heap.Remove(&q.items, int(h.idx))
	if len(q.items) == 0 {
		q.items = nil
	}
}

// len returns how many connects are held.
func (q *holdQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// armLocked sets the timer for the earliest entry.
func (q *holdQueue) armLocked() {
	d := time.Duration(q.items[0].due - q.now().UnixNano())
	if q.timer == nil {
		q.timer = q.afterFunc(d, q.fire)
		return
	}
	q.timer.Reset(d)
}

// fire releases every entry that is due and re-arms for the next.
func (q *holdQueue) fire() {
	now := q.now().UnixNano()
	var due []holdItem
	q.mu.Lock()
	for len(q.items) > 0 && q.items[0].due <= now {
		due = append(due, heap.Pop(&q.items).(holdItem))
	}
	if len(q.items) > 0 {
		q.armLocked()
	} else {
		q.items = nil // let a burst's backing array go
	}
	q.mu.Unlock()
	for _, it := range due {
		it.ss.releaseHeld(it.h)
	}
}

// holdHeap orders entries by due time (container/heap).
type holdHeap []holdItem

func (h holdHeap) Len() int           { return len(h) }
func (h holdHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h holdHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].h.idx, h[j].h.idx = int32(i), int32(j)
}
func (h *holdHeap) Push(x any) {
	it := x.(holdItem)
	it.h.idx = int32(len(*h))
	*h = append(*h, it)
}
func (h *holdHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = holdItem{}
	*h = old[:len(old)-1]
	it.h.idx = -1
	return it
}

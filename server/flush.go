package server

import (
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// flusher writes the websockets that deliveries made ready, on
// long-lived goroutines: the broker's delivery goroutine only queues (and
// lists the session once), so no goroutine is started per delivery, and
// a flusher writes each listed session's whole queue as one frame without
// blocking (writeNow). While it keeps up every frame carries one message,
// one write each; when deliveries outrun it, a session's messages gather
// in its queue and go out together, one Bayeux array in one frame and one
// write: the busier the node, the fewer writes per delivery. A socket
// that cannot take a frame at once is handed to a writer goroutine of its
// own (writeLoop), so a flusher never waits.
//
// There is one shard per processor (GOMAXPROCS when first used), each
// with its goroutine, so that a node with several cores writes on all of
// them; a session always goes to the same shard, which keeps its frames
// in order.
type flusher struct {
	once   sync.Once
	shards []flushShard
}

// flushShard is one flusher goroutine and its lists.
type flushShard struct {
	wake chan struct{} // a list became non-empty

	mu    sync.Mutex
	ready []*session // listed by deliver, in order
	spare []*session // the other list, swapped in by run

	scratch []outMsg   // run's: a session's queue, copied out
	clk     writeClock // run's
}

// writeClock is the time of a flusher's writes, read once for several
// sessions (clockEvery) rather than twice per delivery: the socket's
// deadline (the real clock) and the latency metric (Config.Now).
type writeClock struct {
	wall time.Time // time.Now: socket deadlines are the runtime's
	now  int64     // Config.Now, unix nanos
	left int       // sessions before the clock is read again
}

// clockEvery is how many sessions a flusher writes on one reading of the
// clock: some 16 writes of a few microseconds each, so that the latency
// metric is late by a fraction of a millisecond at most.
const clockEvery = 16

// tick returns the clock, read again every clockEvery sessions.
func (c *writeClock) tick(s *Server) *writeClock {
	if c.left <= 0 {
		c.wall, c.now, c.left = time.Now(), s.cfg.Now().UnixNano(), clockEvery
	}
	c.left--
	return c
}

// add lists ss, whose ready flag deliver just set, for writing.
func (fl *flusher) add(s *Server, ss *session) {
	fl.once.Do(func() {
		fl.shards = make([]flushShard, runtime.GOMAXPROCS(0))
		for i := range fl.shards {
			fl.shards[i].wake = make(chan struct{}, 1)
			go fl.shards[i].run(s)
		}
	})
	// a session's address is its shard key: heap objects do not move
	f := &fl.shards[(uintptr(unsafe.Pointer(ss))>>6)%uintptr(len(fl.shards))]
	f.mu.Lock()
	f.ready = append(f.ready, ss)
	first := len(f.ready) == 1
	f.mu.Unlock()
	if first {
		select {
		case f.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// run writes the listed sessions until the node closes.
func (f *flushShard) run(s *Server) {
	for {
		select {
		case <-f.wake:
		case <-s.ctx.Done():
			return
		}
		for {
			f.mu.Lock()
			batch := f.ready
			f.ready = f.spare[:0]
			f.mu.Unlock()
			f.clk.left = 0 // a new batch reads the clock first
			for i, ss := range batch {
				f.flush(ss, f.clk.tick(s))
				batch[i] = nil
			}
			f.spare = batch[:0]
			if len(batch) == 0 {
				break
			}
		}
	}
}

// keepQueue is the largest queue array a session keeps once written: a
// small one is reused by the next delivery (no allocation per delivery),
// a large one, left by a burst, is let go.
const keepQueue = 4

// flush writes what ss has queued, unless it has no socket or a writer
// has it already (that writer takes the queue too), at the time clk.
func (f *flushShard) flush(ss *session, clk *writeClock) {
	ss.mu.Lock()
	ss.ready = false
	wc := ss.ws
	if wc == nil || ss.writing || ss.closed || len(ss.queue) == 0 {
		ss.mu.Unlock()
		return
	}
	ss.writing = true
	given := ss.given
	q := append(f.scratch[:0], ss.queue...)
	for _, m := range q {
		ss.given = max(ss.given, m.seq)
	}
	if cap(ss.queue) <= keepQueue {
		clear(ss.queue) // the array keeps no message alive
		ss.queue = ss.queue[:0]
	} else {
		ss.queue = nil
	}
	ss.mu.Unlock()
	ss.writeNow(wc, q, given, clk) // keeps nothing of q
	clear(q)
	f.scratch = q[:0]
}

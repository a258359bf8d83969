package probe

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets of microseconds (32
// buckets per power of two, so a quantile is within about 3% of the true
// value) with lock-free adds: every client's delivery goroutine records
// into one histogram without taking a lock.
type histogram struct {
	counts [64 + 58*32]atomic.Uint64
	max    atomic.Int64 // nanoseconds, exact
	n      atomic.Uint64
}

func bucketOf(us uint64) int {
	if us < 64 {
		return int(us)
	}
	e := bits.Len64(us) - 6 // us>>e is in [32, 64)
	return e*32 + int(us>>e)
}

// bucketValue is the middle of bucket b, in microseconds.
func bucketValue(b int) float64 {
	if b < 64 {
		return float64(b)
	}
	e := b/32 - 1
	m := uint64(b%32 + 32)
	lo := m << e
	return float64(lo) + float64(uint64(1)<<e)/2
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	b := bucketOf(uint64(d / time.Microsecond))
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// Summary is a distribution of durations in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func (h *histogram) summary() Summary {
	var counts [len(h.counts)]uint64
	var n uint64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		n += counts[i]
	}
	s := Summary{Count: int64(n), Max: ms(time.Duration(h.max.Load()))}
	if n == 0 {
		return s
	}
	s.P50 = quantile(counts[:], n, 0.50)
	s.P99 = quantile(counts[:], n, 0.99)
	if s.P99 > s.Max {
		s.P99 = s.Max
	}
	if s.P50 > s.Max {
		s.P50 = s.Max
	}
	return s
}

func quantile(counts []uint64, n uint64, q float64) float64 {
	rank := uint64(q*float64(n-1)) + 1
	var seen uint64
	for b, c := range counts {
		seen += c
		if seen >= rank {
			return bucketValue(b) / 1000
		}
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarize gives the exact summary of a few durations (gaps are few).
func summarize(ds []time.Duration) Summary {
	s := Summary{Count: int64(len(ds))}
	if len(ds) == 0 {
		return s
	}
	sorted := append([]time.Duration(nil), ds...)
	sortDurations(sorted)
	at := func(q float64) float64 { return ms(sorted[int(q*float64(len(sorted)-1)+0.5)]) }
	s.P50, s.P99, s.Max = at(0.5), at(0.99), ms(sorted[len(sorted)-1])
	return s
}

package bench

import (
	"math"
	"slices"
	"time"
)

// The pure arithmetic of the take-over benchmark: quantiles of the gaps
// the clients saw, the receiving node's CPU per take-over once its
// background work is taken out, the lost-message count, and the reconnect
// budget that the measured rate supports.

// gapStats are the quantiles of a set of gaps, in milliseconds.
type gapStats struct {
	P50, P99, Max float64
	N             int
}

// gapQuantiles returns the nearest-rank p50, p99 and maximum of gaps (in
// any order; the slice is sorted in place). No gaps give zeros.
func gapQuantiles(gaps []time.Duration) gapStats {
	if len(gaps) == 0 {
		return gapStats{}
	}
	slices.Sort(gaps)
	q := func(p float64) float64 {
		// nearest rank: the smallest value with at least p of the
		// values at or below it
		i := int(math.Ceil(p*float64(len(gaps)))) - 1
		i = min(max(i, 0), len(gaps)-1)
		return ms(gaps[i])
	}
	return gapStats{P50: q(0.50), P99: q(0.99), Max: ms(gaps[len(gaps)-1]), N: len(gaps)}
}

// cpuWindow is what the receiving node did over one measured window, for
// cpuPerOp.
type cpuWindow struct {
	// CPU is the node's CPU seconds (user+system) over the window.
	CPU float64
	// Seconds is the window's wall time.
	Seconds float64
	// Base is the node's CPU seconds per second before the first client
	// arrived (the publisher's requests, timers, the runtime).
	Base float64
	// PerClient is the CPU seconds per second one client costs once it is
	// on the node (its share of the deliveries), measured after the last
	// one arrived: (full − Base) / clients.
	PerClient float64
	// ClientSeconds is the sum over the clients of the time each spent on
	// the node within the window (window end − its arrival).
	ClientSeconds float64
	// Ops is the number of take-overs (or handshakes) in the window.
	Ops int
}

// cpuPerOp returns the node's CPU microseconds per operation: the CPU of
// the window less what the node would have spent in it anyway, its
// baseline for the whole window and each arrived client's deliveries for
// the time it was there. Without the correction a slow step (100/s over
// 30 s) would charge each take-over with 30 s of the publisher's and the
// deliveries' cost. Never negative; 0 without operations.
func cpuPerOp(w cpuWindow) float64 {
	if w.Ops <= 0 {
		return 0
	}
	own := w.CPU - w.Base*w.Seconds - w.PerClient*w.ClientSeconds
	return max(own, 0) * 1e6 / float64(w.Ops)
}

// perCore turns CPU microseconds per operation into operations per second
// one core can do; 0 when unknown.
func perCore(usPerOp float64) float64 {
	if usPerOp <= 0 {
		return 0
	}
	return 1e6 / usPerOp
}

// seqSet is the set of message numbers (1, 2, …) one client received on
// its channel, as a growable bitmap.
type seqSet struct {
	bits []uint64
	n    int
}

// add records n (≥ 1) and reports whether it was new.
func (s *seqSet) add(n uint64) bool {
	if n == 0 {
		return false
	}
	w := int(n / 64)
	if w >= len(s.bits) {
		s.bits = append(s.bits, make([]uint64, w+1-len(s.bits))...)
	}
	bit := uint64(1) << (n % 64)
	if s.bits[w]&bit != 0 {
		return false
	}
	s.bits[w] |= bit
	s.n++
	return true
}

// has reports whether n was recorded.
func (s *seqSet) has(n uint64) bool {
	w := int(n / 64)
	return n > 0 && w < len(s.bits) && s.bits[w]&(1<<(n%64)) != 0
}

// missing returns how many of 1..upTo were not received, leaving out the
// numbers in except (a nil except leaves out none): those whose publish
// request failed, which the node may never have published.
func (s *seqSet) missing(upTo uint64, except *seqSet) int {
	return len(s.missingList(upTo, except, -1))
}

// missingList returns the numbers in 1..upTo not received and not in
// except, at most limit of them (all when limit < 0).
func (s *seqSet) missingList(upTo uint64, except *seqSet, limit int) []uint64 {
	var out []uint64
	for n := uint64(1); n <= upTo && (limit < 0 || len(out) < limit); n++ {
		if !s.has(n) && (except == nil || !except.has(n)) {
			out = append(out, n)
		}
	}
	return out
}

// TakeoverShare is the fraction of a receiving node's core that the
// default reconnect budget spends on take-overs. A receiving node keeps
// serving its own clients while it absorbs a drained node's (fan-out at its
// p99 target, heartbeats, the collector); a drain's releases are jittered
// in their slots, so the momentary rate runs above the average; and the
// benchmark's figure comes from loopback, with no TLS and no network round
// trip to NATS. A quarter leaves three quarters for all that.
const TakeoverShare = 0.25

// ReconnectBudget returns the fleet-wide reconnect budget (drain.max_rate,
// reconnects per second) that receivingNodes nodes of coresPerNode cores
// each absorb when share of each core goes to take-overs at perCore
// take-overs per second per core: share × perCore × coresPerNode ×
// receivingNodes, rounded down to a multiple of 10 (a budget is a round
// figure; rounding down keeps it within the measurement). 0 when any input
// is not positive.
func ReconnectBudget(perCore, coresPerNode float64, receivingNodes int, share float64) float64 {
	if perCore <= 0 || coresPerNode <= 0 || receivingNodes <= 0 || share <= 0 {
		return 0
	}
	return math.Floor(share*perCore*coresPerNode*float64(receivingNodes)/10) * 10
}

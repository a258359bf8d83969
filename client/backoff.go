package client

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: exponential growth capped at max, with
// full jitter (a uniform draw in [0, ceiling)). Full jitter is what spreads
// a fleet of clients cut off at the same second over the whole window
// instead of bunching them at each doubling, which is the reconnect storm
// the rollout exists to avoid.
type backoff struct {
	min, max time.Duration
	attempt  int
	rand     func() float64
}

// next returns the delay before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	ceil := b.min
	for i := 0; i < b.attempt && ceil < b.max; i++ {
		ceil *= 2
	}
	if ceil > b.max {
		ceil = b.max
	}
	b.attempt++
	r := b.rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(ceil))
}

// reset starts over after a success.
func (b *backoff) reset() { b.attempt = 0 }

package server

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a node's clock in tests (Config.Now, Config.AfterFunc):
// time stands still until the test advances it, and the functions of the
// timers that come due then run, in due order, before advance returns.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer // armed ones
}

type fakeTimer struct {
	c   *fakeClock
	due time.Time
	f   func()
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

// use makes a node run on the clock.
func (c *fakeClock) use(cfg *Config) {
	cfg.Now = c.Now
	cfg.AfterFunc = c.AfterFunc
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &fakeTimer{c: c, f: f}
	t.Reset(d)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.disarmLocked(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	armed := t.c.disarmLocked(t)
	t.due = t.c.now.Add(d)
	t.c.timers = append(t.c.timers, t)
	return armed
}

func (c *fakeClock) disarmLocked(t *fakeTimer) bool {
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}

// advanceTo moves the clock to at, running the function of every timer
// due by then (at its due time, earliest first, ties in arming order),
// including those that these functions arm.
func (c *fakeClock) advanceTo(at time.Time) {
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.due.After(at) && (next == nil || t.due.Before(next.due)) {
				next = t
			}
		}
		if next == nil {
			if at.After(c.now) {
				c.now = at
			}
			c.mu.Unlock()
			return
		}
		c.disarmLocked(next)
		if next.due.After(c.now) {
			c.now = next.due
		}
		c.mu.Unlock()
		next.f()
	}
}

func (c *fakeClock) advance(d time.Duration) { c.advanceTo(c.Now().Add(d)) }

// fireLateAt moves the clock to at first and only then fires the timers
// due by then, so that each fires late and its callback, and whatever it
// wakes, reads at as the time (advanceTo would fire each at its own due
// time and move on to at only after, racing with what it woke).
func (c *fakeClock) fireLateAt(at time.Time) {
	c.mu.Lock()
	if at.After(c.now) {
		c.now = at
	}
	c.mu.Unlock()
	c.advanceTo(at)
}

// armedAt reports whether a timer is armed to come due at exactly at.
func (c *fakeClock) armedAt(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.timers, func(t *fakeTimer) bool { return t.due.Equal(at) })
}

// waitArmed waits (on the wall clock, 10 s at most) until a timer is armed
// to come due at exactly at: until the code under test, running in its
// own goroutines, waits for that instant.
func (c *fakeClock) waitArmed(t *testing.T, at time.Time, what string) {
	t.Helper()
	waitFor(t, func() bool { return c.armedAt(at) }, "%s: no timer armed for %v (now %v)", what, at, c.Now())
}

// waitFor polls cond on the wall clock until it holds, failing the test
// after 10 s.
func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFakeClock(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newFakeClock(t0)
	var ran []string
	at := func(name string) func() {
		return func() { ran = append(ran, name+"@"+c.Now().Sub(t0).String()) }
	}
	c.AfterFunc(30*time.Millisecond, at("c"))
	a := c.AfterFunc(10*time.Millisecond, at("a"))
	stopped := c.AfterFunc(20*time.Millisecond, at("stopped"))
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true, then false")
	}
	c.AfterFunc(20*time.Millisecond, func() {
		ran = append(ran, "b@"+c.Now().Sub(t0).String())
		c.AfterFunc(0, at("armed-by-b"))
	})
	c.advance(25 * time.Millisecond)
	if want := []string{"a@10ms", "b@20ms", "armed-by-b@20ms"}; !slices.Equal(ran, want) {
		t.Fatalf("after 25ms ran %v, want %v", ran, want)
	}
	if !c.Now().Equal(t0.Add(25 * time.Millisecond)) {
		t.Fatalf("now %v", c.Now())
	}
	if a.Reset(10 * time.Millisecond) {
		t.Fatal("Reset of a timer that ran: want false")
	}
	c.advance(10 * time.Millisecond)
	if want := []string{"a@10ms", "b@20ms", "armed-by-b@20ms", "c@30ms", "a@35ms"}; !slices.Equal(ran, want) {
		t.Fatalf("after 35ms ran %v, want %v", ran, want)
	}
}

package server

import (
	"testing"
	"time"
)

// TestHoldQueue checks that held connects with different holds on one
// queue are all released, not all before the longest hold has passed, and
// that one answered early (no longer the session's held connect) is not
// sent again.
func TestHoldQueue(t *testing.T) {
	srv := &Server{cfg: Config{Now: time.Now}}
	type tc struct {
		name     string
		hold     time.Duration
		answered bool // answered before its hold ends
	}
	cases := []tc{{"late", 120 * time.Millisecond, false}, {"early", 40 * time.Millisecond, false},
		{"answered", 10 * time.Millisecond, true}, {"middle", 80 * time.Millisecond, false}}
	start := time.Now()
	sessions := make([]*session, len(cases))
	for i, c := range cases {
		ss := &session{srv: srv, id: c.name}
		h := &heldConnect{reply: []byte(c.name)}
		ss.held = h
		srv.holds.add(c.hold, ss, h)
		if c.answered {
			ss.held = nil
		}
		sessions[i] = ss
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, c := range cases {
		ss := sessions[i]
		for {
			ss.mu.Lock()
			n := len(ss.queue)
			ss.mu.Unlock()
			if n > 0 || c.answered || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		ss.mu.Lock()
		q, held := ss.queue, ss.held
		ss.mu.Unlock()
		switch {
		case c.answered && len(q) != 0:
			t.Errorf("%s: answered early, released again: %v", c.name, q)
		case !c.answered && (len(q) != 1 || string(q[0].b) != c.name || held != nil):
			t.Errorf("%s: queue %v held %v, want its reply released", c.name, q, held)
		}
	}
	if el := time.Since(start); el < 120*time.Millisecond {
		t.Errorf("all released after %v, before the longest hold", el)
	}
	time.Sleep(20 * time.Millisecond)
	if q := sessions[2].queue; len(q) != 0 {
		t.Errorf("answered connect released: %v", q)
	}
	srv.holds.mu.Lock()
	defer srv.holds.mu.Unlock()
	if n := len(srv.holds.items); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

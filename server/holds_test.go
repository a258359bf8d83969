package server

import (
	"fmt"
	"testing"
	"time"
)

// TestHoldQueue checks that held connects with different holds on one
// queue are each released when, on the node's clock, their own hold ends
// (not before, and not all at the longest hold), and that one answered
// early (no longer the session's held connect) is not sent again.
func TestHoldQueue(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := &Server{cfg: Config{Now: clk.Now}, holds: holdQueue{now: clk.Now, afterFunc: clk.AfterFunc}}
	type tc struct {
		name     string
		hold     time.Duration
		answered bool // answered before its hold ends
	}
	cases := []tc{{"late", 120 * time.Millisecond, false}, {"early", 40 * time.Millisecond, false},
		{"answered", 10 * time.Millisecond, true}, {"middle", 80 * time.Millisecond, false}}
	start := clk.Now()
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
	// check says, at the clock's time, which connects are released:
	// those whose hold has passed, each once, except the answered one.
	check := func() {
		t.Helper()
		el := clk.Now().Sub(start)
		for i, c := range cases {
			ss := sessions[i]
			ss.mu.Lock()
			q, held := ss.queue, ss.held
			ss.mu.Unlock()
			switch {
			case c.answered && len(q) != 0:
				t.Errorf("%v: %s: answered early, released again: %v", el, c.name, q)
			case c.answered:
			case c.hold <= el && (len(q) != 1 || string(q[0].b) != c.name || held != nil):
				t.Errorf("%v: %s: queue %v held %v, want its reply released", el, c.name, q, held)
			case c.hold > el && (len(q) != 0 || held == nil):
				t.Errorf("%v: %s: queue %v held %v, want it still held", el, c.name, q, held)
			}
		}
	}
	for _, at := range []time.Duration{0, 10, 39, 40, 79, 80, 119, 120, 200} {
		clk.advanceTo(start.Add(at * time.Millisecond))
		check()
	}
	srv.holds.mu.Lock()
	defer srv.holds.mu.Unlock()
	if n := len(srv.holds.items); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

// TestHeldReplyTemplates checks that a held connect gives back its reply
// byte for byte, and that replies differing only in the client id share
// one template instead of a copy each.
func TestHeldReplyTemplates(t *testing.T) {
	const a, b = "AAAACLIENTIDAAAA", "BBBBCLIENTIDBBBB"
	cases := []struct {
		name   string
		id     string
		reply  string
		shared bool // the held form is a template (the id cut out)
	}{
		{"id once", a, `{"channel":"/meta/connect","clientId":"` + a + `","successful":true}`, true},
		{"id at the start", a, a + `,"x"`, true},
		{"id at the end", a, `"x",` + a, true},
		{"id absent", a, `{"channel":"/meta/connect","successful":false}`, false},
		{"id twice", a, `{"clientId":"` + a + `","ext":"` + a + `"}`, false},
		{"no id", "", `{"channel":"/meta/connect"}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tm replyTemplates
			h := tm.hold([]byte(c.reply), c.id)
			if got := string(h.bytes(c.id)); got != c.reply {
				t.Fatalf("held %q, gives back %q", c.reply, got)
			}
			if (h.at != 0) != c.shared {
				t.Fatalf("template %v, want %v", h.at != 0, c.shared)
			}
		})
	}
	t.Run("two sessions share one template", func(t *testing.T) {
		var tm replyTemplates
		ra := `{"id":"3","clientId":"` + a + `","advice":{"timeout":30000}}`
		rb := `{"id":"3","clientId":"` + b + `","advice":{"timeout":30000}}`
		ha, hb := tm.hold([]byte(ra), a), tm.hold([]byte(rb), b)
		if string(ha.bytes(a)) != ra || string(hb.bytes(b)) != rb {
			t.Fatalf("gives back %q and %q", ha.bytes(a), hb.bytes(b))
		}
		if &ha.reply[0] != &hb.reply[0] {
			t.Fatal("two equal replies hold a template each")
		}
		hc := tm.hold([]byte(`{"id":"4","clientId":"`+a+`"}`), a)
		if &hc.reply[0] == &ha.reply[0] {
			t.Fatal("different replies share a template")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		var tm replyTemplates
		for i := range 3 * maxReplyTemplates {
			tm.hold([]byte(fmt.Sprintf(`{"id":"%d","clientId":"%s"}`, i, a)), a)
			if len(tm.m) > maxReplyTemplates {
				t.Fatalf("%d templates kept", len(tm.m))
			}
		}
	})
}

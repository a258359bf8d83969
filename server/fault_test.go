package server

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestFaults: the test-only faults do what the bad images need. With a
// fail rate, that share of handshakes fails (a server error with advice
// to handshake again) and wsfleet_handshakes_total counts both outcomes;
// with a delay, a request takes at least that long. Without faults no
// handshake fails.
func TestFaults(t *testing.T) {
	t.Run("handshakes fail at the rate, and are counted", func(t *testing.T) {
		n := startNode(t, func(c *Config) {
			c.Faults = Faults{HandshakeFailRate: 0.5, Rand: rand.New(rand.NewPCG(1, 2))}
		})
		failed := 0
		for range 200 {
			p := &lpPeer{t: t, n: n}
			h := p.handshake(nil)
			if h["successful"] != true {
				failed++
				if e, _ := h["error"].(string); !strings.HasPrefix(e, "500::Handshake failed (injected fault)") {
					t.Fatalf("failed handshake %v", h)
				}
			}
		}
		if failed < 70 || failed > 130 {
			t.Errorf("%d of 200 failed at rate 0.5", failed)
		}
		if ok, f := scrape(t, n, `wsfleet_handshakes_total{outcome="ok"}`), scrape(t, n, `wsfleet_handshakes_total{outcome="failed"}`); int(f) != failed || int(ok) != 200-failed {
			t.Errorf("counted ok %g failed %g; saw %d failed", ok, f, failed)
		}
	})
	t.Run("no faults: none fail", func(t *testing.T) {
		n := startNode(t, nil)
		for range 50 {
			if h := (&lpPeer{t: t, n: n}).handshake(nil); h["successful"] != true {
				t.Fatalf("handshake %v", h)
			}
		}
		if f := scrape(t, n, `wsfleet_handshakes_total{outcome="failed"}`); f != 0 {
			t.Errorf("failed %g", f)
		}
	})
	t.Run("delay", func(t *testing.T) {
		n := startNode(t, func(c *Config) { c.Faults = Faults{Delay: 150 * time.Millisecond} })
		start := time.Now()
		if h := (&lpPeer{t: t, n: n}).handshake(nil); h["successful"] != true {
			t.Fatalf("handshake %v", h)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("answered in %s", d)
		}
	})
}

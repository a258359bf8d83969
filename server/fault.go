package server

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"wsfleet/bayeux"
)

// Faults make a node misbehave on purpose. They are for tests only: the
// local cloud runs an image whose nodes are started with them (a "bad
// image"), so that a canary analysis has something to catch. A node in
// production never sets them.
type Faults struct {
	// HandshakeFailRate is the probability that a /meta/handshake is
	// answered with a server error (a failed handshake, counted in
	// wsfleet_handshakes_total{outcome="failed"}) instead of a session.
	HandshakeFailRate float64
	// Delay is added before every Bayeux request is handled and before
	// every write of messages to a websocket: a node that answers and
	// delivers slowly.
	Delay time.Duration
	// Rand draws the failed handshakes; default a randomly seeded
	// generator. Config.Rand is left to the drain, whose schedule tests
	// predict from it.
	Rand *rand.Rand
}

// faulty reports whether any fault is set.
func (f Faults) faulty() bool { return f.HandshakeFailRate > 0 || f.Delay > 0 }

// faultDice draws the faults' random numbers (Faults.Rand) under a lock,
// as handshakes come from many goroutines.
type faultDice struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

func (d *faultDice) float() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rnd.Float64()
}

// failHandshake reports whether this handshake fails by the fault.
func (s *Server) failHandshake() bool {
	return s.cfg.Faults.HandshakeFailRate > 0 && s.dice.float() < s.cfg.Faults.HandshakeFailRate
}

// faultDelay waits the fault's delay, or until the request ends.
func (s *Server) faultDelay(r *http.Request) {
	if s.cfg.Faults.Delay <= 0 {
		return
	}
	t := time.NewTimer(s.cfg.Faults.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// faultHandshakeReply is the reply of a handshake the fault fails: what a
// node answers when it cannot take the client, with advice to handshake
// again.
func faultHandshakeReply(r *bayeux.Message) *bayeux.Message {
	r.Error = bayeux.ErrServer("Handshake failed (injected fault)").Error()
	r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectHandshake, Interval: bayeux.Millis(500)}
	return r
}

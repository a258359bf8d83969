package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"wsfleet/broker"
)

// waitFor polls cond until it holds or 15s pass. Polling a state that a
// background reconnect changes is the one place where a test must wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder keeps delivered messages for the fault tests.
type recorder struct {
	mu   sync.Mutex
	msgs []broker.Message
}

func (r *recorder) handle(m broker.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) seqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint64, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = m.Seq
	}
	return out
}

// waitSeqs waits until the last delivered seq is at least want, then
// asserts the delivered seqs are exactly 1..want: no gap, no duplicate.
func (r *recorder) waitSeqs(t *testing.T, want uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("delivery of seq %d", want), func() bool {
		s := r.seqs()
		return len(s) > 0 && s[len(s)-1] >= want
	})
	s := r.seqs()
	if uint64(len(s)) != want {
		t.Fatalf("delivered %d messages (%v), want seqs 1..%d", len(s), s, want)
	}
	for i, seq := range s {
		if seq != uint64(i+1) {
			t.Fatalf("delivery %d has seq %d, want %d (all: %v)", i, seq, i+1, s)
		}
	}
}

func fastReconnect(o broker.NATSOptions) broker.NATSOptions {
	o.ReconnectWait = 20 * time.Millisecond
	o.ReconnectMaxWait = 200 * time.Millisecond
	o.PingInterval = time.Second
	// an outage is reported, and publishes fail, after 2s rather than
	// after a leader election's worth
	o.PublishTimeout = 2 * time.Second
	return o
}

func publishN(t *testing.T, b broker.Broker, n int) {
	t.Helper()
	for i := range n {
		if _, err := b.Publish(context.Background(), "/fault/x", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

// TestNATSServerRestart stops the embedded NATS and starts it again on the
// same address and store directory: the broker reports unhealthy, fails
// publishes fast, reconnects by itself, and its subscription resumes with
// no gap and no duplicate; history and sessions survive on disk.
func TestNATSServerRestart(t *testing.T) {
	dir := t.TempDir()
	e := startNATS(t, dir)
	addr := e.Addr()
	b := newNATS(t, e.ClientURL(), fastReconnect(broker.NATSOptions{Name: "restart"}))
	ctx := context.Background()
	rec := &recorder{}
	stop, err := b.Subscribe(ctx, rec.handle)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer stop()
	publishN(t, b, 5)
	rec.waitSeqs(t, 5)
	if err := b.Sessions().Save(ctx, broker.Session{ClientID: "c1", Cursor: 5}); err != nil {
		t.Fatalf("Save: %v", err)
	}

	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, "Healthy to report the outage", func() bool { return b.Healthy() != nil })
	if err := b.Healthy(); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Healthy during outage = %v, want ErrUnavailable", err)
	}
	if _, err := b.Publish(ctx, "/fault/x", []byte("lost")); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish during outage: err %v, want ErrUnavailable", err)
	}

	e2, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: addr, StoreDir: dir})
	if err != nil {
		t.Fatalf("restart embedded NATS on %s: %v", addr, err)
	}
	t.Cleanup(func() { e2.Shutdown(context.Background()) })
	waitFor(t, "reconnect", func() bool { return b.Healthy() == nil })

	// The restarted server may still be recovering JetStream when the
	// client reconnects; publish retries only until the stream answers.
	waitFor(t, "JetStream after restart", func() bool {
		_, err := b.LastSeq(ctx)
		return err == nil
	})
	publishN(t, b, 5)
	rec.waitSeqs(t, 10)
	s, err := b.Sessions().Load(ctx, "c1")
	if err != nil || s.Cursor != 5 {
		t.Fatalf("session after restart = %+v, %v", s, err)
	}
	hist, err := b.History(ctx, []string{"/fault/*"}, 0)
	if err != nil || len(hist) != 10 {
		t.Fatalf("History after restart: %d messages, %v; want 10", len(hist), err)
	}
}

// TestNATSPartitionRecovers cuts one node off NATS (through a TCP relay)
// while another node keeps publishing: the cut node reports unhealthy and
// fails publishes fast, and after the link returns its subscription
// delivers what it missed from the stream, in order, exactly once.
func TestNATSPartitionRecovers(t *testing.T) {
	e := startNATS(t, t.TempDir())
	relay := newRelay(t, e.Addr())
	cut := newNATS(t, "nats://"+relay.addr, fastReconnect(broker.NATSOptions{Name: "cut"}))
	other := newNATS(t, e.ClientURL(), broker.NATSOptions{Name: "other"})
	ctx := context.Background()
	rec := &recorder{}
	stop, err := cut.Subscribe(ctx, rec.handle)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer stop()
	publishN(t, other, 3)
	rec.waitSeqs(t, 3)

	relay.cut()
	waitFor(t, "Healthy to report the partition", func() bool { return cut.Healthy() != nil })
	if _, err := cut.Publish(ctx, "/fault/x", []byte("x")); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish while cut off: err %v, want ErrUnavailable", err)
	}
	publishN(t, other, 20) // missed by the cut node while it is away

	relay.restore(t)
	waitFor(t, "reconnect", func() bool { return cut.Healthy() == nil })
	publishN(t, other, 2)
	rec.waitSeqs(t, 25)
}

// relay is a loopback TCP forwarder that a test can cut and restore, to
// partition one NATS client from a live server.
type relay struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func newRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay listen: %v", err)
	}
	r := &relay{addr: ln.Addr().String(), target: target}
	r.serve(ln)
	t.Cleanup(r.cut)
	return r
}

func (r *relay) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, u)
			r.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// cut stops accepting and drops every relayed connection.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

func (r *relay) restore(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("relay relisten on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

// TestNATSStoreLost restarts the embedded NATS on the same address but
// with an empty store, as a host restarted without its directory would.
// The broker puts the stream and the bucket back, sequence numbers go on
// after the highest one seen (so sessions' cursors keep their meaning), the
// subscription resumes, and History reports the lost messages as gone.
func TestNATSStoreLost(t *testing.T) {
	e := startNATS(t, t.TempDir())
	addr := e.Addr()
	b := newNATS(t, e.ClientURL(), fastReconnect(broker.NATSOptions{Name: "lost"}))
	ctx := context.Background()
	rec := &recorder{}
	stop, err := b.Subscribe(ctx, rec.handle)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer stop()
	publishN(t, b, 5)
	rec.waitSeqs(t, 5)

	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, "Healthy to report the outage", func() bool { return b.Healthy() != nil })
	e2, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: addr, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("restart embedded NATS on %s: %v", addr, err)
	}
	t.Cleanup(func() { e2.Shutdown(context.Background()) })
	waitFor(t, "the stream to be recreated", func() bool {
		seq, err := b.LastSeq(ctx)
		return err == nil && seq == 5
	})
	waitFor(t, "the bucket to be recreated", func() bool {
		return b.Sessions().Save(ctx, broker.Session{ClientID: "c"}) == nil
	})
	publishN(t, b, 3)
	rec.waitSeqs(t, 8)
	if _, err := b.History(ctx, []string{"/fault/x"}, 2); !errors.Is(err, broker.ErrHistoryGone) {
		t.Fatalf("History over the lost messages: err %v, want ErrHistoryGone", err)
	}
	if got, err := b.History(ctx, []string{"/fault/x"}, 5); err != nil || len(got) != 3 || got[0].Seq != 6 {
		t.Fatalf("History after the loss = %d messages, %v; want seqs 6..8", len(got), err)
	}
	// A node starting now joins the recreated stream as it is.
	late := newNATS(t, e2.ClientURL(), broker.NATSOptions{Name: "late"})
	if seq, err := late.Publish(ctx, "/fault/x", []byte("late")); err != nil || seq != 9 {
		t.Fatalf("late node Publish = %d, %v; want 9", seq, err)
	}
}

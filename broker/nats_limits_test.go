package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"wsfleet/broker"
)

// These tests wait on JetStream's own expiry with real time (about a
// second each): the limits are enforced by the server, whose clock cannot
// be injected.

func TestNATSSessionTTL(t *testing.T) {
	e := startNATS(t, t.TempDir())
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{SessionTTL: time.Second})
	ctx := context.Background()
	if err := b.Sessions().Save(ctx, broker.Session{ClientID: "gone-soon"}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if _, err := b.Sessions().Load(ctx, "gone-soon"); err != nil {
		t.Fatalf("Load right after Save: %v", err)
	}
	waitFor(t, "the session to expire", func() bool {
		_, err := b.Sessions().Load(ctx, "gone-soon")
		return errors.Is(err, broker.ErrNoSession)
	})
}

func TestNATSHistoryAge(t *testing.T) {
	e := startNATS(t, t.TempDir())
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{HistoryAge: time.Second})
	ctx := context.Background()
	seq, err := b.Publish(ctx, "/old", []byte("x"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got, err := b.History(ctx, []string{"/old"}, seq-1); err != nil || len(got) != 1 {
		t.Fatalf("History before expiry: %d messages, %v", len(got), err)
	}
	waitFor(t, "the message to leave the window", func() bool {
		_, err := b.History(ctx, []string{"/old"}, seq-1)
		return errors.Is(err, broker.ErrHistoryGone)
	})
	// A cursor at the last sequence is still fine: nothing after it was lost.
	if got, err := b.History(ctx, []string{"/old"}, seq); err != nil || len(got) != 0 {
		t.Fatalf("History at the last seq after expiry: %d messages, %v", len(got), err)
	}
	// Sequence numbers go on from where they were.
	next, err := b.Publish(ctx, "/old", []byte("y"))
	if err != nil || next != seq+1 {
		t.Fatalf("Publish after expiry = %d, %v; want %d", next, err, seq+1)
	}
}

func TestNATSURLList(t *testing.T) {
	e := startNATS(t, t.TempDir())
	// A dead server first, and spaces: the client moves on to the live one.
	b := newNATS(t, "nats://127.0.0.1:1 , "+e.ClientURL(), broker.NATSOptions{})
	if err := b.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
}

// TestEmbeddedQuiet checks that nats-server logs nothing above debug on a
// node's logger through a start, some traffic and a shutdown.
func TestEmbeddedQuiet(t *testing.T) {
	h := &levelRecorder{}
	log := slog.New(h)
	e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatalf("StartEmbeddedNATS: %v", err)
	}
	b := newNATS(t, e.ClientURL(), broker.NATSOptions{})
	if _, err := b.Publish(context.Background(), "/q", []byte("x")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	b.Close()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	debug, loud := h.counts()
	if loud != 0 {
		t.Fatalf("nats-server logged %d records above debug", loud)
	}
	if debug == 0 {
		t.Fatal("nats-server logged nothing at debug: is the logger wired?")
	}
}

type levelRecorder struct {
	mu          sync.Mutex
	debug, loud int
}

func (h *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level > slog.LevelDebug {
		h.loud++
	} else {
		h.debug++
	}
	return nil
}
func (h *levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levelRecorder) WithGroup(string) slog.Handler      { return h }

func (h *levelRecorder) counts() (debug, loud int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.debug, h.loud
}

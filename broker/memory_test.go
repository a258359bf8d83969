package broker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"wsfleet/broker"
	"wsfleet/broker/brokertest"
)

func TestMemoryConformance(t *testing.T) {
	var mu sync.Mutex
	perTest := map[*testing.T]*broker.Memory{}
	brokertest.Run(t, func(t *testing.T, o brokertest.Options) broker.Broker {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := perTest[t]; ok {
			return b // a second "node" shares the process-local broker
		}
		b := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: o.HistoryMsgs})
		perTest[t] = b
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// TestMemoryRestartKeepsCursorsMeaningful is a node restarted on a fresh
// memory broker: its numbers must stay above every cursor its clients
// hold, and such a cursor must read as a gap, not as an empty history.
func TestMemoryRestartKeepsCursorsMeaningful(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	first := broker.NewMemory(broker.MemoryOptions{Now: now})
	var cursor uint64
	for i := 0; i < 5; i++ {
		seq, err := first.Publish(ctx, "/a", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		cursor = seq
	}
	first.Close()

	clock = clock.Add(2 * time.Second) // the restart
	second := broker.NewMemory(broker.MemoryOptions{Now: now})
	if got, _ := second.LastSeq(ctx); got != 0 {
		t.Fatalf("LastSeq of a fresh broker = %d, want 0", got)
	}
	if _, err := second.History(ctx, []string{"/**"}, 0); err != nil {
		t.Fatalf("History from 0 on a fresh broker: %v", err)
	}
	seq, err := second.Publish(ctx, "/a", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if seq <= cursor {
		t.Fatalf("first seq after restart %d is not above the old cursor %d", seq, cursor)
	}
	if _, err := second.History(ctx, []string{"/a"}, cursor); !errors.Is(err, broker.ErrHistoryGone) {
		t.Fatalf("History from an old cursor: err = %v, want broker.ErrHistoryGone", err)
	}
	if ms, err := second.History(ctx, []string{"/a"}, seq-1); err != nil || len(ms) != 1 {
		t.Fatalf("History from just before the first message = %d msgs, %v", len(ms), err)
	}
}

// TestMemoryFullHistoryPublish: once the history is full, every publish
// drops the oldest message; it must not copy the whole history to do so
// (an allocation per publish), and the history keeps exactly the newest
// messages.
func TestMemoryFullHistoryPublish(t *testing.T) {
	const keep = 1000
	b := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: keep})
	defer b.Close()
	ctx := context.Background()
	payload := []byte(`{"data":1}`)
	var last uint64
	publish := func() {
		seq, err := b.Publish(ctx, "/a", payload)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	for range 3 * keep {
		publish()
	}
	if allocs := testing.AllocsPerRun(10*keep, publish); allocs > 0.1 {
		t.Errorf("%.2f allocations per publish with a full history, want a copy only now and then", allocs)
	}
	hist, err := b.History(ctx, []string{"/**"}, last-keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != keep || hist[0].Seq != last-keep+1 || hist[keep-1].Seq != last {
		t.Fatalf("history of %d messages, %d..%d; want %d, %d..%d", len(hist), hist[0].Seq, hist[len(hist)-1].Seq, keep, last-keep+1, last)
	}
	if _, err := b.History(ctx, []string{"/**"}, last-keep-1); !errors.Is(err, broker.ErrHistoryGone) {
		t.Fatalf("history from before the window: %v, want ErrHistoryGone", err)
	}
}

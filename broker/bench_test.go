package broker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"wsfleet/broker"
)

// BenchmarkPublishDeliver measures one publish and its delivery back to a
// subscriber of the same broker, one message at a time, for the memory
// broker and for the NATS broker on an embedded server over loopback.
func BenchmarkPublishDeliver(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		m := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: 10_000})
		defer m.Close()
		benchPublishDeliver(b, m)
	})
	b.Run("nats", func(b *testing.B) {
		e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		n, err := broker.NewNATS(context.Background(), broker.NATSOptions{URLs: e.ClientURL(), HistoryMsgs: 10_000})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		benchPublishDeliver(b, n)
	})
}

func benchPublishDeliver(b *testing.B, br broker.Broker) {
	ctx := context.Background()
	got := make(chan uint64, 1)
	stop, err := br.Subscribe(ctx, func(m broker.Message) { got <- m.Seq })
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	payload := []byte(`{"channel":"/bench/room","data":{"text":"hello"}}`)
	b.ReportAllocs()
	for b.Loop() {
		seq, err := br.Publish(ctx, "/bench/room", payload)
		if err != nil {
			b.Fatal(err)
		}
		if d := <-got; d != seq {
			b.Fatalf("delivered seq %d, published %d", d, seq)
		}
	}
}

// BenchmarkHistory measures one History call (the replay a node does when a
// client arrives with a cursor) over a stream of 2,000 messages on 20
// channels, asking for the 50 newest messages of one channel. On NATS each call
// creates and deletes a short-lived consumer.
func BenchmarkHistory(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		m := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: 10_000})
		defer m.Close()
		benchHistory(b, m)
	})
	b.Run("nats", func(b *testing.B) {
		e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		n, err := broker.NewNATS(context.Background(), broker.NATSOptions{URLs: e.ClientURL(), HistoryMsgs: 10_000})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		benchHistory(b, n)
	})
}

func benchHistory(b *testing.B, br broker.Broker) {
	ctx := context.Background()
	var last uint64
	for i := range 2000 {
		seq, err := br.Publish(ctx, fmt.Sprintf("/room/%d", i%20), []byte(`{"data":"x"}`))
		if err != nil {
			b.Fatal(err)
		}
		last = seq
	}
	after := last - 2000 + 1000 // the second half: 50 messages per channel
	b.ResetTimer()
	for b.Loop() {
		got, err := br.History(ctx, []string{"/room/7", "/other/**"}, after)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 50 {
			b.Fatalf("History returned %d messages, want 50", len(got))
		}
	}
}

// BenchmarkPublishParallel measures throughput: publishers on every CPU,
// one subscriber, and the run ends when the subscriber has seen every
// message.
func BenchmarkPublishParallel(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		m := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: 10_000})
		defer m.Close()
		benchPublishParallel(b, m)
	})
	b.Run("nats", func(b *testing.B) {
		e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		n, err := broker.NewNATS(context.Background(), broker.NATSOptions{URLs: e.ClientURL(), HistoryMsgs: 10_000})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		benchPublishParallel(b, n)
	})
}

func benchPublishParallel(b *testing.B, br broker.Broker) {
	ctx := context.Background()
	var delivered, published atomic.Int64
	done := make(chan struct{}, 1)
	var want atomic.Int64
	want.Store(-1)
	stop, err := br.Subscribe(ctx, func(broker.Message) {
		if n := delivered.Add(1); n == want.Load() {
			done <- struct{}{}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	payload := []byte(`{"channel":"/bench/room","data":{"text":"hello"}}`)
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Publish(ctx, "/bench/room", payload); err != nil {
				b.Error(err)
				return
			}
			published.Add(1)
		}
	})
	want.Store(published.Load())
	if delivered.Load() < published.Load() {
		<-done
	}
}

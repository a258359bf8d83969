package demo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsfleet/broker"
	"wsfleet/internal/nodetest"
)

// TestNATSFault runs the demo's NATS outage on a three-server embedded
// cluster while a node publishes: it waits for the change's first
// replacement, takes the stream's leader down and brings it back, and not
// one publish fails meanwhile.
func TestNATSFault(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-servers and an 8 s outage")
	}
	c, err := broker.StartEmbeddedCluster(3, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := broker.NewNATS(ctx, broker.NATSOptions{URLs: c.URLs(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	var progress nodetest.SyncBuffer
	d := &run{cfg: Config{Now: time.Now, Progress: &progress}, start: time.Now(), natsC: c}
	var replaced atomic.Int64
	finish := d.natsFault(ctx, &replaced)
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		failures atomic.Int64
		sent     atomic.Int64
	)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if _, err := b.Publish(ctx, "/demo", []byte(fmt.Sprint(i))); err != nil {
				failures.Add(1)
				t.Errorf("publish %d: %v", i, err)
			}
			sent.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	})
	time.Sleep(500 * time.Millisecond)
	replaced.Store(1) // the change replaced its first node
	// the outage (8 s) begins within 250 ms; finish waits for its end
	time.Sleep(time.Second)
	if err := finish(); err != nil {
		t.Fatalf("outage: %v", err)
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	out := progress.String()
	if !strings.Contains(out, "shutting down NATS server") || !strings.Contains(out, "started again") {
		t.Fatalf("no outage narrated:\n%s", out)
	}
	if failures.Load() > 0 || sent.Load() < 50 {
		t.Fatalf("%d of %d publishes failed", failures.Load(), sent.Load())
	}
}

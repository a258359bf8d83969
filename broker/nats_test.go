package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"wsfleet/broker"
	"wsfleet/broker/brokertest"
)

// startNATS starts an embedded NATS on a random loopback port for t.
func startNATS(t *testing.T, storeDir string) *broker.Embedded {
	t.Helper()
	e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: storeDir})
	if err != nil {
		t.Fatalf("StartEmbeddedNATS: %v", err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e
}

func newNATS(t *testing.T, url string, o broker.NATSOptions) *broker.NATS {
	t.Helper()
	o.URLs = url
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := broker.NewNATS(ctx, o)
	if err != nil {
		t.Fatalf("NewNATS: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestNATSConformance(t *testing.T) {
	var mu sync.Mutex
	perTest := map[*testing.T]*broker.Embedded{}
	brokertest.Run(t, func(t *testing.T, o brokertest.Options) broker.Broker {
		mu.Lock()
		e, ok := perTest[t]
		if !ok {
			e = startNATS(t, t.TempDir())
			perTest[t] = e
		}
		mu.Unlock()
		return newNATS(t, e.ClientURL(), broker.NATSOptions{Name: fmt.Sprintf("node-%p", t), HistoryMsgs: int64(o.HistoryMsgs)})
	})
}

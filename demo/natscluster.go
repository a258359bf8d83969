package demo

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsOutage is how long the demo keeps a NATS server of its cluster down
// in the middle of the change: longer than a JetStream leader election.
const natsOutage = 8 * time.Second

// natsFault, with Config.NATSCluster, waits until the change has replaced
// its first node (or 15 s, for the naive mode, which reports none), then
// shuts down the NATS server leading the message stream, keeps it down for
// natsOutage, and starts it again on its store, while clients and the
// change go on: the fleet must lose nothing. The returned function, called
// when the change is over, waits for the outage to end and returns what
// went wrong, for the summary's problems: a change that ended before the
// outage began is one.
func (d *run) natsFault(ctx context.Context, replaced *atomic.Int64) func() error {
	if d.natsC == nil {
		return func() error { return nil }
	}
	over := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- d.natsOutage(ctx, replaced, over)
	}()
	return func() error {
		close(over)
		return <-done
	}
}

func (d *run) natsOutage(ctx context.Context, replaced *atomic.Int64, over <-chan struct{}) error {
	start := d.cfg.Now()
	for replaced.Load() == 0 && d.cfg.Now().Sub(start) < 15*time.Second {
		select {
		case <-ctx.Done():
			return nil
		case <-over:
			return fmt.Errorf("the change ended before a NATS server could be shut down")
		case <-time.After(250 * time.Millisecond):
		}
	}
	i := d.streamLeader(ctx)
	name := d.natsC.Name(i)
	d.say("shutting down NATS server %s (the message stream's leader) in the middle of the change", name)
	d.event("demo", "nats server down", "server", name)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	err := d.natsC.Stop(sctx, i)
	cancel()
	if err != nil {
		return fmt.Errorf("stop NATS server %s: %w", name, err)
	}
	d.sleep(ctx, natsOutage)
	if err := d.natsC.Restart(i); err != nil {
		return fmt.Errorf("restart NATS server %s: %w", name, err)
	}
	d.say("NATS server %s started again", name)
	d.event("demo", "nats server up", "server", name)
	return nil
}

// streamLeader is the index of the server leading the WSFLEET stream, 0
// when it cannot be told.
func (d *run) streamLeader(ctx context.Context) int {
	nc, err := nats.Connect(d.natsC.URLs(), nats.Timeout(2*time.Second))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "WSFLEET")
	if err != nil || s.CachedInfo().Cluster == nil {
		return 0
	}
	for i := range d.natsC.Len() {
		if d.natsC.Name(i) == s.CachedInfo().Cluster.Leader {
			return i
		}
	}
	return 0
}

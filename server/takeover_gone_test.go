package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// failingHistory is a broker whose History fails, as a NATS broker's does
// when the replay cannot be read (before issue 18: every multi-channel
// replay on nats-server 2.9).
type failingHistory struct{ broker.Broker }

func (failingHistory) History(context.Context, []string, uint64) ([]broker.Message, error) {
	return nil, errors.New("nats: multiple consumer filter subjects not supported by nats-server")
}

// TestTakeOverReplayGone: a session taken over from the store whose replay
// cannot be made (the history no longer reaches back to its cursor, or the
// broker cannot read it) is never continued with a hole: its connect is
// answered 401 with advice to handshake, as for a replay over the queue
// limit, the record is deleted, and wsfleet_sessions_restored_total
// {outcome="gone"} counts it. Before, the node logged a warning and went
// on serving the session without the messages.
func TestTakeOverReplayGone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wrap   func(broker.Broker) broker.Broker
		missed int
	}{
		{"history left the window", func(b broker.Broker) broker.Broker { return b }, 8},
		{"history read fails", func(b broker.Broker) broker.Broker { return failingHistory{b} }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: 5})
			a := startNode(t, func(c *Config) { c.NodeID = "a"; c.Broker = mem })
			b := startNode(t, func(c *Config) { c.NodeID = "b"; c.Broker = tc.wrap(mem) })
			p := &lpPeer{t: t, n: a}
			p.handshake(nil)
			p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/g"})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.srv.Drain(ctx, DrainOptions{Window: 0, MaxRate: 1000, Deadline: 2 * time.Second})
			if _, err := mem.Sessions().Load(ctx, p.clientID); err != nil {
				t.Fatalf("drain saved no session: %v", err)
			}
			publishN(t, b, "/g", tc.missed)
			p.n = b
			reply, data := p.connect()
			adv, _ := reply["advice"].(map[string]any)
			if reply["successful"] != false || !strings.HasPrefix(fmt.Sprint(reply["error"]), "401:") || adv["reconnect"] != "handshake" {
				t.Fatalf("connect on b: %v, want 401 with advice to handshake", reply)
			}
			if len(data) != 0 {
				t.Fatalf("%d messages delivered on a session with a hole", len(data))
			}
			if v := scrape(t, b, `wsfleet_sessions_restored_total{outcome="gone"}`); v != 1 {
				t.Fatalf("restored{gone} counted %v, want 1", v)
			}
			if _, err := mem.Sessions().Load(ctx, p.clientID); !errors.Is(err, broker.ErrNoSession) {
				t.Fatalf("the session is still stored: %v", err)
			}
			if got := b.srv.Status().Sessions; got != 0 {
				t.Fatalf("b holds %d sessions", got)
			}
		})
	}
}

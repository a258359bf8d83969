package probe_test

import (
	"context"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
	"wsfleet/probe"
)

// peer starts a server, a real Bayeux peer the probe runs against, which
// Node.Start starts again on the same port. With noHistory the server
// keeps no history to replay from (Faye never has one), so what a client
// misses while away cannot come back.
type peer struct {
	name  string
	start func(t *testing.T, noHistory bool) *nodetest.Node
}

const adminToken = "probe-test-admin"

// fayePeer is Faye's own server, holding a /meta/connect for 5s.
func fayePeer() peer {
	return peer{name: "faye", start: func(t *testing.T, _ bool) *nodetest.Node {
		return suite.StartFaye(t, "--timeout", "5")
	}}
}

func peers() []peer { return append([]peer{fayePeer()}, extraPeers()...) }

// TestProbeSteady runs a probe against a healthy server: everything sent
// must arrive exactly once.
func TestProbeSteady(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	for _, pr := range peers() {
		for _, transport := range []string{"websocket", "long-polling"} {
			t.Run(pr.name+"/"+transport, func(t *testing.T) {
				srv := pr.start(t, false)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				p, err := probe.Start(ctx, probe.Config{
					URL: srv.Bayeux(), AdminToken: adminToken, Clients: 40, Channels: 4,
					Rate: 100, Transport: transport, Grace: 3 * time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(1500 * time.Millisecond)
				mid := p.Snapshot()
				r := p.Stop(ctx)
				t.Logf("report: %+v", r)
				if mid.Final || !r.Final {
					t.Fatalf("final flags: snapshot %v, stop %v", mid.Final, r.Final)
				}
				if r.ClientsSubscribed != 40 || r.Sent < 50 || r.PublishFailed != 0 {
					t.Fatalf("subscribed %d sent %d failed %d", r.ClientsSubscribed, r.Sent, r.PublishFailed)
				}
				// Each message goes to the 10 subscribers of its channel.
				if r.Expected < r.Sent*10-40*10 || r.Expected > r.Sent*10 {
					t.Fatalf("expected %d pairs for %d messages × 10 subscribers", r.Expected, r.Sent)
				}
				if r.Lost != 0 || r.Duplicated != 0 || r.Delivered != r.Expected || r.Pending != 0 {
					t.Fatalf("lost %d duplicated %d delivered %d of %d", r.Lost, r.Duplicated, r.Delivered, r.Expected)
				}
				if r.Latency.Count < r.Delivered || r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 {
					t.Fatalf("latency %+v for %d deliveries", r.Latency, r.Delivered)
				}
				if r.Gap.Count != 0 || r.Reconnects != 0 {
					t.Fatalf("gaps %+v reconnects %d on a healthy server", r.Gap, r.Reconnects)
				}
			})
		}
	}
}

// TestProbeServerRestart kills the server mid-run and starts it again on
// the same port. Every client must show one gap at least as long as the
// server was away, and the messages the new server accepted before any
// client was back must be counted lost: the probe may not hide them. The
// servers keep no replay history here, so that this loss is certain: with
// history, a restarted memory-broker node replays the part of it above the
// client's cursor from the old node, whose sequence space was another one.
func TestProbeServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	for _, pr := range peers() {
		t.Run(pr.name, func(t *testing.T) {
			const clients, channels = 20, 4
			srv := pr.start(t, true)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			// A fixed jitter draw makes every reconnect attempt wait the
			// full RetryMax, which leaves a window where the new server
			// takes publishes and no client is there yet.
			p, err := probe.Start(ctx, probe.Config{
				URL: srv.Bayeux(), AdminToken: adminToken, Clients: clients, Channels: channels,
				Rate: 100, Grace: 3 * time.Second,
				RetryMin: 1500 * time.Millisecond, RetryMax: 1500 * time.Millisecond,
				Rand: func() float64 { return 0.999 },
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(700 * time.Millisecond)
			killed := time.Now()
			srv.Kill()
			time.Sleep(400 * time.Millisecond)
			srv.Start()
			restarted := time.Now()
			away := restarted.Sub(killed)

			// An observer's view, from plain counters: messages the new
			// server acknowledged while no client was connected.
			var sentAlone int64 = -1
			var firstSent int64
			for time.Since(restarted) < 20*time.Second {
				s := p.Snapshot()
				if sentAlone < 0 && s.ClientsConnected == 0 && s.Sent > 0 {
					firstSent = s.Sent
					sentAlone = 0
				}
				if s.ClientsConnected == 0 && sentAlone >= 0 {
					sentAlone = s.Sent - firstSent
				}
				if s.ClientsConnected == clients {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(700 * time.Millisecond)
			r := p.Stop(ctx)
			t.Logf("away %v, sent while nobody was connected ≥ %d; report: %+v", away, sentAlone, r)

			if r.ClientsSubscribed != clients || r.Reconnects != clients || r.Gap.Count != clients {
				t.Fatalf("subscribed %d reconnects %d gaps %d, want %d each", r.ClientsSubscribed, r.Reconnects, r.Gap.Count, clients)
			}
			if min := float64(away.Milliseconds()); r.Gap.P50 < min || r.Gap.Max > min+1500+5000 {
				t.Fatalf("gaps %+v for a server away %v", r.Gap, away)
			}
			if r.Delivered+r.Lost != r.Expected || r.Pending != 0 {
				t.Fatalf("delivered %d + lost %d != expected %d (pending %d)", r.Delivered, r.Lost, r.Expected, r.Pending)
			}
			// Messages the new server took while nobody was subscribed are
			// lost by all clients/channels subscribers of their channel
			// (less the edges of the observation window).
			if want := (sentAlone - 2) * clients / channels; r.Lost < want || r.Lost == 0 {
				t.Fatalf("lost %d, want at least %d (and not 0)", r.Lost, want)
			}
			if r.Duplicated != 0 {
				t.Fatalf("duplicated %d", r.Duplicated)
			}
			if r.Errors["connection_lost"] != clients {
				t.Fatalf("errors %v, want %d connection_lost", r.Errors, clients)
			}
		})
	}
}

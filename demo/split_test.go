package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wsfleet/broker/natstest"
	"wsfleet/examples"
	"wsfleet/internal/nodetest"
	"wsfleet/rollout"
)

var suite = &nodetest.Suite{Name: "demo"}

func TestMain(m *testing.M) { suite.Main(m) }

// TestSplitRun runs the demo's fleet with its clients split as at scale,
// forced small: 300 chat clients over two generator processes, through a
// load balancer of two node processes, onto the seed's 8 nodes; one node
// is taken out of the load balancer and drained, so its clients move.
// The merged report must count every client and room once, lose nothing,
// and show the moves; every client's websockets must be in the route log
// the load balancer nodes reported, and every client's ups in the
// generators' parts. The nodes use a nats-server process of their own
// (Config.NATSURL), not one in the demo's process.
func TestSplitRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet of node processes")
	}
	bin := suite.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// NATS as a process of its own (--nats), as the demo runs at scale.
	nats := natstest.Start(t, natstest.Newest(t), 1)
	nats.WaitJetStream(t, 20*time.Second)
	cfg := Config{Clients: 300, Generators: 2, LBNodes: 2, Fast: true, Executable: bin, Out: t.TempDir(), NATSURL: nats.URLs()}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	d := &run{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err := d.close(); err != nil {
			t.Error(err)
		}
	}()
	d.start = cfg.Now()
	d.routes = newRouteLog(func(at time.Time) time.Duration { return at.Sub(d.start) })
	d.gens, d.lbNodes = split(cfg.Clients, cfg.Generators, cfg.LBNodes, openFileLimit())
	if d.gens != 2 || d.lbNodes != 2 {
		t.Fatalf("split %d generators, %d load balancer nodes; want the 2 and 2 configured", d.gens, d.lbNodes)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, "nodes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.startFleet(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet ready after %v", d.since())
	if d.nats != nil || d.natsC != nil {
		t.Fatal("the demo started NATS of its own beside --nats")
	}
	if len(d.lbURLs) != 2 || !strings.HasPrefix(d.lbURLs[0], "http://127.0.0.20:") || !strings.HasPrefix(d.lbURLs[1], "http://127.0.0.21:") {
		t.Fatalf("load balancer nodes %v, want 127.0.0.20 and .21", d.lbURLs)
	}
	if err := d.startClients(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("clients open after %v", d.since())
	time.Sleep(2 * time.Second)
	// Drain one node as the engine does: out of the load balancer, then
	// released at 200/s; its clients reconnect through the nodes.
	g, err := d.prov.Group(ctx, groupName)
	if err != nil {
		t.Fatal(err)
	}
	var victim rollout.Instance
	for _, in := range g.Instances {
		if in.Live() {
			victim = in
			break
		}
	}
	if err := d.prov.DeregisterTargets(ctx, groupName, []string{victim.ID}); err != nil {
		t.Fatal(err)
	}
	if err := d.nodes.Drain(ctx, victim, rollout.DrainOptions{Window: time.Second, MaxRate: 200, Deadline: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := d.nodes.Status(ctx, victim)
		if err == nil && st.Connections == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("node %s did not empty: %v %+v", victim.Name, err, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("node drained after %v", d.since())
	time.Sleep(2 * time.Second)
	mid := d.probe.Snapshot()
	rep := d.stopClients()
	t.Logf("clients stopped after %v; merged report: %+v", d.since(), rep)
	if mid.Clients != 300 || mid.Final {
		t.Errorf("live snapshot: %d clients, final %v; want the generators' 300, not final", mid.Clients, mid.Final)
	}
	if !rep.Final || rep.Clients != 300 || rep.ClientsSubscribed != 300 || rep.Channels != 15 {
		t.Errorf("merged report: final %v, %d clients (%d subscribed) over %d rooms; want final, 300 (300) over 15", rep.Final, rep.Clients, rep.ClientsSubscribed, rep.Channels)
	}
	if rep.Lost != 0 || rep.Expected == 0 || rep.Delivered != rep.Expected || rep.PublishFailed != 0 {
		t.Errorf("merged report: lost %d, delivered %d of %d, publish failed %d; want every one delivered", rep.Lost, rep.Delivered, rep.Expected, rep.PublishFailed)
	}
	if rep.Reconnects == 0 || rep.Gap.Count < rep.Reconnects || rep.Gap.Max < rep.Gap.P99 || rep.Latency.Count < rep.Delivered {
		t.Errorf("merged report: %d reconnects, gaps %+v, latency %+v; want the drained node's clients' moves", rep.Reconnects, rep.Gap, rep.Latency)
	}
	if len(d.ups) != 300 {
		t.Fatalf("ups of %d clients, want 300", len(d.ups))
	}
	routes := d.routes.snapshot()
	moved := 0
	for c := range 300 {
		if len(d.ups[c]) == 0 || len(routes[c]) == 0 {
			t.Fatalf("client %d: ups %v, websockets %v; want both", c, d.ups[c], routes[c])
		}
		if len(d.ups[c]) > 1 {
			moved++
		}
	}
	if int64(moved) > rep.Reconnects || moved == 0 {
		t.Errorf("%d clients came up more than once, %d reconnects", moved, rep.Reconnects)
	}
}

func TestScaledDrain(t *testing.T) {
	for _, tc := range []struct {
		clients  int
		deadline time.Duration
	}{
		{2000, 30 * time.Second},    // the seed's: 1,111 clients in 6 s
		{5000, 30 * time.Second},    // 2,778 in 14 s
		{20000, 170 * time.Second},  // 11,111 in 56 s, three times that
		{100000, 840 * time.Second}, // 55,556 in 278 s, three times that
	} {
		got, err := scaledDrainDeadline(examples.NewAMIPlan, tc.clients)
		if err != nil || got != tc.deadline {
			t.Errorf("%d clients: deadline %v (%v), want %v", tc.clients, got, err, tc.deadline)
		}
		plan, err := scalePlan(examples.NewAMIPlan, tc.clients)
		if err != nil {
			t.Fatal(err)
		}
		p, err := rollout.ParsePlan(plan)
		if err != nil || p.Drain.Deadline.D() != tc.deadline || p.Drain.MaxRate != 200 || p.Drain.Window.D() != 30*time.Second {
			t.Errorf("%d clients: plan drain %+v (%v), want deadline %v, the plan's max_rate and window", tc.clients, p.Drain, err, tc.deadline)
		}
		if tc.deadline == 30*time.Second && !bytes.Equal(plan, examples.NewAMIPlan) {
			t.Errorf("%d clients: the plan changed", tc.clients)
		}
		topo, err := topologyForDemo(examples.SeedTopology, "nats://127.0.0.1:1", Config{Clients: tc.clients})
		if err != nil {
			t.Fatal(err)
		}
		if got := *topo.TargetGroups[0].DeregistrationDelaySeconds; got != int(tc.deadline/time.Second) {
			t.Errorf("%d clients: deregistration delay %d s, want %v", tc.clients, got, tc.deadline)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		clients, gens, lbs, fds int
		wantGens, wantLBs       int
	}{
		{"the default demo stays in this process", 2000, 0, 0, 20000, 0, 0},
		{"as long as three sockets a client fit", 6000, 0, 0, 20000, 0, 0},
		{"100,000 clients", 100000, 0, 0, 20000, 9, 13},
		{"forced", 300, 2, 2, 20000, 2, 2},
		{"forced generators only", 300, 3, 0, 20000, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, l := split(tc.clients, tc.gens, tc.lbs, tc.fds)
			if g != tc.wantGens || l != tc.wantLBs {
				t.Errorf("split(%d, %d, %d, %d) = %d, %d; want %d, %d", tc.clients, tc.gens, tc.lbs, tc.fds, g, l, tc.wantGens, tc.wantLBs)
			}
		})
	}
}

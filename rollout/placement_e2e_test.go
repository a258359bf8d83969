package rollout_test

// Connection placement end to end: the seed's change on the local cloud's
// 8 real nodes while chat clients are connected through its load
// balancer. A short run (500 clients) is a subtest of TestE2ELocalCloud,
// on its cloud; `make test-placement` runs TestE2EPlacement: the demo's
// 2,000 clients, three changes in a row, on a cloud of its own.

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wsfleet/probe"
	"wsfleet/rollout"
)

// placementFigures are what issue 16 judges a change by.
type placementFigures struct {
	clients    int
	reconnects int64
	lost       int64
	canaryMin  int     // the canary's clients through its bake, least seen
	fair       int     // its fair share: clients / 9
	endDev     float64 // largest deviation of a node's clients from the mean, at the end
	end        map[string]int
}

// placementChange runs the seed's change to image with placement on, while
// a probe holds clients chat clients through the load balancer, and checks
// the figures: nothing lost, the canary at >= 80 % of its fair share
// through its bake, reconnects <= clients × 1.15, the end within ±15 %.
func placementChange(t *testing.T, e *e2e, change, image string, clients int) placementFigures {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := probe.Start(ctx, probe.Config{URL: e.lb + "/bayeux", AdminToken: adminToken, Clients: clients, Channels: 20, Rate: 10})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Stop(context.Background())
		}
	}()
	if r := p.Snapshot(); r.ClientsSubscribed != clients {
		t.Fatalf("%d of %d clients subscribed", r.ClientsSubscribed, clients)
	}
	before := p.Snapshot().Reconnects
	planPath := filepath.Join(e.dir, change+".yaml")
	plan := e.planHead(change) + fmt.Sprintf(`image: %s
placement: {move_once: true, balance: 15%%}
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m, canary_share: auto}
  - {name: first half, replace: 4}
  - {name: second half, replace: rest}
`, image)
	if err := os.WriteFile(planPath, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	f := placementFigures{clients: clients, fair: clients / 9, canaryMin: math.MaxInt}
	cmd := e.engine("rollout", "-f", planPath)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started(t, cmd)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	store := &rollout.Store{Dir: e.stateDir}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("rollout: %v\n%s", err, tail(out.String(), 30))
			}
			break wait
		case <-tick.C:
			st, err := store.Load(change)
			if err != nil || st.Rollback || st.Cursor >= len(st.Steps) {
				continue
			}
			if s := st.Steps[st.Cursor]; s.Kind != rollout.StepBake || s.Phase != 0 || s.Started.IsZero() {
				continue
			}
			for _, n := range st.Nodes {
				if n.Image == image && n.Lifecycle == "InService" {
					f.canaryMin = min(f.canaryMin, n.Connections)
				}
			}
		}
	}
	st := e.load(t, change)
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("%s: %s: %s", change, st.Status, st.Failure)
	}
	if st.Placement == nil || !st.Placement.On {
		t.Fatalf("placement %+v, want on", st.Placement)
	}
	e.waitFleet(t, image, 30*time.Second)
	// The end balance, from the nodes themselves.
	prov := e.provider(t)
	g, err := prov.Group(ctx, "gitter-ws")
	if err != nil {
		t.Fatal(err)
	}
	nodes := &rollout.HTTPNodes{Token: adminToken}
	f.end = map[string]int{}
	total := 0
	for _, in := range g.Instances {
		if !in.Live() {
			continue
		}
		ns, err := nodes.Status(ctx, in)
		if err != nil {
			t.Fatalf("status of %s: %v", in.Name, err)
		}
		if ns.Cordoned {
			t.Errorf("%s left cordoned", in.Name)
		}
		f.end[in.Name] = ns.Connections
		total += ns.Connections
	}
	mean := float64(total) / float64(len(f.end))
	for _, c := range f.end {
		f.endDev = math.Max(f.endDev, math.Abs(float64(c)-mean)/mean)
	}
	if data, err := os.ReadFile(filepath.Join(e.stateDir, change+".events.jsonl")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"type":"placement"`) {
				t.Log(line)
			}
		}
	}
	stopped = true
	r := p.Stop(context.Background())
	f.reconnects, f.lost = r.Reconnects-before, r.Lost
	t.Logf("%d clients: %d reconnects (%.2f a client), lost %d, canary >= %d through its bake (fair share %d), end %v (±%.1f%%)",
		clients, f.reconnects, float64(f.reconnects)/float64(clients), f.lost, f.canaryMin, f.fair, f.end, 100*f.endDev)
	if f.lost != 0 {
		t.Errorf("%d deliveries lost", f.lost)
	}
	if f.canaryMin == math.MaxInt || f.canaryMin < f.fair*8/10 {
		t.Errorf("the canary held at least %d clients through its bake; want >= 80%% of its fair share %d", f.canaryMin, f.fair)
	}
	if f.reconnects > int64(clients)*115/100 {
		t.Errorf("%d reconnects for %d clients; want <= %d", f.reconnects, clients, clients*115/100)
	}
	if f.endDev > 0.15 {
		t.Errorf("end balance off the mean by %.1f%%; want within 15%%", 100*f.endDev)
	}
	return f
}

// TestE2EPlacement is `make test-placement`: three changes in a row
// (old -> new -> old -> new) with the demo's 2,000 clients (or
// WSFLEET_PLACEMENT_CLIENTS).
func TestE2EPlacement(t *testing.T) {
	if os.Getenv("WSFLEET_TEST_PLACEMENT") == "" {
		t.Skip("make test-placement runs it (WSFLEET_TEST_PLACEMENT=1): a local cloud with 8 nodes and 2,000 clients, three changes")
	}
	clients := 2000
	if v := os.Getenv("WSFLEET_PLACEMENT_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("WSFLEET_PLACEMENT_CLIENTS=%q: want a positive number", v)
		}
		clients = n
	}
	e := startCloud(t)
	for i, image := range []string{"ami-new", "ami-old", "ami-new"} {
		t.Run(fmt.Sprintf("run %d to %s", i+1, image), func(t *testing.T) {
			placementChange(t, e, fmt.Sprintf("place-%d", i+1), image, clients)
		})
	}
}

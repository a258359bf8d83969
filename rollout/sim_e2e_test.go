package rollout_test

// A rollout of a group of simulated instances, end to end: the local cloud
// in this process, its simulated nodes answering the admin API, /metrics
// and health checks from the cloud itself, and the engine in this process
// driving it through the real AWS provider (aws-sdk-go-v2) and the real
// node client. Nothing here runs a process per instance, so a group of
// a hundred takes seconds.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wsfleet/internal/simcloud"
	"wsfleet/rollout"
)

// simToken is the admin token of the simulated nodes, set in their user
// data as for process nodes.
const simToken = "sim-e2e-admin-token"

// TestSimRollout100 replaces a 100-instance simulated group on ami-old by
// ami-new in four batches of 25%, with a metric gate on every node's
// wsfleet_errors_total, and checks that every old node was drained through
// its admin API and terminated once, and that the group ends as 100
// healthy instances on the new image with the old names.
//
// It runs serially (not parallelShared): its whole run has a 2-minute
// budget, which it overran (25 s on a quiet machine) beside the parallel
// end-to-end tests at load 45.
func TestSimRollout100(t *testing.T) {
	const n = 100
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ws-%03d", i+1)
	}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: simToken, DeregistrationDelay: 10, Logger: logger})
	// The e2e helpers of the process-node test, on this cloud.
	dir := t.TempDir()
	e := &e2e{dir: dir, api: cloud.Endpoint(), stateDir: filepath.Join(dir, "state")}
	p := e.provider(t)
	want := func(image string) string {
		var s strings.Builder
		for _, name := range names {
			fmt.Fprintf(&s, "%s:%s:healthy ", name, image)
		}
		return s.String()
	}
	waitSimFleet(t, e, "ami-old", want("ami-old"), 30*time.Second)
	t.Logf("%d simulated instances in service in %s", n, time.Since(start).Round(time.Millisecond))

	plan := fmt.Sprintf(`change: sim-100
group: gitter-ws
image: ami-new
aws: {region: us-east-1, endpoint: %s}
warm_up: 200ms
healthy_timeout: 30s
drain: {window: 500ms, max_rate: 20000, deadline: 10s}
checks:
  - {name: errors, interval: 200ms, metric: {name: wsfleet_errors_total, labels: {code: "500"}, max_increase: 0}}
phases:
  - {name: batch 1, replace: 25%%, bake: 200ms}
  - {name: batch 2, replace: 25%%, bake: 200ms}
  - {name: batch 3, replace: 25%%, bake: 200ms}
  - {name: batch 4, replace: rest, bake: 200ms}
rollback: {on_failure: auto}
`, e.api)
	nodes := &rollout.HTTPNodes{Token: simToken}
	events, err := rollout.OpenEventLog(e.stateDir, "sim-100", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	eng := &rollout.Engine{
		Provider: p,
		Nodes:    nodes,
		Checker:  &rollout.Checker{MetricsURL: nodes.MetricsURL},
		Store:    &rollout.Store{Dir: e.stateDir},
		Events:   events,
		Log:      logger,
		MinPoll:  50 * time.Millisecond,
		MaxPoll:  200 * time.Millisecond,
	}
	t0 := time.Now()
	st, err := eng.Start(ctx, []byte(plan))
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	t.Logf("rollout of %d simulated instances in %s", n, time.Since(t0).Round(time.Millisecond))
	if st = e.load(t, "sim-100"); st.Status != rollout.StatusSucceeded {
		t.Fatalf("status %s: %s", st.Status, st.Failure)
	}
	waitSimFleet(t, e, "ami-new", want("ami-new"), 10*time.Second)

	var replaced int
	for _, ph := range st.Phases {
		replaced += len(ph.Replaced)
		if len(ph.Checks) == 0 {
			t.Errorf("phase %s ran no checks", ph.Name)
		}
	}
	if replaced != n {
		t.Errorf("%d instances replaced, want %d", replaced, n)
	}
	// Every old node was drained through its admin API, and terminated
	// because it reported itself empty (its connections released over the
	// 500ms window), not because its drain was overdue: that takes the
	// deadline and a grace, 12s. (The first drained node of a batch waits
	// for the other 24 drain requests too.)
	drained := map[string]time.Time{}
	var slowest time.Duration
	for _, j := range st.Journal {
		switch {
		case j.Status != "done":
		case j.Effect.Kind == rollout.EffDrain:
			drained[j.Effect.ID] = j.At
		case len(j.Effect.TerminatedIDs()) > 0:
			for _, id := range j.Effect.TerminatedIDs() {
				at, ok := drained[id]
				if !ok {
					t.Errorf("%s terminated without a drain", id)
					continue
				}
				slowest = max(slowest, j.At.Sub(at))
			}
		}
	}
	if len(drained) != n {
		t.Errorf("%d nodes drained, want %d", len(drained), n)
	}
	// Not a timing tolerance: the engine terminates a node that has not
	// reported itself empty only once deadline+grace (10s + 2s) has
	// passed, so a termination sooner than that was one for emptiness.
	if overdue := 12 * time.Second; slowest >= overdue {
		t.Errorf("a node was terminated %s after its drain began (overdue at %s): it never reported itself empty", slowest, overdue)
	}
	t.Logf("longest drain, from the request to the termination: %s", slowest.Round(time.Millisecond))
	terms := e.terminations(t)
	if len(terms) != n {
		t.Errorf("%d instances terminated, want %d", len(terms), n)
	}
	for id, k := range terms {
		if k != 1 {
			t.Errorf("%s terminated %d times", id, k)
		}
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// waitSimFleet waits until the group's live instances are exactly want
// (e2e.fleet's "name:image:health " list).
func waitSimFleet(t *testing.T, e *e2e, image, want string, d time.Duration) {
	t.Helper()
	p := e.provider(t)
	deadline := time.Now().Add(d)
	for {
		got, err := e.fleet(p)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet not all %s within %s: %v\n%.500s", image, d, err, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

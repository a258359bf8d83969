package rollout_test

// The rollout at scale: a group of 1,000 simulated instances in the local
// cloud (in this process; simnode.go answers for their nodes), replaced
// in ten batches of 10 % with no imposed wait, by the engine run as a
// `wsfleet rollout` process (so that its peak RSS is its own), with AWS's
// request token buckets on (localcloud.Faults.Buckets). It measures and
// prints: wall time, API calls per instance by action as the cloud
// counted them, throttles met, the engine's peak RSS and the stored
// state's size. It asserts the outcome (succeeded, every instance on the
// new image), never the figures: `make bench-rollout` runs it
// (WSFLEET_BENCH_ROLLOUT=1; WSFLEET_BENCH_N overrides the size), and
// docs/rollout.md keeps its last result.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wsfleet/internal/simcloud"
	"wsfleet/localcloud"
	"wsfleet/rollout"
)

func TestBenchRollout1000(t *testing.T) {
	if os.Getenv("WSFLEET_BENCH_ROLLOUT") == "" {
		t.Skip("a benchmark: make bench-rollout (WSFLEET_BENCH_ROLLOUT=1)")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("WSFLEET_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ws-%04d", i+1)
	}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: simToken, DeregistrationDelay: 10, Logger: logger})
	dir := t.TempDir()
	e := &e2e{dir: dir, bin: suite.Binary(t), api: cloud.Endpoint(), stateDir: filepath.Join(dir, "state")}
	want := func(image string) string {
		var s strings.Builder
		for _, name := range names {
			fmt.Fprintf(&s, "%s:%s:healthy ", name, image)
		}
		return s.String()
	}
	waitSimFleet(t, e, "ami-old", want("ami-old"), 2*time.Minute)

	var phases strings.Builder
	for i := 1; i <= 10; i++ {
		r := "10%"
		if i == 10 {
			r = "rest"
		}
		fmt.Fprintf(&phases, "  - {name: batch %d, replace: %s}\n", i, r)
	}
	planPath := filepath.Join(dir, "bench.yaml")
	plan := fmt.Sprintf(`change: bench-%d
group: gitter-ws
image: ami-new
aws: {region: us-east-1, endpoint: %s}
warm_up: 1ms
healthy_timeout: 5m
drain: {window: 0s, max_rate: 100000, deadline: 10s}
checks:
  - {name: errors, interval: 2s, metric: {name: wsfleet_errors_total, labels: {code: "500"}, max_increase: 0}}
phases:
%srollback: {on_failure: auto}
`, n, e.api, phases.String())
	if err := os.WriteFile(planPath, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}

	// AWS's request token buckets from here on: the engine meets them.
	cloud.SetFaults(localcloud.Faults{Buckets: true})
	callsBefore := cloud.ActionCalls()
	cmd := exec.CommandContext(ctx, e.bin, "rollout", "-f", planPath, "--state-dir", e.stateDir,
		"--poll", "100ms", "--max-poll", "1s", "--json")
	cmd.Env = append(os.Environ(), "WSFLEET_ADMIN_TOKEN="+simToken)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	cloud.SetFaults(localcloud.Faults{})
	if err != nil {
		t.Fatalf("rollout: %v\n%s", err, tail(out.String(), 30))
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024 // kilobytes on Linux
	}
	change := fmt.Sprintf("bench-%d", n)
	st := e.load(t, change)
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("status %s: %s", st.Status, st.Failure)
	}
	waitSimFleet(t, e, "ami-new", want("ami-new"), time.Minute)
	if o := e.orphans(t); len(o) > 0 {
		t.Errorf("%d instances detached and left running: %v", len(o), o[:min(len(o), 10)])
	}
	if keep := os.Getenv("WSFLEET_BENCH_KEEP"); keep != "" {
		data, _ := os.ReadFile(rollout.EventLogPath(e.stateDir, change))
		os.WriteFile(keep, data, 0o644)
	}
	stateBytes := stateSize(t, e.stateDir, change)
	db, _ := os.Stat(filepath.Join(e.stateDir, "rollouts.db"))

	calls := cloud.ActionCalls()
	var actions []string
	total := 0
	for a, v := range calls {
		calls[a] = v - callsBefore[a]
		if calls[a] > 0 {
			actions = append(actions, a)
			total += calls[a]
		}
	}
	sort.Slice(actions, func(i, j int) bool { return calls[actions[i]] > calls[actions[j]] })
	var b strings.Builder
	fmt.Fprintf(&b, "rollout of %d simulated instances, 10 batches of 10%%, no imposed wait, AWS token buckets on\n", n)
	fmt.Fprintf(&b, "| figure | value | target |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| wall time | %s | ≤ 2m |\n", wall.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| API calls per instance | %.2f (%d calls) | ≤ 10 |\n", float64(total)/float64(n), total)
	fmt.Fprintf(&b, "| engine peak RSS | %.1f MB | ≤ 200 MB |\n", float64(rss)/1e6)
	fmt.Fprintf(&b, "| stored state | %d bytes JSON (%d-byte database) | |\n", stateBytes, db.Size())
	fmt.Fprintf(&b, "| journal entries | %d | |\n", len(st.Journal))
	var faults []string
	for k, v := range cloud.FaultCounts() {
		faults = append(faults, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(faults)
	fmt.Fprintf(&b, "| throttles met | %s | met and handled |\n", orNone(strings.Join(faults, ", ")))
	fmt.Fprintf(&b, "\n| action | calls | per instance |\n|---|---|---|\n")
	for _, a := range actions {
		fmt.Fprintf(&b, "| %s | %d | %.2f |\n", a, calls[a], float64(calls[a])/float64(n))
	}
	t.Logf("\n%s", b.String())
	if path := os.Getenv("WSFLEET_BENCH_REPORT"); path != "" {
		os.WriteFile(path, []byte(b.String()), 0o644)
	}
}

// stateSize is the size of a change's stored state, as the store
// encodes it (JSON).
func stateSize(t *testing.T, dir, change string) int {
	st, err := (&rollout.Store{Dir: dir}).Load(change)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return len(data)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

//go:build !race

package ui_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDashboardScaleEngine follows in Chromium the engine itself replacing
// a simulated group of 1,000 instances on the local cloud (WSFLEET_UI_SCALE_N
// for another size) in ten batches of 10 %, where TestDashboardScale writes
// a simulated state: the page must show the 1,000, then end where the change
// ends (succeeded, the 1,000 in service on the new image, the same total of
// connections as the final state). The render times and the server's
// updates and bytes are logged, not asserted. It takes minutes, so it runs
// only with WSFLEET_UI_SCALE_ENGINE=1 (make test-ui-scale), and not under
// -race, which makes the engine at this size too slow for a test of the page.
func TestDashboardScaleEngine(t *testing.T) {
	n, err := strconv.Atoi(cmp.Or(os.Getenv("WSFLEET_UI_SCALE_N"), "1000"))
	switch {
	case os.Getenv("WSFLEET_UI_SCALE_ENGINE") == "":
		t.Skip("minutes long: make test-ui-scale (WSFLEET_UI_SCALE_ENGINE=1)")
	case err != nil || n < 10:
		t.Fatalf("WSFLEET_UI_SCALE_N=%q: want 10 instances or more", os.Getenv("WSFLEET_UI_SCALE_N"))
	}
	chromium, node := browserTools(t)
	dir := artefacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	r := newRig(t, ctx, n)
	const change = "ui-scale-engine"
	// Nine tenths, then the rest: the phases of make bench-rollout.
	phases := ""
	for i := range 9 {
		phases += fmt.Sprintf("  - {name: tenth %d, replace: 10%%}\n", i+1)
	}
	plan := r.plan(change, "warm_up: 0s\nhealthy_timeout: 5m\ndrain: {window: 0s, deadline: 10s}\n"+
		"checks:\n  - {name: errors, interval: 2s, metric: {name: wsfleet_errors_total, labels: {code: \"500\"}, max_increase: 0}}\n"+
		"phases:\n%s  - {name: the rest, replace: rest}\n", phases)
	t0 := time.Now()
	done := r.start(t, ctx, change, plan)
	res := drive(t, ctx, chromium, node, func(q string) error { return fmt.Errorf("unexpected question %q", q) },
		"engine", r.url, dir, strconv.Itoa(n), "1200")
	if err := <-done; err != nil {
		t.Fatalf("the engine: %v", err)
	}
	t.Logf("%d instances replaced by the engine in %s: %s", n, time.Since(t0).Round(time.Second), res)
	st, _, err := r.status(change)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, nd := range st.Nodes {
		total += nd.Connections
	}
	if !strings.Contains(res, fmt.Sprintf(`"connections":%d,`, total)) {
		t.Errorf("the page ends with other connections than the state's %d: %s", total, res)
	}
	stats := r.srv.Stats()
	t.Logf("server: %d updates, %d bytes (%d an update on average; snapshots to new pages not counted), %d slow streams dropped",
		stats.Updates, stats.Bytes, stats.Bytes/int64(max(stats.Updates, 1)), stats.Dropped)
}

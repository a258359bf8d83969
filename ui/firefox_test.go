package ui_test

// The dashboard in Firefox: Debian's firefox-esr, headless, driven over
// WebDriver BiDi by puppeteer-core (ui/web's lock file) from
// ui/web/e2e/firefox.mjs, against the same rig as the Chromium test (a
// rollout the engine runs here on simulated instances). Playwright cannot
// drive a stock Firefox, hence the second library.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wsfleet/rollout"
)

// firefoxTools returns Firefox's and node's paths, or fails the test
// naming what installs them. $WSFLEET_FIREFOX overrides the lookup.
func firefoxTools(t *testing.T) (firefox, node string) {
	t.Helper()
	var missing []string
	firefox = os.Getenv("WSFLEET_FIREFOX")
	if firefox == "" {
		for _, name := range []string{"firefox-esr", "firefox"} {
			if p, err := exec.LookPath(name); err == nil {
				firefox = p
				break
			}
		}
	}
	if firefox == "" {
		missing = append(missing, "firefox-esr (Debian package)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat(filepath.Join("web", "node_modules", "puppeteer-core", "package.json")); err != nil {
		missing = append(missing, "ui/web/node_modules with puppeteer-core (npm ci in ui/web)")
	}
	if len(missing) > 0 {
		t.Fatalf("the dashboard's Firefox test needs %s: run scripts/test-deps.sh", strings.Join(missing, ", "))
	}
	return firefox, node
}

// TestDashboardFirefox follows a rollout of 6 simulated instances through
// three phases in headless Firefox: the phases become current in turn,
// the table ends on the new image, the check's verdict shows, a wrong
// token is refused, the keyboard opens a confirmation that Escape
// cancels and then confirms a pause the engine takes. A screenshot of
// each phase is kept as with Chromium (WSFLEET_ARTIFACTS).
func TestDashboardFirefox(t *testing.T) {
	firefox, node := firefoxTools(t)
	dir := artefacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	const size = 6
	r := newRig(t, ctx, size)
	const change = "ui-firefox"
	plan := r.plan(change, `warm_up: 200ms
healthy_timeout: 30s
drain: {window: 500ms, max_rate: 1000, deadline: 10s}
checks:
  - {name: errors, interval: 300ms, metric: {name: wsfleet_errors_total, labels: {code: "500"}, max_increase: 0}}
phases:
  - {name: canary, replace: 1, bake: 3s, deadline: 2m}
  - {name: half, replace: 50%%, bake: 1s}
  - {name: rest, replace: rest, bake: 1s}
rollback: {on_failure: auto}
`)
	// Firefox takes seconds to start: the engine starts once it has.
	done := make(chan (<-chan error), 1)
	answer := func(q string) error {
		if q == "started" {
			done <- r.start(t, ctx, change, plan)
			return nil
		}
		return r.engineAnswers(change)(q)
	}
	res := runScript(t, ctx, node, "firefox.mjs", "FIREFOX="+firefox, answer, "follow", r.url, uiToken, dir, strconv.Itoa(size))
	t.Logf("result: %s", res)
	if t.Failed() {
		cancel() // the engine's outcome says why the page did not follow it
	}
	select {
	case outcome := <-done:
		if err := <-outcome; err != nil {
			t.Fatalf("rollout: %v", err)
		}
	default:
		t.Fatal("the browser script never asked for the rollout to start")
	}
	if st, _, err := r.status(change); err != nil || st.Status != rollout.StatusSucceeded {
		t.Fatalf("the change ended %v, %v", st, err)
	}
}

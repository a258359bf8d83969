package ui_test

// The dashboard in Firefox: Debian's firefox-esr, headless, driven over
// WebDriver BiDi by puppeteer-core (ui/web's lock file) from
// ui/web/e2e/firefox.mjs, against the same rig as the Chromium test (a
// rollout the engine runs here on simulated instances). Playwright cannot
// drive a stock Firefox, hence the second library.

import (
	"context"
	"strconv"
	"testing"
	"time"

	"wsfleet/rollout"
)

// firefoxTools returns Firefox's and node's paths, or fails the test
// naming what installs them. $WSFLEET_FIREFOX overrides the lookup.
func firefoxTools(t *testing.T) (firefox, node string) {
	t.Helper()
	return findTools(t, "WSFLEET_FIREFOX", "firefox-esr", []string{"firefox-esr", "firefox"}, "puppeteer-core")
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
	plan := r.threePhases(change, 500*time.Millisecond, 3*time.Second, "")
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

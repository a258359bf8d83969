package rollout_test

// The rollout under AWS's faults, end to end: the local cloud throttles,
// answers 5xx, drops connections and reads writes back late, and then
// refuses every call for an outage. WSFLEET_FAULTS_FULL=1 (make
// test-faults) runs the seed's three-phase plan and a 60 s outage with
// the engine's default retry bounds; the default is a two-instance plan
// and a short outage with tight bounds, to stay fast.

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wsfleet/rollout"
)

// The faults of the run, as `wsfleet cloud` flags and as the admin call's
// JSON: 2 % throttled, 1 % 5xx, 1 % dropped, half the writes read back
// late by up to 2 s, and AWS's request token buckets.
var (
	runFaultFlags = []string{"--fault-seed", "17", "--fault-buckets", "--fault-throttle", "0.02", "--fault-5xx", "0.01",
		"--fault-drop", "0.01", "--fault-stale", "0.5", "--fault-stale-delay", "2s"}
	runFaultsJSON = `{"seed": 17, "buckets": true, "throttle": 0.02, "errors": 0.01, "drop": 0.01, "stale": 0.5, "stale_delay": "2s"}`
	outageJSON    = `{"seed": 18, "errors": 1}`
)

// setFaults sets the cloud's faults through its admin path.
func (e *e2e) setFaults(t *testing.T, body string) string {
	t.Helper()
	resp, err := http.Post(e.api+"/_wsfleet/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("set faults %s: %d %s", body, resp.StatusCode, b.String())
	}
	return b.String()
}

func TestE2EFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cloud with 8 ws nodes")
	}
	parallelShared(t)
	full := os.Getenv("WSFLEET_FAULTS_FULL") == "1"
	outage := 3 * time.Second
	if full {
		outage = 60 * time.Second
	}
	start := time.Now()
	e := startCloud(t, runFaultFlags...)
	t.Logf("cloud with 8 nodes up in %s", time.Since(start).Round(time.Millisecond))

	t.Run("plan completes under faults, zero loss", func(t *testing.T) {
		body := "image: ami-new\nphases:\n  - {name: two, replace: [ws-01, ws-02]}\n"
		if full {
			body = `image: ami-new
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest, not_before: "2019-08-21T06:00:00Z"}
`
		}
		before := e.terminations(t)
		t0 := time.Now()
		cmd := e.engine("rollout", "-f", e.writePlan("faults-new", 0, body))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started(t, cmd)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("rollout under faults: %v\n%s", err, tail(out.String(), 30))
		}
		e.succeededWithoutLoss(t, "faults-new")
		for id, n := range e.terminations(t) {
			if n-before[id] > 1 {
				t.Errorf("%s terminated %d times", id, n-before[id])
			}
		}
		t.Logf("completed in %s; faults met: %s", time.Since(t0).Round(time.Second), e.setFaults(t, runFaultsJSON))
	})

	t.Run("outage stops the engine cleanly, resume finishes", func(t *testing.T) {
		body := "image: ami-new\nphases:\n  - {name: two more, replace: [ws-03, ws-04]}\n"
		if full {
			body = "image: ami-old\nphases:\n  - {name: first half, replace: 4}\n  - {name: second half, replace: rest}\n"
		}
		plan := e.writePlan("faults-outage", 1000000, body)
		args := []string{"rollout", "-f", plan}
		if !full {
			// Tight bounds, so that the engine gives up within the
			// short outage; the full run keeps the defaults.
			args = append(args, "--aws-max-attempts", "3", "--aws-max-backoff", "200ms", "--aws-confirm-timeout", "5s")
		}
		before := e.terminations(t)
		cmd := e.engine(args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started(t, cmd)
		waitEvent(t, filepath.Join(e.stateDir, "faults-outage.events.jsonl"), `"effect":"drain/`, 90*time.Second)
		e.setFaults(t, outageJSON)
		outageStart := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(outage + 3*time.Minute):
			t.Fatalf("the engine did not stop within %s of the outage\n%s", outage+3*time.Minute, tail(out.String(), 20))
		}
		stopped := time.Since(outageStart)
		msg := out.String()
		if err == nil || !strings.Contains(msg, "stopped") || !strings.Contains(msg, "wsfleet resume -c faults-outage") ||
			!(strings.Contains(msg, "InternalFailure") || strings.Contains(msg, "ServiceUnavailable") || strings.Contains(msg, "InternalError")) {
			t.Fatalf("engine under the outage: %v, want a stop naming the AWS error and resume\n%s", err, tail(msg, 20))
		}
		st := e.load(t, "faults-outage")
		if st.Status.Final() || st.Status == rollout.StatusFailed || st.Rollback {
			t.Fatalf("status %s (rollback %v) after the outage: %s", st.Status, st.Rollback, st.Failure)
		}
		t.Logf("engine stopped %s into the outage: %s", stopped.Round(time.Millisecond), stopLine(msg))
		// A resume while the cloud still refuses stops as cleanly.
		if stopped < outage-2*time.Second {
			res := e.engine(append([]string{"resume", "-c", "faults-outage"}, args[3:]...)...)
			rmsg, rerr := res.CombinedOutput()
			if rerr == nil {
				t.Fatalf("resume during the outage succeeded:\n%s", tail(string(rmsg), 10))
			}
			if st := e.load(t, "faults-outage"); st.Status.Final() || st.Rollback {
				t.Fatalf("resume during the outage left status %s", st.Status)
			}
			t.Logf("resume during the outage: %s", stopLine(string(rmsg)))
		}
		if left := outage - time.Since(outageStart); left > 0 {
			time.Sleep(left)
		}
		e.setFaults(t, runFaultsJSON)
		e.resumeOK(t, "faults-outage")
		if full {
			e.waitFleet(t, "ami-old", 60*time.Second)
		} else {
			p := e.provider(t)
			deadline := time.Now().Add(60 * time.Second)
			for {
				got, err := e.fleet(p)
				if err == nil && strings.Contains(got, "ws-03:ami-new:healthy") && strings.Contains(got, "ws-04:ami-new:healthy") && strings.Count(got, ":healthy") == 8 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("fleet after resume: %s %v", got, err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		for id, n := range e.terminations(t) {
			if n-before[id] > 1 {
				t.Errorf("%s terminated %d times", id, n-before[id])
			}
		}
		t.Logf("faults met over the test: %s", e.setFaults(t, runFaultsJSON))
	})
	t.Logf("e2e under faults %s", time.Since(start).Round(time.Second))
}

// stopLine is the line of an engine's output that says why it stopped
// (its other lines may say that freeing the lock failed too).
func stopLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "stopped") {
			return l
		}
	}
	return tail(s, 1)
}

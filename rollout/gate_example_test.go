package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// alwaysCheck is a kind of check made up for this test, written as a new
// kind is: its plan keys (`always: {pass: true, pre_check: fail}`), their
// validation, its line in the rendered plan and its gate. With the one
// line that registers it, that is all a kind needs.
type alwaysCheck struct {
	Pass bool   `yaml:"pass"`
	Pre  string `yaml:"pre_check"` // pass (default) or fail

	calls *gateCalls // what the engine asked of its gates, for the test
}

type gateCalls struct{ begun, evaluated, ended, prechecked atomic.Int32 }

// registerAlways registers the kind for one test: one line, as in
// gateKinds. It counts the calls of every gate made from it.
func registerAlways(t *testing.T) *gateCalls {
	calls := &gateCalls{}
	RegisterGate(GateKind{Key: "always", Spec: func() GateSpec { return &alwaysCheck{calls: calls} }})
	t.Cleanup(func() { unregisterGate("always") })
	return calls
}

func (a *alwaysCheck) Validate(at func(key, format string, args ...any)) {
	switch a.Pre {
	case "":
		a.Pre = "pass"
	case "pass", "fail":
	default:
		at("pre_check", "%q; valid: pass, fail", a.Pre)
	}
}

func (a *alwaysCheck) Describe() string { return fmt.Sprintf("always says pass: %v", a.Pass) }

func (a *alwaysCheck) Gate() Gate { return alwaysGate{a} }

type alwaysGate struct{ *alwaysCheck }

func (g alwaysGate) Begin(context.Context, PhaseEnv) error {
	g.calls.begun.Add(1)
	return nil
}

func (g alwaysGate) Evaluate(_ context.Context, env PhaseEnv) GateResult {
	g.calls.evaluated.Add(1)
	return GateResult{Pass: g.Pass, Detail: fmt.Sprintf("%d new, %d old instances", len(env.New()), len(env.Old()))}
}

func (g alwaysGate) End(context.Context, PhaseEnv) *GateResult {
	g.calls.ended.Add(1)
	return &GateResult{Pass: g.Pass, Detail: "at the end of the phase"}
}

func (g alwaysGate) PreCheck(context.Context, PhaseEnv) GateResult {
	g.calls.prechecked.Add(1)
	return GateResult{Pass: g.Pre == "pass", Detail: "pre_check: " + g.Pre}
}

// TestGateKindInOneFile registers the made-up kind and runs plans that
// use it: its keys are parsed and validated by its own code, its gate
// gates every phase, and its pre-check runs once before any change.
func TestGateKindInOneFile(t *testing.T) {
	calls := registerAlways(t)
	plan := func(check string) []byte {
		return []byte(strings.Replace(string(seedPlan("http://unused", "launch-before-terminate")),
			"  - {name: site, http: {url: http://unused, status: 200}}", check, 1))
	}
	spec := func(t *testing.T, p *Plan) *alwaysCheck {
		t.Helper()
		a, ok := p.Checks[0].Spec.(*alwaysCheck)
		if !ok {
			t.Fatalf("check decoded as %T", p.Checks[0].Spec)
		}
		return a
	}

	t.Run("passes: every phase gated", func(t *testing.T) {
		h := newHarness(t)
		h.cloud.floor = 8
		data := plan("  - {name: yes, always: {pass: true}}")
		p, err := ParsePlan(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Checks[0].Describe(); got != "always says pass: true" {
			t.Errorf("described as %q", got)
		}
		if a := spec(t, p); a.Pre != "pass" {
			t.Errorf("pre_check default %q, want pass", a.Pre)
		}
		*calls = gateCalls{}
		st, err := h.engine().Start(context.Background(), data)
		if err != nil || st.Status != StatusSucceeded {
			t.Fatalf("rollout: %v, status %s", err, st.Status)
		}
		// Three phases, each begun and ended once; checked at each check
		// step, before each batch drains, and on the interval between.
		if b, en := calls.begun.Load(), calls.ended.Load(); b != 3 || en != 3 {
			t.Errorf("begun %d, ended %d; want 3 each", b, en)
		}
		if n := calls.evaluated.Load(); n < 6 {
			t.Errorf("evaluated %d times, want at least 6", n)
		}
		if n := calls.prechecked.Load(); n != 1 {
			t.Errorf("pre-checked %d times, want 1", n)
		}
		for _, ph := range st.Phases {
			if len(ph.Checks) != 1 || ph.Checks[0].Name != "yes" || !ph.Checks[0].Pass {
				t.Errorf("phase %s checks %+v", ph.Name, ph.Checks)
			}
		}
		h.checkInvariants()
	})

	t.Run("fails: the canary rolls back, and the rollback's check fails too", func(t *testing.T) {
		h := newHarness(t)
		h.cloud.floor = 8
		st, err := h.engine().Start(context.Background(), plan("  - {name: no, always: {pass: false}}"))
		// Every effect of the rollback happened: it is rolled back, with
		// the check still failing (the fault is not the new image's).
		if !errors.Is(err, ErrFailed) || st.Status != StatusRolledBack {
			t.Fatalf("rollout: %v, status %s", err, st.Status)
		}
		// The canary phase's first round fails it; in the rollback, the
		// phase's image is the old one: eight instances on it, none else.
		if !strings.HasPrefix(st.Failure, "check no: ") || !strings.HasSuffix(st.Failure, "; rolled back, but after the rollback check no: 8 new, 0 old instances (still failing: the fault may not be the new image)") {
			t.Errorf("failure %q", st.Failure)
		}
		if st.StillFailing != "check no: 8 new, 0 old instances" {
			t.Errorf("still failing %q", st.StillFailing)
		}
		if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
			t.Errorf("fleet\n got %s\nwant %s", got, want)
		}
		// The rollback went on to its resume: nothing left suspended,
		// protected or locked.
		h.checkInvariants()
	})

	t.Run("pre-check fails: nothing changes", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.engine().Start(context.Background(), plan("  - {name: pre, always: {pass: true, pre_check: fail}}"))
		if err == nil || !strings.Contains(err.Error(), "check pre: pre-check failed before any change: pre_check: fail") {
			t.Fatalf("err = %v", err)
		}
		if h.cloud.version != 1 || h.cloud.tags[LockTag] != "" || h.cloud.calls["SuspendProcesses"] != 0 {
			t.Error("a refused rollout touched the group")
		}
	})

	t.Run("its keys are validated by its own code", func(t *testing.T) {
		for _, tc := range []struct{ check, want string }{
			{"  - {name: bad, always: {pass: true, pre_check: maybe}}", `line 8: checks[0].always.pre_check: "maybe"; valid: pass, fail`},
			{"  - {name: typo, always: {pas: true}}", `line 8: checks[0].always.pas: unknown key; did you mean "pass"? valid keys here: pass, pre_check`},
			// every registered kind, in gateKinds' order, the made-up one last
			{"  - {name: two, always: {pass: true}, http: {url: http://a/}}", "line 8: checks[0]: a check has exactly one of " + strings.Join(gateKeys(), ", ") + " (found 2)"},
			{"  - {name: kind, alway: {pass: true}}", `line 8: checks[0].alway: unknown key; did you mean "always"? valid keys here: name, interval, ` + strings.Join(gateKeys(), ", ")},
		} {
			_, err := ParsePlan(plan(tc.check))
			if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s:\nerr  %v\nwant %s", tc.check, err, tc.want)
			}
		}
	})
}

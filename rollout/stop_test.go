package rollout

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// flakyGroup is the harness's cloud with Group calls that fail on demand:
// failAt counts down the Group calls and fails the one that reaches zero.
type flakyGroup struct {
	processView
	failAt atomic.Int32 // 0: never
	lbErr  error        // LoadBalancerURL's error
}

var errInjected = errors.New("injected: service unavailable")

func (f *flakyGroup) Group(ctx context.Context, name string) (Group, error) {
	if f.failAt.Load() > 0 && f.failAt.Add(-1) == 0 {
		return Group{}, errInjected
	}
	return f.processView.Group(ctx, name)
}

func (f *flakyGroup) LoadBalancerURL(context.Context, string) (string, error) {
	return "", f.lbErr
}

// TestEngineStopsShortFreesGroup: an error the engine cannot go on with
// (the group cannot be described) leaves the state for resume and frees
// the group, and resume finishes the change.
func TestEngineStopsShortFreesGroup(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	fg := &flakyGroup{processView: e.Provider.(processView)}
	e.Provider = fg
	armed := false
	e.View = func(st *State) {
		// In the canary's bake the next Group call is the observation's.
		if !armed && st.Cursor == 4 && strings.HasPrefix(st.Waiting, "baking") {
			armed = true
			fg.failAt.Store(1)
		}
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !errors.Is(err, errInjected) || errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v, want the describe error", err)
	}
	if st.Status != StatusRunning {
		t.Errorf("status %s, want running (left for resume)", st.Status)
	}
	if v := h.cloud.tags[LockTag]; v != "" {
		t.Fatalf("the engine stopped and kept the group locked: %s", v)
	}
	saved, err := e.Store.Load(st.Change)
	if err != nil || saved.Cursor != 4 {
		t.Fatalf("saved state at step %d (%v), want 4", saved.Cursor, err)
	}
	st, err = h.engine().Resume(context.Background(), st.Change, false)
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("resume: %v, status %s", err, st.Status)
	}
	h.checkInvariants()
}

// TestEngineResumeGivesUpFreesGroup: a resume that fails after taking the
// lock (here, the rollback it was asked for cannot describe the group)
// frees the group before it returns.
func TestEngineResumeGivesUpFreesGroup(t *testing.T) {
	h := newHarness(t)
	e := h.engine()
	e.Crash = func(p string) bool { return strings.HasPrefix(p, "after:f3:") }
	if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("first run: %v", err)
	}
	r := h.engine()
	fg := &flakyGroup{processView: r.Provider.(processView)}
	fg.failAt.Store(3) // the lock reads the group twice; then the rollback
	r.Provider = fg
	_, err := r.Resume(context.Background(), "gitter-ws-new-ami", true)
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "rollback: describe group") {
		t.Fatalf("resume: %v, want the rollback's describe error", err)
	}
	if v := h.cloud.tags[LockTag]; v != "" {
		t.Fatalf("resume returned with the group locked: %s", v)
	}
}

// TestEngineLoadBalancerErrorNamed: a probe check with no url asks the
// provider for the load balancer; its error is the failure's cause,
// rather than "the provider knows no load balancer".
func TestEngineLoadBalancerErrorNamed(t *testing.T) {
	h := newHarness(t)
	e := h.engine()
	e.Checker = &Checker{Prober: failProber{}}
	e.Provider = &flakyGroup{processView: e.Provider.(processView), lbErr: errors.New("describe target groups: throttled")}
	plan := strings.Replace(string(seedPlan(h.site.URL, "launch-before-terminate")),
		"  - {name: site, http: {url: "+h.site.URL+", status: 200}}", "  - {name: chat, probe: {clients: 1, rate: 1}}", 1)
	st, err := e.Start(context.Background(), []byte(plan))
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v, want ErrFailed", err)
	}
	if want := "check chat: probe has no url: load balancer of group gitter-ws: describe target groups: throttled"; !strings.HasPrefix(st.Failure, want) {
		t.Errorf("failure %q, want it to start with %q", st.Failure, want)
	}
	if v := h.cloud.tags[LockTag]; v != "" {
		t.Errorf("lock left: %s", v)
	}
}

// failProber is a prober the test never expects to start.
type failProber struct{}

func (failProber) Start(context.Context, ProbeSpec) (ProbeRun, error) {
	return nil, errors.New("the probe should not start without a url")
}

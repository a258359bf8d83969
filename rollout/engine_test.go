package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2019, 8, 19, 6, 0, 0, 0, time.UTC)

// seedPlan is the seed's change with an http check against url.
func seedPlan(url, strategy string) []byte {
	return []byte(fmt.Sprintf(`change: gitter-ws-new-ami
group: gitter-ws
image: ami-new
strategy: %s
warm_up: 30s
drain: {window: 30s, max_rate: 200, deadline: 5m}
checks:
  - {name: site, http: {url: %s, status: 200}}
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest, not_before: "2019-08-19T07:00:00Z"}
rollback: {on_failure: auto}
`, strategy, url))
}

type harness struct {
	t     *testing.T
	clk   *fakeClock
	cloud *memCloud
	dir   string
	site  *httptest.Server
	fail  atomic.Bool // the site check fails while set
	// operatorSuspended is what someone else suspended before the change.
	operatorSuspended map[string]bool
	// objs, when set, holds the state in an S3 bucket (ObjectStore)
	// instead of the directory.
	objs *hooked
}

// stateURL is where a harness with objs keeps its changes.
var stateURL = StateURL{Bucket: "wsfleet-state", Prefix: "team/changes"}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, clk: &fakeClock{t: t0}, dir: t.TempDir()}
	h.cloud = newMemCloud(h.clk.Now, 8, "ami-old")
	h.site = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.fail.Load() {
			http.Error(w, "errors", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.site.Close)
	return h
}

// processView is the cloud as one engine process sees it: its own API
// call counts, as a real provider's are.
type processView struct {
	*memCloud
	base map[string]int
}

func (p processView) APICalls() map[string]int {
	out := p.memCloud.APICalls()
	for k, v := range p.base {
		out[k] -= v
	}
	return out
}

func (h *harness) engine() *Engine {
	var store Backend = &Store{Dir: h.dir, NoSync: true}
	if h.objs != nil {
		store = NewObjectStore(h.objs, stateURL) // a new process: it has read nothing yet
	}
	return &Engine{
		Provider: processView{h.cloud, h.cloud.APICalls()}, Nodes: memNodes{h.cloud}, Checker: &Checker{},
		Store: store,
		Now:   h.clk.Now, Sleep: h.clk.Sleep,
		MinPoll: time.Second, MaxPoll: 30 * time.Second,
	}
}

// fleet summarises the group: "name:image" of live instances, sorted.
func (h *harness) fleet() []string {
	g, err := h.cloud.Group(context.Background(), "gitter-ws")
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, in := range g.Instances {
		if in.Live() {
			out = append(out, in.Name+":"+in.Image)
		}
	}
	sort.Strings(out)
	return out
}

func wantFleet(image string) []string {
	var out []string
	for i := 1; i <= 8; i++ {
		out = append(out, fmt.Sprintf("ws-%02d:%s", i, image))
	}
	return out
}

// checkInvariants fails the test on any broken promise of the engine.
func (h *harness) checkInvariants() {
	h.t.Helper()
	for id, n := range h.cloud.terminated {
		if n > 1 {
			h.t.Errorf("%s terminated %d times", id, n)
		}
	}
	for _, v := range h.cloud.violations {
		h.t.Errorf("violation: %s", v)
	}
	for _, in := range h.cloud.inst {
		if in.protected && in.lifecycle == "InService" {
			h.t.Errorf("%s (%s) left protected", in.id, in.name)
		}
	}
	if v := h.cloud.tags[LockTag]; v != "" {
		h.t.Errorf("lock left on the group: %s", v)
	}
	for p, on := range h.cloud.suspended {
		if on && !h.operatorSuspended[p] {
			h.t.Errorf("process %s left suspended", p)
		}
	}
	for p := range h.operatorSuspended {
		if !h.cloud.suspended[p] {
			h.t.Errorf("the operator's suspension of %s was resumed", p)
		}
	}
	for _, in := range h.cloud.inst {
		if in.unhealthy && in.lifecycle == "InService" {
			h.t.Errorf("%s (%s) left in service marked unhealthy", in.id, in.name)
		}
		if !in.drainAt.IsZero() && (in.lifecycle == "InService" || in.lifecycle == "Pending") {
			h.t.Errorf("%s (%s) drained and left alive", in.id, in.name)
		}
	}
	if n := h.cloud.launchedByGroup; n > 0 {
		h.t.Errorf("the group replaced %d unhealthy instances during the change", n)
	}
}

// operatorSuspends suspends processes as an operator would before the
// change; the rollout must leave them suspended.
func (h *harness) operatorSuspends(ps ...string) {
	if h.operatorSuspended == nil {
		h.operatorSuspended = map[string]bool{}
	}
	for _, p := range ps {
		h.cloud.suspended[p] = true
		h.operatorSuspended[p] = true
	}
}

func TestEngineSeedPlan(t *testing.T) {
	for _, strategy := range []string{"launch-before-terminate", "terminate-then-replace"} {
		t.Run(strategy, func(t *testing.T) {
			h := newHarness(t)
			if strategy == "launch-before-terminate" {
				h.cloud.floor = 8
			}
			e := h.engine()
			st, err := e.Start(context.Background(), seedPlan(h.site.URL, strategy))
			if err != nil {
				t.Fatalf("rollout: %v", err)
			}
			if st.Status != StatusSucceeded {
				t.Fatalf("status %s (%s)", st.Status, st.Failure)
			}
			if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
				t.Errorf("fleet\n got %s\nwant %s", got, want)
			}
			if h.cloud.desired != 8 {
				t.Errorf("desired %d, want 8", h.cloud.desired)
			}
			if n := len(h.cloud.terminated); n != 9 { // 8 old + the canary
				t.Errorf("%d instances terminated, want 9", n)
			}
			// The second half waited for its window.
			if !h.clk.Now().After(time.Date(2019, 8, 19, 7, 0, 0, 0, time.UTC)) {
				t.Errorf("ended at %s, before the second half's window", h.clk.Now())
			}
			for _, in := range h.cloud.inst {
				if in.image == "ami-old" && in.drains != 1 {
					t.Errorf("%s drained %d times, want 1", in.name, in.drains)
				}
			}
			h.checkInvariants()
			for _, ph := range st.Phases {
				if ph.Status != "done" || ph.Ended.IsZero() {
					t.Errorf("phase %s: %s", ph.Name, ph.Status)
				}
			}
		})
	}
}

func TestEngineCanaryFailsRollsBack(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	// The site breaks while a node on the new image serves.
	e.View = func(st *State) {
		bad := false
		for _, n := range st.Nodes {
			if n.Image == "ami-new" && n.State == "ready" {
				bad = true
			}
		}
		h.fail.Store(bad)
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v, want ErrFailed", err)
	}
	if st.Status != StatusRolledBack {
		t.Fatalf("status %s: %s", st.Status, st.Failure)
	}
	if !strings.Contains(st.Failure, "site") {
		t.Errorf("failure %q does not name the check", st.Failure)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	if h.cloud.version != 1 {
		t.Errorf("launch template version %d, want 1 back", h.cloud.version)
	}
	for _, in := range h.cloud.inst {
		if in.image == "ami-old" && in.lifecycle != "InService" {
			t.Errorf("old instance %s %s: rollback should reuse it", in.name, in.lifecycle)
		}
	}
	h.checkInvariants()
}

func TestEngineUnhealthyReplacementRollsBack(t *testing.T) {
	h := newHarness(t)
	h.cloud.unhealthy["ami-new"] = true
	plan := strings.Replace(string(seedPlan(h.site.URL, "launch-before-terminate")), "warm_up: 30s", "warm_up: 30s\nhealthy_timeout: 3m", 1)
	st, err := h.engine().Start(context.Background(), []byte(plan))
	if !errors.Is(err, ErrFailed) || st.Status != StatusRolledBack {
		t.Fatalf("err %v status %s", err, st.Status)
	}
	if !strings.Contains(st.Failure, "not healthy") {
		t.Errorf("failure %q", st.Failure)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
}

// TestEngineCrashAtEveryEffect kills the engine at every point around
// every effect of a clean run, resumes it, and checks that the change
// still completes with nothing repeated, nothing skipped and capacity kept;
// with the state in a directory, and in an S3 bucket.
func TestEngineCrashAtEveryEffect(t *testing.T) {
	t.Run("dir", func(t *testing.T) { testCrashAtEveryEffect(t, nil, 1) })
	t.Run("s3", func(t *testing.T) { testCrashAtEveryEffect(t, memBucket, 1) })
}

// testCrashAtEveryEffect crashes at every stride-th point, with the state
// in buckets newBucket makes (nil: in the directory).
func testCrashAtEveryEffect(t *testing.T, newBucket func(*testing.T) Objects, stride int) {
	newHarness := func(t *testing.T) *harness {
		h := newHarness(t)
		if newBucket != nil {
			h.objs = &hooked{Objects: newBucket(t)}
		}
		return h
	}
	// Count the crash points of a clean run.
	var points []string
	{
		h := newHarness(t)
		e := h.engine()
		e.Crash = func(p string) bool { points = append(points, p); return false }
		if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); err != nil {
			t.Fatal(err)
		}
	}
	if len(points) < 40 {
		t.Fatalf("only %d crash points: %v", len(points), points)
	}
	for k, point := range points {
		if raceEnabled && k%6 != 2 {
			continue // every point runs without -race; a sixth with it
		}
		if k%stride != 0 {
			continue
		}
		t.Run(fmt.Sprintf("%02d-%s", k, point), func(t *testing.T) {
			h := newHarness(t)
			h.cloud.floor = 8
			h.cloud.elbKill = 15 * time.Second
			if k%4 >= 2 { // half the points, with and without -race
				h.operatorSuspends("AZRebalance") // never resumed by the change, crash or not
			}
			e := h.engine()
			n := 0
			e.Crash = func(string) bool { n++; return n == k+1 }
			_, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
			if !errors.Is(err, ErrCrashed) {
				t.Fatalf("first run: %v, want a crash", err)
			}
			st, err := h.engine().Resume(context.Background(), "gitter-ws-new-ami", false)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if st.Status != StatusSucceeded {
				t.Fatalf("status %s", st.Status)
			}
			if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
				t.Errorf("fleet\n got %s\nwant %s", got, want)
			}
			if h.cloud.desired != 8 || len(h.cloud.terminated) != 9 {
				t.Errorf("desired %d, %d terminated", h.cloud.desired, len(h.cloud.terminated))
			}
			if n := h.cloud.calls["CreateLaunchTemplateVersion"]; len(h.cloud.versions) != 2 {
				t.Errorf("%d launch template versions after %d calls", len(h.cloud.versions), n)
			}
			// The report's call count covers both runs: at most what the
			// cloud saw (calls made after the crash's last save are lost).
			reported, seen := 0, 0
			for _, n := range st.Calls {
				reported += n
			}
			for _, n := range h.cloud.calls {
				seen += n
			}
			if reported > seen || reported < seen/2 {
				t.Errorf("report counts %d API calls, the cloud saw %d", reported, seen)
			}
			h.checkInvariants()
		})
	}
}

func TestEngineManualRollbackMidway(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	// Stop the engine once the first half has launched its replacements.
	e.Crash = func(p string) bool { return strings.Contains(p, "drain/") && h.cloud.desired == 12 }
	if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("first run: %v", err)
	}
	st, err := h.engine().Resume(context.Background(), "gitter-ws-new-ami", true)
	if !errors.Is(err, ErrFailed) || st.Status != StatusRolledBack {
		t.Fatalf("rollback: %v, status %s", err, st.Status)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
}

func TestEngineSecondRolloutRefused(t *testing.T) {
	h := newHarness(t)
	other := LockInfo{Change: "other-change", Host: "elsewhere", PID: 4242, Expires: t0.Add(time.Hour)}
	h.cloud.tags[LockTag] = other.String()
	_, err := h.engine().Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "other-change@elsewhere:4242") {
		t.Fatalf("err = %v, want ErrLocked naming the holder", err)
	}
	if h.cloud.version != 1 || h.cloud.desired != 8 {
		t.Error("a refused rollout changed the group")
	}
	// After expiry the lock is taken over.
	h.clk.t = t0.Add(2 * time.Hour)
	if _, err := h.engine().Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestEnginePauseAbort(t *testing.T) {
	h := newHarness(t)
	e := h.engine()
	var paused, aborted bool
	var pausedAt time.Time
	e.View = func(st *State) {
		if !paused && st.Cursor >= 4 {
			paused, pausedAt = true, h.clk.Now()
			if _, err := e.Store.SetControl(st.Change, "pause"); err != nil {
				t.Error(err)
			}
		}
	}
	e.Sleep = func(ctx context.Context, d time.Duration) error {
		if paused && !aborted && h.clk.Now().Sub(pausedAt) > 10*time.Minute {
			aborted = true
			st, err := e.Store.Load("gitter-ws-new-ami")
			if err != nil || st.Status != StatusPaused {
				t.Errorf("while paused: status %v, %v", st.Status, err)
			}
			if cur := st.Cursor; cur != 4 && cur != 5 {
				t.Errorf("paused engine moved on to step %d", cur)
			}
			if _, err := e.Store.SetControl("gitter-ws-new-ami", "abort"); err != nil {
				t.Error(err)
			}
		}
		return h.clk.Sleep(ctx, d)
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusAborted || !paused || !aborted {
		t.Fatalf("status %s paused %v aborted %v", st.Status, paused, aborted)
	}
	if h.cloud.tags[LockTag] != "" {
		t.Error("abort left the lock")
	}
}

// TestEngineSuspendsReplacement: a draining node fails its readiness and
// the group marks it unhealthy (ELB health checks); the engine has
// suspended ReplaceUnhealthy and AZRebalance, so the group replaces
// nothing it drains, and every drained node leaves by the engine's own
// terminate once empty. An operator's earlier suspension of AZRebalance
// is kept as it was.
func TestEngineSuspendsReplacement(t *testing.T) {
	for _, tc := range []struct {
		name     string
		operator []string
		want     []string // processes the change suspends and resumes
	}{
		{"clean group", nil, []string{"ReplaceUnhealthy", "AZRebalance"}},
		{"operator suspended AZRebalance", []string{"AZRebalance"}, []string{"ReplaceUnhealthy"}},
		{"operator suspended both", []string{"ReplaceUnhealthy", "AZRebalance"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.cloud.floor = 8
			h.cloud.elbKill = 10 * time.Second
			h.operatorSuspends(tc.operator...)
			var during []string
			e := h.engine()
			e.View = func(st *State) {
				if during == nil && len(st.Nodes) > 0 && st.Cursor == 8 {
					for p := range h.cloud.suspended {
						during = append(during, p)
					}
					sort.Strings(during)
				}
			}
			st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
			if err != nil {
				t.Fatalf("rollout: %v (%+v)", err, st)
			}
			if got, want := strings.Join(during, ","), "AZRebalance,ReplaceUnhealthy"; got != want {
				t.Errorf("suspended during the change: %s, want %s", got, want)
			}
			marked := 0
			for _, in := range h.cloud.inst {
				if in.unhealthy {
					marked++
				}
			}
			if marked == 0 {
				t.Fatal("no draining node was marked unhealthy; the test tests nothing")
			}
			if h.cloud.elbKilled != 0 {
				t.Errorf("the group replaced %d draining instances", h.cloud.elbKilled)
			}
			if st.Suspension == nil || strings.Join(st.Suspension.Ours, ",") != strings.Join(tc.want, ",") ||
				strings.Join(st.Suspension.Already, ",") != strings.Join(tc.operator, ",") || (len(tc.want) > 0 && !st.Suspension.Resumed) {
				t.Errorf("suspension %+v, want ours %v, already %v, resumed", st.Suspension, tc.want, tc.operator)
			}
			wantCalls := 0
			if len(tc.want) > 0 {
				wantCalls = 1
			}
			if n, m := h.cloud.calls["SuspendProcesses"], h.cloud.calls["ResumeProcesses"]; n != wantCalls || m != wantCalls {
				t.Errorf("%d suspend and %d resume calls, want %d each", n, m, wantCalls)
			}
			// Every target left the load balancer before its drain, once.
			if n := h.cloud.calls["DeregisterTargets"]; n != 3 { // canary retirement, two halves
				t.Errorf("%d DeregisterTargets calls, want 3", n)
			}
			if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
				t.Errorf("fleet\n got %s\nwant %s", got, want)
			}
			if n := len(h.cloud.terminated); n != 9 {
				t.Errorf("%d instances terminated, want 9 (no surplus to hand back)", n)
			}
			var replaced []string
			for _, ph := range st.Phases {
				replaced = append(replaced, ph.Replaced...)
			}
			if len(replaced) != 8 || !strings.HasPrefix(replaced[0], "ws-01 (i-0001) -> i-") {
				t.Errorf("replaced %q", replaced)
			}
			h.checkInvariants()
		})
	}
}

// TestEngineAbortUndoesSuspension: an abort in the middle of a drain
// ends the change's hold on the group: the nodes it drained are
// terminated (the group would replace them, marked unhealthy, once
// replacement resumes), and the processes it suspended resume. A crash
// in the middle of the abort is finished by resume.
func TestEngineAbortUndoesSuspension(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			h := newHarness(t)
			h.cloud.elbKill = 5 * time.Second
			h.operatorSuspends("AZRebalance")
			e := h.engine()
			sent := false
			e.View = func(st *State) {
				if !sent && st.Cursor == 8 && len(st.Steps[8].Drains) == 4 && h.clk.Now().Sub(minTime(st.Steps[8].Drains)) > 8*time.Second {
					sent = true
					if _, err := e.Store.SetControl(st.Change, "abort"); err != nil {
						t.Error(err)
					}
				}
			}
			if crash {
				e.Crash = func(p string) bool { return strings.Contains(p, "after:") && strings.Contains(p, "end-terminate/") }
			}
			st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
			if crash {
				if !errors.Is(err, ErrCrashed) {
					t.Fatalf("abort: %v, want a crash", err)
				}
				if h.cloud.suspended["ReplaceUnhealthy"] != true {
					t.Fatal("crashed abort already resumed")
				}
				st, err = h.engine().Resume(context.Background(), "gitter-ws-new-ami", false)
			}
			if err != nil || st.Status != StatusAborted {
				t.Fatalf("abort: %v, status %s", err, st.Status)
			}
			if !sent {
				t.Fatal("never reached the first half's drains")
			}
			live := 0
			for _, in := range h.cloud.inst {
				if in.lifecycle == "InService" || in.lifecycle == "Pending" {
					live++
				}
			}
			if live != 8 || h.cloud.desired != 8 {
				t.Errorf("%d live instances, desired %d, want 8", live, h.cloud.desired)
			}
			h.checkInvariants()
		})
	}
}

func minTime(m map[string]time.Time) time.Time {
	var out time.Time
	for _, t := range m {
		if out.IsZero() || t.Before(out) {
			out = t
		}
	}
	return out
}

func TestEngineMissingImageRefused(t *testing.T) {
	h := newHarness(t)
	plan := strings.Replace(string(seedPlan(h.site.URL, "launch-before-terminate")), "image: ami-new", "image: ami-0missing", 1)
	_, err := h.engine().Start(context.Background(), []byte(plan))
	if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), `line 3: image: no image "ami-0missing" exists`) {
		t.Fatalf("err = %v", err)
	}
	if h.cloud.tags[LockTag] != "" || h.cloud.version != 1 {
		t.Error("a refused plan touched the group")
	}
}

// TestEngineDetachAndResume: --detach saves and exits before the second
// half's window, leaving the group locked by the change; resume after the
// window finishes it, and nobody else can start meanwhile.
func TestEngineDetachAndResume(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	e.Detach = true
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !errors.Is(err, ErrDetached) || st.Status != StatusWaiting {
		t.Fatalf("err %v status %s", err, st.Status)
	}
	lock, ok := ParseLock(h.cloud.tags[LockTag])
	if !ok || lock.PID != 0 || lock.Change != "gitter-ws-new-ami" {
		t.Fatalf("lock while detached: %q", h.cloud.tags[LockTag])
	}
	other := "change: other\ngroup: gitter-ws\nimage: ami-new\nphases:\n  - {name: all, replace: rest}\n"
	if _, err := h.engine().Start(context.Background(), []byte(other)); !errors.Is(err, ErrLocked) {
		t.Errorf("another rollout while detached: %v", err)
	}
	if got := len(h.cloud.terminated); got != 5 { // canary + first half
		t.Errorf("%d terminated before the window, want 5", got)
	}
	h.clk.t = time.Date(2019, 8, 19, 7, 0, 1, 0, time.UTC)
	st, err = h.engine().Resume(context.Background(), "gitter-ws-new-ami", false)
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("resume: %v, %s", err, st.Status)
	}
	h.checkInvariants()
}

// TestEngineRollbackWhileRunning: `wsfleet rollback` sent to a running
// engine in the middle of the first half.
func TestEngineRollbackWhileRunning(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	sent := false
	e.View = func(st *State) {
		if !sent && st.Cursor == 8 && len(st.Steps[8].Drains) > 0 {
			sent = true
			if _, err := e.Store.SetControl(st.Change, "rollback"); err != nil {
				t.Error(err)
			}
		}
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !sent {
		t.Fatal("never reached the first half's drains")
	}
	if !errors.Is(err, ErrFailed) || st.Status != StatusRolledBack || !strings.Contains(st.Failure, "by hand") {
		t.Fatalf("err %v status %s failure %q", err, st.Status, st.Failure)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
}

func TestEnginePhaseDeadline(t *testing.T) {
	h := newHarness(t)
	h.cloud.unhealthy["ami-new"] = true
	plan := strings.Replace(string(seedPlan(h.site.URL, "launch-before-terminate")), "warm_up: 30s", "warm_up: 30s\nhealthy_timeout: 1h", 1)
	plan = strings.Replace(plan, "protect_old: true, bake: 2m}", "protect_old: true, bake: 2m, deadline: 6m}", 1)
	st, err := h.engine().Start(context.Background(), []byte(plan))
	if !errors.Is(err, ErrFailed) || !strings.Contains(st.Failure, "missed its deadline of 6m0s") {
		t.Fatalf("err %v failure %q", err, st.Failure)
	}
	if st.Status != StatusRolledBack {
		t.Errorf("status %s", st.Status)
	}
}

func TestEngineManualOnFailure(t *testing.T) {
	h := newHarness(t)
	h.cloud.unhealthy["ami-new"] = true
	plan := strings.Replace(string(seedPlan(h.site.URL, "launch-before-terminate")), "on_failure: auto", "on_failure: manual", 1)
	plan = strings.Replace(plan, "warm_up: 30s", "warm_up: 30s\nhealthy_timeout: 2m", 1)
	st, err := h.engine().Start(context.Background(), []byte(plan))
	if !errors.Is(err, ErrFailed) || st.Status != StatusFailed {
		t.Fatalf("err %v status %s", err, st.Status)
	}
	if h.cloud.tags[LockTag] != "" {
		t.Error("a stopped rollout kept the lock")
	}
	h.cloud.unhealthy["ami-new"] = false
	st, err = h.engine().Resume(context.Background(), "gitter-ws-new-ami", true)
	if st.Status != StatusRolledBack {
		t.Fatalf("manual rollback: %v %s", err, st.Status)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
}

// TestEngineDrainLongerThanDeregistrationDelay: the load balancer would
// cut a drained node's connections at the end of the target group's
// deregistration delay, before a longer drain ends; the plan is refused
// before anything changes, naming the key, its line and what would fit.
func TestEngineDrainLongerThanDeregistrationDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		scale float64
		want  string // "" for accepted
	}{
		{"delay as long as the deadline", 5 * time.Minute, 1, ""},
		{"delay shorter", time.Minute, 1, "line 6: drain.deadline: 5m0s is longer than the deregistration delay of group gitter-ws's target groups (deregistration_delay.timeout_seconds = 60)"},
		{"not scaled by the time scale: a limit, not a wait", time.Minute, 0.1, "5m0s is longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.cloud.deregDelay = tc.delay
			e := h.engine()
			e.TimeScale = tc.scale
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			e.View = func(*State) { cancel() } // accepted: stop at once
			_, err := e.Start(ctx, seedPlan(h.site.URL, "launch-before-terminate"))
			if tc.want == "" {
				if errors.Is(err, ErrInvalidPlan) {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if h.cloud.version != 1 || h.cloud.calls["SuspendProcesses"] != 0 || h.cloud.tags[LockTag] != "" {
				t.Error("a refused plan touched the group")
			}
		})
	}
}

// TestEngineRollbackReregistersKeptTargets: the engine crashes after
// taking the first half's old instances out of the load balancer, before
// draining them; a manual rollback keeps them (they never drained), so it
// puts them back in the target group and marks them healthy before
// replacement resumes.
func TestEngineRollbackReregistersKeptTargets(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	e.Crash = func(p string) bool { return strings.HasPrefix(p, "after:f8:deregister/") }
	if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("first run: %v", err)
	}
	var out []string
	for _, in := range h.cloud.inst {
		if in.image == "ami-old" && !in.registered {
			out = append(out, in.id)
			in.unhealthy = true // as the group may have marked it meanwhile
		}
	}
	if len(out) != 4 {
		t.Fatalf("%d old instances out of the load balancer, want 4", len(out))
	}
	st, err := h.engine().Resume(context.Background(), "gitter-ws-new-ami", true)
	if !errors.Is(err, ErrFailed) || st.Status != StatusRolledBack {
		t.Fatalf("rollback: %v, status %s", err, st.Status)
	}
	for _, id := range out {
		in := h.cloud.inst[id]
		if in.lifecycle != "InService" || !in.registered || in.unhealthy {
			t.Errorf("kept %s (%s): %s, registered %v, unhealthy %v", id, in.name, in.lifecycle, in.registered, in.unhealthy)
		}
	}
	if h.cloud.calls["RegisterTargets"] == 0 || h.cloud.calls["SetInstanceHealth"] == 0 {
		t.Errorf("calls %v", h.cloud.calls)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
}

// TestEngineAbortWithoutEngine: `wsfleet abort` of a rollout whose engine
// died mid-drain undoes the change's hold on the group itself.
func TestEngineAbortWithoutEngine(t *testing.T) {
	h := newHarness(t)
	h.cloud.elbKill = 5 * time.Second
	e := h.engine()
	e.Crash = func(p string) bool {
		return strings.HasPrefix(p, "after:f8:drain/") && h.cloud.calls["DeregisterTargets"] == 2
	}
	if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("first run: %v", err)
	}
	h.clk.t = h.clk.t.Add(10 * time.Second) // the group marks the draining nodes unhealthy
	st, err := h.engine().Abort(context.Background(), "gitter-ws-new-ami")
	if err != nil || st.Status != StatusAborted {
		t.Fatalf("abort: %v, status %v", err, st.Status)
	}
	// Abort leaves the batch where it was: its replacements in, the
	// drained ws-01 gone with its capacity, the three old nodes that
	// never drained back in the load balancer.
	if h.cloud.desired != 11 {
		t.Errorf("desired %d, want 11", h.cloud.desired)
	}
	for _, in := range h.cloud.inst {
		if in.image == "ami-old" && in.lifecycle == "InService" && (!in.registered || in.unhealthy) {
			t.Errorf("kept %s (%s): registered %v, unhealthy %v", in.id, in.name, in.registered, in.unhealthy)
		}
	}
	h.checkInvariants()
}

package rollout_test

// Crash points on the local cloud: the seed's plan runs as a `wsfleet
// rollout` process against the 8 real nodes of startCloud, and the test
// kills it with SIGKILL at effects taken from the event log of a clean
// run, spread over every kind of effect; half the runs meet injected
// faults (throttling, 5xx, late reads). `wsfleet resume` finishes each, and
// the test checks the outcome from the AWS API and the state: no instance
// terminated twice, no step skipped, healthy capacity never under the
// desired 8, every instance on the plan's image, the lock gone and no
// process left suspended.
//
// WSFLEET_CRASH=subset runs a few points (crashSubset); WSFLEET_CRASH=full
// (`make test-crash`) runs crashFull, WSFLEET_CRASH_KIND=KIND only the
// full set's points at effects of one kind (retire, drain, ...), and
// WSFLEET_CRASH_REPORT=FILE writes one line per point there.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"wsfleet/localcloud"
	"wsfleet/rollout"
)

const (
	crashSubset = 3
	crashFull   = 50
)

// crashPoint is where a run is killed: just after the engine logs the
// n-th effect of a kind (1-based), or after also waiting delay (the kill
// then lands in whatever the engine does next: a save, a poll, the next
// call).
type crashPoint struct {
	kind   string
	n      int
	delay  time.Duration
	faults bool
}

func (p crashPoint) String() string {
	f := ""
	if p.faults {
		f = " faults"
	}
	return fmt.Sprintf("%s#%d+%s%s", p.kind, p.n, p.delay, f)
}

// crashFaults is the fault mix of the first "Done when": 2 %
// throttling, 1 % 5xx, and reads up to 2s late after a fifth of writes.
func crashFaults(seed uint64) localcloud.Faults {
	return localcloud.Faults{Seed: seed, Throttle: 0.02, Errors: 0.01, Stale: 0.2, StaleDelay: 2 * time.Second}
}

// setFaultsTo sets the local cloud's faults through its admin path.
func (e *e2e) setFaultsTo(t *testing.T, f localcloud.Faults) {
	t.Helper()
	body, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	e.setFaults(t, string(body))
}

// crashPlan is the seed's three phases, to image, as change name.
func (e *e2e) crashPlan(name, image string) string {
	return e.writePlan(name, 1000000, fmt.Sprintf(`image: %s
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest}
`, image))
}

// fastEngine is e.engine with a smaller time scale: a run of the seed's
// plan takes seconds.
func (e *e2e) fastEngine(args ...string) *exec.Cmd {
	cmd := e.engine(args...)
	for i, a := range cmd.Args {
		if a == "--time-scale" {
			cmd.Args[i+1] = "0.01"
		}
	}
	return cmd
}

// effectEvent is one effect line of an event log.
type effectEvent struct {
	Type   string `json:"type"`
	Msg    string `json:"msg"`
	Effect string `json:"effect"`
}

// effects reads the effect events of a log, in order.
func effects(t *testing.T, path string) []effectEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []effectEvent
	for _, line := range bytes.Split(data, []byte("\n")) {
		var ev effectEvent
		if json.Unmarshal(line, &ev) == nil && ev.Type == "effect" && ev.Effect != "" && ev.Msg != "effect failed" {
			out = append(out, ev)
		}
	}
	return out
}

// choosePoints takes want crash points from a clean run's effects:
// round-robin over the kinds, so every kind comes first and then each
// kind's remaining candidates, until want are taken or none is left. A
// kind's candidates are each of its effects at its event, spread (first,
// last, then the ones between), and then each 150ms after it; every other
// point runs under faults. With the batch effects a clean run has about 26
// effects, so 50 points take nearly every (effect, moment) pair.
func choosePoints(evs []effectEvent, want int) []crashPoint {
	byKind := map[string]int{}
	var kinds []string
	for _, ev := range evs {
		if byKind[ev.Msg] == 0 {
			kinds = append(kinds, ev.Msg)
		}
		byKind[ev.Msg]++
	}
	cands := map[string][]crashPoint{}
	for _, k := range kinds {
		n := byKind[k]
		order := []int{1}
		if n > 1 {
			order = append(order, n)
		}
		for i := 2; i < n; i++ {
			order = append(order, i)
		}
		for _, delay := range []time.Duration{0, 150 * time.Millisecond} {
			for _, i := range order {
				cands[k] = append(cands[k], crashPoint{kind: k, n: i, delay: delay})
			}
		}
	}
	var pts []crashPoint
	for len(pts) < want {
		added := false
		for _, k := range kinds {
			if len(pts) >= want || len(cands[k]) == 0 {
				continue
			}
			p := cands[k][0]
			cands[k] = cands[k][1:]
			p.faults = len(pts)%2 == 1
			pts = append(pts, p)
			added = true
		}
		if !added {
			break
		}
	}
	return pts
}

// countUnreached counts the report's points the run did not reach.
func countUnreached(report []string) int {
	n := 0
	for _, r := range report {
		if strings.Contains(r, "not reached") {
			n++
		}
	}
	return n
}

// TestChoosePoints checks the choice on a clean run's effects as the
// batch effects give them (26): 50 distinct points, every kind among the
// first, each kind's first and last effect before the ones between, and
// faults on every other point.
func TestChoosePoints(t *testing.T) {
	counts := []struct {
		kind string
		n    int
	}{{"suspend-processes", 1}, {"set-image", 1}, {"protect", 1}, {"set-desired", 3}, {"tag-names", 3}, {"unprotect", 1}, {"deregister-targets", 3}, {"drain", 9}, {"retire", 3}, {"resume-processes", 1}}
	var evs []effectEvent
	for _, c := range counts {
		for range c.n {
			evs = append(evs, effectEvent{Type: "effect", Msg: c.kind})
		}
	}
	pts := choosePoints(evs, crashFull)
	if len(pts) != crashFull {
		t.Fatalf("%d points from %d effects, want %d", len(pts), len(evs), crashFull)
	}
	seen := map[crashPoint]bool{}
	for i, p := range pts {
		if p.faults != (i%2 == 1) {
			t.Errorf("point %d: faults %v", i, p.faults)
		}
		p.faults = false
		if seen[p] {
			t.Errorf("point %d (%s) chosen twice", i, p)
		}
		seen[p] = true
	}
	for i, c := range counts {
		if pts[i].kind != c.kind || pts[i].n != 1 || pts[i].delay != 0 {
			t.Errorf("point %d = %s, want %s#1 at its event", i, pts[i], c.kind)
		}
	}
	if p := pts[len(counts)+3]; p.kind != "set-desired" || p.n != 3 {
		t.Errorf("set-desired's second point = %s, want its last effect", p)
	}
	if got := choosePoints(evs, 1000); len(got) != 2*len(evs) {
		t.Errorf("every point: %d, want %d (each effect at its event and 150ms after)", len(got), 2*len(evs))
	}
}

// waitEffect waits until the event log holds the n-th effect of kind.
// It gives up when the engine exits first (the error goes back on
// exited).
func waitEffect(path, kind string, n int, d time.Duration, exited chan error) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return false
		default:
		}
		if f, err := os.Open(path); err == nil {
			seen := 0
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var ev effectEvent
				if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "effect" && ev.Msg == kind {
					seen++
				}
			}
			f.Close()
			if seen >= n {
				return true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func TestE2ECrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cloud with 8 ws nodes")
	}
	// The default suite leaves the real kill -9 points to make test-crash
	// (the in-memory TestEngineCrashAtEveryEffect crashes at every
	// effect): a cloud of 8 real nodes and a resume per point took a
	// minute and a half of CI's ten.
	want := crashSubset
	switch os.Getenv("WSFLEET_CRASH") {
	case "full":
		want = crashFull
	case "subset":
	default:
		t.Skip("kill -9 at real crash points: WSFLEET_CRASH=subset (3 points) or full (50, make test-crash)")
	}
	start := time.Now()
	e := startCloud(t)
	t.Logf("cloud with 8 nodes up in %s", time.Since(start).Round(time.Millisecond))

	// A clean run gives the effects to crash at.
	ref := e.crashPlan("crash-ref", "ami-new")
	if msg, err := e.fastEngine("rollout", "-f", ref).CombinedOutput(); err != nil {
		t.Fatalf("clean run: %v\n%s", err, tail(string(msg), 30))
	}
	e.waitFleet(t, "ami-new", 30*time.Second)
	evs := effects(t, filepath.Join(e.stateDir, "crash-ref.events.jsonl"))
	points := choosePoints(evs, want)
	if kind := os.Getenv("WSFLEET_CRASH_KIND"); kind != "" {
		// Only the points of one kind of effect, from the full set.
		var only []crashPoint
		for _, p := range choosePoints(evs, crashFull) {
			if p.kind == kind {
				only = append(only, p)
			}
		}
		points = only
	}
	kinds := map[string]int{}
	for _, ev := range evs {
		kinds[ev.Msg]++
	}
	t.Logf("clean run: %d effects %v in %s; %d crash points", len(evs), kinds, time.Since(start).Round(time.Second), len(points))
	if os.Getenv("WSFLEET_CRASH_KIND") == "" && len(points) < want {
		t.Fatalf("the clean run's %d effects give %d crash points, want %d", len(evs), len(points), want)
	}
	if len(kinds) < 9 {
		t.Fatalf("the clean run made only the effects %v", kinds)
	}

	// A point the run does not reach (fewer effects of its kind than the
	// clean run made) is replaced by the next candidate, so that want
	// points are killed; the spare candidates are every other (effect,
	// moment) pair, in choosePoints' order.
	spare := choosePoints(evs, 2*len(evs))[len(points):]
	var report []string
	image := "ami-new"
	killed := 0
	for i := 0; i < len(points); i++ {
		p := points[i]
		image = map[string]string{"ami-new": "ami-old", "ami-old": "ami-new"}[image]
		name := fmt.Sprintf("crash-%02d", i)
		reached := false
		ok := t.Run(fmt.Sprintf("%02d-%s", i, strings.ReplaceAll(p.String(), " ", "-")), func(t *testing.T) {
			var outcome string
			outcome, reached = e.crashRun(t, name, image, p, uint64(i+1))
			report = append(report, fmt.Sprintf("%02d %-34s %s", i, p, outcome))
		})
		if !ok {
			report = append(report, fmt.Sprintf("%02d %-34s FAILED", i, p))
			break // the cloud's state is unknown: stop here
		}
		if reached {
			killed++
		} else if len(spare) > 0 {
			points = append(points, spare[0])
			spare = spare[1:]
		}
	}
	t.Logf("%d crash points killed and resumed, %d not reached", killed, countUnreached(report))
	if path := os.Getenv("WSFLEET_CRASH_REPORT"); path != "" {
		os.WriteFile(path, []byte(strings.Join(report, "\n")+"\n"), 0o644)
	}
	t.Logf("crash points (%s):\n%s", time.Since(start).Round(time.Second), strings.Join(report, "\n"))
}

// crashRun runs one crash point: the plan to image, killed at p, resumed,
// checked. It returns the outcome for the report, and whether the run
// reached p (a run that made fewer effects of p's kind is checked but
// not killed).
func (e *e2e) crashRun(t *testing.T, name, image string, p crashPoint, seed uint64) (outcome string, reached bool) {
	t0 := time.Now()
	before := e.terminations(t)
	plan := e.crashPlan(name, image)
	events := rollout.EventLogPath(e.stateDir, name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fewest := e.healthySampler(t, ctx)
	if p.faults {
		e.setFaultsTo(t, crashFaults(seed))
	}
	cmd := e.fastEngine("rollout", "-f", plan)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started(t, cmd)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// How many effects of a kind a run makes depends on timing (a batch's
	// drains that end apart are retired in more than one effect), so a
	// run that succeeds before the n-th is a point not reached: checked
	// like any run, and not counted.
	reached = waitEffect(events, p.kind, p.n, 3*time.Minute, exited)
	if !reached {
		select {
		case err := <-exited:
			exited <- err
			if err != nil {
				t.Fatalf("the engine exited before effect %s #%d: %v\n%s", p.kind, p.n, err, tail(out.String(), 30))
			}
		default:
			e.setFaultsTo(t, localcloud.Faults{})
			t.Fatalf("no effect %s #%d within 3m\n%s", p.kind, p.n, tail(out.String(), 30))
		}
	}
	if reached && p.delay > 0 {
		time.Sleep(p.delay)
	}
	killed := reached && cmd.Process.Signal(syscall.SIGKILL) == nil
	err := <-exited
	st := e.load(t, name)
	outcome = fmt.Sprintf("killed at step %s", st.Steps[min(st.Cursor, len(st.Steps)-1)].Kind)
	if st.Rollback {
		outcome = "killed in the rollback"
	}
	if !killed || st.Status.Final() {
		outcome = fmt.Sprintf("ended (%s) before the kill", st.Status)
		// Killed after its end was saved is a crash point too (the
		// group was freed before); any other error is a failure.
		if ee, ok := err.(*exec.ExitError); err != nil && !(ok && killed && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL) {
			t.Fatalf("first run: %v, status %s: %s\n%s", err, st.Status, st.Failure, tail(out.String(), 30))
		}
	} else {
		res := e.fastEngine("resume", "-c", name)
		msg, err := res.CombinedOutput()
		if err != nil {
			e.setFaultsTo(t, localcloud.Faults{})
			t.Fatalf("resume after the kill at %s: %v\n%s", p, err, tail(string(msg), 30))
		}
	}
	if p.faults {
		e.setFaultsTo(t, localcloud.Faults{})
	}
	cancel()
	st = e.load(t, name)
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("status %s: %s", st.Status, st.Failure)
	}
	e.waitFleet(t, image, 30*time.Second)

	// No step skipped: every step done, every batch with all its
	// replacements and every target terminated after a drain.
	drained := map[string]bool{}
	for _, j := range st.Journal {
		if j.Status == "done" && j.Effect.Kind == rollout.EffDrain {
			drained[j.Effect.ID] = true
		}
	}
	if st.Cursor != len(st.Steps) {
		t.Errorf("cursor %d of %d steps", st.Cursor, len(st.Steps))
	}
	for i, s := range st.Steps {
		if !s.Done {
			t.Errorf("step %d (%s) not done", i, s.Kind)
		}
		if s.Kind != rollout.StepBatch {
			continue
		}
		if len(s.Adopted) != s.Launch {
			t.Errorf("step %d adopted %d of %d", i, len(s.Adopted), s.Launch)
		}
		for _, id := range s.Targets {
			if _, ok := s.Terminated[id]; !ok {
				t.Errorf("step %d: target %s not terminated", i, id)
			}
			if !drained[id] {
				t.Errorf("step %d: target %s terminated without a drain", i, id)
			}
		}
	}
	// No instance terminated twice, as the cloud's activities say.
	after := e.terminations(t)
	n := 0
	for id, k := range after {
		if d := k - before[id]; d > 1 {
			t.Errorf("%s terminated %d times", id, d)
		} else if d == 1 {
			n++
		}
	}
	if n != 9 {
		t.Errorf("%d instances terminated, want 9 (8 old and the canary)", n)
	}
	if o := e.orphans(t); len(o) > 0 {
		t.Errorf("detached and left running: %v", o)
	}
	if k := fewest(); k < 8 {
		t.Errorf("healthy targets fell to %d (desired 8)", k)
	}
	// The lock, the suspension and the protection as the API reads them:
	// reads made late by the faults catch up within their delay (2s).
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		g, err := e.provider(t).Group(context.Background(), "gitter-ws")
		if err != nil {
			t.Fatal(err)
		}
		left = nil
		if v := g.Tags[rollout.LockTag]; v != "" {
			left = append(left, "lock left on the group: "+v)
		}
		if len(g.Suspended) != 0 {
			left = append(left, fmt.Sprintf("processes left suspended: %v", g.Suspended))
		}
		for _, in := range g.Instances {
			if in.Live() && in.Protected {
				left = append(left, in.Name+" left protected")
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		t.Error(l)
	}
	runs := 0
	for _, ev := range readTypes(t, events) {
		if ev == "resume" {
			runs++
		}
	}
	if !reached {
		return fmt.Sprintf("not reached: the run succeeded with fewer %s effects; ok in %s", p.kind, time.Since(t0).Round(time.Second)), false
	}
	return fmt.Sprintf("%s; resumed %d; ok in %s", outcome, runs, time.Since(t0).Round(time.Second)), true
}

// readTypes returns the type of every event in a log.
func readTypes(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var ev struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.Type != "" {
			out = append(out, ev.Type)
		}
	}
	sort.Strings(out)
	return out
}

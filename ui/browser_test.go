package ui_test

// The dashboard in a real browser: headless Chromium (Debian's package)
// driven by playwright-core (ui/web's lock file) from ui/web/e2e/dashboard.mjs,
// against a rollout the engine runs on the local cloud in this process
// with simulated instances (internal/simcloud). The script follows the
// change from start to end, pauses it from the page (the Go side checks
// the engine's state, as `wsfleet status` reads it), sees a wrong token
// refused, and takes a screenshot at each phase. A second run follows a
// 1,000-instance group and logs the page's render times.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"wsfleet/internal/simcloud"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
	"wsfleet/ui"
)

const (
	simToken = "ui-e2e-node-token"
	uiToken  = "ui-e2e-admin-token"
)

// browserTools returns Chromium's and node's paths, or fails the test
// naming what installs them.
func browserTools(t *testing.T) (chromium, node string) {
	t.Helper()
	return findTools(t, "WSFLEET_CHROMIUM", "chromium", []string{"chromium", "chromium-browser"}, "playwright-core")
}

// findTools returns a browser's path ($env, else the first of names on
// PATH) and node's, and checks that ui/web/node_modules holds module,
// the browser's driver; it fails the test naming what is missing (the
// browser as the Debian package deb) and scripts/test-deps.sh.
func findTools(t *testing.T, env, deb string, names []string, module string) (browser, node string) {
	t.Helper()
	var missing []string
	browser = os.Getenv(env)
	if browser == "" {
		for _, name := range names {
			if p, err := exec.LookPath(name); err == nil {
				browser = p
				break
			}
		}
	}
	if browser == "" {
		missing = append(missing, deb+" (Debian package)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat(filepath.Join("web", "node_modules", module, "package.json")); err != nil {
		missing = append(missing, "ui/web/node_modules with "+module+" (npm ci in ui/web)")
	}
	if len(missing) > 0 {
		t.Fatalf("the dashboard's browser test needs %s: run scripts/test-deps.sh", strings.Join(missing, ", "))
	}
	return browser, node
}

// artefacts is where screenshots go: $WSFLEET_ARTIFACTS/<test>, else a
// temporary directory removed when the test passes.
func artefacts(t *testing.T) string {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "-")
	if d := os.Getenv("WSFLEET_ARTIFACTS"); d != "" {
		dir := filepath.Join(d, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshots in %s", dir)
		return dir
	}
	dir, err := os.MkdirTemp("", "wsfleet-ui-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screenshots kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	t.Logf("screenshots in %s (removed when the test passes; set WSFLEET_ARTIFACTS to keep them)", dir)
	return dir
}

// rig is a simulated group on the local cloud with an engine to run a
// plan on it and a dashboard following the change from the store, as
// another process would.
type rig struct {
	names    []string
	endpoint string
	stateDir string
	url      string
	srv      *ui.Server
}

func newRig(t *testing.T, ctx context.Context, n int) *rig {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ws-%04d", i+1)
	}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: simToken, DeregistrationDelay: 10, Logger: logger})
	r := &rig{names: names, endpoint: cloud.Endpoint(), stateDir: filepath.Join(t.TempDir(), "state")}
	r.waitHealthy(t, ctx, n)

	r.srv = ui.New(ui.Config{Store: &rollout.Store{Dir: r.stateDir}, Token: uiToken})
	ln, err := ui.Listen("127.0.0.1:0", uiToken)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: r.srv.Handler()}
	go hs.Serve(ln)
	sctx, cancel := context.WithCancel(ctx)
	go r.srv.Run(sctx)
	t.Cleanup(func() { cancel(); hs.Close() })
	r.url = "http://" + ln.Addr().String() + "/"
	return r
}

// waitHealthy waits until the group's n instances are in service.
func (r *rig) waitHealthy(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	p, err := awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: r.endpoint, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	limit := 45*time.Second + time.Duration(n)*100*time.Millisecond // 1,000 instances boot in a minute or two
	for {
		g, err := p.Group(ctx, "gitter-ws")
		healthy := 0
		if err == nil {
			for _, in := range g.Instances {
				if in.Live() && strings.EqualFold(in.Health, "healthy") {
					healthy++
				}
			}
		}
		if healthy == n {
			t.Logf("%d simulated instances in service in %s", n, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > limit || ctx.Err() != nil {
			t.Fatalf("%d of %d instances in service after %s: %v", healthy, n, time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// plan is a plan of change for the group on this cloud: its head, then
// body formatted with args.
func (r *rig) plan(change, body string, args ...any) string {
	return fmt.Sprintf("change: %s\ngroup: gitter-ws\nimage: ami-new\naws: {region: us-east-1, endpoint: %s}\n", change, r.endpoint) +
		fmt.Sprintf(body, args...)
}

// threePhases is the plan the browser tests follow: with the errors
// check, a canary of one instance baking canaryBake, half the group, then
// the rest, drained over drainWindow; halfExtra ends the half phase's
// fields (its window, for Chromium).
func (r *rig) threePhases(change string, drainWindow, canaryBake time.Duration, halfExtra string) string {
	return r.plan(change, `warm_up: 200ms
healthy_timeout: 30s
drain: {window: %s, max_rate: 1000, deadline: 10s}
checks:
  - {name: errors, interval: 300ms, metric: {name: wsfleet_errors_total, labels: {code: "500"}, max_increase: 0}}
phases:
  - {name: canary, replace: 1, bake: %s, deadline: 2m}
  - {name: half, replace: 50%%, bake: 1s%s}
  - {name: rest, replace: rest, bake: 1s}
rollback: {on_failure: auto}
`, drainWindow, canaryBake, halfExtra)
}

// start runs plan with an engine of its own in the background; the
// returned channel gives its outcome.
func (r *rig) start(t *testing.T, ctx context.Context, change, plan string) <-chan error {
	t.Helper()
	p, err := awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: r.endpoint, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	events, err := rollout.OpenEventLog(r.stateDir, change, nil)
	if err != nil {
		t.Fatal(err)
	}
	nodes := &rollout.HTTPNodes{Token: simToken}
	e := &rollout.Engine{
		Provider: p,
		Nodes:    nodes,
		Checker:  &rollout.Checker{MetricsURL: nodes.MetricsURL},
		Store:    &rollout.Store{Dir: r.stateDir},
		Events:   events,
		MinPoll:  100 * time.Millisecond,
		MaxPoll:  300 * time.Millisecond,
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Start(ctx, []byte(plan))
		done <- errors.Join(err, events.Close())
	}()
	return done
}

// status is the change's state and its rendering as `wsfleet status -c`
// shows it, read from the store as that command reads it.
func (r *rig) status(change string) (*rollout.State, string, error) {
	st, err := (&rollout.Store{Dir: r.stateDir}).Load(change)
	if err != nil {
		return nil, "", err
	}
	var b bytes.Buffer
	rollout.RenderView(&b, st, time.Now())
	return st, b.String(), nil
}

// engineAnswers answers a browser script's questions about change from
// its state, as `wsfleet status` reads it: "not-paused" (a refused or
// cancelled command reached nothing: the engine runs and no command is
// pending) and "paused" (the engine took the pause: the state says so
// and the cursor holds while it is).
func (r *rig) engineAnswers(change string) func(q string) error {
	return func(q string) error {
		switch q {
		case "not-paused":
			st, _, err := r.status(change)
			if err != nil {
				return err
			}
			if st.Control != "" || st.Status != rollout.StatusRunning {
				return fmt.Errorf("after a refused pause: status %s, pending command %q", st.Status, st.Control)
			}
			return nil
		case "paused":
			// The engine took the command: the state says paused and
			// the cursor holds while it is.
			deadline := time.Now().Add(10 * time.Second)
			for {
				st, view, err := r.status(change)
				if err == nil && st.Status == rollout.StatusPaused && strings.Contains(view, " paused ") {
					cursor := st.Cursor
					time.Sleep(time.Second)
					if st2, _, err := r.status(change); err != nil || st2.Cursor != cursor || st2.Status != rollout.StatusPaused {
						return fmt.Errorf("the engine moved while paused (cursor %d, then %+v, %v)", cursor, st2, err)
					}
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("status does not show the change paused: %v\n%s", err, view)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return fmt.Errorf("unknown question %q", q)
	}
}

// drive runs the Chromium script and answers its questions with answer.
func drive(t *testing.T, ctx context.Context, chromium, node string, answer func(q string) error, args ...string) string {
	t.Helper()
	return runScript(t, ctx, node, "dashboard.mjs", "CHROMIUM="+chromium, answer, args...)
}

// runScript runs the browser script ui/web/e2e/<script> with env added to
// the environment, answers its questions with answer and returns its
// result. When ctx ends the script gets SIGTERM, on which its browser
// library closes the browser, then SIGKILL after 5s.
func runScript(t *testing.T, ctx context.Context, node, script, env string, answer func(q string) error, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join("web", "e2e", script)}, args...)...)
	cmd.Env = append(os.Environ(), env)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	result := ""
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "LOG "):
			t.Log(line[4:])
		case strings.HasPrefix(line, "ASK "):
			reply := "ok"
			if err := answer(line[4:]); err != nil {
				t.Errorf("%s: %v", line[4:], err)
				reply = "fail: " + strings.ReplaceAll(err.Error(), "\n", " ")
			}
			io.WriteString(stdin, reply+"\n")
		case strings.HasPrefix(line, "RESULT "):
			result = line[7:]
		default:
			t.Log("browser:", line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("browser script %s: %v\n%s", script, err, stderr.String())
	}
	return result
}

// TestDashboardFollowsRollout follows a rollout of 8 simulated instances
// through three phases in Chromium, pausing and resuming it from the page.
func TestDashboardFollowsRollout(t *testing.T) {
	chromium, node := browserTools(t)
	dir := artefacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r := newRig(t, ctx, 8)
	const change = "ui-e2e"
	window := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	plan := r.threePhases(change, time.Second, 4*time.Second, fmt.Sprintf(`, not_before: "%s"`, window))
	done := r.start(t, ctx, change, plan)

	res := drive(t, ctx, chromium, node, r.engineAnswers(change), "follow", r.url, uiToken, dir)
	t.Logf("result: %s", res)
	if t.Failed() {
		cancel() // the engine's outcome says why the page did not follow it
	}
	if err := <-done; err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if st, _, err := r.status(change); err != nil || st.Status != rollout.StatusSucceeded {
		t.Fatalf("the change ended %v, %v", st, err)
	}
	if os.Getenv("WSFLEET_UPDATE_SCREENSHOT") != "" {
		// The screenshot in the README: the page during the second phase.
		shots, _ := filepath.Glob(filepath.Join(dir, "*-phase-half.png"))
		if len(shots) == 0 {
			t.Fatal("no screenshot of the phase half")
		}
		data, err := os.ReadFile(shots[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDashboardScale follows a change of a 1,000-instance group in
// Chromium and logs the page's render times (the trace's figures, not
// asserted: they depend on the machine). The group is simulated in the
// state store, as an engine records it, and moves faster than an engine
// would: every 250ms 20 instances are replaced and 100 others change
// their connections, for 50 rounds. The page must end showing what the
// state ends with: 1,000 instances, all on the new image, and the same
// total of connections. (The engine itself at 1,000 instances is
// rollout's TestBenchRollout1000.)
func TestDashboardScale(t *testing.T) {
	chromium, node := browserTools(t)
	dir := artefacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n, perRound, rounds = 1000, 20, 50
	store := &rollout.Store{Dir: t.TempDir(), NoSync: true}
	plan := "change: ui-scale\ngroup: gitter-ws\nimage: ami-new\nphases:\n"
	st := &rollout.State{Change: "ui-scale", Group: "gitter-ws", Status: rollout.StatusRunning, Started: time.Now(), OldImage: "ami-old", Nodes: map[string]rollout.Node{}}
	for p := range 10 {
		plan += fmt.Sprintf("  - {name: batch %d, replace: 10%%}\n", p+1)
		st.Steps = append(st.Steps, rollout.Step{Kind: rollout.StepBatch, Phase: p, Note: fmt.Sprintf("replace batch %d", p+1)})
		st.Phases = append(st.Phases, rollout.PhaseRecord{Name: fmt.Sprintf("batch %d", p+1), Status: "pending"})
	}
	st.PlanYAML = []byte(plan)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("i-old%05d", i)
		st.Nodes[ids[i]] = rollout.Node{ID: ids[i], Name: fmt.Sprintf("ws-%04d", i+1), Image: "ami-old", Lifecycle: "InService", Health: "Healthy", State: "ready", Connections: 100}
	}
	save := func() {
		if _, err := store.Update("ui-scale", func(*rollout.State) (*rollout.State, error) { return st, nil }); err != nil {
			t.Error(err)
		}
	}
	save()
	events, err := rollout.OpenEventLog(store.Dir, "ui-scale", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()

	srv := ui.New(ui.Config{Store: &rollout.Store{Dir: store.Dir}, Token: uiToken})
	ln, err := ui.Listen("127.0.0.1:0", uiToken)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go srv.Run(sctx)

	// The simulated change, once the page has the first view.
	moved := make(chan int, 1)
	go func() {
		time.Sleep(2 * time.Second)
		total := 0
		for k := range rounds {
			phase := k * perRound / (n / 10)
			st.Cursor = phase
			st.Phases[phase].Status = "running"
			if phase > 0 {
				st.Phases[phase-1].Status = "done"
			}
			for i := k * perRound; i < (k+1)*perRound; i++ {
				old := st.Nodes[ids[i]]
				delete(st.Nodes, ids[i])
				ids[i] = fmt.Sprintf("i-new%05d", i)
				st.Nodes[ids[i]] = rollout.Node{ID: ids[i], Name: old.Name, Image: "ami-new", Lifecycle: "InService", Health: "Healthy", State: "ready", Connections: 90 + k%20}
				events.Write(time.Now(), "ui-scale", "effect", "terminate", "id", old.ID)
			}
			for j := range 100 {
				id := ids[(k*37+j*7)%n]
				nd := st.Nodes[id]
				nd.Connections = 80 + (k*j)%40
				st.Nodes[id] = nd
			}
			save()
			time.Sleep(250 * time.Millisecond)
		}
		st.Phases[9].Status, st.Status, st.Cursor, st.Ended = "done", rollout.StatusSucceeded, len(st.Steps), time.Now()
		for _, nd := range st.Nodes {
			total += nd.Connections
		}
		save()
		moved <- total
	}()
	res := drive(t, ctx, chromium, node, func(q string) error { return fmt.Errorf("unexpected question %q", q) }, "scale", "http://"+ln.Addr().String()+"/", dir)
	total := <-moved
	t.Logf("1,000 instances: %s", res)
	if !strings.Contains(res, fmt.Sprintf(`"connections":%d,`, total)) {
		t.Errorf("the page ends with other connections than the state's %d: %s", total, res)
	}
	stats := srv.Stats()
	t.Logf("server: %d updates, %d bytes (%d an update on average; snapshots to new pages not counted), %d slow streams dropped",
		stats.Updates, stats.Bytes, stats.Bytes/int64(max(stats.Updates, 1)), stats.Dropped)
}

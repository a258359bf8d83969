package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
	"wsfleet/ui"
)

func init() {
	register("rollout", "execute a plan file on an Auto Scaling group (canary, batches, checks, rollback)",
		"wsfleet rollout -f examples/gitter-ws-new-ami.yaml\nwsfleet rollout -f examples/gitter-ws-new-ami.yaml --time-scale 0.05 --detach\nwsfleet rollout -f examples/gitter-ws-new-ami.yaml --ui 127.0.0.1:8090", runRollout)
}

// roFlags are the flags every rollout command shares.
type roFlags struct {
	stateDir  string
	state     string
	endpoint  string
	region    string
	jsonOut   bool
	force     bool
	timeScale float64
	lockTTL   time.Duration
	poll      time.Duration
	maxPoll   time.Duration
	verbose   bool
	// The provider's bounds on AWS's refusals.
	maxAttempts    int
	maxBackoff     time.Duration
	confirmTimeout time.Duration
}

func addRolloutFlags(fs *flag.FlagSet, engine bool) *roFlags {
	f := &roFlags{}
	fs.StringVar(&f.stateDir, "state-dir", defaultStateDir(), "directory of the rollout state database, event logs and reports")
	fs.StringVar(&f.state, "state", "", "where changes live: s3://BUCKET/PREFIX (default: the plan's state key, else --state-dir)")
	fs.StringVar(&f.endpoint, "endpoint", "", "AWS endpoint, overriding the plan's aws.endpoint (local cloud only)")
	fs.StringVar(&f.region, "region", "", "AWS region, overriding the plan's aws.region")
	fs.BoolVar(&f.jsonOut, "json", false, "write events and the result as JSON lines on stdout")
	fs.IntVar(&f.maxAttempts, "aws-max-attempts", 0, "attempts at an AWS call that is throttled, answered 5xx or dropped (0: the AWS configuration's max_attempts or AWS_MAX_ATTEMPTS, else 8)")
	fs.DurationVar(&f.maxBackoff, "aws-max-backoff", 20*time.Second, "longest pause between two attempts at an AWS call")
	fs.DurationVar(&f.confirmTimeout, "aws-confirm-timeout", time.Minute, "how long an effect is read back before the engine stops for want of seeing it")
	if engine {
		fs.BoolVar(&f.force, "force", false, "take the group's lock over even if another rollout holds it and it has not expired")
		fs.Float64Var(&f.timeScale, "time-scale", 1, "multiply the plan's waits (bakes, warm-up, drain window; not the drain deadline, a limit) by this, e.g. 0.01 for a rehearsal")
		fs.DurationVar(&f.lockTTL, "lock-ttl", time.Minute, "lock expiry; the engine renews it every third of this")
		fs.DurationVar(&f.poll, "poll", 500*time.Millisecond, "first poll interval while waiting; it doubles up to --max-poll while nothing changes")
		fs.DurationVar(&f.maxPoll, "max-poll", 5*time.Second, "longest poll interval")
		fs.BoolVar(&f.verbose, "v", false, "log the engine's decisions to stderr")
	}
	return f
}

// defaultStateDir is $XDG_STATE_HOME/wsfleet, or ~/.local/state/wsfleet.
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "wsfleet")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "wsfleet")
	}
	return ".wsfleet-state"
}

// roProvider builds the AWS provider from the plan's aws block and flags.
func roProvider(ctx context.Context, p *rollout.Plan, f *roFlags, log *slog.Logger) (*awsprov.Provider, error) {
	cfg := awsprov.Config{Region: p.AWS.Region, Endpoint: p.AWS.Endpoint, Logger: log,
		MaxAttempts: f.maxAttempts, MaxBackoff: f.maxBackoff, ConfirmTimeout: f.confirmTimeout}
	if f.region != "" {
		cfg.Region = f.region
	}
	if f.endpoint != "" {
		cfg.Endpoint = f.endpoint
	}
	return awsprov.New(ctx, cfg)
}

// roEngine assembles an engine for plan p, keeping the change in store.
func roEngine(ctx context.Context, p *rollout.Plan, store rollout.Backend, f *roFlags, stdout, stderr io.Writer) (*rollout.Engine, func(), error) {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	prov, err := roProvider(ctx, p, f, log)
	if err != nil {
		return nil, nil, err
	}
	tf, err := tfChange(p, f, log) // terraform.go
	if err != nil {
		return nil, nil, err
	}
	token := os.Getenv(p.Nodes.AdminTokenEnv)
	nodes := &rollout.HTTPNodes{Port: p.Nodes.AdminPort, Token: token}
	var extra io.Writer
	if f.jsonOut {
		extra = stdout
	}
	events, err := store.OpenEventLog(p.Change, extra)
	if err != nil {
		return nil, nil, err
	}
	e := &rollout.Engine{
		Provider:  prov,
		Terraform: tf,
		Nodes:     nodes,
		Checker:   &rollout.Checker{Prober: &rollout.LibProber{AdminToken: token, Logger: log}, MetricsURL: nodes.MetricsURL},
		Store:     store,
		Events:    events,
		Log:       log,
		TimeScale: f.timeScale,
		LockTTL:   f.lockTTL,
		Force:     f.force,
		MinPoll:   f.poll,
		MaxPoll:   max(f.maxPoll, f.poll),
	}
	stop := func() { events.Close() }
	if !f.jsonOut && isTerminal(stdout) {
		v := &roView{w: stdout}
		e.View = v.show
		stop = func() { v.final(); events.Close() }
	} else if !f.jsonOut {
		// Not a terminal: one line per event instead of a redrawn view.
		events2, err := store.OpenEventLog(p.Change, &roLines{w: stdout})
		if err == nil {
			events.Close()
			e.Events = events2
			stop = func() { events2.Close() }
		}
	}
	return e, stop, nil
}

// roView redraws the live view at most every 200ms.
type roView struct {
	mu   sync.Mutex
	w    io.Writer
	last time.Time
	buf  bytes.Buffer
	st   *rollout.State
}

func (v *roView) show(st *rollout.State) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = st
	if time.Since(v.last) < 200*time.Millisecond {
		return
	}
	v.last = time.Now()
	v.draw()
}

func (v *roView) draw() {
	if v.st == nil {
		return
	}
	v.buf.Reset()
	v.buf.WriteString("\x1b[H\x1b[2J")
	rollout.RenderView(&v.buf, v.st, time.Now())
	v.w.Write(v.buf.Bytes())
}

func (v *roView) final() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.draw()
}

// roLines turns event JSON lines into short text lines.
type roLines struct{ w io.Writer }

func (l *roLines) Write(b []byte) (int, error) {
	var ev map[string]any
	if json.Unmarshal(b, &ev) != nil {
		return len(b), nil
	}
	ts, _ := ev["time"].(string)
	if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
		ts = t.Format("15:04:05.000")
	}
	var kv []string
	for _, k := range []string{"phase", "kind", "effect", "id", "check", "pass", "detail", "reason", "note", "status", "err"} {
		if v, ok := ev[k]; ok && v != "" && v != nil {
			kv = append(kv, fmt.Sprintf("%s=%v", k, v))
		}
	}
	fmt.Fprintf(l.w, "%s %-8v %v %s\n", ts, ev["type"], ev["msg"], strings.Join(kv, " "))
	return len(b), nil
}

func runRollout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rollout", stderr)
	detach := fs.Bool("detach", false, "before a phase's not_before window, save the state and exit; `wsfleet resume` continues")
	uiAddr := fs.String("ui", "", "serve the live dashboard on this address, e.g. 127.0.0.1:8090 (beyond loopback only with the admin token set)")
	a, err := parsePlanArgs(fs, args, true)
	if err != nil {
		return err
	}
	store, err := roStore(ctx, a.flags, a.plan)
	if err != nil {
		return err
	}
	var dash *uiServer
	if *uiAddr != "" {
		env := a.plan.Nodes.AdminTokenEnv
		dash, err = startUI(ctx, *uiAddr, ui.Config{Store: store, Change: a.plan.Change, Token: os.Getenv(env)}, env, stderr)
		if err != nil {
			return err
		}
	}
	e, stop, err := roEngine(ctx, a.plan, store, a.flags, stdout, stderr)
	if err != nil {
		dash.stop()
		return err
	}
	e.Detach = *detach
	st, err := e.Start(ctx, a.data)
	dash.stop()
	stop()
	if st == nil && err != nil {
		if errors.Is(err, rollout.ErrInvalidPlan) {
			return planError(a.file, err)
		}
		return err
	}
	return roFinish(st, err, store, a.flags, stdout)
}

// planError prefixes each plan problem with the file name.
func planError(file string, err error) error {
	var pe rollout.PlanErrors
	if errors.As(err, &pe) {
		lines := make([]string, len(pe))
		for i, e := range pe {
			lines[i] = file + ": " + e.Error()
		}
		return exitError{code: 2, msg: strings.Join(lines, "\n")}
	}
	return err
}

// resumeWhere is what a resume of st needs besides the change id to
// find it: the S3 prefix and, for a non-AWS endpoint (--endpoint, else
// the plan's), that endpoint, since a resume given only the change id
// opens the state before it reads the plan; or the state directory.
func resumeWhere(st *rollout.State, store rollout.Backend, f *roFlags) string {
	if _, ok := store.(*rollout.ObjectStore); !ok {
		return " --state-dir " + store.Location()
	}
	where := " --state " + store.Location()
	endpoint := f.endpoint
	if endpoint == "" {
		if p, err := rollout.ParsePlan(st.PlanYAML); err == nil {
			endpoint = p.AWS.Endpoint
		}
	}
	if endpoint != "" {
		where += " --endpoint " + endpoint
	}
	return where
}

// anywhere says that a change in S3 may be resumed from any machine.
func anywhere(store rollout.Backend) string {
	if _, ok := store.(*rollout.ObjectStore); ok {
		return "from any machine, "
	}
	return ""
}

// roFinish writes the report and turns the outcome into an exit status.
func roFinish(st *rollout.State, err error, store rollout.Backend, f *roFlags, stdout io.Writer) error {
	if errors.Is(err, rollout.ErrDetached) {
		fmt.Fprintf(stdout, "%s: detached: %s; run `wsfleet resume -c %s%s` when it opens (%sat %s)\n", st.Change, st.Waiting, st.Change, resumeWhere(st, store, f), anywhere(store), st.NotBefore.UTC().Format(time.RFC3339))
		return nil
	}
	if st != nil && (st.Status.Final() || st.Status == rollout.StatusFailed) {
		var buf bytes.Buffer
		rollout.WriteReport(&buf, st)
		path, werr := store.WriteReport(st.Change, buf.Bytes())
		if werr != nil {
			return fmt.Errorf("write report: %w", werr)
		}
		if f.jsonOut {
			json.NewEncoder(stdout).Encode(map[string]any{"type": "result", "change": st.Change, "status": st.Status, "failure": st.Failure, "report": path, "api_calls": st.Calls})
		} else {
			fmt.Fprintf(stdout, "%s: %s; report %s\n", st.Change, st.Status, path)
		}
	}
	if err != nil {
		return exitError{code: 1, msg: err.Error()}
	}
	return nil
}

package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// Engine runs rollouts. One Engine runs one rollout at a time; its fields
// are its dependencies and its intervals, all replaceable by tests.
//
// The engine is a loop (run, in this file): observe the group and its
// nodes, decide the current step's next move with the pure decide
// (decide.go), record the decision, make its effects through the effect
// journal (journal.go), wait. Phases open and close around their steps
// with their gates (phase.go, gate.go); Start, Resume, Abort and the ends
// of a rollout are in lifecycle.go.
type Engine struct {
	Provider Provider
	Nodes    Nodes
	Checker  *Checker
	Store    Backend
	Events   *EventLog
	Log      *slog.Logger

	// Terraform makes the change of a plan in the terraform image form
	// (image_terraform.go); nil for the other forms.
	Terraform TerraformChange

	// Now and Sleep are the engine's clock: tests drive a fake one so
	// that bakes and drains take no real time.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error

	// TimeScale multiplies the plan's waits (bakes, warm-up, drain window)
	// without changing the file: 0.01 runs a 2m bake in 1.2s. Phase and
	// drain deadlines, health timeouts and not_before are kept.
	TimeScale float64
	LockTTL   time.Duration
	Force     bool // take the group's lock over even if it has not expired
	Detach    bool // before a window, save and return ErrDetached
	MinPoll   time.Duration
	MaxPoll   time.Duration
	// View is called with the state after every change, for the live
	// terminal view.
	View func(*State)
	// Crash, when set, is asked at each point around an effect whether
	// to stop dead there, as kill -9 would: tests use it to crash the
	// engine at every effect and resume.
	Crash func(point string) bool
	// Host and PID name this engine in the lock tag and the state's
	// owner; default the machine's host name and this process's id.
	// Tests give two engines in one process two hosts.
	Host string
	PID  int

	ctx        context.Context // the run's, for waits outside the loop (save)
	lock       *Lock
	locked     bool // the lock is this engine's to release
	lastRenew  time.Time
	lastCheck  time.Time
	phase      int
	phaseOpen  bool
	env        PhaseEnv    // the open phase's, without the group and the time
	gates      []phaseGate // the open phase's gates, begun
	callsBase  map[string]int
	lastReason string
	lastSaved  []byte
	checking   bool            // a background round of checks is running
	checkCh    chan checkRound // where it reports; buffered, so it never blocks

	// Notifiers are told of the rollout's milestones besides those the
	// plan's notify section makes (notify.go).
	Notifiers     []Notifier
	planNotifiers []Notifier
	notifyChange  string // the change planNotifiers were made for
	notifying     bool
}

// ErrDetached is returned by a rollout that saved its state and exited
// before a window (--detach); resume continues it.
var ErrDetached = errors.New("detached until the window opens")

// ErrCrashed is returned when the Crash hook stopped the engine.
var ErrCrashed = errors.New("engine stopped by the crash hook")

// ErrFailed is wrapped by the error of a rollout that failed (whether or
// not it rolled back).
var ErrFailed = errors.New("rollout failed")

func (e *Engine) defaults() {
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Sleep == nil {
		e.Sleep = Sleep
	}
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if e.TimeScale <= 0 {
		e.TimeScale = 1
	}
	if e.LockTTL == 0 {
		e.LockTTL = time.Minute
	}
	if e.MinPoll == 0 {
		e.MinPoll = 500 * time.Millisecond
	}
	if e.MaxPoll == 0 {
		e.MaxPoll = 5 * time.Second
	}
	if e.Checker == nil {
		e.Checker = &Checker{}
	}
	// The node traffic of a large fleet (a status per node every poll,
	// a scrape per node every check) reuses its connections.
	if h, ok := e.Nodes.(*HTTPNodes); ok && h.Client == nil {
		h.Client = &http.Client{Timeout: 5 * time.Second, Transport: nodeTransport}
	}
	if e.Checker.HTTP == nil {
		e.Checker.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: nodeTransport}
	}
	if e.Host == "" {
		e.Host, _ = os.Hostname()
	}
	if e.PID == 0 {
		e.PID = os.Getpid()
	}
	e.phase = -2
	e.checkCh = make(chan checkRound, 1)
}

// nodeTransport is the engine's transport to its nodes' admin and
// metrics endpoints. Go's default keeps 100 idle connections in all and 2
// per host: on a fleet of a thousand nodes every poll would open a
// thousand connections (and, for the nodes the local cloud serves behind
// one address, all but two of them). This one keeps one per node, and up
// to maxNodeCalls to one address.
var nodeTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no limit
	t.MaxIdleConnsPerHost = maxNodeCalls
	return t
}()

// maxNodeCalls bounds the node status calls an observation makes at once.
const maxNodeCalls = 128

// me is this engine as it names itself for change.
func (e *Engine) me(change string) LockInfo {
	return LockInfo{Change: change, Host: e.Host, PID: e.PID}
}

// cleanupTimeout bounds what a failure path does once the context it ran
// under is cancelled: end the phase, save, free the group.
const cleanupTimeout = time.Minute

// cleanupContext outlives ctx's cancellation, for the writes that end a
// rollout or leave it for resume.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

func (s *State) stepKey() string {
	if s.Rollback {
		return fmt.Sprintf("r%d", s.RCursor)
	}
	return fmt.Sprintf("f%d", s.Cursor)
}

// run is the engine loop: observe, decide, record, act, wait.
func (e *Engine) run(ctx context.Context, st *State, plan *Plan) (err error) {
	log := e.Log.With("change", st.Change, "group", st.Group)
	e.lastRenew = e.Now()
	poll := e.MinPoll
	defer func() {
		if errors.Is(err, ErrCrashed) {
			return // as if killed: nothing more is written
		}
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		e.endGates(cctx)
		if errors.Is(err, ErrDetached) || st.Status.Final() || !e.locked {
			return
		}
		// Stopped short (interrupted, or an error the engine cannot go
		// on with): leave the state for resume and free the group. A
		// change someone else took over is theirs: nothing is written.
		if errors.Is(err, ErrStateChanged) {
			err = errors.Join(err, e.release(cctx))
			return
		}
		st.Lease = time.Time{} // gone: anyone may resume it at once
		err = errors.Join(err, e.save(st), e.release(cctx))
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.renew(ctx, st); err != nil {
			return err
		}
		if stop, err := e.control(ctx, st, plan); stop || err != nil {
			return err
		}
		steps, cur := st.current()
		if *cur >= len(steps) {
			if end, err := e.finish(ctx, st, plan); end || err != nil {
				return err
			}
			continue // the last phase failed its end: rolling back
		}
		s := steps[*cur]
		if err := e.enterPhase(ctx, st, plan, s.Phase); err != nil {
			if errors.Is(err, ErrUnavailable) {
				return e.stopUnavailable(st, "enter phase", err)
			}
			if ferr := e.fail(ctx, st, plan, err.Error()); ferr != nil {
				return ferr
			}
			continue
		}
		obs, err := e.observe(ctx, st)
		if err != nil {
			if errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
				return e.stopUnavailable(st, "observe", err)
			}
			return err
		}
		e.updateView(st, obs)
		t := e.timing(plan)
		d := decide(plan, st, obs, t)
		if d.RunChecks {
			obs.Checked, obs.Checks = true, e.evaluate(ctx, obs.Group, obs.Now)
			d = decide(plan, st, obs, t)
		}
		e.recordDecision(st, s.Phase, d)
		if !d.Detach.IsZero() {
			return e.detach(ctx, st, d)
		}
		if d.Fail != "" {
			if err := e.fail(ctx, st, plan, d.Fail); err != nil {
				return err
			}
			continue
		}
		if len(d.Effects) > 0 {
			if eff, err := e.doAll(ctx, st, d.Effects, obs); err != nil {
				if errors.Is(err, ErrCrashed) || errors.Is(err, ErrStateChanged) || errors.Is(err, ErrStateUnavailable) || ctx.Err() != nil {
					return err // not the effect's failure: nothing to roll back
				}
				if errors.Is(err, ErrUnavailable) {
					return e.stopUnavailable(st, eff.Key, err)
				}
				log.Warn("effect failed", "effect", eff.Key, "err", err)
				reason := fmt.Sprintf("%s: %v", eff.Key, err)
				if st.Rollback {
					reason = fmt.Sprintf("effect %s (%s) did not happen: %v", eff.Key, eff.Kind, err)
				}
				if ferr := e.fail(ctx, st, plan, reason); ferr != nil {
					return ferr
				}
			}
			poll = e.MinPoll
			continue
		}
		if d.Done {
			if s.Kind == StepBatch {
				e.recordReplaced(st, d.Step)
			}
			*cur++
			st.Waiting = ""
			e.event(st, "step", "step done", "kind", s.Kind, "phase", s.Phase, "note", s.Note)
			if err := e.save(st); err != nil {
				return err
			}
			poll = e.MinPoll
			continue
		}
		// Waiting. Run the phase's checks on their interval meanwhile, in
		// the background: a slow check must not hold up a bake's end or
		// a drained node's termination. A later observation collects them.
		if s.Phase >= 0 && e.phaseOpen && !e.checking {
			if iv := e.checkInterval(plan, s.Phase); iv > 0 && obs.Now.Sub(e.lastCheck) >= iv {
				e.startRound(ctx, s.Phase, obs.Group, obs.Now)
			}
		}
		if d.Reason != e.lastReason {
			e.lastReason = d.Reason
			poll = e.MinPoll
			e.event(st, "wait", d.Reason, "step", st.stepKey())
		}
		st.Waiting = d.Reason
		if err := e.save(st); err != nil {
			return err
		}
		wait := min(poll, max(d.Wait, time.Millisecond))
		if err := e.Sleep(ctx, wait); err != nil {
			return err
		}
		poll = min(poll*2, e.MaxPoll)
	}
}

// Sleep waits d or until ctx ends, whichever is first: the engine's (and
// the AWS provider's) default wait.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// stopUnavailable stops the engine on a cloud that kept refusing an
// effect through the provider's retries: the change is neither failed nor
// rolled back (the fault is the cloud's, not the new image's, and a
// rollback would meet the same refusals). The state keeps the effect's
// open journal entry; `wsfleet resume` observes afresh and goes on.
func (e *Engine) stopUnavailable(st *State, what string, err error) error {
	st.Waiting = fmt.Sprintf("stopped: %s: the cloud kept refusing: %v", what, err)
	e.event(st, "stop", "cloud unavailable", "effect", what, "err", err.Error())
	return fmt.Errorf("%s: %w (stopped; the change is kept: run `wsfleet resume -c %s` once AWS answers)", what, err, st.Change)
}

// recordDecision keeps what a decision carries besides its effects: the
// step's new progress, the suspension record and the check results.
func (e *Engine) recordDecision(st *State, phase int, d Decision) {
	steps, cur := st.current()
	steps[*cur] = d.Step
	if d.Suspension != nil {
		st.Suspension = d.Suspension
	}
	if d.Placement != nil {
		st.Placement = d.Placement
	}
	for _, ev := range d.Events {
		e.event(st, ev.Type, ev.Msg, append([]any{"step", st.stepKey()}, ev.KV...)...)
	}
	if d.StillFailing != "" {
		st.StillFailing = d.StillFailing
		e.event(st, "check", "still failing after the rollback", "check", d.StillFailing)
	}
	if len(d.Checks) > 0 {
		e.recordChecks(st, phase, d.Checks)
	}
}

// observe reads the time, a finished background round of the phase's
// checks, the group, and the admin status of every node not yet gone.
func (e *Engine) observe(ctx context.Context, st *State) (Observation, error) {
	now := e.Now()
	round := e.collectRound(st)
	g, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return Observation{}, fmt.Errorf("describe group %s: %w", st.Group, err)
	}
	obs := Observation{Group: g, Nodes: map[string]NodeObs{}, Now: now, Round: round}
	if e.Nodes == nil {
		return obs, nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxNodeCalls)
	for _, in := range g.Instances {
		if in.Lifecycle == "Terminated" {
			continue // terminating ones still drain: ask them too
		}
		wg.Add(1)
		slots <- struct{}{}
		go func(in Instance) {
			defer wg.Done()
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			ns, err := e.Nodes.Status(ctx, in)
			o := NodeObs{Status: ns}
			if err != nil {
				o.Err = err.Error()
			}
			mu.Lock()
			obs.Nodes[in.ID] = o
			mu.Unlock()
		}(in)
	}
	wg.Wait()
	return obs, nil
}

// timing is the plan's durations after the time scale.
func (e *Engine) timing(p *Plan) Timing {
	sc := func(d Duration) time.Duration { return time.Duration(float64(d) * e.TimeScale) }
	return Timing{
		WarmUp:         sc(p.WarmUp),
		HealthyTimeout: p.Healthy.D(),
		// The drain deadline is a limit, not a wait: a node leaves as soon
		// as it is empty. Scaling it would force a rehearsal's nodes to
		// close their clients in a burst, and it must stay within the
		// load balancer's deregistration delay, which is not scaled.
		Drain:      DrainOptions{Window: sc(p.Drain.Window), MaxRate: p.Drain.MaxRate, Deadline: p.Drain.Deadline.D()},
		DrainGrace: max(p.Drain.Deadline.D()/10, 2*time.Second),
		Poll:       e.MinPoll,
		Scale:      e.TimeScale,
		Deregister: e.targets() != nil,
		Suspend:    e.processes() != nil,
		Detach:     e.Detach,
	}
}

func (e *Engine) targets() TargetRegistrar {
	t, _ := e.Provider.(TargetRegistrar)
	return t
}

func (e *Engine) processes() ProcessSuspender {
	p, _ := e.Provider.(ProcessSuspender)
	return p
}

// renew pushes the lock's expiry and the state's lease forward every
// third of the TTL.
func (e *Engine) renew(ctx context.Context, st *State) error {
	if e.Now().Sub(e.lastRenew) < e.LockTTL/3 {
		return nil
	}
	e.lastRenew = e.Now()
	if err := e.lock.Renew(ctx); err != nil {
		return fmt.Errorf("renew lock: %w", err)
	}
	st.Lease = e.lock.Me.Expires
	return e.save(st)
}

// control applies a pause, resume, abort or rollback asked by another
// command through the store. A store out of reach (S3 down) reads as no
// command: the command stays stored and is read on a later poll, and the
// engine's next save holds every effect until the state can be written,
// so the engine neither stops nor acts unrecorded.
func (e *Engine) control(ctx context.Context, st *State, plan *Plan) (stop bool, err error) {
	for {
		c, err := e.Store.TakeControl(st.Change)
		if errors.Is(err, ErrStateUnavailable) {
			e.Log.Warn("command not read; the state backend is out of reach", "change", st.Change, "err", err)
			c, err = "", nil
		}
		if err != nil {
			return true, err
		}
		switch c {
		case "":
			if st.Status != StatusPaused {
				return false, nil
			}
		case "pause":
			if st.Status != StatusPaused {
				st.Status = StatusPaused
				e.event(st, "pause", "paused by hand")
				if err := e.save(st); err != nil {
					return true, err
				}
			}
		case "run":
			if st.Status == StatusPaused {
				st.Status = StatusRunning
				if st.Rollback {
					st.Status = StatusRollingBack
				}
				e.event(st, "resume", "resumed by hand")
				return false, e.save(st)
			}
			return false, nil
		case "abort":
			return true, e.abort(ctx, st)
		case "rollback":
			if !st.Rollback {
				if err := e.startRollback(ctx, st, "rollback asked by hand"); err != nil {
					return true, err
				}
			}
			return false, e.save(st)
		}
		// Paused: keep the lock and wait for the next command.
		if err := e.renew(ctx, st); err != nil {
			return true, err
		}
		if err := e.Sleep(ctx, e.MinPoll); err != nil {
			return true, err
		}
	}
}

func (e *Engine) event(st *State, typ, msg string, kv ...any) {
	e.Log.Info(msg, append([]any{"change", st.Change, "type", typ}, kv...)...)
	if e.Events != nil {
		e.Events.Write(e.Now(), st.Change, typ, msg, kv...)
	}
	e.notify(st, typ, msg, kv...)
}

// updateView records the fleet as last seen, and peak connections.
func (e *Engine) updateView(st *State, obs Observation) {
	nodes := map[string]Node{}
	if st.Peak == nil {
		st.Peak = map[string]int{}
	}
	total := 0
	for _, in := range obs.Group.Instances {
		if in.Lifecycle == "Terminated" {
			continue
		}
		n := Node{ID: in.ID, Name: in.Name, Image: in.Image, Lifecycle: in.Lifecycle, Health: in.Health, Protected: in.Protected}
		if o, ok := obs.Nodes[in.ID]; ok && o.Err == "" {
			n.State, n.Connections = string(o.Status.State), o.Status.Connections
			total += n.Connections
		} else if ok {
			n.State = "unreachable"
		}
		nodes[in.ID] = n
		if n.Connections > st.Peak[in.Name] {
			st.Peak[in.Name] = n.Connections
		}
	}
	if total > st.Peak["(fleet)"] {
		st.Peak["(fleet)"] = total
	}
	st.Nodes = nodes
}

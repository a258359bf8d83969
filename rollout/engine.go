package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Engine runs rollouts. One Engine runs one rollout at a time; its fields
// are its dependencies and its intervals, all replaceable by tests.
type Engine struct {
	Provider Provider
	Nodes    Nodes
	Checker  *Checker
	Store    *Store
	Events   *EventLog
	Log      *slog.Logger

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

	lock       *Lock
	lastRenew  time.Time
	lastCheck  time.Time
	phase      int
	phaseOpen  bool
	callsBase  map[string]int
	lastReason string
	lastSaved  []byte
	checking   bool            // a background round of checks is running
	checkCh    chan checkRound // where it reports; buffered, so it never blocks
}

// checkRound is the outcome of one background run of a phase's checks.
type checkRound struct {
	phase   int
	results []CheckResult
}

// collectChecks records a finished background round of checks and
// returns the first failure, if the round belongs to the open phase.
func (e *Engine) collectChecks(st *State) string {
	select {
	case r := <-e.checkCh:
		e.checking = false
		if !e.phaseOpen || r.phase != e.phase || st.Rollback {
			return ""
		}
		e.recordChecks(st, r.phase, r.results)
		return failed(r.results)
	default:
		return ""
	}
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
		e.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
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
	e.phase = -2
	e.checkCh = make(chan checkRound, 1)
}

// Prepare parses a plan and compiles it against the group as it is now,
// changing nothing: what `wsfleet plan` shows.
func Prepare(ctx context.Context, p Provider, planYAML []byte) (*Plan, Group, []Step, error) {
	plan, err := ParsePlan(planYAML)
	if err != nil {
		return nil, Group{}, nil, err
	}
	g, err := p.Group(ctx, plan.Group)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return plan, Group{}, nil, PlanErrors{plan.errAt("group", "no Auto Scaling group named %q: %v", plan.Group, err)}
		}
		return plan, Group{}, nil, fmt.Errorf("describe group %s: %w", plan.Group, err)
	}
	steps, err := Compile(plan, g)
	if err != nil {
		return plan, g, nil, err
	}
	if err := checkDrainFits(ctx, p, plan); err != nil {
		return plan, g, nil, err
	}
	return plan, g, steps, nil
}

// checkDrainFits refuses a drain deadline longer than the deregistration
// delay of the group's target groups: the engine takes a node out of the
// load balancer just before its drain, and the load balancer cuts the
// node's remaining connections when the delay ends, before the drain
// would.
func checkDrainFits(ctx context.Context, p Provider, plan *Plan) error {
	tr, ok := p.(TargetRegistrar)
	if !ok {
		return nil
	}
	delay, has, err := tr.DeregistrationDelay(ctx, plan.Group)
	if err != nil {
		return fmt.Errorf("read the deregistration delay of %s's target groups: %w", plan.Group, err)
	}
	if !has || plan.Drain.Deadline.D() <= delay {
		return nil
	}
	return PlanErrors{plan.errAt("drain.deadline", "%s is longer than the deregistration delay of group %s's target groups (deregistration_delay.timeout_seconds = %d): the load balancer would cut the drained node's connections before the drain ends; lower drain.deadline to at most %s, or raise the target groups' deregistration delay",
		plan.Drain.Deadline.D(), plan.Group, int(delay/time.Second), delay)}
}

// ImageChecker is an optional Provider capability: whether an image
// exists, so that a plan naming a missing image fails before any change.
type ImageChecker interface {
	ImageExists(ctx context.Context, image string) (bool, error)
}

// Start begins a rollout of planYAML and runs it to the end.
func (e *Engine) Start(ctx context.Context, planYAML []byte) (*State, error) {
	e.defaults()
	plan, g, steps, err := Prepare(ctx, e.Provider, planYAML)
	if err != nil {
		return nil, err
	}
	if ic, ok := e.Provider.(ImageChecker); ok {
		exists, err := ic.ImageExists(ctx, plan.Image)
		if err != nil {
			return nil, fmt.Errorf("check image %s: %w", plan.Image, err)
		}
		if !exists {
			return nil, PlanErrors{plan.errAt("image", "no image %q exists in the region; give an AMI id the account can launch", plan.Image)}
		}
	}
	if prev, err := e.Store.Load(plan.Change); err == nil && !prev.Status.Final() {
		return nil, fmt.Errorf("change %s is already %s (started %s); use resume, rollback or abort", plan.Change, prev.Status, prev.Started.UTC().Format(time.RFC3339))
	}
	e.lock = NewLock(e.Provider, plan.Group, plan.Change, e.LockTTL, e.Now)
	e.lock.Sleep = e.Sleep
	if err := e.lock.Acquire(ctx, e.Force); err != nil {
		return nil, err
	}
	if _, err := e.Store.TakeControl(plan.Change); err != nil { // left over from an earlier run
		e.lock.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	now := e.Now()
	st := &State{
		Change: plan.Change, Group: plan.Group, PlanYAML: planYAML, TimeScale: e.TimeScale,
		Status: StatusRunning, Started: now, Owner: e.lock.Me.Owner(), Steps: steps,
		OldImage: g.Image, InitialDesired: g.Desired,
	}
	for _, in := range g.Instances {
		if in.Live() && in.Image != plan.Image {
			st.OldNames = append(st.OldNames, in.Name)
		}
	}
	sort.Slice(st.OldNames, func(i, j int) bool { return nameLess(st.OldNames[i], st.OldNames[j]) })
	for _, ph := range plan.Phases {
		st.Phases = append(st.Phases, PhaseRecord{Name: ph.Name, Status: "pending"})
	}
	if _, err := e.Store.Update(plan.Change, func(*State) (*State, error) { return st, nil }); err != nil {
		e.lock.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	e.event(st, "start", "rollout started", "steps", len(steps), "desired", g.Desired, "image", plan.Image, "old_image", g.Image)
	return st, e.run(ctx, st, plan)
}

// Resume continues a rollout after a crash, an interrupt, a detach or a
// pause, or rolls it back when rollback is set.
func (e *Engine) Resume(ctx context.Context, change string, rollback bool) (*State, error) {
	e.defaults()
	st, err := e.Store.Load(change)
	if err != nil {
		return nil, err
	}
	if st.Status.Final() {
		return st, fmt.Errorf("change %s is already %s", change, st.Status)
	}
	plan, err := ParsePlan(st.PlanYAML)
	if err != nil {
		return st, fmt.Errorf("stored plan: %w", err)
	}
	if st.TimeScale > 0 && e.TimeScale == 1 {
		e.TimeScale = st.TimeScale
	}
	// Calls made by earlier runs; this process's are added on each save.
	e.callsBase = maps.Clone(st.Calls)
	e.lock = NewLock(e.Provider, st.Group, st.Change, e.LockTTL, e.Now)
	e.lock.Sleep = e.Sleep
	if err := e.lock.Acquire(ctx, e.Force); err != nil {
		return st, err
	}
	st.Owner = e.lock.Me.Owner()
	st.Control = ""
	if _, err := e.Store.TakeControl(change); err != nil { // a command for an engine that is gone
		return st, err
	}
	if st.Status == StatusPaused || st.Status == StatusWaiting || st.Status == StatusFailed {
		st.Status = StatusRunning
		if st.Rollback {
			st.Status = StatusRollingBack
		}
	}
	e.event(st, "resume", "rollout resumed", "step", st.stepKey())
	if st.Aborting {
		return st, e.abort(ctx, st)
	}
	if rollback && !st.Rollback {
		if err := e.startRollback(ctx, st, "rollback asked by hand"); err != nil {
			return st, err
		}
	}
	if err := e.save(st); err != nil {
		return st, err
	}
	return st, e.run(ctx, st, plan)
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
		e.Checker.EndPhase(context.WithoutCancel(ctx))
		if ctx.Err() != nil && !st.Status.Final() {
			// Interrupted: leave the state for resume and free the group.
			e.save(st)
			e.lock.Release(context.WithoutCancel(ctx))
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.renew(ctx); err != nil {
			return err
		}
		if stop, err := e.control(ctx, st, plan); stop || err != nil {
			return err
		}
		steps, cur := st.current()
		if *cur >= len(steps) {
			return e.finish(ctx, st, plan)
		}
		s := steps[*cur]
		if err := e.enterPhase(ctx, st, plan, s.Phase); err != nil {
			if ferr := e.fail(ctx, st, plan, err.Error()); ferr != nil {
				return ferr
			}
			continue
		}
		now := e.Now()
		if reason := e.phaseOverdue(st, plan, s.Phase, now); reason != "" {
			if err := e.fail(ctx, st, plan, reason); err != nil {
				return err
			}
			continue
		}
		if f := e.collectChecks(st); f != "" {
			if err := e.fail(ctx, st, plan, "check "+f); err != nil {
				return err
			}
			continue
		}
		obs, err := e.observe(ctx, st, s)
		if err != nil {
			return err
		}
		e.updateView(st, obs)

		var d Decision
		switch s.Kind {
		case StepSetImage:
			d = Decision{Step: s, Effects: []Effect{{Key: "set-image", Kind: EffSetImage, Value: s.Image}}}
			if st.Template != nil {
				d = done(s, now)
			}
		case StepRestoreImage:
			d = Decision{Step: s, Effects: []Effect{{Key: "set-template-version", Kind: EffSetVersion, Version: s.Version}}}
			if obs.Group.Template.Version == s.Version.Version && obs.Group.Image == s.Image {
				d = done(s, now)
			}
		case StepSuspend:
			d = e.decideSuspend(st, s, obs, now)
		case StepResume:
			d = Decision{Step: s, Effects: e.endEffects(st, obs, false)}
			if len(d.Effects) == 0 {
				d = done(s, now)
			}
		case StepReregister:
			d = Decision{Step: s, Effects: []Effect{
				{Key: "register", Kind: EffRegister, IDs: s.IDs},
				{Key: "set-healthy", Kind: EffSetHealthy, IDs: s.IDs},
			}}
			if s.Done {
				d = done(s, now)
			}
		case StepCheck:
			if s.Started.IsZero() {
				s.Started = now
			}
			results := e.Checker.Run(ctx, e.checksFor(plan, s.Phase), obs.Group, nil, now)
			e.recordChecks(st, s.Phase, results)
			if f := failed(results); f != "" {
				d = Decision{Step: s, Fail: "check " + f}
			} else {
				d = done(s, now)
			}
		case StepWindow:
			d = decideStep(s, steps[:*cur], obs, e.timing(plan), now)
			if !d.Done && e.Detach {
				steps[*cur] = d.Step
				st.Status, st.Waiting = StatusWaiting, d.Reason
				if err := e.lock.Detach(ctx, s.NotBefore); err != nil {
					return err
				}
				e.event(st, "detach", "detached before the window", "not_before", s.NotBefore)
				if err := e.save(st); err != nil {
					return err
				}
				return ErrDetached
			}
		default:
			d = decideStep(s, steps[:*cur], obs, e.timing(plan), now)
			if s.Kind == StepBatch && !s.Ready && d.Step.Ready && s.Phase >= 0 {
				// Healthy includes passing the checks: the replacements
				// are in, so check the fleet once more before the old
				// instances start to leave.
				results := e.Checker.Run(ctx, e.checksFor(plan, s.Phase), obs.Group, nil, now)
				e.recordChecks(st, s.Phase, results)
				if f := failed(results); f != "" {
					d = Decision{Step: d.Step, Fail: "check " + f + " (with the replacements in, before draining)"}
				}
			}
		}
		steps[*cur] = d.Step
		if d.Fail != "" {
			if err := e.fail(ctx, st, plan, d.Fail); err != nil {
				return err
			}
			continue
		}
		acted := false
		for _, eff := range d.Effects {
			if err := e.do(ctx, st, eff, obs); err != nil {
				if errors.Is(err, ErrCrashed) || ctx.Err() != nil {
					return err
				}
				log.Warn("effect failed", "effect", eff.Key, "err", err)
				if ferr := e.fail(ctx, st, plan, fmt.Sprintf("%s: %v", eff.Key, err)); ferr != nil {
					return ferr
				}
				acted = true
				break
			}
			acted = true
		}
		if acted {
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
		// a drained node's termination. The next loop collects them.
		if s.Phase >= 0 && e.phaseOpen && !e.checking {
			if iv := e.checkInterval(plan, s.Phase); iv > 0 && now.Sub(e.lastCheck) >= iv {
				e.lastCheck, e.checking = now, true
				checks, g, phase := e.checksFor(plan, s.Phase), obs.Group, s.Phase
				go func() {
					e.checkCh <- checkRound{phase: phase, results: e.Checker.Run(ctx, checks, g, nil, now)}
				}()
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

func (e *Engine) checksFor(p *Plan, phase int) []Check {
	if phase < 0 {
		return p.Checks
	}
	return p.PhaseChecks(phase)
}

func (e *Engine) checkInterval(p *Plan, phase int) time.Duration {
	var iv time.Duration
	for _, c := range e.checksFor(p, phase) {
		if c.Probe != nil {
			continue // the probe runs all along; it is read with the others
		}
		d := time.Duration(float64(c.Interval) * e.TimeScale)
		if iv == 0 || d < iv {
			iv = d
		}
	}
	if iv == 0 && len(e.checksFor(p, phase)) > 0 {
		iv = time.Duration(float64(defaultCheckInterval) * e.TimeScale)
	}
	return max(iv, e.MinPoll)
}

func failed(rs []CheckResult) string {
	for _, r := range rs {
		if !r.Pass {
			return r.Name + ": " + r.Detail
		}
	}
	return ""
}

// renew pushes the lock's expiry forward every third of its TTL.
func (e *Engine) renew(ctx context.Context) error {
	if e.Now().Sub(e.lastRenew) < e.LockTTL/3 {
		return nil
	}
	e.lastRenew = e.Now()
	if err := e.lock.Renew(ctx); err != nil {
		return fmt.Errorf("renew lock: %w", err)
	}
	return nil
}

// control applies a pause, resume, abort or rollback asked by another
// command through the store.
func (e *Engine) control(ctx context.Context, st *State, plan *Plan) (stop bool, err error) {
	for {
		c, err := e.Store.TakeControl(st.Change)
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
		if err := e.renew(ctx); err != nil {
			return true, err
		}
		if err := e.Sleep(ctx, e.MinPoll); err != nil {
			return true, err
		}
	}
}

// observe reads the group and the admin status of every live node.
func (e *Engine) observe(ctx context.Context, st *State, s Step) (Observation, error) {
	g, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return Observation{}, fmt.Errorf("describe group %s: %w", st.Group, err)
	}
	obs := Observation{Group: g, Nodes: map[string]NodeObs{}}
	if e.Nodes == nil {
		return obs, nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, in := range g.Instances {
		if in.Lifecycle == "Terminated" {
			continue // terminating ones still drain: ask them too
		}
		wg.Add(1)
		go func(in Instance) {
			defer wg.Done()
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

// do makes one effect with its journal entries around it: intent before
// the call, done or failed after. A crash between the two leaves an open
// intent; the next decision, made on a fresh observation, either finds
// the effect done (an instance already terminating, a version already
// made) or asks for it again, and every provider call is safe to repeat.
func (e *Engine) do(ctx context.Context, st *State, eff Effect, obs Observation) error {
	key := st.stepKey()
	now := e.Now()
	seq := len(st.Journal) + 1
	st.Journal = append(st.Journal, JournalEntry{Seq: seq, Step: key, Effect: eff, Status: "intent", At: now})
	if err := e.save(st); err != nil {
		return err
	}
	if e.Crash != nil && e.Crash("before:"+key+":"+eff.Key) {
		return ErrCrashed
	}
	err := e.call(ctx, st, eff, obs)
	if e.Crash != nil && e.Crash("after:"+key+":"+eff.Key) {
		return ErrCrashed
	}
	j := &st.Journal[seq-1]
	j.Took = e.Now().Sub(now).String()
	if err != nil {
		j.Status, j.Error = "failed", err.Error()
		e.event(st, "effect", "effect failed", "effect", eff.Key, "err", err.Error())
		e.save(st)
		return err
	}
	j.Status = "done"
	e.apply(st, eff, e.Now())
	e.event(st, "effect", string(eff.Kind), "effect", eff.Key, "id", eff.ID, "n", eff.N)
	return e.save(st)
}

func (e *Engine) call(ctx context.Context, st *State, eff Effect, obs Observation) error {
	p := e.Provider
	switch eff.Kind {
	case EffSetImage:
		tc, err := p.SetImage(ctx, st.Group, eff.Value, st.Change)
		if err != nil {
			return err
		}
		st.Template = &tc
		if tc.PreviousImage != "" {
			st.OldImage = tc.PreviousImage
		}
		return nil
	case EffSetVersion:
		return p.SetTemplateVersion(ctx, st.Group, eff.Version)
	case EffSetDesired:
		return p.SetDesired(ctx, st.Group, eff.N)
	case EffProtect, EffUnprotect:
		return p.SetProtection(ctx, st.Group, eff.IDs, eff.Kind == EffProtect)
	case EffTagName:
		return p.TagInstance(ctx, eff.ID, "Name", eff.Value)
	case EffDrain:
		in, _ := obs.Group.Instance(eff.ID)
		if e.Nodes == nil {
			return nil
		}
		err := e.Nodes.Drain(ctx, in, *eff.Drain)
		if err != nil && obs.Nodes[eff.ID].Err != "" {
			// The node was already unreachable: nothing to drain; its
			// termination follows once the window has passed.
			e.Log.Warn("drain of unreachable node", "instance", eff.ID, "err", err)
			return nil
		}
		return err
	case EffTerminate, EffTerminateKeep:
		err := p.Terminate(ctx, st.Group, eff.ID, eff.Kind == EffTerminate)
		if errors.Is(err, ErrNotFound) {
			return nil // already on its way out: never terminate twice
		}
		return err
	case EffSuspend, EffResume:
		ps := e.processes()
		if ps == nil {
			return nil
		}
		if eff.Kind == EffSuspend {
			return ps.SuspendProcesses(ctx, st.Group, eff.IDs)
		}
		return ps.ResumeProcesses(ctx, st.Group, eff.IDs)
	case EffSetHealthy:
		ps := e.processes()
		if ps == nil {
			return nil
		}
		for _, id := range eff.IDs {
			if err := ps.SetInstanceHealth(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	case EffDeregister, EffRegister:
		ts := e.targets()
		if ts == nil {
			return nil
		}
		if eff.Kind == EffDeregister {
			return ts.DeregisterTargets(ctx, st.Group, eff.IDs)
		}
		return ts.RegisterTargets(ctx, st.Group, eff.IDs)
	}
	return fmt.Errorf("unknown effect %s", eff.Kind)
}

// apply records a done effect in the step's progress.
func (e *Engine) apply(st *State, eff Effect, now time.Time) {
	switch {
	case eff.Kind == EffSuspend && st.Suspension != nil:
		st.Suspension.Active, st.Suspension.Resumed = true, false
	case eff.Kind == EffResume && st.Suspension != nil:
		st.Suspension.Resumed = true
	}
	steps, cur := st.current()
	if *cur >= len(steps) {
		return
	}
	s := &steps[*cur]
	switch eff.Kind {
	case EffDrain:
		if s.Drains == nil {
			s.Drains = map[string]time.Time{}
		}
		s.Drains[eff.ID] = now
	case EffTerminate, EffTerminateKeep:
		if s.Terminated == nil {
			s.Terminated = map[string]time.Time{}
		}
		s.Terminated[eff.ID] = now
	case EffProtect:
		for _, id := range eff.IDs {
			if !slices.Contains(st.Protected, id) {
				st.Protected = append(st.Protected, id)
			}
		}
	case EffUnprotect:
		st.Protected = slices.DeleteFunc(st.Protected, func(id string) bool { return slices.Contains(eff.IDs, id) })
	case EffSetImage:
		s.Done, s.Ended = true, now
	case EffDeregister:
		if s.Deregistered == nil {
			s.Deregistered = map[string]time.Time{}
		}
		for _, id := range eff.IDs {
			s.Deregistered[id] = now
		}
	case EffSetHealthy:
		if s.Kind == StepReregister {
			s.Done, s.Ended = true, now
		}
	}
}

// enterPhase closes the previous phase and opens phase p: its record, its
// probe and its metric baselines.
func (e *Engine) enterPhase(ctx context.Context, st *State, plan *Plan, p int) error {
	if p == e.phase && e.phaseOpen {
		return nil
	}
	if e.phaseOpen && p != e.phase {
		if err := e.endPhase(ctx, st, plan); err != nil {
			return err
		}
	}
	e.phase = p
	if p < 0 && !st.Rollback {
		return nil
	}
	g, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return fmt.Errorf("describe group: %w", err)
	}
	lb := ""
	if l, ok := e.Provider.(LoadBalancerURLer); ok {
		lb, _ = l.LoadBalancerURL(ctx, st.Group)
	}
	e.phaseOpen = true
	e.lastCheck = e.Now()
	rec := e.record(st, p)
	if rec.Started.IsZero() {
		rec.Started = e.Now()
	}
	rec.Status = "running"
	e.event(st, "phase", "phase started", "phase", rec.Name)
	return e.Checker.StartPhase(ctx, e.checksFor(plan, p), g, lb)
}

// endPhase stops the phase's probe and judges it on its final figures.
func (e *Engine) endPhase(ctx context.Context, st *State, plan *Plan) error {
	e.phaseOpen = false
	rec := e.record(st, e.phase)
	final := e.Checker.EndPhase(ctx)
	rec.Probe = final
	if final != nil {
		var probes []Check
		for _, c := range e.checksFor(plan, e.phase) {
			if c.Probe != nil {
				probes = append(probes, c)
			}
		}
		results := e.Checker.Run(ctx, probes, Group{}, final, e.Now())
		e.recordChecks(st, e.phase, results)
		if f := failed(results); f != "" {
			rec.Status, rec.Ended = "failed", e.Now()
			return fmt.Errorf("phase %s: check %s", rec.Name, f)
		}
	}
	if rec.Status == "running" {
		rec.Status = "done"
	}
	rec.Ended = e.Now()
	e.event(st, "phase", "phase ended", "phase", rec.Name, "status", rec.Status)
	return e.save(st)
}

// closePhase ends the open phase with status without judging it.
func (e *Engine) closePhase(ctx context.Context, st *State, status string) {
	if !e.phaseOpen {
		return
	}
	e.phaseOpen = false
	rec := e.record(st, e.phase)
	rec.Probe = e.Checker.EndPhase(ctx)
	rec.Status, rec.Ended = status, e.Now()
}

// record returns the phase record of p; -1 in rollback is the rollback's.
func (e *Engine) record(st *State, p int) *PhaseRecord {
	if p < 0 || p >= len(st.Phases) {
		for i := range st.Phases {
			if st.Phases[i].Name == "rollback" {
				return &st.Phases[i]
			}
		}
		st.Phases = append(st.Phases, PhaseRecord{Name: "rollback", Status: "pending"})
		return &st.Phases[len(st.Phases)-1]
	}
	return &st.Phases[p]
}

func (e *Engine) recordChecks(st *State, p int, rs []CheckResult) {
	rec := e.record(st, p)
	for _, r := range rs {
		replaced := false
		for i := range rec.Checks {
			if rec.Checks[i].Name == r.Name {
				// Keep a failure on record: a later pass does not undo it.
				if rec.Checks[i].Pass || !r.Pass {
					rec.Checks[i] = r
				}
				replaced = true
			}
		}
		if !replaced {
			rec.Checks = append(rec.Checks, r)
		}
		e.event(st, "check", r.Name, "pass", r.Pass, "detail", r.Detail)
	}
}

// phaseOverdue reports a phase past its deadline, counted from the start
// of its first step after its window.
func (e *Engine) phaseOverdue(st *State, plan *Plan, p int, now time.Time) string {
	if p < 0 || st.Rollback || p >= len(plan.Phases) || plan.Phases[p].Deadline == 0 {
		return ""
	}
	var start time.Time
	for _, s := range st.Steps {
		if s.Phase == p && s.Kind != StepWindow && !s.Started.IsZero() {
			start = s.Started
			break
		}
	}
	if start.IsZero() {
		return ""
	}
	if dl := plan.Phases[p].Deadline.D(); now.Sub(start) > dl {
		return fmt.Sprintf("phase %s missed its deadline of %s", plan.Phases[p].Name, dl)
	}
	return ""
}

// fail stops the forward steps: it rolls back when the plan says auto, or
// stops and waits for a command. A failure while rolling back ends it.
func (e *Engine) fail(ctx context.Context, st *State, plan *Plan, reason string) error {
	e.Log.Warn("rollout failed", "change", st.Change, "reason", reason)
	e.event(st, "fail", reason, "step", st.stepKey())
	if e.phaseOpen {
		rec := e.record(st, e.phase)
		rec.Status = "failed"
	}
	if st.Rollback {
		st.Status, st.Ended = StatusRollbackFailed, e.Now()
		st.Failure += "; rollback: " + reason
		e.closePhase(ctx, st, "failed")
		e.save(st)
		e.lock.Release(ctx)
		return fmt.Errorf("%w: rollback failed: %s", ErrFailed, reason)
	}
	st.Failure = reason
	if plan.Rollback.OnFailure != "auto" {
		st.Status = StatusFailed
		e.closePhase(ctx, st, "failed")
		e.save(st)
		e.lock.Release(ctx)
		return fmt.Errorf("%w: %s (rollback is manual: run wsfleet rollback or abort)", ErrFailed, reason)
	}
	return e.startRollback(ctx, st, reason)
}

// startRollback compiles the rollback against the group now and switches
// the engine to it.
func (e *Engine) startRollback(ctx context.Context, st *State, reason string) error {
	if st.Failure == "" {
		st.Failure = reason
	}
	e.closePhase(ctx, st, "rolled back")
	g, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return fmt.Errorf("rollback: describe group: %w", err)
	}
	st.RollbackSteps = CompileRollback(st, g)
	st.Rollback, st.RCursor, st.Status = true, 0, StatusRollingBack
	e.phase = -2
	e.event(st, "rollback", "rolling back", "reason", reason, "steps", len(st.RollbackSteps))
	return e.save(st)
}

// finish closes the last phase, writes the outcome and frees the group.
func (e *Engine) finish(ctx context.Context, st *State, plan *Plan) error {
	if e.phaseOpen {
		if err := e.endPhase(ctx, st, plan); err != nil {
			if st.Rollback {
				e.Log.Warn("rollback probe", "err", err)
			} else {
				return e.fail(ctx, st, plan, err.Error())
			}
		}
	}
	st.Ended = e.Now()
	st.Waiting = ""
	if st.Rollback {
		st.Status = StatusRolledBack
	} else {
		st.Status = StatusSucceeded
	}
	e.event(st, "end", string(st.Status))
	if err := e.save(st); err != nil {
		return err
	}
	if err := e.lock.Release(ctx); err != nil {
		return err
	}
	if st.Status == StatusRolledBack {
		return fmt.Errorf("%w: %s (rolled back)", ErrFailed, st.Failure)
	}
	return nil
}

// save writes the state, with the API call counts so far.
func (e *Engine) save(st *State) error {
	if cc, ok := e.Provider.(CallCounter); ok {
		calls := maps.Clone(e.callsBase)
		if calls == nil {
			calls = map[string]int{}
		}
		for k, v := range cc.APICalls() {
			calls[k] += v
		}
		st.Calls = calls
	}
	if e.View != nil {
		e.View(st)
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if bytes.Equal(data, e.lastSaved) {
		return nil // a poll that changed nothing
	}
	if err := e.Store.put(st.Change, data); err != nil {
		return err
	}
	e.lastSaved = data
	return nil
}

func (e *Engine) event(st *State, typ, msg string, kv ...any) {
	e.Log.Info(msg, append([]any{"change", st.Change, "type", typ}, kv...)...)
	if e.Events != nil {
		e.Events.Write(e.Now(), st.Change, typ, msg, kv...)
	}
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

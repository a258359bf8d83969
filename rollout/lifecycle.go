package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"
)

// Prepare parses a plan and compiles it against the group as it is now,
// changing nothing: what `wsfleet plan` shows.
func Prepare(ctx context.Context, p Provider, planYAML []byte) (*Plan, Group, []Step, error) {
	plan, err := ParsePlanContext(ctx, planYAML)
	if err != nil {
		return nil, Group{}, nil, err
	}
	if err := plan.CheckCredentials(); err != nil {
		return plan, Group{}, nil, err
	}
	g, err := p.Group(ctx, plan.Group)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return plan, Group{}, nil, PlanErrors{plan.errAt("group", "no Auto Scaling group named %q: %v", plan.Group, err)}
		}
		return plan, Group{}, nil, fmt.Errorf("describe group %s: %w", plan.Group, err)
	}
	steps, err := CompileContext(ctx, plan, g)
	if err != nil {
		return plan, g, nil, err
	}
	if err := checkDrainFits(ctx, p, plan); err != nil {
		return plan, g, nil, err
	}
	if err := checkPrevious(ctx, p, plan, g); err != nil {
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
	e.ctx = ctx
	if err := e.needTerraform(planYAML); err != nil {
		return nil, err
	}
	plan, g, steps, err := Prepare(ctx, e.Provider, planYAML)
	if err != nil {
		return nil, err
	}
	if ic, ok := e.Provider.(ImageChecker); ok && plan.Image.AMI != "" {
		exists, err := ic.ImageExists(ctx, plan.Image.AMI)
		if err != nil {
			return nil, fmt.Errorf("check image %s: %w", plan.Image.AMI, err)
		}
		if !exists {
			return nil, PlanErrors{plan.errAt("image", "no image %q exists in the region; give an AMI id the account can launch", plan.Image.AMI)}
		}
	}
	if prev, err := e.Store.Load(plan.Change); err == nil && !prev.Status.Final() {
		return nil, fmt.Errorf("change %s is already %s (started %s); use resume, rollback or abort", plan.Change, prev.Status, prev.Started.UTC().Format(time.RFC3339))
	}
	if err := e.preCheck(ctx, plan, g); err != nil {
		return nil, err
	}
	if err := e.acquire(ctx, plan.Group, plan.Change, e.Force); err != nil {
		return nil, err
	}
	if _, err := e.Store.TakeControl(plan.Change); err != nil { // left over from an earlier run
		return nil, e.giveUp(ctx, err)
	}
	now := e.Now()
	st := &State{
		Change: plan.Change, Group: plan.Group, PlanYAML: planYAML, TimeScale: e.TimeScale,
		Status: StatusRunning, Started: now, Owner: e.lock.Me.Owner(), Lease: e.lock.Me.Expires, Steps: steps,
		OldImage: g.Image, InitialDesired: g.Desired,
	}
	if plan.Image.Current {
		// The change was made outside wsfleet: recorded now, as what
		// the rollback goes back to (the set-image step has nothing
		// to make).
		tc, err := currentChange(plan, g)
		if err != nil {
			return nil, PlanErrors{plan.errAt("image", "%v", err)}
		}
		st.Template, st.OldImage = &tc, tc.PreviousImage
	}
	image, ref := st.NewImage(plan), st.newRef(plan)
	for _, in := range g.Instances {
		if in.Live() && !runs(in, image, ref) {
			st.OldNames = append(st.OldNames, in.Name)
		}
	}
	sort.Slice(st.OldNames, func(i, j int) bool { return nameLess(st.OldNames[i], st.OldNames[j]) })
	for _, ph := range plan.Phases {
		st.Phases = append(st.Phases, PhaseRecord{Name: ph.Name, Status: "pending"})
	}
	pl, reason := PlacementSupport(ctx, e.Provider, e.Nodes, plan, g)
	pl.Reason = reason
	st.Placement = &pl
	// Created only if no unfinished change of that id was stored in the
	// meantime (by another engine, racing this one).
	if _, err := e.Store.Update(plan.Change, func(prev *State) (*State, error) {
		if prev != nil && !prev.Status.Final() {
			return nil, fmt.Errorf("change %s was just started by %s", plan.Change, prev.Owner)
		}
		return st, nil
	}); err != nil {
		return nil, e.giveUp(ctx, err)
	}
	e.event(st, "start", "rollout started", "steps", len(steps), "desired", g.Desired, "image", image, "old_image", st.OldImage)
	e.event(st, "placement", PlacementLine(pl), "health_wait", pl.HealthWait.String())
	return st, e.run(ctx, st, plan)
}

// preCheck runs the pre-checks of the plan's gates (PreChecker) once,
// before anything changes: a failure refuses the rollout.
func (e *Engine) preCheck(ctx context.Context, plan *Plan, g Group) error {
	image, ref, err := plan.target(g)
	if err != nil {
		return err
	}
	env := PhaseEnv{Checker: e.Checker, Image: image, Ref: ref, Group: g, Now: e.Now(), LoadBalancerURL: e.loadBalancerURL(plan.Group)}
	_, err = PreCheck(ctx, plan, env)
	return err
}

// PreCheck runs the pre-checks of the plan's gates once against env, in
// the plan's order, and stops at the first that fails: what Start does
// before any change, and what `wsfleet plan` shows.
func PreCheck(ctx context.Context, plan *Plan, env PhaseEnv) ([]CheckResult, error) {
	var out []CheckResult
	for _, c := range plan.Checks {
		pc, ok := c.Spec.Gate().(PreChecker)
		if !ok {
			continue
		}
		r := pc.PreCheck(ctx, env)
		out = append(out, CheckResult{Name: c.Name, Pass: r.Pass, Detail: r.Detail, At: env.Now})
		if !r.Pass {
			return out, fmt.Errorf("check %s: pre-check failed before any change: %s", c.Name, r.Detail)
		}
	}
	return out, nil
}

// Resume continues a rollout after a crash, an interrupt, a detach or a
// pause, or rolls it back when rollback is set.
func (e *Engine) Resume(ctx context.Context, change string, rollback bool) (*State, error) {
	e.ctx = ctx
	st, err := e.claim(change)
	if err != nil {
		return st, err
	}
	plan, err := ParsePlan(st.PlanYAML)
	if err == nil {
		err = plan.CheckCredentials()
	}
	if err != nil {
		return st, fmt.Errorf("stored plan: %w", err)
	}
	if err := e.needTerraform(st.PlanYAML); err != nil {
		return st, e.unclaim(st, err)
	}
	if st.TimeScale > 0 && e.TimeScale == 1 {
		e.TimeScale = st.TimeScale
	}
	// Calls made by earlier runs; this process's are added on each save.
	e.callsBase = maps.Clone(st.Calls)
	if err := e.acquire(ctx, st.Group, st.Change, e.Force); err != nil {
		return st, e.unclaim(st, err)
	}
	st.Owner, st.Lease, st.NotBefore = e.lock.Me.Owner(), e.lock.Me.Expires, time.Time{}
	st.Control = ""
	if _, err := e.Store.TakeControl(change); err != nil { // a command for an engine that is gone
		return st, e.giveUp(ctx, err)
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
			return st, e.giveUp(ctx, err)
		}
	}
	if err := e.save(st); err != nil {
		return st, e.giveUp(ctx, err)
	}
	return st, e.run(ctx, st, plan)
}

// Abort aborts a rollout whose engine is gone (`wsfleet abort` with no
// engine running): it takes the lock, undoes the change's hold on the
// group (see endEffects) and frees it.
func (e *Engine) Abort(ctx context.Context, change string) (*State, error) {
	e.ctx = ctx
	st, err := e.claim(change)
	if err != nil {
		return st, err
	}
	e.callsBase = st.Calls
	if err := e.acquire(ctx, st.Group, st.Change, true); err != nil {
		return st, e.unclaim(st, err)
	}
	st.Owner, st.Lease = e.lock.Me.Owner(), e.lock.Me.Expires
	return st, e.abort(ctx, st)
}

// abort ends the change where it is: the clean-up of endEffects, effect
// by effect through the journal, then the status. Aborting is saved first,
// so a crash in between is finished by Resume. An abort that fails frees
// the group all the same; abort again finishes it.
func (e *Engine) abort(ctx context.Context, st *State) (err error) {
	defer func() {
		if err != nil && !errors.Is(err, ErrCrashed) {
			err = e.giveUp(ctx, err)
		}
	}()
	if !st.Aborting {
		st.Aborting = true
		e.event(st, "abort", "aborting by hand; the group is left as it is, the suspension undone")
		if err := e.save(st); err != nil {
			return err
		}
	}
	if err := e.endHold(ctx, st); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	st.Status, st.Ended, st.Aborting = StatusAborted, e.Now(), false
	e.event(st, "abort", "aborted")
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	e.closePhase(cctx, st, "aborted")
	if err := e.save(st); err != nil {
		return err
	}
	return e.release(cctx)
}

// endHold makes the effects that end the change's hold on the group
// (endEffects), effect by effect through the journal, until none is due:
// what an abort does, and what a rollback that failed still does, so that
// neither leaves the group's processes suspended.
func (e *Engine) endHold(ctx context.Context, st *State) error {
	for round := 0; ; round++ {
		g, err := e.Provider.Group(ctx, st.Group)
		if err != nil {
			return fmt.Errorf("describe group %s: %w", st.Group, err)
		}
		effs := endEffects(st, g)
		if len(effs) == 0 {
			return nil
		}
		if len(effs) == 1 && effs[0].Kind == EffResume {
			// Uncordoned nodes are marked healthy once their targets are
			// (endWait), before the processes resume; bounded.
			if waiting := uncordonPending(st, g); waiting != "" && round < 10 && st.Placement != nil {
				if err := e.Sleep(ctx, max(st.Placement.cordonBound()/10, e.MinPoll)); err != nil {
					return err
				}
				continue
			}
		}
		if round == 10 {
			return fmt.Errorf("%s still due after %d rounds; run abort again", effs[0].Key, round)
		}
		for _, eff := range effs {
			if err := e.do(ctx, st, eff, Observation{Group: g}); err != nil {
				return fmt.Errorf("%s: %w", eff.Key, err)
			}
		}
	}
}

// fail stops the forward steps: it rolls back when the plan says auto, or
// stops and waits for a command. A failure while rolling back ends it.
// What it writes after the failure is written even when ctx was
// cancelled, and its errors come back joined with the failure.
func (e *Engine) fail(ctx context.Context, st *State, plan *Plan, reason string) error {
	e.Log.Warn("rollout failed", "change", st.Change, "reason", reason)
	e.event(st, "fail", reason, "step", st.stepKey())
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if e.phaseOpen {
		e.phaseRecord(st, e.phase).Status = "failed"
	}
	st.Lease = time.Time{} // no engine goes on with it
	if st.Rollback {
		// An effect of the rollback did not happen. What the change
		// suspended is resumed all the same (and what it drained is not
		// left alive), as an abort would: the group must not stay without
		// health replacement because its rollback stopped short.
		e.closePhase(cctx, st, "failed")
		st.Failure += "; rollback: " + reason
		herr := e.endHold(cctx, st)
		if herr != nil {
			st.Failure += "; ending the change's hold on the group: " + herr.Error()
			e.event(st, "fail", "could not end the change's hold on the group", "err", herr.Error())
			herr = fmt.Errorf("end the change's hold on the group (run wsfleet abort): %w", herr)
		}
		st.Status, st.Ended = StatusRollbackFailed, e.Now()
		return errors.Join(fmt.Errorf("%w: rollback failed: %s", ErrFailed, reason), herr, e.save(st), e.release(cctx))
	}
	st.Failure = reason
	if plan.Rollback.OnFailure != "auto" {
		st.Status = StatusFailed
		e.closePhase(cctx, st, "failed")
		return errors.Join(fmt.Errorf("%w: %s (rollback is manual: run wsfleet rollback or abort)", ErrFailed, reason), e.save(st), e.release(cctx))
	}
	return e.startRollback(ctx, st, reason)
}

// startRollback compiles the rollback against the group now and switches
// the engine to it.
func (e *Engine) startRollback(ctx context.Context, st *State, reason string) error {
	if st.Failure == "" {
		st.Failure = reason
	}
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	e.closePhase(cctx, st, "rolled back")
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
// It reports end false when the last phase failed its end and a rollback
// began instead.
func (e *Engine) finish(ctx context.Context, st *State, plan *Plan) (end bool, err error) {
	if e.phaseOpen {
		if err := e.endPhase(ctx, st, plan); err != nil {
			if !st.Rollback {
				if err := e.fail(ctx, st, plan, err.Error()); err != nil || !st.Rollback {
					return true, err
				}
				return false, nil
			}
			e.Log.Warn("rollback gates at the end", "change", st.Change, "err", err)
		}
	}
	st.Ended = e.Now()
	st.Waiting = ""
	if st.Rollback {
		st.Status = StatusRolledBack
		if st.StillFailing != "" {
			st.Failure += "; rolled back, but after the rollback " + st.StillFailing + " (still failing: the fault may not be the new image)"
		}
	} else {
		st.Status = StatusSucceeded
	}
	e.event(st, "end", string(st.Status))
	// The group is freed before the end is saved: a crash between the
	// two leaves a change that is not final, which resume finishes (and
	// frees again), rather than a final one whose lock nobody removes.
	rerr := e.release(ctx)
	if err := e.save(st); err != nil {
		return true, errors.Join(err, rerr)
	}
	if rerr != nil {
		return true, rerr
	}
	if st.Status == StatusRolledBack {
		return true, fmt.Errorf("%w: %s (rolled back)", ErrFailed, st.Failure)
	}
	return true, nil
}

// detach leaves the rollout before a window: the state says what it
// waits for, and the lock stays held by the change with no process.
func (e *Engine) detach(ctx context.Context, st *State, d Decision) error {
	st.Status, st.Waiting, st.NotBefore = StatusWaiting, d.Reason, d.Detach
	if err := e.lock.Detach(ctx, d.Detach); err != nil {
		return err
	}
	// No process holds it: whoever resumes first takes it.
	me := e.lock.Me
	me.PID = 0
	st.Owner, st.Lease = me.Owner(), time.Time{}
	e.locked = false
	e.event(st, "detach", "detached before the window", "not_before", d.Detach)
	if err := e.save(st); err != nil {
		return err
	}
	return ErrDetached
}

// claim takes an unfinished change for this engine, for Resume and
// Abort: in one atomic update of the state (a conditional write on S3),
// it refuses a change whose holder's lease is still running (ErrHeld,
// naming it) unless Force, and otherwise writes this engine as the owner
// with a fresh lease. Of two engines claiming at once, one writes first
// and the other, reading again, finds it the holder.
func (e *Engine) claim(change string) (*State, error) {
	e.defaults()
	me := e.me(change)
	var seen *State
	st, err := e.Store.Update(change, func(cur *State) (*State, error) {
		seen = cur
		if cur == nil {
			return nil, ErrNoRollout
		}
		if cur.Status.Final() {
			return nil, fmt.Errorf("change %s is already %s", change, cur.Status)
		}
		if h, held := cur.heldAgainst(me, e.Now(), processAlive); held && !e.Force {
			return nil, fmt.Errorf("%w: %s (resume again once its lease expires, or with --force if it is gone)", ErrHeld, h)
		}
		cur.Owner, cur.Lease = me.Owner(), e.Now().Add(e.LockTTL).Truncate(time.Second)
		return cur, nil
	})
	if err != nil {
		return seen, err
	}
	return st, nil
}

// unclaim gives the change back after claim when the group's lock was
// refused: the lease is dropped so that the holder of the lock, or anyone
// after it, may resume.
func (e *Engine) unclaim(st *State, err error) error {
	st.Lease = time.Time{}
	return errors.Join(err, e.save(st))
}

// acquire takes the group's lock for the change (see Lock.Acquire).
func (e *Engine) acquire(ctx context.Context, group, change string, force bool) error {
	e.lock = NewLock(e.Provider, group, change, e.LockTTL, e.Now)
	e.lock.Me = e.me(change)
	e.lock.Sleep = e.Sleep
	if err := e.lock.Acquire(ctx, force); err != nil {
		return err
	}
	e.locked = true
	return nil
}

// release frees the group if this engine holds it; once.
func (e *Engine) release(ctx context.Context) error {
	if !e.locked {
		return nil
	}
	e.locked = false
	// A fault met by the release (a throttled or failed read-back) must
	// not leave a finished change's lock on the group: try again a few
	// times, a second apart, before giving up with the error.
	var err error
	for attempt := 0; attempt < releaseAttempts; attempt++ {
		if err = e.lock.Release(ctx); err == nil {
			return nil
		}
		e.Log.Warn("release lock", "group", e.lock.Group, "attempt", attempt+1, "err", err)
		if serr := e.Sleep(ctx, time.Second); serr != nil {
			break
		}
	}
	return err
}

// releaseAttempts bounds the tries of a lock release that meets faults.
const releaseAttempts = 3

// giveUp frees the group after err stopped the engine, with a context
// that outlives ctx, and returns err joined with the release's error.
func (e *Engine) giveUp(ctx context.Context, err error) error {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	return errors.Join(err, e.release(cctx))
}

package rollout

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// decideSuspend suspends the group's ReplaceUnhealthy and AZRebalance for
// the change, except those someone else had already suspended: those are
// recorded as theirs, before the call, so that neither the end of the
// change nor a resume after a crash ever resumes them.
func (e *Engine) decideSuspend(st *State, s Step, obs Observation, now time.Time) Decision {
	if e.processes() == nil {
		return done(s, now)
	}
	if sp := st.Suspension; sp != nil && sp.Resumed {
		// A rollback after the forward steps resumed: suspend again,
		// judging anew what is someone else's.
		st.Suspension = nil
	}
	if st.Suspension == nil {
		sp := &Suspension{}
		for _, p := range SuspendedProcesses {
			if slices.Contains(obs.Group.Suspended, p) {
				sp.Already = append(sp.Already, p)
			} else {
				sp.Ours = append(sp.Ours, p)
			}
		}
		sp.Active = len(sp.Ours) == 0
		st.Suspension = sp
	}
	if st.Suspension.Active {
		return done(s, now)
	}
	return Decision{Step: s, Effects: []Effect{{Key: "suspend-processes", Kind: EffSuspend, IDs: st.Suspension.Ours}}}
}

// endEffects is what ends the change's hold on the group, in order: no
// instance the engine drained is left alive (once replacement resumes,
// the group would replace it, marked unhealthy as it is, and a draining
// node serves nobody); instances it took out of the load balancer and
// keeps go back in, marked healthy; then the processes it suspended
// resume. An abort (abort true) may find a batch half done; a finished
// change or rollback finds nothing but the suspension to undo.
func (e *Engine) endEffects(st *State, obs Observation, abort bool) []Effect {
	g := obs.Group
	var healthy, register []string
	var out []Effect
	seen := map[string]bool{}
	drained := st.drainAsked()
	for _, s := range append(slices.Clone(st.Steps), st.RollbackSteps...) {
		for _, id := range append(slices.Clone(s.Targets), keys(s.Drains)...) {
			in, ok := g.Instance(id)
			if _, gone := s.Terminated[id]; gone || !drained[id] || !ok || !in.Live() || seen[id] {
				continue
			}
			seen[id] = true
			kind := EffTerminate // launch-before-terminate: its replacement is in
			if s.Strategy == TerminateThenReplace {
				kind = EffTerminateKeep
			}
			out = append(out, Effect{Key: "end-terminate/" + id, Kind: kind, ID: id})
		}
	}
	for _, s := range append(slices.Clone(st.Steps), st.RollbackSteps...) {
		for id := range s.Deregistered {
			in, ok := g.Instance(id)
			if seen[id] || drained[id] || !ok || !in.Live() {
				continue
			}
			seen[id] = true
			if in.Health == "draining" || in.Health == "unregistered" {
				register = append(register, id)
			}
			if in.HealthStatus == "Unhealthy" {
				healthy = append(healthy, id)
			}
		}
	}
	slices.Sort(register)
	slices.Sort(healthy)
	if len(register) > 0 {
		out = append(out, Effect{Key: "end-register", Kind: EffRegister, IDs: register})
	}
	if len(healthy) > 0 {
		out = append(out, Effect{Key: "end-set-healthy", Kind: EffSetHealthy, IDs: healthy})
	}
	if len(out) > 0 {
		return out
	}
	if sp := st.Suspension; sp != nil && sp.Active && !sp.Resumed && len(sp.Ours) > 0 {
		return []Effect{{Key: "resume-processes", Kind: EffResume, IDs: sp.Ours}}
	}
	return nil
}

// abort ends the change where it is: the clean-up of endEffects, effect
// by effect through the journal, then the status. Aborting is saved first,
// so a crash in between is finished by Resume.
func (e *Engine) abort(ctx context.Context, st *State) error {
	if !st.Aborting {
		st.Aborting = true
		e.event(st, "abort", "aborting by hand; the group is left as it is, the suspension undone")
		if err := e.save(st); err != nil {
			return err
		}
	}
	for round := 0; ; round++ {
		g, err := e.Provider.Group(ctx, st.Group)
		if err != nil {
			return fmt.Errorf("abort: describe group %s: %w", st.Group, err)
		}
		effs := e.endEffects(st, Observation{Group: g}, true)
		if len(effs) == 0 {
			break
		}
		if round == 10 {
			return fmt.Errorf("abort: %s still due after %d rounds; run abort again", effs[0].Key, round)
		}
		for _, eff := range effs {
			if err := e.do(ctx, st, eff, Observation{Group: g}); err != nil {
				return fmt.Errorf("abort: %s: %w", eff.Key, err)
			}
		}
	}
	st.Status, st.Ended, st.Aborting = StatusAborted, e.Now(), false
	e.event(st, "abort", "aborted")
	e.closePhase(ctx, st, "aborted")
	if err := e.save(st); err != nil {
		return err
	}
	return e.lock.Release(ctx)
}

// Abort aborts a rollout whose engine is gone (`wsfleet abort` with no
// engine running): it takes the lock, undoes the change's hold on the
// group (see endEffects) and frees it.
func (e *Engine) Abort(ctx context.Context, change string) (*State, error) {
	e.defaults()
	st, err := e.Store.Load(change)
	if err != nil {
		return nil, err
	}
	if st.Status.Final() {
		return st, fmt.Errorf("change %s is already %s", change, st.Status)
	}
	e.callsBase = st.Calls
	e.lock = NewLock(e.Provider, st.Group, st.Change, e.LockTTL, e.Now)
	e.lock.Sleep = e.Sleep
	if err := e.lock.Acquire(ctx, true); err != nil {
		return st, err
	}
	st.Owner = e.lock.Me.Owner()
	return st, e.abort(ctx, st)
}

// recordReplaced lists, in the phase's record, each target of a finished
// batch with the instance that took its name.
func (e *Engine) recordReplaced(st *State, s Step) {
	if len(s.Targets) == 0 || len(s.Adopted) == 0 {
		return
	}
	rec := e.record(st, s.Phase)
	for i, id := range s.Targets {
		name := ""
		if i < len(s.TargetNames) {
			name = s.TargetNames[i]
		}
		for _, a := range s.Adopted {
			if a.Name == name && name != "" {
				line := fmt.Sprintf("%s (%s) -> %s", name, id, a.ID)
				if !slices.Contains(rec.Replaced, line) {
					rec.Replaced = append(rec.Replaced, line)
				}
			}
		}
	}
}

func keys(m map[string]time.Time) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

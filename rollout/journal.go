package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The effect journal: every call the engine makes on the cloud or a node
// goes through do, which writes its intent before the call and its outcome
// after, and records what the call did in the state (apply). save is the
// one writer of the state.

// do makes one effect with its journal entries around it: intent before
// the call, done or failed after. A crash between the two leaves an open
// intent; the next decision, made on a fresh observation, either finds
// the effect done (an instance already terminating, a version already
// made) or asks for it again, and every provider call is safe to repeat.
func (e *Engine) do(ctx context.Context, st *State, eff Effect, obs Observation) error {
	_, err := e.doAll(ctx, st, []Effect{eff}, obs)
	return err
}

// doAll makes a decision's effects in order and returns the first that
// failed, with its error; the effects after it are not made.
//
// Each save rewrites the whole state, whose journal grows with every
// effect, so at a thousand instances the saves are what a batch costs.
// Effects whose open intent after a crash means nothing but "decide again
// from what the cloud shows" (tags, terminations, deregistrations, the
// desired capacity...) share one save of their intents before the first
// call and one of their outcomes after the last. A drain's open intent
// means more: the node may be draining, and abort and rollback never keep
// it (drainAsked). So a decision with a drain saves each intent before its
// call, and each outcome with the next intent: at a crash only the drain
// in flight is open.
func (e *Engine) doAll(ctx context.Context, st *State, effs []Effect, obs Observation) (Effect, error) {
	batch := !slices.ContainsFunc(effs, func(eff Effect) bool { return eff.Kind == EffDrain })
	key := st.stepKey()
	first := len(st.Journal)
	intent := func(i int) {
		st.Journal = append(st.Journal, JournalEntry{Seq: first + i + 1, Step: key, Effect: effs[i], Status: "intent", At: e.Now()})
	}
	if batch {
		for i := range effs {
			intent(i)
		}
		if err := e.save(st); err != nil {
			return effs[0], err
		}
	}
	for i, eff := range effs {
		if !batch {
			intent(i)
			if err := e.save(st); err != nil {
				return eff, err
			}
		}
		if e.Crash != nil && e.Crash("before:"+key+":"+eff.Key) {
			return eff, ErrCrashed
		}
		start := e.Now()
		out, err := e.call(ctx, st, eff, obs)
		if e.Crash != nil && e.Crash("after:"+key+":"+eff.Key) {
			return eff, ErrCrashed
		}
		j := &st.Journal[first+i]
		j.Took = e.Now().Sub(start).String()
		if err != nil {
			j.Status, j.Error = "failed", err.Error()
			for k := first + i + 1; k < len(st.Journal); k++ {
				st.Journal[k].Status, st.Journal[k].Error = "failed", "not made: "+eff.Key+" failed before it"
			}
			e.event(st, "effect", "effect failed", "effect", eff.Key, "err", err.Error())
			return eff, errors.Join(err, e.save(st))
		}
		j.Status = "done"
		st.apply(eff, out, e.Now())
		e.event(st, "effect", string(eff.Kind), "effect", eff.Key, "step", key, "id", eff.ID, "n", eff.N)
	}
	return Effect{}, e.save(st)
}

// outcome is what a call returns besides its error, for apply.
type outcome struct {
	template *TemplateChange // set-image: the versions before and after
}

// call makes the effect's call. It writes nothing: apply records it.
func (e *Engine) call(ctx context.Context, st *State, eff Effect, obs Observation) (outcome, error) {
	p := e.Provider
	switch eff.Kind {
	case EffSetImage:
		setImage := p.SetImage
		if e.Terraform != nil {
			setImage = func(ctx context.Context, _, image, _ string) (TemplateChange, error) {
				return e.terraformSetImage(ctx, st, image)
			}
		}
		tc, err := setImage(ctx, st.Group, eff.Value, st.Change)
		if err != nil {
			return outcome{}, err
		}
		return outcome{template: &tc}, nil
	case EffSetVersion:
		if e.Terraform != nil && st.Template != nil && st.Template.Terraform != "" {
			return outcome{}, e.terraformRestore(ctx, st)
		}
		return outcome{}, p.SetTemplateVersion(ctx, st.Group, eff.Version)
	case EffSetDesired:
		return outcome{}, p.SetDesired(ctx, st.Group, eff.N)
	case EffProtect, EffUnprotect:
		return outcome{}, p.SetProtection(ctx, st.Group, eff.IDs, eff.Kind == EffProtect)
	case EffTagName:
		return outcome{}, p.TagInstance(ctx, eff.ID, "Name", eff.Value)
	case EffTagNames:
		return outcome{}, e.tagNames(ctx, eff)
	case EffRetire:
		return outcome{}, e.retire(ctx, st.Group, eff)
	case EffDrain:
		in, _ := obs.Group.Instance(eff.ID)
		if e.Nodes == nil {
			return outcome{}, nil
		}
		err := e.Nodes.Drain(ctx, in, *eff.Drain)
		if err != nil && obs.Nodes[eff.ID].Err != "" {
			// The node was already unreachable: nothing to drain; its
			// termination follows once the window has passed.
			e.Log.Warn("drain of unreachable node", "instance", eff.ID, "err", err)
			return outcome{}, nil
		}
		return outcome{}, err
	case EffTerminate, EffTerminateKeep:
		err := p.Terminate(ctx, st.Group, eff.ID, eff.Kind == EffTerminate)
		if errors.Is(err, ErrNotFound) {
			return outcome{}, nil // already on its way out: never terminate twice
		}
		return outcome{}, err
	case EffSuspend, EffResume:
		ps := e.processes()
		if ps == nil {
			return outcome{}, nil
		}
		if eff.Kind == EffSuspend {
			return outcome{}, ps.SuspendProcesses(ctx, st.Group, eff.IDs)
		}
		return outcome{}, ps.ResumeProcesses(ctx, st.Group, eff.IDs)
	case EffSetHealthy:
		ps := e.processes()
		if ps == nil {
			return outcome{}, nil
		}
		for _, id := range eff.IDs {
			if err := ps.SetInstanceHealth(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
				return outcome{}, err
			}
		}
		return outcome{}, nil
	case EffCordon, EffUncordon, EffShed:
		e.place(ctx, st, eff, obs)
		return outcome{}, nil
	case EffDeregister, EffRegister:
		ts := e.targets()
		if ts == nil {
			return outcome{}, nil
		}
		if eff.Kind == EffDeregister {
			return outcome{}, ts.DeregisterTargets(ctx, st.Group, eff.IDs)
		}
		return outcome{}, ts.RegisterTargets(ctx, st.Group, eff.IDs)
	}
	return outcome{}, fmt.Errorf("unknown effect %s", eff.Kind)
}

// apply records a done effect: in the current step's progress, and in
// what the change holds (the template, the protection, the suspension).
func (s *State) apply(eff Effect, out outcome, now time.Time) {
	switch {
	case eff.Kind == EffSuspend && s.Suspension != nil:
		s.Suspension.Active, s.Suspension.Resumed = true, false
	case eff.Kind == EffResume && s.Suspension != nil:
		s.Suspension.Resumed = true
	case eff.Kind == EffSetImage && out.template != nil:
		s.Template = out.template
		if out.template.PreviousImage != "" {
			s.OldImage = out.template.PreviousImage
		}
	case eff.Kind == EffProtect:
		for _, id := range eff.IDs {
			if !slices.Contains(s.Protected, id) {
				s.Protected = append(s.Protected, id)
			}
		}
	case eff.Kind == EffUnprotect:
		s.Protected = slices.DeleteFunc(s.Protected, func(id string) bool { return slices.Contains(eff.IDs, id) })
	case eff.Kind == EffUncordon && s.Placement != nil:
		s.Placement = s.Placement.clone()
		for _, id := range eff.IDs {
			delete(s.Placement.Cordoned, id)
		}
	}
	steps, cur := s.current()
	if *cur >= len(steps) {
		return
	}
	step := &steps[*cur]
	switch eff.Kind {
	case EffDrain:
		if step.Drains == nil {
			step.Drains = map[string]time.Time{}
		}
		step.Drains[eff.ID] = now
	case EffTerminate, EffTerminateKeep:
		if step.Terminated == nil {
			step.Terminated = map[string]time.Time{}
		}
		step.Terminated[eff.ID] = now
	case EffRetire:
		// Every step that decided one of these targets retiring sees it
		// terminated: the current one (the batch) and any before it (a
		// retire the end of the change made again).
		for _, list := range [][]Step{s.Steps, s.RollbackSteps} {
			for i := range list {
				t := &list[i]
				for _, id := range eff.IDs {
					if _, ok := t.Retiring[id]; !ok && t != step {
						continue
					}
					if t.Terminated == nil {
						t.Terminated = map[string]time.Time{}
					}
					t.Terminated[id] = now
				}
			}
		}
	case EffSetImage:
		step.Done, step.Ended = true, now
	case EffDeregister:
		if step.Deregistered == nil {
			step.Deregistered = map[string]time.Time{}
		}
		for _, id := range eff.IDs {
			step.Deregistered[id] = now
		}
	case EffSetHealthy:
		if step.Kind == StepReregister {
			step.Done, step.Ended = true, now
		}
	}
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
	// A backend out of reach (S3 down) holds the engine here, retrying:
	// every effect's intent is saved before the effect, so nothing
	// happens that is not recorded. A refused write (ErrStateChanged:
	// another engine took the change) stops it.
	for wait := e.MinPoll; ; wait = min(2*wait, e.MaxPoll) {
		err := e.Store.put(st.Change, data)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrStateUnavailable) {
			return err
		}
		e.Log.Warn("state not recorded; holding every effect until it is", "change", st.Change, "err", err, "retry_in", wait)
		ctx := e.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		if serr := e.Sleep(ctx, wait); serr != nil {
			return errors.Join(err, serr)
		}
	}
	e.lastSaved = data
	if err := e.Events.Flush(); err != nil {
		e.Log.Warn("event log not stored; kept for the next save", "change", st.Change, "err", err)
	}
	return nil
}

// Retirer is an optional Provider capability: ending a batch of drained
// instances in a few calls (provider/aws: DetachInstances, 20 a call, then
// one EC2 TerminateInstances) rather than one Terminate each.
type Retirer interface {
	// RetireInstances takes the instances out of the group, lowering its
	// desired capacity with them when decrement is set (otherwise the
	// group launches replacements), and terminates them. Idempotent, by
	// reading before writing: an instance already out of the group is not
	// detached again, one already shutting down or terminated is not
	// terminated again, one the group is terminating is left to it. nil
	// means the cloud shows every one out of the group and shut down.
	RetireInstances(ctx context.Context, group string, ids []string, decrement bool) error
}

// InstanceTagger is an optional Provider capability: one tag key set on
// many instances, each with its own value, and read back for all of them
// at once.
type InstanceTagger interface {
	TagInstances(ctx context.Context, key string, values map[string]string) error
}

// retire makes a retire effect: through the provider's Retirer, else one
// Terminate per instance (an instance already on its way out is skipped:
// never terminated twice).
func (e *Engine) retire(ctx context.Context, group string, eff Effect) error {
	decrement := eff.Value != "keep"
	if r, ok := e.Provider.(Retirer); ok {
		return r.RetireInstances(ctx, group, eff.IDs, decrement)
	}
	for _, id := range eff.IDs {
		if err := e.Provider.Terminate(ctx, group, id, decrement); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// tagNames makes a tag-names effect: through the provider's
// InstanceTagger, else one TagInstance per instance.
func (e *Engine) tagNames(ctx context.Context, eff Effect) error {
	if len(eff.Values) != len(eff.IDs) {
		return fmt.Errorf("tag names: %d names for %d instances", len(eff.Values), len(eff.IDs))
	}
	if t, ok := e.Provider.(InstanceTagger); ok {
		values := make(map[string]string, len(eff.IDs))
		for i, id := range eff.IDs {
			values[id] = eff.Values[i]
		}
		return t.TagInstances(ctx, "Name", values)
	}
	for i, id := range eff.IDs {
		if err := e.Provider.TagInstance(ctx, id, "Name", eff.Values[i]); err != nil {
			return err
		}
	}
	return nil
}

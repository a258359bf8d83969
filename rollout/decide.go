package rollout

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Observation is everything a decision reads besides the plan and the
// state: the group and its nodes as the engine saw them just before, the
// time, and the results of the open phase's checks.
type Observation struct {
	Group Group
	Nodes map[string]NodeObs // by instance id
	Now   time.Time
	// Round is a background round of the open phase's checks that
	// finished since the last decision; nil when none did.
	Round []CheckResult
	// Checked is set when the engine ran the phase's checks for this
	// decision, because the decision before asked (RunChecks); Checks
	// are their results.
	Checked bool
	Checks  []CheckResult
}

// NodeObs is one node's admin status, or why it could not be read.
type NodeObs struct {
	Status NodeStatus
	Err    string
}

// EffectKind names a call to the provider or a node.
type EffectKind string

// The effects.
const (
	EffSetImage      EffectKind = "set-image"
	EffSetVersion    EffectKind = "set-template-version"
	EffSetDesired    EffectKind = "set-desired"
	EffProtect       EffectKind = "protect"
	EffUnprotect     EffectKind = "unprotect"
	EffTagName       EffectKind = "tag-name"
	EffDrain         EffectKind = "drain"
	EffTerminate     EffectKind = "terminate"
	EffTerminateKeep EffectKind = "terminate-replace" // terminate without decrement
	EffSuspend       EffectKind = "suspend-processes"
	EffResume        EffectKind = "resume-processes"
	EffDeregister    EffectKind = "deregister-targets"
	EffRegister      EffectKind = "register-targets"
	EffSetHealthy    EffectKind = "set-healthy"
	// EffRetire takes a batch's drained targets (IDs) out of the group
	// and terminates them, all in a few calls (Retirer); Value "keep"
	// keeps the desired capacity (terminate-then-replace), otherwise it
	// is lowered with them.
	EffRetire EffectKind = "retire"
	// EffTagNames gives each instance of IDs the Name in the same place
	// of Values, confirmed with one read for the batch (InstanceTagger).
	EffTagNames EffectKind = "tag-names"
	// EffCordon and EffUncordon set the cordon of the nodes IDs (their
	// readiness fails while they keep serving); EffShed asks node ID to
	// release N of its clients, Value being the shed's id (placement.go).
	EffCordon   EffectKind = "cordon"
	EffUncordon EffectKind = "uncordon"
	EffShed     EffectKind = "shed"
)

// Effect is one call the engine makes. Key identifies it in the journal:
// the same effect decided twice (before and after a crash) has one key.
type Effect struct {
	Key     string        `json:"key"`
	Kind    EffectKind    `json:"kind"`
	ID      string        `json:"id,omitempty"`
	IDs     []string      `json:"ids,omitempty"`
	Values  []string      `json:"values,omitempty"` // tag-names: one per id
	N       int           `json:"n,omitempty"`
	Value   string        `json:"value,omitempty"`
	Version TemplateRef   `json:"version,omitzero"`
	Drain   *DrainOptions `json:"drain,omitempty"`
}

// TerminatedIDs are the instances the effect terminates: a terminate's
// one, a retire's all; none for other effects. Reports and tests count
// terminations by it.
func (e Effect) TerminatedIDs() []string {
	switch e.Kind {
	case EffTerminate, EffTerminateKeep:
		return []string{e.ID}
	case EffRetire:
		return e.IDs
	}
	return nil
}

// Decision is the outcome of deciding the current step: its new
// progress, the effects to make now, and otherwise how long to wait or why
// it failed; with what the engine must record or do besides.
type Decision struct {
	Step    Step
	Effects []Effect
	Done    bool
	Wait    time.Duration // until something is expected to change
	Reason  string        // what the step waits for, for the view
	Fail    string        // non-empty: the step cannot complete
	// RunChecks asks the engine to run the phase's checks now and decide
	// again with their results (Observation.Checks); nothing else of
	// this decision is recorded.
	RunChecks bool
	// Checks are check results to record in the phase's record.
	Checks []CheckResult
	// Suspension, when set, replaces the state's suspension record,
	// before the effects (their journal intent carries it).
	Suspension *Suspension
	// Detach, when set, is when the window the step waits for opens:
	// the engine saves and leaves until then (Engine.Detach).
	Detach time.Time
	// StillFailing is a rollback's check that still fails once the
	// rollback's effects are all done: the step is done all the same (the
	// fault may not be the new image, and what the rollback suspended must
	// still resume), and the engine records it for the outcome.
	StillFailing string
	// Placement, when set, replaces the state's placement record, before
	// the effects (a cordon is recorded before its call).
	Placement *PlacementState
	// Events are what the engine writes to the event log for this
	// decision (placement's, with the clients of each node).
	Events []DecisionEvent
}

// DecisionEvent is one event a decision asks the engine to log.
type DecisionEvent struct {
	Type string
	Msg  string
	KV   []any
}

// Timing is the plan's durations after the time scale, and what the
// engine may do besides (the provider's capabilities, detaching).
type Timing struct {
	WarmUp         time.Duration
	HealthyTimeout time.Duration
	Drain          DrainOptions
	// DrainGrace is how long past the drain deadline a node that still
	// reports connections is given before it is terminated anyway.
	DrainGrace time.Duration
	Poll       time.Duration
	// Deregister takes targets out of the load balancer before their
	// drain (the provider can).
	Deregister bool
	// Scale multiplies the plan's bakes (the other fields come scaled).
	Scale float64
	// Suspend: the provider can suspend the group's processes.
	Suspend bool
	// Detach: leave before a window rather than wait for it.
	Detach bool
}

// decide is the engine's one decision: what the current step does next,
// given the plan, the state and what the engine observed. It is pure: no
// I/O, no clock (the time is obs.Now), and it changes neither st nor obs;
// the step's new progress, the check results and the suspension record to
// keep all come back in the Decision, which the engine records. The
// cursor must be on a step.
func decide(plan *Plan, st *State, obs Observation, t Timing) Decision {
	steps, cur := st.current()
	s := steps[*cur]
	s.Targets = slices.Clone(s.Targets)
	s.Progress = s.Progress.clone()
	if reason := phaseOverdue(st, plan, s.Phase, obs.Now); reason != "" {
		return Decision{Step: s, Fail: reason}
	}
	if f := failed(obs.Round); f != "" {
		return Decision{Step: s, Fail: "check " + f, Checks: obs.Round}
	}
	if st.Placement != nil && (st.Rollback || s.Kind == StepWindow && obs.Now.Before(s.NotBefore)) {
		// A rollback first gives the nodes the change cordoned their
		// readiness back: those it keeps take clients again. So does a
		// change that waits for its next window (the seed's runs a day
		// apart): old nodes cordoned since the last batch would stand
		// unhealthy in the target group for hours, with their alarms,
		// while they serve everyone. The next batch cordons them again
		// before it drains, so a client moves once within a window.
		var live []string
		for id := range st.Placement.Cordoned {
			if in, ok := obs.Group.Instance(id); ok && in.Live() {
				live = append(live, id)
			}
		}
		if effs := uncordonEffect(st.Placement, live); len(effs) > 0 {
			return Decision{Step: s, Effects: effs}
		}
	}
	d := decideStep(plan, st, s, steps[:*cur], obs, t)
	if len(obs.Round) > 0 && !d.RunChecks {
		d.Checks = append(slices.Clone(obs.Round), d.Checks...)
	}
	return d
}

// decideStep decides step s by its kind; prev are the steps before it.
func decideStep(plan *Plan, st *State, s Step, prev []Step, obs Observation, t Timing) Decision {
	now := obs.Now
	switch s.Kind {
	case StepSetImage:
		if st.Template != nil {
			return done(s, now)
		}
		return Decision{Step: s, Effects: []Effect{{Key: "set-image", Kind: EffSetImage, Value: s.Image}}}
	case StepRestoreImage:
		// Reverted through Terraform, the group is on a new launch
		// configuration (or version) with the old image.
		terraformDone := st.Template != nil && st.Template.Terraform != "" && obs.Group.Image == s.Image
		if terraformDone || obs.Group.Template.Same(s.Version) && obs.Group.Image == s.Image {
			return done(s, now)
		}
		return Decision{Step: s, Effects: []Effect{{Key: "set-template-version", Kind: EffSetVersion, Version: s.Version}}}
	case StepSuspend:
		return decideSuspend(st, s, obs, t)
	case StepResume:
		if placementOn(st) {
			var d Decision
			var wait bool
			if d, s, wait = decideEndBalance(plan, st, s, obs, t); wait {
				return d
			}
		}
		effs := endEffects(st, obs.Group)
		if len(effs) == 1 && effs[0].Kind == EffResume {
			if s.Started.IsZero() {
				s.Started = now
			}
			if d, wait := endWait(st, s, obs, t); wait {
				return d
			}
		}
		if len(effs) > 0 {
			return Decision{Step: s, Effects: effs}
		}
		return done(s, now)
	case StepReregister:
		if s.Done {
			return done(s, now)
		}
		return Decision{Step: s, Effects: []Effect{
			{Key: "register", Kind: EffRegister, IDs: s.IDs},
			{Key: "set-healthy", Kind: EffSetHealthy, IDs: s.IDs},
		}}
	case StepCheck:
		if s.Started.IsZero() {
			s.Started = now
		}
		switch {
		case len(checksFor(plan, s.Phase)) == 0:
			return done(s, now)
		case !obs.Checked:
			return Decision{Step: s, RunChecks: true}
		case failed(obs.Checks) != "" && st.Rollback:
			// The rollback's effects are done; a check that still fails
			// says the fleet is not well, not that the rollback did not
			// happen. Go on to the resume.
			d := done(s, now)
			d.Checks, d.StillFailing = obs.Checks, "check "+failed(obs.Checks)
			return d
		case failed(obs.Checks) != "":
			return Decision{Step: s, Fail: "check " + failed(obs.Checks), Checks: obs.Checks}
		}
		d := done(s, now)
		d.Checks = obs.Checks
		return d
	}
	if s.Started.IsZero() {
		s.Started = now
	}
	switch s.Kind {
	case StepWindow:
		if now.Before(s.NotBefore) {
			d := Decision{Step: s, Wait: s.NotBefore.Sub(now), Reason: "window opens at " + s.NotBefore.UTC().Format(time.RFC3339)}
			if t.Detach {
				d.Detach = s.NotBefore
			}
			return d
		}
		return done(s, now)
	case StepBake:
		s = sampleCanary(plan, st, s, obs)
		end := s.Started.Add(time.Duration(float64(s.Duration) * t.scale()))
		if now.Before(end) {
			return Decision{Step: s, Wait: end.Sub(now), Reason: "baking until " + end.UTC().Format(time.TimeOnly)}
		}
		return done(s, now)
	case StepProtect, StepUnprotect:
		want := s.Kind == StepProtect
		var ids []string
		for _, id := range s.IDs {
			if in, ok := obs.Group.Instance(id); ok && in.Live() && in.Protected != want {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			kind := EffProtect
			if !want {
				kind = EffUnprotect
			}
			return Decision{Step: s, Effects: []Effect{{Key: string(kind), Kind: kind, IDs: ids}}}
		}
		return done(s, now)
	case StepBatch:
		if placementOn(st) {
			if s.MoveTo > 0 && s.TargetsFrom >= 0 && !s.Init {
				// The canary leaves with the last batch's old instances,
				// after that batch's replacements: its clients move to
				// new instances rather than back to old ones.
				s.Deferred = true
				d := done(s, now)
				d.Events = []DecisionEvent{{Type: "placement", Msg: "canary retirement moved to the last batch", KV: []any{"step", s.MoveTo}}}
				return d
			}
			s = withDeferred(s, prev)
		}
		d := decideBatch(s, prev, obs, t, now)
		d = decidePlaced(plan, st, s, d, obs, t)
		if s.Ready || !d.Step.Ready || s.Phase < 0 || len(checksFor(plan, s.Phase)) == 0 {
			return d
		}
		// Healthy includes passing the checks: the replacements are in,
		// so check the fleet once more before the old instances start
		// to leave.
		switch {
		case !obs.Checked:
			return Decision{Step: s, RunChecks: true}
		case failed(obs.Checks) != "":
			return Decision{Step: d.Step, Fail: "check " + failed(obs.Checks) + " (with the replacements in, before draining)", Checks: obs.Checks}
		}
		d.Checks = obs.Checks
		return d
	}
	return Decision{Step: s, Fail: fmt.Sprintf("step %s has no decision", s.Kind)}
}

// checksFor returns the checks of phase p; every check outside phases
// (the rollback's).
func checksFor(p *Plan, phase int) []Check {
	switch {
	case phase < 0:
		return p.Checks
	case phase >= len(p.Phases):
		return nil
	}
	return p.PhaseChecks(phase)
}

// phaseOverdue reports a phase past its deadline, counted from the start
// of its first step after its window.
func phaseOverdue(st *State, plan *Plan, p int, now time.Time) string {
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

// clone copies the progress's maps and slices, so that a decision's new
// progress shares nothing with the state's.
func (p Progress) clone() Progress {
	p.Adopted = slices.Clone(p.Adopted)
	p.HealthySince = maps.Clone(p.HealthySince)
	p.Drains = maps.Clone(p.Drains)
	p.Deregistered = maps.Clone(p.Deregistered)
	p.Terminated = maps.Clone(p.Terminated)
	p.Retiring = maps.Clone(p.Retiring)
	p.Known = slices.Clone(p.Known)
	if p.Share != nil {
		c := *p.Share
		c.Shed = maps.Clone(c.Shed)
		p.Share = &c
	}
	if p.Bake != nil {
		c := *p.Bake
		p.Bake = &c
	}
	if p.Place != nil {
		c := *p.Place
		c.Shed = maps.Clone(c.Shed)
		c.Until = maps.Clone(c.Until)
		p.Place = &c
	}
	return p
}

func done(s Step, now time.Time) Decision {
	s.Done, s.Ended = true, now
	return Decision{Step: s, Done: true}
}

// scale is carried inside Timing so decisions stay pure.
func (t Timing) scale() float64 {
	if t.Scale <= 0 {
		return 1
	}
	return t.Scale
}

// decideBatch drives one batch: launch, adopt and name the replacements,
// wait until they are healthy and warm, drain the targets with the drain
// budget split between them, terminate each when its connections reach zero
// or its drain deadline passes. With terminate-then-replace the drain and
// terminate come first and the group launches the replacements.
func decideBatch(s Step, prev []Step, obs Observation, t Timing, now time.Time) Decision {
	g := obs.Group
	if s.TargetsFrom >= 0 && s.TargetsFrom < len(prev) && len(s.Targets) == 0 && !s.Init {
		for _, a := range prev[s.TargetsFrom].Adopted {
			s.Targets = append(s.Targets, a.ID)
		}
	}
	if !s.Init {
		// Fix the batch against the group as it is when it starts: a
		// target already gone needs no drain, and the capacity to return
		// to is the one seen now.
		s.Init = true
		s.BaseDesired = g.Desired
		for _, in := range g.Instances {
			s.Known = append(s.Known, in.ID)
		}
		s.HealthySince = map[string]time.Time{}
		s.Drains = map[string]time.Time{}
		s.Terminated = map[string]time.Time{}
		s.Deregistered = map[string]time.Time{}
		return Decision{Step: s}
	}
	// Empty maps do not survive the JSON round trip of the state.
	if s.HealthySince == nil {
		s.HealthySince = map[string]time.Time{}
	}
	if s.Drains == nil {
		s.Drains = map[string]time.Time{}
	}
	if s.Terminated == nil {
		s.Terminated = map[string]time.Time{}
	}
	if s.Deregistered == nil {
		s.Deregistered = map[string]time.Time{}
	}
	ttr := s.Strategy == TerminateThenReplace

	// Targets that left by themselves (the group's scale-in or health
	// replacement) are done once their node is empty or silent: until
	// then it drains through the group's termination lifecycle hook, and
	// its clients are still moving.
	for _, id := range s.Targets {
		if _, ok := s.Terminated[id]; ok {
			continue
		}
		if _, ok := s.Retiring[id]; ok {
			continue // detached, maybe not yet terminated: the retire effect ends it
		}
		in, ok := g.Instance(id)
		switch {
		case !ok || in.Lifecycle == "Terminated":
			s.Terminated[id] = now
		case in.Gone():
			nobs, seen := obs.Nodes[id]
			if !seen || nobs.Err != "" || nobs.Status.Connections == 0 || nobs.Status.State == "drained" {
				s.Terminated[id] = now
			}
		}
	}

	// Replacements that died are dropped; the group replaces them and the
	// next live one on the image is adopted instead.
	kept := s.Adopted[:0:0]
	for _, a := range s.Adopted {
		if in, ok := g.Instance(a.ID); ok && in.Gone() {
			continue
		}
		kept = append(kept, a)
	}
	s.Adopted = kept

	var effects []Effect
	if !ttr && s.Launch > 0 && len(s.Terminated) == 0 && len(s.Drains) == 0 {
		if want := s.BaseDesired + s.Launch; g.Desired < want {
			effects = append(effects, Effect{Key: fmt.Sprintf("set-desired/%d", want), Kind: EffSetDesired, N: want})
		}
	}

	if ttr {
		if d, waiting := drainAndTerminate(&s, obs, t, now, false); len(d) > 0 || waiting != "" {
			if len(d) > 0 {
				return Decision{Step: s, Effects: d}
			}
			s, _ = adopt(s, prev, g)
			return Decision{Step: s, Effects: tagNames(s, g), Wait: t.Poll, Reason: waiting}
		}
	}

	var surplus []Instance
	s, surplus = adopt(s, prev, g)
	effects = append(effects, tagNames(s, g)...)
	if !ttr && len(effects) == 0 {
		// Give back what the group launched on its own, with the
		// capacity it added, before it takes clients.
		for _, in := range surplus {
			effects = append(effects, Effect{Key: "surplus/" + in.ID, Kind: EffTerminate, ID: in.ID})
		}
	}
	if len(effects) > 0 {
		return Decision{Step: s, Effects: effects}
	}
	if !s.Ready {
		ready := len(s.Adopted) >= s.Launch
		var waiting string
		for _, a := range s.Adopted {
			in, _ := g.Instance(a.ID)
			nobs, seen := obs.Nodes[a.ID]
			healthy := in.Lifecycle == "InService" && (in.Health == "" || in.Health == "healthy") &&
				seen && nobs.Err == "" && nobs.Status.State == "ready"
			if !healthy {
				delete(s.HealthySince, a.ID)
				ready = false
				waiting = fmt.Sprintf("%s (%s) %s/%s", a.Name, a.ID, in.Lifecycle, orDash(in.Health))
				continue
			}
			since, ok := s.HealthySince[a.ID]
			if !ok {
				s.HealthySince[a.ID] = now
				since = now
			}
			if now.Sub(since) < t.WarmUp {
				ready = false
				waiting = fmt.Sprintf("%s warming up", a.Name)
			}
		}
		if len(s.Adopted) < s.Launch {
			waiting = fmt.Sprintf("%d of %d replacements launched", len(s.Adopted), s.Launch)
		}
		if !ready {
			if now.Sub(s.Started) > t.HealthyTimeout {
				return Decision{Step: s, Fail: fmt.Sprintf("replacements not healthy after %s: %s", t.HealthyTimeout, waiting)}
			}
			return Decision{Step: s, Wait: t.Poll, Reason: "waiting for " + waiting}
		}
		s.Ready = true
	}
	if !ttr {
		if d, waiting := drainAndTerminate(&s, obs, t, now, true); len(d) > 0 {
			return Decision{Step: s, Effects: d}
		} else if waiting != "" {
			return Decision{Step: s, Wait: t.Poll, Reason: waiting}
		}
	}
	return done(s, now)
}

// drainAndTerminate returns the drain and terminate effects due now for
// the batch's targets, or what it waits for.
func drainAndTerminate(s *Step, obs Observation, t Timing, now time.Time, decrement bool) ([]Effect, string) {
	g := obs.Group
	var pending []string
	for _, id := range s.Targets {
		if _, ok := s.Terminated[id]; !ok {
			pending = append(pending, id)
		}
	}
	if len(pending) == 0 {
		return nil, ""
	}
	// A retire decided before (and perhaps cut short by a crash) is made
	// again for what it has not finished: the provider reads before it
	// writes, so nothing is detached or terminated twice.
	var again []string
	for _, id := range pending {
		if _, ok := s.Retiring[id]; ok {
			again = append(again, id)
		}
	}
	if len(again) > 0 {
		return []Effect{retireEffect(s, again, decrement, now)}, ""
	}
	var effects []Effect
	var undrained []string
	for _, id := range pending {
		if in, _ := g.Instance(id); in.Gone() {
			continue // the group is terminating it: its node drains itself
		}
		if _, ok := s.Drains[id]; !ok {
			undrained = append(undrained, id)
		}
	}
	// Out of the load balancer first: it stops sending the node new
	// clients at once, rather than once its health check sees the
	// failing readiness (until then released clients would come back
	// and be refused), while open connections keep working for the
	// target group's deregistration delay.
	var dereg []string
	for _, id := range undrained {
		if _, ok := s.Deregistered[id]; !ok && t.Deregister {
			dereg = append(dereg, id)
		}
	}
	if len(dereg) > 0 {
		return []Effect{{Key: "deregister/" + strings.Join(dereg, ","), Kind: EffDeregister, IDs: dereg}}, ""
	}
	if len(undrained) > 0 {
		// The fleet-wide budget is split between the nodes draining
		// together, so together they never exceed max_rate.
		o := t.Drain
		o.MaxRate = nodeRate(o.MaxRate, len(pending), 1/float64(len(pending)))
		for _, id := range undrained {
			effects = append(effects, Effect{Key: "drain/" + id, Kind: EffDrain, ID: id, Drain: &o})
		}
		return effects, ""
	}
	var names, retire []string
	for _, id := range pending {
		in, _ := g.Instance(id)
		if in.Gone() {
			if at, ok := s.Drains[id]; ok && now.Sub(at) >= t.Drain.Deadline+t.DrainGrace {
				s.Terminated[id] = now // overdue: stop waiting for it
				continue
			}
			names = append(names, orDash(in.Name))
			continue
		}
		nobs := obs.Nodes[id]
		empty := nobs.Err == "" && (nobs.Status.Connections == 0 || nobs.Status.State == "drained")
		// A node that no longer answers has nothing left to drain only
		// once its window is over; before that, give it the window.
		unreachable := nobs.Err != "" && now.Sub(s.Drains[id]) >= t.Drain.Window
		overdue := now.Sub(s.Drains[id]) >= t.Drain.Deadline+t.DrainGrace
		if empty || unreachable || overdue {
			retire = append(retire, id)
			continue
		}
		// The reason names the nodes only: the engine polls faster when
		// the reason changes, and connection counts change every poll.
		names = append(names, orDash(in.Name))
	}
	if len(retire) > 0 {
		return []Effect{retireEffect(s, retire, decrement, now)}, ""
	}
	if len(names) > 0 {
		return nil, "draining " + strings.Join(names, ", ")
	}
	return nil, ""
}

// nodeRate is one node's share of the fleet-wide budget when n nodes
// release clients together. The budget is reconnects in any second as
// the clients make them (the probe counts a reconnect when the client is
// up again), so the rate leaves room for two things:
//
//   - Pacing: a node paced at r a second can release floor(r)+1 clients
//     within one second (both ends of the window), so n nodes at
//     budget/n each could make budget+n in some second (the demo
//     measured 204/s against 200 before this was taken off).
//   - The clients' delays: each reconnect comes a random delay D after
//     its release (the client's backoff, full jitter over 0–250 ms for
//     the Go client, plus its connect and the take-over). Releases at R
//     a second give R reconnects a second on average, but the count in
//     one second varies: the releases within a delay's spread of either
//     end of it may or may not land inside, and its variance is
//     R·E|D−D′| (D, D′ two independent delays; for D uniform over 0–J,
//     J/3). reconnectMargin is jitterSigmas of those standard
//     deviations at R = budget: one run of the demo at --fast,
//     budget 200, saw 209 in one second, 3σ over the 196 it was paced at.
//
// Never under half of share of the budget, for a budget too small for
// both.
func nodeRate(budget float64, n int, share float64) float64 {
	if budget <= 0 {
		return budget
	}
	return max((budget-float64(n)-reconnectMargin(budget))*share, budget*share/2)
}

// reconnectDelayDiff is E|D−D′| for the delays D between a client's
// release and its reconnect as the probe counts it: 83 ms for the Go
// client's first-retry jitter (uniform over 0–250 ms), rounded up for the
// connect and take-over times, whose spread the demo's gaps show (p50
// 140 ms, p99 under 450 ms on an idle machine).
const reconnectDelayDiff = 100 * time.Millisecond

// jitterSigmas is how many standard deviations of the per-second count
// the budget keeps clear: 3.5 makes one second over the budget a chance
// of about 2 in 10,000, about 1 in 200 over the twenty-odd independent
// seconds of a --fast demo's drains.
const jitterSigmas = 3.5

// reconnectMargin is the reconnects a second the budget keeps for the
// clients' delays (see nodeRate), a whole number: 16 at 200/s, 18 at the
// default 250/s, 70 at 4,000/s.
func reconnectMargin(budget float64) float64 {
	return math.Ceil(jitterSigmas * math.Sqrt(budget*reconnectDelayDiff.Seconds()))
}

// retireEffect is the one effect that ends the drained targets ids, and
// records them in the step's progress as retiring: the decision's intent
// is saved before the call, so that after a crash the targets that left
// the group (detached, perhaps not yet terminated) are retired again
// rather than taken for gone.
func retireEffect(s *Step, ids []string, decrement bool, now time.Time) Effect {
	if s.Retiring == nil {
		s.Retiring = map[string]time.Time{}
	}
	for _, id := range ids {
		if _, ok := s.Retiring[id]; !ok {
			s.Retiring[id] = now
		}
	}
	eff := Effect{Key: "retire/" + strings.Join(ids, ","), Kind: EffRetire, IDs: ids}
	if !decrement {
		eff.Value = "keep"
	}
	return eff
}

// adopt takes live instances on the batch's image that no step has taken
// yet as the batch's replacements, oldest first, and gives them the
// batch's names in order.
//
// It also returns the surplus: instances on the image that nobody asked
// for. The group launches one when it replaces an instance by itself,
// such as a draining target that failed its load balancer health check
// (a node leaves the load balancer by failing readiness, and a group with
// ELB health checks replaces unhealthy instances).
func adopt(s Step, prev []Step, g Group) (Step, []Instance) {
	want := s.Launch
	taken := map[string]bool{}
	for _, p := range prev {
		for _, a := range p.Adopted {
			taken[a.ID] = true
		}
	}
	usedNames := map[string]bool{}
	for _, a := range s.Adopted {
		taken[a.ID] = true
		usedNames[a.Name] = true
	}
	for _, id := range s.Targets {
		taken[id] = true
	}
	for _, id := range s.Known {
		taken[id] = true
	}
	var cands []Instance
	for _, in := range g.Instances {
		if in.Live() && runs(in, s.Image, s.Ref) && !taken[in.ID] {
			cands = append(cands, in)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].LaunchTime.Equal(cands[j].LaunchTime) {
			return cands[i].LaunchTime.Before(cands[j].LaunchTime)
		}
		return cands[i].ID < cands[j].ID
	})
	var surplus []Instance
	for _, in := range cands {
		if len(s.Adopted) >= want {
			surplus = append(surplus, in)
			continue
		}
		name := ""
		for _, n := range s.Names {
			if !usedNames[n] {
				name = n
				break
			}
		}
		usedNames[name] = true
		s.Adopted = append(s.Adopted, Adoption{ID: in.ID, Name: name, At: in.LaunchTime})
	}
	return s, surplus
}

// tagNames gives the adopted instances their names (the Name tag), in
// one effect.
func tagNames(s Step, g Group) []Effect {
	var ids, names []string
	for _, a := range s.Adopted {
		if in, ok := g.Instance(a.ID); ok && a.Name != "" && in.Name != a.Name && in.Live() {
			ids, names = append(ids, a.ID), append(names, a.Name)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return []Effect{{Key: "tag-names/" + strings.Join(ids, ","), Kind: EffTagNames, IDs: ids, Values: names}}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

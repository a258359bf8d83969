package rollout

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Phases and their checks. A phase opens when the cursor reaches its
// first step: its record starts and each of its checks becomes a gate
// that begins (a baseline, a probe). While the phase waits, the gates are
// evaluated in the background on their interval, and the results come
// into the next observation; a check step or a batch whose replacements
// are in asks for them to run at once (Decision.RunChecks). The phase
// closes when the cursor leaves it: each gate ends and may judge the
// phase as a whole.

// phaseGate is one of the open phase's gates and the check it came from.
type phaseGate struct {
	check Check
	gate  Gate
}

// checkRound is the outcome of one background run of a phase's checks.
type checkRound struct {
	phase   int
	results []CheckResult
}

// enterPhase closes the previous phase and opens phase p: its record and
// its gates.
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
	e.phaseOpen = true
	e.lastCheck = e.Now()
	rec := e.phaseRecord(st, p)
	if rec.Started.IsZero() {
		rec.Started = e.Now()
	}
	rec.Status = "running"
	e.event(st, "phase", "phase started", "phase", rec.Name)
	image, ref := st.NewImage(plan), st.newRef(plan)
	if st.Rollback {
		image = st.OldImage
		if ref != nil {
			prev := st.Template.Previous
			ref = &prev
		}
	}
	e.env = PhaseEnv{Checker: e.Checker, Phase: rec.Name, Image: image, Ref: ref, LoadBalancerURL: e.loadBalancerURL(st.Group),
		Observe: func(ctx context.Context) (Group, error) { return e.Provider.Group(ctx, st.Group) }}
	env := e.phaseEnv(g, e.Now())
	for _, c := range checksFor(plan, p) {
		gate := c.Spec.Gate()
		if err := gate.Begin(ctx, env); err != nil {
			if st.Rollback {
				// A rollback's gate that cannot begin is a check that
				// fails, not an effect of the rollback that did not
				// happen: the rollback goes on without it, and says so
				// at its end.
				st.StillFailing = fmt.Sprintf("check %s: %v", c.Name, err)
				e.event(st, "check", "still failing after the rollback", "check", st.StillFailing)
				continue
			}
			return fmt.Errorf("check %s: %w", c.Name, err)
		}
		e.gates = append(e.gates, phaseGate{check: c, gate: gate})
	}
	return nil
}

// phaseEnv is the open phase's env with the group and the time.
func (e *Engine) phaseEnv(g Group, now time.Time) PhaseEnv {
	env := e.env
	env.Group, env.Now = g, now
	return env
}

// loadBalancerURL returns how a gate asks for the group's load balancer
// URL: "" without error when the provider knows none.
func (e *Engine) loadBalancerURL(group string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		l, ok := e.Provider.(LoadBalancerURLer)
		if !ok {
			return "", nil
		}
		u, err := l.LoadBalancerURL(ctx, group)
		if err != nil {
			return "", fmt.Errorf("load balancer of group %s: %w", group, err)
		}
		return u, nil
	}
}

// endPhase ends the phase's gates and judges it on their verdicts.
func (e *Engine) endPhase(ctx context.Context, st *State, plan *Plan) error {
	e.phaseOpen = false
	rec := e.phaseRecord(st, e.phase)
	results, probe := e.endGates(ctx)
	rec.Probe = probe
	if len(results) > 0 {
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

// closePhase ends the open phase with status without judging it; the
// figures its gates measured are kept.
func (e *Engine) closePhase(ctx context.Context, st *State, status string) {
	if !e.phaseOpen {
		return
	}
	e.phaseOpen = false
	rec := e.phaseRecord(st, e.phase)
	_, rec.Probe = e.endGates(ctx)
	rec.Status, rec.Ended = status, e.Now()
}

// endGates ends every gate of the open phase: their verdicts, and the
// probe's figures if one ran.
func (e *Engine) endGates(ctx context.Context) ([]CheckResult, *ProbeResult) {
	gates := e.gates
	e.gates = nil
	var out []CheckResult
	var probe *ProbeResult
	for _, g := range gates {
		r := g.gate.End(ctx, e.phaseEnv(Group{}, e.Now()))
		if r == nil {
			continue
		}
		if probe == nil {
			probe = r.Probe
		}
		out = append(out, CheckResult{Name: g.check.Name, Pass: r.Pass, Detail: r.Detail, At: e.Now(), Analysis: r.Analysis})
	}
	return out, probe
}

// evaluate runs every gate of the open phase once against g.
func (e *Engine) evaluate(ctx context.Context, g Group, now time.Time) []CheckResult {
	return evaluate(ctx, e.gates, e.phaseEnv(g, now))
}

func evaluate(ctx context.Context, gates []phaseGate, env PhaseEnv) []CheckResult {
	out := make([]CheckResult, 0, len(gates))
	for _, g := range gates {
		r := g.gate.Evaluate(ctx, env)
		out = append(out, CheckResult{Name: g.check.Name, Pass: r.Pass, Detail: r.Detail, At: env.Now, Analysis: r.Analysis})
	}
	return out
}

// startRound evaluates the open phase's gates in the background; a later
// observation collects the results (collectRound).
func (e *Engine) startRound(ctx context.Context, phase int, g Group, now time.Time) {
	e.lastCheck, e.checking = now, true
	gates, env := e.gates, e.phaseEnv(g, now)
	go func() {
		e.checkCh <- checkRound{phase: phase, results: evaluate(ctx, gates, env)}
	}()
}

// collectRound returns the results of a finished background round if it
// belongs to the open phase, and nil otherwise.
func (e *Engine) collectRound(st *State) []CheckResult {
	select {
	case r := <-e.checkCh:
		e.checking = false
		if !e.phaseOpen || r.phase != e.phase || st.Rollback {
			return nil
		}
		return r.results
	default:
		return nil
	}
}

// checkInterval is how often the phase's checks run while it waits: the
// shortest interval of its checks that do not watch all along, after the
// time scale.
func (e *Engine) checkInterval(p *Plan, phase int) time.Duration {
	var iv time.Duration
	for _, c := range checksFor(p, phase) {
		if c.continuous() {
			continue // it runs all along; it is read with the others
		}
		d := time.Duration(float64(c.Interval) * e.TimeScale)
		if iv == 0 || d < iv {
			iv = d
		}
	}
	if iv == 0 && len(checksFor(p, phase)) > 0 {
		iv = time.Duration(float64(defaultCheckInterval) * e.TimeScale)
	}
	return max(iv, e.MinPoll)
}

// phaseRecord returns the record of phase p; -1 in rollback is the
// rollback's.
func (e *Engine) phaseRecord(st *State, p int) *PhaseRecord {
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
	rec := e.phaseRecord(st, p)
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

// recordReplaced lists, in the phase's record, each target of a finished
// batch with the instance that took its name.
func (e *Engine) recordReplaced(st *State, s Step) {
	if len(s.Targets) == 0 || len(s.Adopted) == 0 {
		return
	}
	rec := e.phaseRecord(st, s.Phase)
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

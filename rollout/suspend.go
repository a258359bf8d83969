package rollout

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// decideSuspend suspends the group's ReplaceUnhealthy and AZRebalance for
// the change, except those someone else had already suspended: those are
// recorded as theirs in the decision's suspension record, which the engine
// keeps before the call, so that neither the end of the change nor a
// resume after a crash ever resumes them.
func decideSuspend(st *State, s Step, obs Observation, t Timing) Decision {
	if !t.Suspend {
		return done(s, obs.Now)
	}
	var sp *Suspension
	if cur := st.Suspension; cur != nil && !cur.Resumed {
		sp = &Suspension{Ours: slices.Clone(cur.Ours), Already: slices.Clone(cur.Already), Active: cur.Active}
	}
	// No record, or one whose processes a finished forward run resumed
	// (a rollback after it): judge anew what is someone else's.
	if sp == nil {
		sp = &Suspension{}
		for _, p := range SuspendedProcesses {
			if slices.Contains(obs.Group.Suspended, p) {
				sp.Already = append(sp.Already, p)
			} else {
				sp.Ours = append(sp.Ours, p)
			}
		}
		sp.Active = len(sp.Ours) == 0
	}
	if sp.Active {
		d := done(s, obs.Now)
		d.Suspension = sp
		return d
	}
	return Decision{Step: s, Suspension: sp, Effects: []Effect{{Key: "suspend-processes", Kind: EffSuspend, IDs: sp.Ours}}}
}

// endEffects is what ends the change's hold on the group, in order: no
// instance the engine drained is left alive (once replacement resumes,
// the group would replace it, marked unhealthy as it is, and a draining
// node serves nobody); instances it took out of the load balancer and
// keeps go back in, marked healthy; then the processes it suspended
// resume. An abort may find a batch half done; a finished change or
// rollback finds nothing but the suspension to undo.
func endEffects(st *State, g Group) []Effect {
	var healthy, register []string
	var out []Effect
	seen := map[string]bool{}
	drained := st.drainAsked()
	out = append(out, unfinishedRetires(st, seen)...)
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
	// Nodes the change cordoned and keeps: their readiness back, and the
	// group's Unhealthy mark (its ELB health check saw them cordoned)
	// undone before replacement resumes.
	var uncordon []string
	if pl := st.Placement; pl != nil {
		for _, id := range slices.Sorted(maps.Keys(pl.Cordoned)) {
			if in, ok := g.Instance(id); ok && in.Live() && !drained[id] {
				uncordon = append(uncordon, id)
			}
		}
		for _, id := range pl.Ever {
			// Marked healthy only once its target is: until then the
			// group's next health check would mark it again (endWait).
			if in, ok := g.Instance(id); ok && in.Live() && !drained[id] && !seen[id] && in.HealthStatus == "Unhealthy" && !slices.Contains(healthy, id) && !steered(in) {
				healthy = append(healthy, id)
			}
		}
	}
	if len(uncordon) > 0 {
		out = append(out, Effect{Key: "end-uncordon/" + strings.Join(uncordon, ","), Kind: EffUncordon, IDs: uncordon})
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

func keys(m map[string]time.Time) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// unfinishedRetires are the retire effects (journal.go) that some step
// decided and that did not finish: their targets may be out of the group
// and still running. They are made again, whatever became of the batch,
// and their targets marked seen.
func unfinishedRetires(st *State, seen map[string]bool) []Effect {
	var dec, keep []string
	for _, s := range append(slices.Clone(st.Steps), st.RollbackSteps...) {
		for _, id := range keys(s.Retiring) {
			if _, done := s.Terminated[id]; done || seen[id] {
				continue
			}
			seen[id] = true
			if s.Strategy == TerminateThenReplace {
				keep = append(keep, id)
			} else {
				dec = append(dec, id)
			}
		}
	}
	var out []Effect
	if len(dec) > 0 {
		out = append(out, Effect{Key: "end-retire/" + strings.Join(dec, ","), Kind: EffRetire, IDs: dec})
	}
	if len(keep) > 0 {
		out = append(out, Effect{Key: "end-retire-keep/" + strings.Join(keep, ","), Kind: EffRetire, IDs: keep, Value: "keep"})
	}
	return out
}

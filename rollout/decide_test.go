package rollout

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDecide is the decision table: one step, its progress, what the
// engine observed and the time, against the decision.
func TestDecide(t *testing.T) {
	now := t0.Add(time.Hour)
	timing := Timing{WarmUp: 30 * time.Second, HealthyTimeout: 10 * time.Minute, Poll: time.Second,
		Drain: DrainOptions{Window: 30 * time.Second, MaxRate: 200, Deadline: 5 * time.Minute}, DrainGrace: 30 * time.Second, Scale: 1}
	inst := func(id, name, image, lc string) Instance {
		return Instance{ID: id, Name: name, Image: image, Lifecycle: lc, Health: "healthy", LaunchTime: t0}
	}
	ready := NodeObs{Status: NodeStatus{State: "ready", Connections: 10}}
	oldFleet := []Instance{inst("i-1", "ws-01", "ami-old", "InService"), inst("i-2", "ws-02", "ami-old", "InService")}
	nodes := func(kv ...any) map[string]NodeObs {
		m := map[string]NodeObs{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(NodeObs)
		}
		return m
	}
	batch := func(p Progress) Step {
		p.Init = true
		if p.Started.IsZero() {
			p.Started = now.Add(-time.Minute)
		}
		if p.Known == nil {
			p.Known = []string{"i-1", "i-2"}
		}
		return Step{Kind: StepBatch, Phase: 1, Launch: 2, Names: []string{"ws-01", "ws-02"}, Targets: []string{"i-1", "i-2"},
			Image: "ami-new", Strategy: LaunchBeforeTerminate, TargetsFrom: -1, Progress: p}
	}
	withNew := func(lc string, extra ...Instance) []Instance {
		out := append([]Instance{}, oldFleet...)
		a, b := inst("i-3", "ws-01", "ami-new", lc), inst("i-4", "ws-02", "ami-new", lc)
		if lc != "InService" {
			a.Health, b.Health = "initial", "initial"
		}
		return append(append(out, a, b), extra...)
	}
	adopted := []Adoption{{ID: "i-3", Name: "ws-01"}, {ID: "i-4", Name: "ws-02"}}
	warm := map[string]time.Time{"i-3": now.Add(-time.Minute), "i-4": now.Add(-time.Minute)}

	cases := []struct {
		name    string
		step    Step
		desired int
		fleet   []Instance
		nodes   map[string]NodeObs
		want    string // effects, "wait: reason", "done" or "fail: reason" (prefix)
	}{
		{"window not open yet", Step{Kind: StepWindow, NotBefore: now.Add(time.Hour)}, 2, oldFleet, nil, "wait: window opens at"},
		{"window open", Step{Kind: StepWindow, NotBefore: now.Add(-time.Second)}, 2, oldFleet, nil, "done"},
		{"bake running", Step{Kind: StepBake, Duration: 2 * time.Minute, Progress: Progress{Started: now.Add(-time.Minute)}}, 2, oldFleet, nil, "wait: baking until"},
		{"bake over", Step{Kind: StepBake, Duration: 2 * time.Minute, Progress: Progress{Started: now.Add(-2 * time.Minute)}}, 2, oldFleet, nil, "done"},
		{"protect what is not yet protected", Step{Kind: StepProtect, IDs: []string{"i-1", "i-2"}}, 2, oldFleet, nil, "protect[i-1 i-2]"},
		{"batch first sight records the base", Step{Kind: StepBatch, Launch: 2, Targets: []string{"i-1"}, TargetsFrom: -1, Image: "ami-new"}, 2, oldFleet, nil, ""},
		{"launch raises desired", batch(Progress{BaseDesired: 2}), 2, oldFleet, nodes("i-1", ready, "i-2", ready), "set-desired/4"},
		{"desired already raised: wait for launches", batch(Progress{BaseDesired: 2}), 4, oldFleet, nodes("i-1", ready, "i-2", ready), "wait: waiting for 0 of 2 replacements launched"},
		{"new instances adopted and named", batch(Progress{BaseDesired: 2}), 4, func() []Instance {
			f := withNew("Pending")
			f[2].Name, f[3].Name = "", ""
			return f
		}(), nil, "tag-names/i-3,i-4=ws-01,ws-02"},
		{"replacements booting", batch(Progress{BaseDesired: 2, Adopted: adopted}), 4, withNew("Pending"), nil, "wait: waiting for ws-02 (i-4) Pending/initial"},
		{"replacements never healthy", batch(Progress{BaseDesired: 2, Adopted: adopted, Started: now.Add(-11 * time.Minute)}), 4, withNew("Pending"), nil, "fail: replacements not healthy after 10m0s"},
		{"healthy but node not ready", batch(Progress{BaseDesired: 2, Adopted: adopted}), 4, withNew("InService"), nodes("i-3", ready, "i-4", NodeObs{Status: NodeStatus{State: "starting"}}), "wait: waiting for ws-02"},
		{"warming up", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: map[string]time.Time{"i-3": now.Add(-10 * time.Second), "i-4": now.Add(-10 * time.Second)}}), 4, withNew("InService"), nodes("i-3", ready, "i-4", ready), "wait: waiting for ws-02 warming up"},
		{"warm: drain both with half the budget each, less one a second each and the reconnect margin", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm}), 4, withNew("InService"), nodes("i-1", ready, "i-2", ready, "i-3", ready, "i-4", ready), "drain/i-1@91 drain/i-2@91"},
		{"draining: connections left", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "draining", Connections: 3}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "wait: draining ws-01, ws-02"},
		{"one node empty: terminate it alone", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "drained"}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "retire/i-1"},
		{"drain deadline passed: terminate anyway", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-6 * time.Minute), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "draining", Connections: 7}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "retire/i-1"},
		{"both nodes empty: one retire for the batch", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "drained"}}, "i-2", NodeObs{Status: NodeStatus{State: "draining"}}), "retire/i-1,i-2"},
		// A crash between the detach and the termination: the targets
		// left the group, but the batch decided them retiring, so they
		// are retired again rather than taken for gone.
		{"retire cut short: made again for the detached targets", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true,
			Drains:   map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)},
			Retiring: map[string]time.Time{"i-1": now.Add(-time.Second), "i-2": now.Add(-time.Second)}}), 2, withNew("InService")[2:], nil, "retire/i-1,i-2"},
		{"retire cut short, one target done", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true,
			Drains:     map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)},
			Retiring:   map[string]time.Time{"i-1": now.Add(-time.Second), "i-2": now.Add(-time.Second)},
			Terminated: map[string]time.Time{"i-1": now.Add(-time.Second)}}), 2, withNew("InService")[2:], nil, "retire/i-2"},
		{"retire finished: done", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true,
			Drains:     map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)},
			Retiring:   map[string]time.Time{"i-1": now.Add(-time.Second), "i-2": now.Add(-time.Second)},
			Terminated: map[string]time.Time{"i-1": now.Add(-time.Second), "i-2": now.Add(-time.Second)}}), 2, withNew("InService")[2:], nil, "done"},
		{"unreachable node before its window: wait", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Err: "connection refused"}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "wait: draining ws-01, ws-02"},
		{"target taken by the group, node still draining: wait", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-15 * time.Second), "i-2": now.Add(-15 * time.Second)}}), 4,
			append(withNew("InService")[1:], Instance{ID: "i-1", Name: "ws-01", Image: "ami-old", Lifecycle: "Terminating:Wait"}),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "draining", Connections: 40}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "wait: draining ws-01, ws-02"},
		{"targets gone: done", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-time.Minute), "i-2": now.Add(-time.Minute)}}), 2,
			append(withNew("InService")[2:], Instance{ID: "i-1", Lifecycle: "Terminating"}), nil, "done"},
		{"surplus launched by the group is given back", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4,
			withNew("InService", Instance{ID: "i-9", Image: "ami-new", Lifecycle: "Pending", LaunchTime: now}), nodes("i-1", ready, "i-2", ready), "surplus/i-9"},
		{"terminate-then-replace drains first", Step{Kind: StepBatch, Launch: 2, Names: []string{"ws-01", "ws-02"}, Targets: []string{"i-1", "i-2"}, Image: "ami-new", Strategy: TerminateThenReplace, TargetsFrom: -1,
			Progress: Progress{Init: true, BaseDesired: 2, Started: now.Add(-time.Minute), Known: []string{"i-1", "i-2"}}}, 2, oldFleet, nodes("i-1", ready, "i-2", ready), "drain/i-1@91 drain/i-2@91"},
		{"terminate-then-replace keeps desired", Step{Kind: StepBatch, Launch: 2, Targets: []string{"i-1"}, Image: "ami-new", Strategy: TerminateThenReplace, TargetsFrom: -1,
			Progress: Progress{Init: true, BaseDesired: 2, Started: now.Add(-time.Minute), Known: []string{"i-1", "i-2"}, Drains: map[string]time.Time{"i-1": now.Add(-time.Minute)}}}, 2, oldFleet,
			nodes("i-1", NodeObs{Status: NodeStatus{State: "drained"}}), "retire/i-1 (keep desired)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := Observation{Group: Group{Name: "g", Desired: tc.desired, Instances: tc.fleet}, Nodes: tc.nodes, Now: now}
			if obs.Nodes == nil {
				obs.Nodes = map[string]NodeObs{}
			}
			d := decide(twoPhases, &State{Steps: []Step{tc.step}}, obs, timing)
			var got string
			switch {
			case d.Fail != "":
				got = "fail: " + d.Fail
			case d.Done:
				got = "done"
			case len(d.Effects) > 0:
				var es []string
				for _, e := range d.Effects {
					s := e.Key
					switch e.Kind {
					case EffProtect:
						s = fmt.Sprintf("protect%v", e.IDs)
					case EffDrain:
						s = fmt.Sprintf("%s@%g", e.Key, e.Drain.MaxRate)
					case EffTerminateKeep:
						s = "terminate-replace/" + e.ID
					case EffRetire:
						s = "retire/" + strings.Join(e.IDs, ",")
						if e.Value == "keep" {
							s += " (keep desired)"
						}
					case EffTagNames:
						s = fmt.Sprintf("%s=%s", e.Key, strings.Join(e.Values, ","))
					}
					es = append(es, s)
				}
				got = strings.Join(es, " ")
			case d.Reason != "":
				got = "wait: " + d.Reason
			}
			// Effects and done match exactly; reasons by their start.
			exact := !strings.HasPrefix(tc.want, "wait: ") && !strings.HasPrefix(tc.want, "fail: ")
			if (exact && got != tc.want) || (!exact && !strings.HasPrefix(got, tc.want)) {
				t.Errorf("got  %q\nwant %q…", got, tc.want)
			}
		})
	}
}

// twoPhases is a plan with two phases and no checks, for decisions that
// do not depend on the plan.
var twoPhases = &Plan{Image: Image{AMI: "ami-new"}, Phases: []Phase{{Name: "a"}, {Name: "b"}}}

// summary renders a decision for the tables: its effects, "run checks",
// "detach", "wait: reason", "done" or "fail: reason".
func summary(d Decision) string {
	switch {
	case d.Fail != "":
		return "fail: " + d.Fail
	case d.RunChecks:
		return "run checks"
	case !d.Detach.IsZero():
		return "detach until " + d.Detach.UTC().Format(time.RFC3339)
	case d.Done:
		return "done"
	case len(d.Effects) > 0:
		var es []string
		for _, e := range d.Effects {
			s := e.Key
			if len(e.IDs) > 0 {
				s += fmt.Sprint(e.IDs)
			}
			es = append(es, s)
		}
		return strings.Join(es, " ")
	case d.Reason != "":
		return "wait: " + d.Reason
	}
	return ""
}

// TestDecideEveryKind drives decide through every step kind, and what
// comes in beside the step (check results, the suspension record, the
// phase's deadline), with no cloud and no clock; decide changes neither
// the state nor the observation it is given.
func TestDecideEveryKind(t *testing.T) {
	now := t0.Add(time.Hour)
	site := Check{Name: "site", Interval: Duration(10 * time.Second), Kind: "http", Spec: &HTTPCheck{URL: "http://127.0.0.1:1/healthz", Status: 200}}
	plan := &Plan{Image: Image{AMI: "ami-new"}, Checks: []Check{site}, Phases: []Phase{{Name: "canary", Deadline: Duration(15 * time.Minute)}, {Name: "rest"}}}
	timing := Timing{WarmUp: 30 * time.Second, HealthyTimeout: 10 * time.Minute, Poll: time.Second,
		Drain: DrainOptions{Window: 30 * time.Second, MaxRate: 200, Deadline: 5 * time.Minute}, DrainGrace: 30 * time.Second, Scale: 1, Suspend: true}
	inst := func(id, name, image string) Instance {
		return Instance{ID: id, Name: name, Image: image, Lifecycle: "InService", Health: "healthy", HealthStatus: "Healthy", LaunchTime: t0}
	}
	// The canary i-3 took the name of ws-01, which it replaces; the old
	// instances are protected from scale-in.
	fleet := []Instance{inst("i-1", "ws-01", "ami-old"), inst("i-2", "ws-02", "ami-old"), inst("i-3", "ws-01", "ami-new")}
	fleet[0].Protected, fleet[1].Protected = true, true
	ready := map[string]NodeObs{"i-1": {Status: NodeStatus{State: "ready", Connections: 5}}, "i-2": {Status: NodeStatus{State: "ready"}}, "i-3": {Status: NodeStatus{State: "ready"}}}
	pass := []CheckResult{{Name: "site", Pass: true, Detail: "status 200", At: now}}
	fail := []CheckResult{{Name: "site", Detail: "GET http://127.0.0.1:1/healthz: status 500, want 200", At: now}}
	// warmBatch is the canary's batch with its replacement warm: the
	// next move is the check before the old instances leave.
	warmBatch := Step{Kind: StepBatch, Phase: 0, Launch: 1, Names: []string{"ws-01"}, Targets: []string{"i-1"}, TargetNames: []string{"ws-01"}, Image: "ami-new",
		Strategy: LaunchBeforeTerminate, TargetsFrom: -1, Progress: Progress{Init: true, BaseDesired: 2, Started: now.Add(-2 * time.Minute),
			Known: []string{"i-1", "i-2"}, Adopted: []Adoption{{ID: "i-3", Name: "ws-01", At: t0}},
			HealthySince: map[string]time.Time{"i-3": now.Add(-time.Minute)}, Drains: map[string]time.Time{}, Terminated: map[string]time.Time{}, Deregistered: map[string]time.Time{}}}
	// afterDrain is a finished batch whose target i-1 was drained but is
	// still alive, as an abort or a crash may leave it.
	afterDrain := Step{Kind: StepBatch, Phase: 0, Targets: []string{"i-1"}, Strategy: LaunchBeforeTerminate, Progress: Progress{Drains: map[string]time.Time{"i-1": now.Add(-time.Minute)}}}
	ours := &Suspension{Ours: []string{"ReplaceUnhealthy", "AZRebalance"}, Active: true}
	// overdueBatch is the canary's batch with its target's drain past
	// the deadline and grace: the target is retired.
	overdueBatch := warmBatch
	overdueBatch.Progress.Ready = true
	overdueBatch.Progress.Drains = map[string]time.Time{"i-1": now.Add(-6 * time.Minute)}
	overdueBatch.Progress.Deregistered = map[string]time.Time{"i-1": now.Add(-6 * time.Minute)}
	// cutShort is a batch whose retire of i-9 (already out of the group)
	// never finished, as a failure or a crash then an abort may leave it.
	cutShort := Step{Kind: StepBatch, Phase: 0, Targets: []string{"i-9"}, Strategy: LaunchBeforeTerminate, Progress: Progress{
		Drains: map[string]time.Time{"i-9": now.Add(-time.Minute)}, Retiring: map[string]time.Time{"i-9": now.Add(-time.Second)}}}

	cases := []struct {
		name      string
		plan      *Plan
		st        State // Steps[Cursor] is decided
		suspended []string
		template  TemplateRef // the group's version
		round     []CheckResult
		checks    []CheckResult // nil: not run
		timing    func(*Timing)
		want      string // summary; wait and fail reasons by their start
		check     func(t *testing.T, d Decision)
	}{
		{name: "set-image: new version", st: State{Steps: []Step{{Kind: StepSetImage, Phase: -1, Image: "ami-new"}}}, want: "set-image"},
		{name: "set-image: version made", st: State{Template: &TemplateChange{}, Steps: []Step{{Kind: StepSetImage, Phase: -1, Image: "ami-new"}}}, want: "done"},
		{name: "restore-image: group on the new version", st: State{Steps: []Step{{Kind: StepRestoreImage, Phase: -1, Image: "ami-old", Version: TemplateRef{ID: "lt-1", Version: "1"}}}},
			template: TemplateRef{ID: "lt-1", Version: "2"}, want: "set-template-version"},
		{name: "restore-image: group back", st: State{Steps: []Step{{Kind: StepRestoreImage, Phase: -1, Image: "ami-new", Version: TemplateRef{ID: "lt-1", Version: "2"}}}},
			template: TemplateRef{ID: "lt-1", Version: "2"}, want: "done"},
		{name: "suspend: provider cannot", st: State{Steps: []Step{{Kind: StepSuspend, Phase: -1}}}, timing: func(t *Timing) { t.Suspend = false }, want: "done",
			check: func(t *testing.T, d Decision) {
				if d.Suspension != nil {
					t.Errorf("suspension %+v without a suspender", d.Suspension)
				}
			}},
		{name: "suspend: clean group", st: State{Steps: []Step{{Kind: StepSuspend, Phase: -1}}}, want: "suspend-processes[ReplaceUnhealthy AZRebalance]",
			check: wantSuspension("ReplaceUnhealthy,AZRebalance", "", false)},
		{name: "suspend: an operator's AZRebalance is theirs", st: State{Steps: []Step{{Kind: StepSuspend, Phase: -1}}}, suspended: []string{"AZRebalance"},
			want: "suspend-processes[ReplaceUnhealthy]", check: wantSuspension("ReplaceUnhealthy", "AZRebalance", false)},
		{name: "suspend: all suspended by an operator", st: State{Steps: []Step{{Kind: StepSuspend, Phase: -1}}}, suspended: []string{"ReplaceUnhealthy", "AZRebalance"},
			want: "done", check: wantSuspension("", "ReplaceUnhealthy,AZRebalance", true)},
		{name: "suspend: after a crash, ours stay ours", st: State{Suspension: &Suspension{Ours: []string{"ReplaceUnhealthy"}, Already: []string{"AZRebalance"}}, Steps: []Step{{Kind: StepSuspend, Phase: -1}}},
			suspended: []string{"ReplaceUnhealthy", "AZRebalance"}, want: "suspend-processes[ReplaceUnhealthy]", check: wantSuspension("ReplaceUnhealthy", "AZRebalance", false)},
		{name: "suspend: done", st: State{Suspension: ours, Steps: []Step{{Kind: StepSuspend, Phase: -1}}}, suspended: []string{"ReplaceUnhealthy", "AZRebalance"}, want: "done"},
		{name: "suspend: rollback after the end resumed judges anew", st: State{Rollback: true, Suspension: &Suspension{Ours: []string{"ReplaceUnhealthy"}, Already: []string{"AZRebalance"}, Active: true, Resumed: true},
			RollbackSteps: []Step{{Kind: StepSuspend, Phase: -1}}}, want: "suspend-processes[ReplaceUnhealthy AZRebalance]", check: wantSuspension("ReplaceUnhealthy,AZRebalance", "", false)},
		{name: "resume: ours resume", st: State{Suspension: ours, Steps: []Step{{Kind: StepResume, Phase: -1}}}, want: "resume-processes[ReplaceUnhealthy AZRebalance]"},
		{name: "resume: a drained node still alive goes first", st: State{Suspension: ours, Steps: []Step{afterDrain, {Kind: StepResume, Phase: -1}}, Cursor: 1}, want: "end-terminate/i-1"},
		{name: "resume: a retire cut short is made again first", st: State{Suspension: ours, Steps: []Step{cutShort, {Kind: StepResume, Phase: -1}}, Cursor: 1}, want: "end-retire/i-9[i-9]"},
		{name: "batch: drain overdue, retire", plan: twoPhases, st: State{Steps: []Step{overdueBatch}}, want: "retire/i-1[i-1]", check: func(t *testing.T, d Decision) {
			if _, ok := d.Step.Retiring["i-1"]; !ok {
				t.Error("the decision does not record i-1 as retiring: a crash after its detach would lose it")
			}
		}},
		{name: "resume: nothing left", st: State{Suspension: &Suspension{Ours: ours.Ours, Active: true, Resumed: true}, Steps: []Step{{Kind: StepResume, Phase: -1}}}, want: "done"},
		{name: "reregister: kept instances back", st: State{Rollback: true, RollbackSteps: []Step{{Kind: StepReregister, Phase: -1, IDs: []string{"i-1"}}}}, want: "register[i-1] set-healthy[i-1]"},
		{name: "reregister: done", st: State{Rollback: true, RollbackSteps: []Step{{Kind: StepReregister, Phase: -1, IDs: []string{"i-1"}, Progress: Progress{Done: true}}}}, want: "done"},
		{name: "check: none in the plan", plan: twoPhases, st: State{Steps: []Step{{Kind: StepCheck, Phase: 0}}}, want: "done"},
		{name: "check: run them", st: State{Steps: []Step{{Kind: StepCheck, Phase: 0}}}, want: "run checks"},
		{name: "check: passed", st: State{Steps: []Step{{Kind: StepCheck, Phase: 0}}}, checks: pass, want: "done", check: wantChecks(pass)},
		{name: "check: failed", st: State{Steps: []Step{{Kind: StepCheck, Phase: 0}}}, checks: fail, want: "fail: check site: GET", check: wantChecks(fail)},
		{name: "check: rollback's, every check", st: State{Rollback: true, RollbackSteps: []Step{{Kind: StepCheck, Phase: -1}}}, want: "run checks"},
		{name: "batch: replacements in, check first", st: State{Steps: []Step{warmBatch}}, want: "run checks"},
		{name: "batch: check failed before draining", st: State{Steps: []Step{warmBatch}}, checks: fail, want: "fail: check site: GET http://127.0.0.1:1/healthz: status 500, want 200 (with the replacements in, before draining)"},
		{name: "batch: check passed, drain", st: State{Steps: []Step{warmBatch}}, checks: pass, want: "drain/i-1", check: func(t *testing.T, d Decision) {
			wantChecks(pass)(t, d)
			if !d.Step.Ready {
				t.Error("batch not ready after its check passed")
			}
		}},
		{name: "batch: no checks, drain at once", plan: twoPhases, st: State{Steps: []Step{warmBatch}}, want: "drain/i-1"},
		{name: "window: wait", st: State{Steps: []Step{{Kind: StepWindow, Phase: 1, NotBefore: now.Add(time.Hour)}}}, want: "wait: window opens at 2019-08-19T08:00:00Z"},
		{name: "window: detach", st: State{Steps: []Step{{Kind: StepWindow, Phase: 1, NotBefore: now.Add(time.Hour)}}}, timing: func(t *Timing) { t.Detach = true }, want: "detach until 2019-08-19T08:00:00Z"},
		{name: "window: uncordon before the wait", st: State{Placement: &PlacementState{On: true, Cordoned: map[string]time.Time{"i-1": now}}, Steps: []Step{{Kind: StepWindow, Phase: 1, NotBefore: now.Add(time.Hour)}}}, timing: func(t *Timing) { t.Detach = true }, want: "uncordon/i-1[i-1]"},
		{name: "window: open, the cordon stays", st: State{Placement: &PlacementState{On: true, Cordoned: map[string]time.Time{"i-1": now}}, Steps: []Step{{Kind: StepWindow, Phase: 1, NotBefore: now.Add(-time.Second)}}}, want: "done"},
		{name: "bake", st: State{Steps: []Step{{Kind: StepBake, Phase: 0, Duration: time.Minute}}}, want: "wait: baking until"},
		{name: "unprotect", st: State{Steps: []Step{{Kind: StepUnprotect, Phase: 0, IDs: []string{"i-1", "i-2"}}}}, want: "unprotect[i-1 i-2]"},
		{name: "phase past its deadline", st: State{Steps: []Step{{Kind: StepBake, Phase: 0, Duration: time.Hour, Progress: Progress{Started: now.Add(-16 * time.Minute)}}}}, want: "fail: phase canary missed its deadline of 15m0s"},
		{name: "background round failed", st: State{Steps: []Step{{Kind: StepBake, Phase: 0, Duration: time.Hour}}}, round: fail, want: "fail: check site: GET", check: wantChecks(fail)},
		{name: "background round passed", st: State{Steps: []Step{{Kind: StepBake, Phase: 0, Duration: time.Hour}}}, round: pass, want: "wait: baking until", check: wantChecks(pass)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := plan
			if tc.plan != nil {
				p = tc.plan
			}
			tm := timing
			if tc.timing != nil {
				tc.timing(&tm)
			}
			obs := Observation{Group: Group{Name: "g", Desired: 3, Instances: fleet, Suspended: tc.suspended, Template: tc.template, Image: "ami-new"},
				Nodes: ready, Now: now, Round: tc.round, Checked: tc.checks != nil, Checks: tc.checks}
			st := tc.st
			before, beforeObs := mustJSON(t, &st), mustJSON(t, obs)
			d := decide(p, &st, obs, tm)
			got := summary(d)
			exact := !strings.HasPrefix(tc.want, "wait: ") && !strings.HasPrefix(tc.want, "fail: ")
			if (exact && got != tc.want) || (!exact && !strings.HasPrefix(got, tc.want)) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
			if after := mustJSON(t, &st); after != before {
				t.Errorf("decide changed the state:\nbefore %s\nafter  %s", before, after)
			}
			if after := mustJSON(t, obs); after != beforeObs {
				t.Errorf("decide changed the observation")
			}
			// The new progress shares no map with the state's.
			steps, cur := st.current()
			if m := steps[*cur].Drains; m != nil && d.Step.Drains != nil {
				d.Step.Drains["i-x"] = now
				if _, shared := m["i-x"]; shared {
					t.Error("the decision's drains are the state's map")
				}
			}
		})
	}
}

func wantSuspension(ours, already string, active bool) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		sp := d.Suspension
		if sp == nil || strings.Join(sp.Ours, ",") != ours || strings.Join(sp.Already, ",") != already || sp.Active != active || sp.Resumed {
			t.Errorf("suspension %+v, want ours %q already %q active %v", sp, ours, already, active)
		}
	}
}

func wantChecks(want []CheckResult) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if fmt.Sprint(d.Checks) != fmt.Sprint(want) {
			t.Errorf("checks to record %v, want %v", d.Checks, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package rollout

import (
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
		}(), nil, "tag/i-3 tag/i-4"},
		{"replacements booting", batch(Progress{BaseDesired: 2, Adopted: adopted}), 4, withNew("Pending"), nil, "wait: waiting for ws-02 (i-4) Pending/initial"},
		{"replacements never healthy", batch(Progress{BaseDesired: 2, Adopted: adopted, Started: now.Add(-11 * time.Minute)}), 4, withNew("Pending"), nil, "fail: replacements not healthy after 10m0s"},
		{"healthy but node not ready", batch(Progress{BaseDesired: 2, Adopted: adopted}), 4, withNew("InService"), nodes("i-3", ready, "i-4", NodeObs{Status: NodeStatus{State: "starting"}}), "wait: waiting for ws-02"},
		{"warming up", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: map[string]time.Time{"i-3": now.Add(-10 * time.Second), "i-4": now.Add(-10 * time.Second)}}), 4, withNew("InService"), nodes("i-3", ready, "i-4", ready), "wait: waiting for ws-02 warming up"},
		{"warm: drain both with half the budget each", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm}), 4, withNew("InService"), nodes("i-1", ready, "i-2", ready, "i-3", ready, "i-4", ready), "drain/i-1@100 drain/i-2@100"},
		{"draining: connections left", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "draining", Connections: 3}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "wait: draining ws-01, ws-02"},
		{"one node empty: terminate it alone", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-10 * time.Second), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "drained"}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "terminate/i-1"},
		{"drain deadline passed: terminate anyway", batch(Progress{BaseDesired: 2, Adopted: adopted, HealthySince: warm, Ready: true, Drains: map[string]time.Time{"i-1": now.Add(-6 * time.Minute), "i-2": now.Add(-10 * time.Second)}}), 4, withNew("InService"),
			nodes("i-1", NodeObs{Status: NodeStatus{State: "draining", Connections: 7}}, "i-2", NodeObs{Status: NodeStatus{State: "draining", Connections: 1}}), "terminate/i-1"},
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
			Progress: Progress{Init: true, BaseDesired: 2, Started: now.Add(-time.Minute), Known: []string{"i-1", "i-2"}}}, 2, oldFleet, nodes("i-1", ready, "i-2", ready), "drain/i-1@100 drain/i-2@100"},
		{"terminate-then-replace keeps desired", Step{Kind: StepBatch, Launch: 2, Targets: []string{"i-1"}, Image: "ami-new", Strategy: TerminateThenReplace, TargetsFrom: -1,
			Progress: Progress{Init: true, BaseDesired: 2, Started: now.Add(-time.Minute), Known: []string{"i-1", "i-2"}, Drains: map[string]time.Time{"i-1": now.Add(-time.Minute)}}}, 2, oldFleet,
			nodes("i-1", NodeObs{Status: NodeStatus{State: "drained"}}), "terminate-replace/i-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := Observation{Group: Group{Name: "g", Desired: tc.desired, Instances: tc.fleet}, Nodes: tc.nodes}
			if obs.Nodes == nil {
				obs.Nodes = map[string]NodeObs{}
			}
			d := decideStep(tc.step, nil, obs, timing, now)
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

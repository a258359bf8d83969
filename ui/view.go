package ui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"wsfleet/rollout"
)

// View is what the page shows of a change at one moment, except its
// instances, events and chart points, which travel apart (they are the
// large parts, sent as differences).
type View struct {
	Change     string      `json:"change"`
	Group      string      `json:"group"`
	Status     string      `json:"status"`
	Final      bool        `json:"final"`
	Rollback   bool        `json:"rollback"`
	Where      string      `json:"where"`
	Step       int         `json:"step"` // 1-based; 0 when done
	Steps      int         `json:"steps"`
	Waiting    string      `json:"waiting,omitempty"`
	Failure    string      `json:"failure,omitempty"`
	Started    time.Time   `json:"started,omitzero"`
	Ended      time.Time   `json:"ended,omitzero"`
	OldImage   string      `json:"old_image"`
	NewImage   string      `json:"new_image"`
	Strategy   string      `json:"strategy,omitempty"`
	Drain      string      `json:"drain,omitempty"`
	Processes  string      `json:"processes,omitempty"`
	Pending    string      `json:"pending,omitempty"` // a command not yet taken by the engine
	Owner      string      `json:"owner,omitempty"`
	Phases     []PhaseView `json:"phases"`
	Checks     []CheckView `json:"checks"`
	PeakFleet  int         `json:"peak_fleet"`
	Controls   bool        `json:"controls"` // an admin token is set: the buttons can act
	Following  string      `json:"following,omitempty"`
	ReadFailed string      `json:"read_failed,omitempty"` // the last read of the state failed
}

// PhaseView is one phase of the plan and how far it got.
type PhaseView struct {
	Name    string `json:"name"`
	Status  string `json:"status"` // pending, running, done, failed, …
	Current bool   `json:"current"`
	Replace string `json:"replace,omitempty"`
	Bake    string `json:"bake,omitempty"`
	// NotBefore is the phase's window: it does not begin before then.
	NotBefore time.Time `json:"not_before,omitzero"`
	// Deadline is the phase's limit, and DeadlineAt when it runs out
	// for a phase that began.
	Deadline   string    `json:"deadline,omitempty"`
	DeadlineAt time.Time `json:"deadline_at,omitzero"`
	Started    time.Time `json:"started,omitzero"`
	Ended      time.Time `json:"ended,omitzero"`
	Checks     []Verdict `json:"checks,omitempty"`
	Replaced   int       `json:"replaced"`
}

// Verdict is one run of a check.
type Verdict struct {
	Name   string    `json:"name"`
	Pass   bool      `json:"pass"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at,omitzero"`
}

// CheckView is one of the plan's checks and its last run.
type CheckView struct {
	Name     string   `json:"name"`
	Describe string   `json:"describe"`
	Last     *Verdict `json:"last,omitempty"`
}

// NodeView is one row of the instances table.
type NodeView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Image       string `json:"image"`
	Lifecycle   string `json:"lifecycle"`
	Health      string `json:"health"`
	State       string `json:"state"`
	Connections int    `json:"connections"`
	Protected   bool   `json:"protected"`
	Draining    bool   `json:"draining"`
}

// viewOf builds the page's view of st. plan is st's parsed plan (nil
// when it does not parse: the phases then come from the state alone).
func viewOf(st *rollout.State, plan *rollout.Plan) View {
	v := View{
		Change: st.Change, Group: st.Group, Status: string(st.Status), Final: st.Status.Final(),
		Rollback: st.Rollback, Waiting: st.Waiting, Failure: st.Failure,
		Started: st.Started, Ended: st.Ended, OldImage: st.OldImage,
		Processes: st.Suspension.String(), Pending: st.Control, Owner: st.Owner,
		PeakFleet: st.Peak["(fleet)"], Phases: []PhaseView{}, Checks: []CheckView{},
	}
	if st.StillFailing != "" {
		v.Failure = strings.TrimSpace(v.Failure + "; still failing after the rollback: " + st.StillFailing)
	}
	steps, cursor := st.Steps, st.Cursor
	if st.Rollback {
		steps, cursor = st.RollbackSteps, st.RCursor
	}
	v.Steps = len(steps)
	current := -2 // the phase index the cursor is in; -1 outside phases
	if cursor < len(steps) {
		s := steps[cursor]
		v.Step = cursor + 1
		v.Where = fmt.Sprintf("step %d/%d %s: %s", cursor+1, len(steps), s.Kind, s.Note)
		current = s.Phase
	} else {
		v.Where = "all steps done"
	}
	if plan != nil {
		v.NewImage = st.NewImage(plan)
		v.Strategy = string(plan.Strategy)
		v.Drain = fmt.Sprintf("window %s, at most %g reconnects/s, deadline %s", plan.Drain.Window.D(), plan.Drain.MaxRate, plan.Drain.Deadline.D())
		for _, c := range plan.Checks {
			v.Checks = append(v.Checks, CheckView{Name: c.Name, Describe: c.Describe()})
		}
	}
	// The latest run of each check: the state's own record, else the
	// phases' (an engine records a check's runs in its phase).
	latest := map[string]rollout.CheckResult{}
	for _, rec := range st.Phases {
		for _, c := range rec.Checks {
			if old, ok := latest[c.Name]; !ok || !c.At.Before(old.At) {
				latest[c.Name] = c
			}
		}
	}
	for _, c := range st.Checks {
		if old, ok := latest[c.Name]; !ok || !c.At.Before(old.At) {
			latest[c.Name] = c
		}
	}
	names := make([]string, 0, len(latest))
	for n := range latest {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := latest[name]
		found := false
		for i := range v.Checks {
			if v.Checks[i].Name == c.Name {
				v.Checks[i].Last, found = verdict(c), true
			}
		}
		if !found {
			v.Checks = append(v.Checks, CheckView{Name: c.Name, Last: verdict(c)})
		}
	}
	for i, rec := range st.Phases {
		pv := PhaseView{Name: rec.Name, Status: rec.Status, Started: rec.Started, Ended: rec.Ended, Replaced: len(rec.Replaced)}
		for _, c := range rec.Checks {
			pv.Checks = append(pv.Checks, *verdict(c))
		}
		if rec.Name == "rollback" && i >= len(planPhases(plan)) {
			pv.Current = st.Rollback && !v.Final
		} else {
			pv.Current = !st.Rollback && i == current && !v.Final
			if plan != nil && i < len(plan.Phases) {
				ph := plan.Phases[i]
				pv.Replace = ph.Replace.String()
				if ph.Canary > 0 {
					pv.Replace = fmt.Sprintf("canary %d", ph.Canary)
				}
				if ph.Bake > 0 {
					pv.Bake = ph.Bake.D().String()
				}
				if ph.NotBefore != nil {
					pv.NotBefore = ph.NotBefore.Time
				}
				if ph.Deadline > 0 {
					pv.Deadline = ph.Deadline.D().String()
					if !rec.Started.IsZero() {
						pv.DeadlineAt = rec.Started.Add(ph.Deadline.D())
					}
				}
			}
		}
		v.Phases = append(v.Phases, pv)
	}
	return v
}

func planPhases(p *rollout.Plan) []rollout.Phase {
	if p == nil {
		return nil
	}
	return p.Phases
}

func verdict(c rollout.CheckResult) *Verdict {
	return &Verdict{Name: c.Name, Pass: c.Pass, Detail: c.Detail, At: c.At}
}

// nodesOf is st's instances as table rows, sorted by name then id. An
// instance is draining when its node says so or the change asked it to.
func nodesOf(st *rollout.State) []NodeView {
	asked := map[string]bool{}
	for _, list := range [][]rollout.Step{st.Steps, st.RollbackSteps} {
		for _, s := range list {
			for id := range s.Drains {
				if _, gone := s.Terminated[id]; !gone {
					asked[id] = true
				}
			}
		}
	}
	out := make([]NodeView, 0, len(st.Nodes))
	for _, n := range st.Nodes {
		out = append(out, NodeView{ID: n.ID, Name: n.Name, Image: n.Image, Lifecycle: n.Lifecycle, Health: n.Health,
			State: n.State, Connections: n.Connections, Protected: n.Protected,
			Draining: n.State == "draining" || asked[n.ID]})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Point is one moment of the charts: connections per instance (by
// seriesKey: name and the end of the id; with more than MaxSeries instances, their least, mean and most
// instead), and the clients' reconnects per second and delivery delay
// when something measures them.
type Point struct {
	T     float64        `json:"t"` // Unix seconds
	Conns map[string]int `json:"conns,omitempty"`
	Min   int            `json:"min"`
	Mean  float64        `json:"mean"`
	Max   int            `json:"max"`
	Total int            `json:"total"`
	// ReconnectsPerS and DelayMS are nil when not measured then.
	ReconnectsPerS *float64 `json:"reconnects_per_s,omitempty"`
	DelayMS        *float64 `json:"delay_ms,omitempty"`
}

// MaxSeries is the most instances charted one line each; a larger fleet
// is charted as its least, mean and most connections per instance.
const MaxSeries = 24

// pointOf is the connections part of a chart point for nodes at t.
func pointOf(t time.Time, nodes []NodeView) Point {
	p := Point{T: float64(t.UnixMilli()) / 1000}
	if len(nodes) <= MaxSeries {
		p.Conns = make(map[string]int, len(nodes))
	}
	for i, n := range nodes {
		if p.Conns != nil {
			p.Conns[seriesKey(n)] = n.Connections
		}
		p.Total += n.Connections
		if i == 0 || n.Connections < p.Min {
			p.Min = n.Connections
		}
		p.Max = max(p.Max, n.Connections)
	}
	if len(nodes) > 0 {
		p.Mean = float64(p.Total) / float64(len(nodes))
	}
	return p
}

// probePoint turns a phase's probe result into the chart's figures:
// reconnects per second over the phase, and the gap p99 as the delay.
func probePoint(rec rollout.PhaseRecord) (rps, delayMS float64, ok bool) {
	if rec.Probe == nil || rec.Started.IsZero() || rec.Ended.IsZero() || !rec.Ended.After(rec.Started) {
		return 0, 0, false
	}
	secs := rec.Ended.Sub(rec.Started).Seconds()
	return float64(rec.Probe.Reconnect) / secs, float64(rec.Probe.GapP99) / float64(time.Millisecond), true
}

// seriesKey names an instance's line: its Name tag (which a replacement
// takes over) and the end of its id, which tells the two apart.
func seriesKey(n NodeView) string {
	id := n.ID
	if len(id) > 6 {
		id = "…" + id[len(id)-5:]
	}
	if n.Name == "" {
		return id
	}
	return n.Name + " " + id
}

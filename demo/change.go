package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"wsfleet/examples"
	"wsfleet/probe"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

// changeResult is what the change itself did, whichever way it ran.
type changeResult struct {
	status   string
	err      error
	phases   []PhaseSummary
	replaced []Replacement
	calls    map[string]int
	report   []byte // the engine's own Markdown report, when the engine ran
}

// phaseTracker keeps the current phase for the live progress line; the
// engine's View and the naive steps both feed it. With a clock it also
// records when each bake ran (the canary share is measured over the
// canary's bake).
type phaseTracker struct {
	mu      sync.Mutex
	clock   func() time.Duration // the demo's clock; nil records no bakes
	name    string
	waiting string
	bakes   []bakeWindow
	steps   []phaseStep // what the change was doing when (maxPhaseSteps)
}

// phaseStep is what the change was doing from At on: its phase and what
// it waited for (the engine's View), so that a client's gap can be put
// next to it.
type phaseStep struct {
	At      time.Duration
	Phase   string
	Waiting string
}

// maxPhaseSteps bounds the timeline: the engine's waiting text changes a
// few hundred times in a demo (counts of clients in flight); later steps
// beyond the bound are dropped.
const maxPhaseSteps = 4096

// bakeWindow is when a phase's bake ran, on the demo's clock; End is zero
// while it runs.
type bakeWindow struct {
	Phase      string
	Start, End time.Duration
}

// baking reports whether a waiting text is a bake: the engine's "baking
// until 10:42:07", the naive steps' "bake".
func baking(waiting string) bool { return strings.HasPrefix(waiting, "bak") }

func (t *phaseTracker) set(name, waiting string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.clock != nil {
		now := t.clock()
		n := len(t.bakes)
		open := n > 0 && t.bakes[n-1].End == 0
		switch {
		case open && (!baking(waiting) || t.bakes[n-1].Phase != name):
			t.bakes[n-1].End = now
			if baking(waiting) {
				t.bakes = append(t.bakes, bakeWindow{Phase: name, Start: now})
			}
		case !open && baking(waiting):
			t.bakes = append(t.bakes, bakeWindow{Phase: name, Start: now})
		}
	}
	if t.clock != nil && (name != t.name || waiting != t.waiting) && len(t.steps) < maxPhaseSteps {
		t.steps = append(t.steps, phaseStep{At: t.clock(), Phase: name, Waiting: waiting})
	}
	t.name, t.waiting = name, waiting
}

// timeline returns the steps so far, in time order.
func (t *phaseTracker) timeline() []phaseStep {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]phaseStep(nil), t.steps...)
}

// bakeWindows returns the bakes so far; one still running ends at now.
func (t *phaseTracker) bakeWindows() []bakeWindow {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]bakeWindow(nil), t.bakes...)
	if n := len(out); n > 0 && out[n-1].End == 0 && t.clock != nil {
		out[n-1].End = t.clock()
	}
	return out
}

func (t *phaseTracker) get() (string, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.name, t.waiting
}

// runEngine runs examples/gitter-ws-new-ami.yaml with the rollout engine,
// through its own AWS provider (so that its API calls are counted apart
// from the demo's sampling).
func (d *run) runEngine(ctx context.Context) changeResult {
	var res changeResult
	planYAML, err := planForDemo(examples.NewAMIPlan, d.cloud.Endpoint(), d.lbURL)
	if err == nil {
		planYAML, err = scalePlan(planYAML, d.cfg.Clients)
	}
	if err != nil {
		res.err = err
		return res
	}
	prov, err := awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: d.cloud.Endpoint(), MaxBackoff: time.Second, Logger: d.log.With("part", "engine-provider")})
	if err != nil {
		res.err = err
		return res
	}
	// The engine's state database is the demo's scratch: a demo always
	// starts a fresh change, and the event log in Out is what remains.
	d.stateD, err = os.MkdirTemp("", "wsfleet-demo-state-")
	if err != nil {
		res.err = fmt.Errorf("state directory: %w", err)
		return res
	}
	elog := d.log.With("part", "engine")
	store := &rollout.Store{Dir: d.stateD, NoSync: true}
	if d.cfg.Watch != nil {
		clients := d.probe // read here: the demo clears d.probe when it stops them
		d.cfg.Watch(store, d.evFile.Name(), func() (probe.Report, bool) {
			if clients == nil {
				return probe.Report{}, false
			}
			return clients.Snapshot(), true
		})
	}
	e := &rollout.Engine{
		Provider:  prov,
		Nodes:     d.nodes,
		Checker:   &rollout.Checker{Prober: &rollout.LibProber{AdminToken: adminToken, Logger: elog}, MetricsURL: d.nodes.MetricsURL},
		Store:     store,
		Events:    d.events,
		Log:       elog,
		TimeScale: d.cfg.TimeScale,
		LockTTL:   time.Minute,
		MinPoll:   250 * time.Millisecond,
		MaxPoll:   2 * time.Second,
		View:      d.viewState,
	}
	d.say("rolling out %s with the engine (plan examples/gitter-ws-new-ami.yaml, time scale %g)", newImage, d.cfg.TimeScale)
	st, err := e.Start(ctx, planYAML)
	res.err = err
	res.calls = prov.APICalls()
	if st == nil {
		res.status = "not started"
		return res
	}
	res.status = string(st.Status)
	for _, ph := range st.Phases {
		if ph.Started.IsZero() {
			continue // never reached
		}
		ps := PhaseSummary{Name: ph.Name, Status: ph.Status, Start: ph.Started.Sub(d.start)}
		if !ph.Ended.IsZero() {
			ps.End = ph.Ended.Sub(d.start)
		} else {
			ps.End = d.since()
		}
		res.phases = append(res.phases, ps)
		for _, r := range ph.Replaced {
			if rp, ok := parseReplaced(r); ok {
				res.replaced = append(res.replaced, rp)
			}
		}
	}
	var buf bytes.Buffer
	rollout.WriteReport(&buf, st)
	res.report = buf.Bytes()
	return res
}

// viewState is the engine's View: it is called on the engine's goroutine
// with its live state, so it copies out what the progress line needs.
func (d *run) viewState(st *rollout.State) {
	name := ""
	for _, ph := range st.Phases {
		if !ph.Started.IsZero() && ph.Ended.IsZero() {
			name = ph.Name
		}
	}
	if name == "" {
		name = string(st.Status)
	}
	n := 0
	for _, ph := range st.Phases {
		n += len(ph.Replaced)
	}
	d.replaced.Store(int64(n))
	d.phase.set(name, st.Waiting)
}

// parseReplaced reads the engine's record of one replacement,
// "ws-01 (i-old) -> i-new" (rollout.PhaseRecord.Replaced).
func parseReplaced(s string) (Replacement, bool) {
	before, newID, ok := strings.Cut(s, " -> ")
	if !ok {
		return Replacement{}, false
	}
	name, oldID, ok := strings.Cut(before, " (")
	if !ok || !strings.HasSuffix(oldID, ")") {
		return Replacement{}, false
	}
	return Replacement{Name: name, Old: []string{strings.TrimSuffix(oldID, ")")}, New: []string{newID}}, true
}

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
// engine's View and the naive steps both feed it.
type phaseTracker struct {
	mu      sync.Mutex
	name    string
	waiting string
}

func (t *phaseTracker) set(name, waiting string) {
	t.mu.Lock()
	t.name, t.waiting = name, waiting
	t.mu.Unlock()
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

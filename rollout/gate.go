package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// A gate is one check of a plan at work in one phase: the engine begins
// it when the phase opens (a baseline, a probe that runs all along),
// evaluates it on its interval and at the phase's check step, and ends it
// when the phase closes (a verdict on the whole phase). Each kind of check
// (http, probe, metric, command, prometheus, …) is one file: its plan keys (a struct with
// yaml tags), their validation, its description in the rendered plan, and
// its gate, registered by one line in gateKinds.

// Gate is one check at work in one phase. A new Gate is made for every
// phase, so it keeps its phase's baseline and whatever runs through the
// phase in its own fields. Evaluate may run in the background while the
// engine ends the phase: a gate that starts something guards it.
type Gate interface {
	// Begin opens the phase for the gate: it takes its baseline and
	// starts what runs through the phase. An error fails the phase.
	Begin(ctx context.Context, env PhaseEnv) error
	// Evaluate judges the gate now, against the group in env.
	Evaluate(ctx context.Context, env PhaseEnv) GateResult
	// End stops what Begin started and gives the gate's verdict on the
	// whole phase, or nil when it has none beyond Evaluate's. The engine
	// also ends the gates of a phase cut short (a failure, an abort, an
	// interrupt), and then only keeps the figures.
	End(ctx context.Context, env PhaseEnv) *GateResult
}

// PreChecker is a Gate that also judges the fleet once before a rollout
// changes anything: a failed pre-check refuses the rollout.
type PreChecker interface {
	PreCheck(ctx context.Context, env PhaseEnv) GateResult
}

// GateResult is one judgement of a gate.
type GateResult struct {
	Pass   bool
	Detail string // what was measured, or why it failed
	// Probe is what a probe measured over the phase (End only); the
	// engine keeps it in the phase's record for the report.
	Probe *ProbeResult
	// Analysis is a canary analysis's table; the engine keeps it with
	// the check's result for the report.
	Analysis *CanaryAnalysis
}

// verdict makes a result of a measure and its failure, if any.
func verdict(detail string, err error) GateResult {
	if err != nil {
		return GateResult{Detail: err.Error()}
	}
	return GateResult{Pass: true, Detail: detail}
}

// PhaseEnv is what a gate sees of the rollout: its dependencies, the
// phase, and the group as last observed.
type PhaseEnv struct {
	Checker *Checker
	Phase   string // the phase's name; "rollback" in a rollback
	// Image is the image the phase brings in: the plan's, or the old one
	// in a rollback.
	Image string
	// Ref, for `image: current`, is the launch template version or
	// configuration the phase brings in: it, not Image, tells new
	// instances from old.
	Ref   *TemplateRef
	Group Group
	Now   time.Time
	// LoadBalancerURL returns the URL clients reach the group through,
	// "" when the provider knows none.
	LoadBalancerURL func(ctx context.Context) (string, error)
	// Observe describes the group now, for a gate that samples it in
	// the background (canary_analysis); nil when the engine offers none.
	Observe func(ctx context.Context) (Group, error)
}

// New returns the live instances on the phase's image (canaries and
// replacements); Old the live others.
func (env PhaseEnv) New() []Instance { return env.live(true) }

// Old returns the live instances not on the phase's image.
func (env PhaseEnv) Old() []Instance { return env.live(false) }

func (env PhaseEnv) live(onImage bool) []Instance {
	var out []Instance
	for _, in := range env.Group.Instances {
		if in.Live() && runs(in, env.Image, env.Ref) == onImage {
			out = append(out, in)
		}
	}
	return out
}

// Checker holds what the gates reach the world through besides the
// provider and the node admin API: HTTP, the probe library and the nodes'
// metrics.
type Checker struct {
	HTTP   *http.Client
	Prober Prober
	// MetricsURL returns the /metrics URL of an instance's node.
	MetricsURL func(Instance) string
	// Settle bounds how long a probe's end waits for its clients to
	// connect again; default 15s.
	Settle time.Duration
	// Sleep is how the hosted services' retries wait (vendor.go);
	// default the engine's Sleep on the real clock.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c *Checker) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// GateSpec is one check's kind-specific plan keys, decoded into the
// kind's struct (its yaml tags are the keys).
type GateSpec interface {
	// Validate checks the keys and fills their defaults; at reports a
	// problem at one of the kind's keys ("clients"), with what would be
	// valid.
	Validate(at func(key, format string, args ...any))
	// Describe is the check's line in the rendered plan.
	Describe() string
	// Gate makes the gate for one phase.
	Gate() Gate
}

// GateKind is a kind of check: the plan key that names it in a check and
// an empty spec for the decoder to fill.
type GateKind struct {
	Key  string
	Spec func() GateSpec
	// Continuous gates watch the phase all along, between Begin and End;
	// their interval does not set the pace of the rounds of checks.
	Continuous bool
}

// gateKinds is the registry, in the order a check's keys are listed in
// messages. A new kind is its file and one line here.
var gateKinds = []GateKind{
	httpKind,
	probeKind,
	metricKind,
	commandKind,
	datadogKind,
	sentryKind,
	pagerdutyKind,
	gitlabDeploymentsKind,
	prometheusKind,
	canaryKind,
	cloudwatchKind,
}

var gateMu sync.RWMutex

// RegisterGate adds a kind of check. It panics when the key is taken, as
// two kinds cannot share a plan key.
func RegisterGate(k GateKind) {
	gateMu.Lock()
	defer gateMu.Unlock()
	for _, g := range gateKinds {
		if g.Key == k.Key {
			panic(fmt.Sprintf("rollout: gate kind %q registered twice", k.Key))
		}
	}
	if k.Key == "name" || k.Key == "interval" || k.Spec == nil {
		panic(fmt.Sprintf("rollout: gate kind %q cannot be registered", k.Key))
	}
	gateKinds = append(gateKinds, k)
}

// unregisterGate removes a kind; for tests that register one.
func unregisterGate(key string) {
	gateMu.Lock()
	defer gateMu.Unlock()
	for i, g := range gateKinds {
		if g.Key == key {
			gateKinds = append(gateKinds[:i:i], gateKinds[i+1:]...)
			return
		}
	}
}

func gateKind(key string) (GateKind, bool) {
	gateMu.RLock()
	defer gateMu.RUnlock()
	for _, g := range gateKinds {
		if g.Key == key {
			return g, true
		}
	}
	return GateKind{}, false
}

func gateKeys() []string {
	gateMu.RLock()
	defer gateMu.RUnlock()
	out := make([]string, len(gateKinds))
	for i, g := range gateKinds {
		out[i] = g.Key
	}
	return out
}

// Check is one gate of a plan: its name, how often it runs while a phase
// runs, and its kind's keys.
type Check struct {
	Name     string
	Interval Duration
	Kind     string   // the kind's key: http, probe, metric, command
	Spec     GateSpec // the kind's keys, validated
	found    int      // kind keys in the file: exactly one is valid
}

// checkKeys are the keys of a check besides its kind's.
var checkKeys = []string{"name", "interval"}

// UnmarshalYAML decodes a check: its own keys and its kind's, into the
// kind's spec. Unknown keys are reported by walkKeys with their line.
func (c *Check) UnmarshalYAML(n ast.Node) error {
	values, ok := mappingValues(n)
	if !ok {
		return nil // walkKeys reported it
	}
	for _, v := range values {
		var err error
		switch key := v.Key.String(); key {
		case "name":
			err = yaml.NodeToValue(v.Value, &c.Name)
		case "interval":
			err = yaml.NodeToValue(v.Value, &c.Interval)
		default:
			k, ok := gateKind(key)
			if _, null := v.Value.(*ast.NullNode); !ok || null {
				continue // unknown: walkKeys reported it; empty: no kind
			}
			c.found++
			c.Kind, c.Spec = key, k.Spec()
			err = yaml.NodeToValue(v.Value, c.Spec)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// MarshalJSON writes the check as the plan does: {name, interval, kind: {…}}.
func (c Check) MarshalJSON() ([]byte, error) {
	m := map[string]any{"name": c.Name}
	if c.Interval != 0 {
		m["interval"] = c.Interval
	}
	if c.Kind != "" {
		m[c.Kind] = c.Spec
	}
	return json.Marshal(m)
}

// validate checks the check's keys; at reports at a key under the check.
func (c *Check) validate(at func(key, format string, args ...any)) bool {
	if c.found != 1 || c.Spec == nil {
		at("", "a check has exactly one of %s (found %d)", strings.Join(gateKeys(), ", "), c.found)
		return false
	}
	if c.Interval.D() > maxCheckInterval {
		outOfRange(at, "interval", c.Interval.D(), "1ms to "+maxCheckInterval.String()+" (0 or absent: 10s)")
	}
	if c.Interval == 0 {
		c.Interval = Duration(defaultCheckInterval)
	}
	c.Spec.Validate(func(key, format string, args ...any) { at(c.Kind+"."+key, format, args...) })
	return true
}

// maxCheckInterval bounds a check's interval: a check that runs less
// often than hourly does not watch a phase.
const maxCheckInterval = time.Hour

// outOfRange reports v at key as outside its allowed range; gate kinds
// bound their numbers with it, so that every such error reads the same.
func outOfRange(at func(key, format string, args ...any), key string, v any, allowed string) {
	at(key, "%v is out of range; allowed: %s", v, allowed)
}

// continuous reports whether the check watches all along (see GateKind).
func (c Check) continuous() bool {
	k, _ := gateKind(c.Kind)
	return k.Continuous
}

// Describe is the check's line in the rendered plan.
func (c Check) Describe() string {
	if c.Spec == nil {
		return "?"
	}
	return c.Spec.Describe()
}

// failed returns the first failure among rs, as "name: detail".
func failed(rs []CheckResult) string {
	for _, r := range rs {
		if !r.Pass {
			return r.Name + ": " + r.Detail
		}
	}
	return ""
}

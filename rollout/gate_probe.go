package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// probeKind is the probe check: synthetic clients through the load
// balancer for the whole phase. It watches all along, so its interval
// does not pace the rounds of checks; each round reads its figures.
var probeKind = GateKind{Key: "probe", Spec: func() GateSpec { return &ProbeCheck{} }, Continuous: true}

// Prober starts synthetic clients (the probe library) through the load
// balancer; a probe gate keeps one running for its phase.
type Prober interface {
	Start(ctx context.Context, spec ProbeSpec) (ProbeRun, error)
}

// ProbeRun is a running probe.
type ProbeRun interface {
	// Snapshot reports what the probe measured so far.
	Snapshot() ProbeResult
	// Stop ends the probe, waiting for messages in flight, and reports.
	Stop(ctx context.Context) ProbeResult
}

// ProbeSpec is what a probe check asks of a prober.
type ProbeSpec struct {
	URL      string
	Clients  int
	Channels int
	Rate     float64
}

// ProbeResult is what a probe measured.
type ProbeResult struct {
	Clients   int           `json:"clients"`
	Sent      int64         `json:"sent"`
	Expected  int64         `json:"expected"`
	Delivered int64         `json:"delivered"`
	Lost      int64         `json:"lost"`
	GapP99    time.Duration `json:"gap_p99"`
	GapMax    time.Duration `json:"gap_max"`
	Reconnect int64         `json:"reconnects"`
	// PublishFailed are publishes the fleet refused or did not answer.
	PublishFailed int64 `json:"publish_failed"`
	// Connected clients now; Pending messages still in flight.
	Connected int   `json:"connected"`
	Pending   int64 `json:"pending"`
}

// ProbeCheck runs synthetic clients through the load balancer for a whole
// phase and fails when they lose more than MaxLoss messages or see a gap
// longer than MaxGap.
type ProbeCheck struct {
	URL      string   `yaml:"url" json:"url,omitempty"`
	Clients  int      `yaml:"clients" json:"clients"`
	Channels int      `yaml:"channels" json:"channels,omitempty"`
	Rate     float64  `yaml:"rate" json:"rate"`
	MaxLoss  int64    `yaml:"max_loss" json:"max_loss"`
	MaxGap   Duration `yaml:"max_gap" json:"max_gap,omitempty"`
}

// Bounds of a probe check. The probe's clients are websocket connections
// from the engine's host: to one load balancer address a host has about
// 28,000 source ports (Linux's default ephemeral range, 32768-60999), so
// maxProbeClients leaves room for the rest of the engine. The rate is
// messages per second over all channels, each delivered to every client
// of its channel.
const (
	maxProbeClients = 20_000
	maxProbeRate    = 10_000
	maxProbeLoss    = 1_000_000_000
	maxProbeGap     = time.Hour
)

// Validate wants clients, a rate and a loss bound that can be met, each
// within its bound.
func (pc *ProbeCheck) Validate(at func(key, format string, args ...any)) {
	if pc.Clients <= 0 || pc.Clients > maxProbeClients {
		outOfRange(at, "clients", pc.Clients, fmt.Sprintf("1 to %d clients, e.g. 50", maxProbeClients))
	}
	if pc.Channels < 0 || pc.Channels > max(1, min(pc.Clients, maxProbeClients)) {
		outOfRange(at, "channels", pc.Channels, "0 to clients (0 or absent: 1)")
	}
	if !(pc.Rate > 0 && pc.Rate <= maxProbeRate) {
		outOfRange(at, "rate", pc.Rate, fmt.Sprintf("more than 0 and at most %d messages per second, e.g. 10", maxProbeRate))
	}
	if pc.MaxLoss < 0 || pc.MaxLoss > maxProbeLoss {
		outOfRange(at, "max_loss", pc.MaxLoss, fmt.Sprintf("0 to %d messages", maxProbeLoss))
	}
	if pc.MaxGap.D() > maxProbeGap {
		outOfRange(at, "max_gap", pc.MaxGap.D(), "0 to "+maxProbeGap.String()+" (0 or absent: not checked)")
	}
}

// Describe says what the probe runs and what it tolerates.
func (pc *ProbeCheck) Describe() string {
	url := pc.URL
	if url == "" {
		url = "the load balancer"
	}
	s := fmt.Sprintf("%d probe clients through %s at %g msg/s lose at most %d", pc.Clients, url, pc.Rate, pc.MaxLoss)
	if pc.MaxGap > 0 {
		s += fmt.Sprintf(", gap p99 at most %s", pc.MaxGap.D())
	}
	return s
}

// Gate returns a gate with no probe running yet.
func (pc *ProbeCheck) Gate() Gate { return &probeGate{spec: pc} }

// probeGate runs one probe from Begin to End. Evaluate may read it from
// a background round while End stops it: mu guards run.
type probeGate struct {
	spec *ProbeCheck
	mu   sync.Mutex
	run  ProbeRun
}

// Begin starts the probe, through the load balancer unless the check
// gives a url.
func (g *probeGate) Begin(ctx context.Context, env PhaseEnv) error {
	if env.Checker.Prober == nil {
		return errors.New("no prober configured")
	}
	url := g.spec.URL
	if url == "" && env.LoadBalancerURL != nil {
		u, err := env.LoadBalancerURL(ctx)
		if err != nil {
			return fmt.Errorf("probe has no url: %w", err)
		}
		url = u
	}
	if url == "" {
		return errors.New("probe has no url and the provider knows no load balancer")
	}
	run, err := env.Checker.Prober.Start(ctx, ProbeSpec{URL: url, Clients: g.spec.Clients, Channels: g.spec.Channels, Rate: g.spec.Rate})
	if err != nil {
		return fmt.Errorf("start probe: %w", err)
	}
	g.mu.Lock()
	g.run = run
	g.mu.Unlock()
	return nil
}

// Evaluate judges the figures so far: the gap only, since while nodes
// drain a reconnecting client's missing messages count as lost in a
// snapshot until its replay brings them.
func (g *probeGate) Evaluate(_ context.Context, _ PhaseEnv) GateResult {
	g.mu.Lock()
	run := g.run
	g.mu.Unlock()
	if run == nil {
		return verdict("", errors.New("probe is not running"))
	}
	return g.judge(run.Snapshot(), false)
}

// End lets the probe settle (every client connected again) for up to
// the checker's Settle, so that clients a last drain just released are
// not counted as losses while they replay, stops it and judges its final
// figures; messages in flight are Stop's grace period's business (the
// publisher never stops, so some always are).
func (g *probeGate) End(ctx context.Context, env PhaseEnv) *GateResult {
	g.mu.Lock()
	run := g.run
	g.run = nil
	g.mu.Unlock()
	if run == nil {
		return nil
	}
	settle := env.Checker.Settle
	if settle == 0 {
		settle = 15 * time.Second
	}
	deadline := time.Now().Add(settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s := run.Snapshot(); s.Connected >= s.Clients {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	final := run.Stop(ctx)
	r := g.judge(final, true)
	r.Probe = &final
	return &r
}

// judge holds figures to the check's bounds; loss only when final.
func (g *probeGate) judge(r ProbeResult, final bool) GateResult {
	pc := g.spec
	detail := fmt.Sprintf("%d clients, sent %d, delivered %d, lost %d, gap p99 %s", r.Clients, r.Sent, r.Delivered, r.Lost, r.GapP99.Round(time.Millisecond))
	if !final {
		detail = fmt.Sprintf("%d clients, sent %d, delivered %d, missing so far %d, gap p99 %s", r.Clients, r.Sent, r.Delivered, r.Lost, r.GapP99.Round(time.Millisecond))
	} else if r.Lost > pc.MaxLoss {
		return verdict("", fmt.Errorf("%s: lost %d > max %d", detail, r.Lost, pc.MaxLoss))
	}
	if pc.MaxGap > 0 && r.GapP99 > pc.MaxGap.D() {
		return verdict("", fmt.Errorf("%s: gap p99 %s > max %s", detail, r.GapP99, pc.MaxGap.D()))
	}
	return verdict(detail, nil)
}

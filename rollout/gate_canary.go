package rollout

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// canaryKind is the canary_analysis check: the canary instances' metrics
// against the old instances' over the phase, judged metric by metric
// with a Mann-Whitney U test as Kayenta's judge does, and scored.
var canaryKind = GateKind{Key: "canary_analysis", Spec: func() GateSpec { return &CanaryCheck{} }, Continuous: true}

// The metrics a canary analysis compares, each from the nodes' own
// /metrics, one observation per instance per sample interval. For every
// one of them a rise is bad.
var canaryMetrics = []string{
	"error_rate",         // Bayeux errors per message received
	"latency_p99",        // publish-to-delivery latency p99, seconds
	"handshake_failures", // failed /meta/handshakes per handshake
	"reconnects",         // connections accepted per second
	"cpu_per_connection", // CPU seconds per second per open connection
	"rss_per_connection", // resident bytes per open connection
}

// canaryDefaultMetrics are the metrics judged when the plan names none:
// all but reconnects. A new instance accepts connections faster than the
// instances it is compared with for reasons that are not its own (a load
// balancer sends new connections to the instance with the fewest, and
// clients released elsewhere land on it), so a good canary's reconnects
// differ significantly from the old instances' (seen: a good image rolled
// back with a canary median of 1.98 accepted per second against 1.00). A
// plan may still name it.
var canaryDefaultMetrics = slices.DeleteFunc(slices.Clone(canaryMetrics), func(m string) bool { return m == "reconnects" })

// CanaryCheck samples every in-service instance's /metrics every Sample
// while the phase runs, splits the observations into the canary's (the
// instances on the phase's image) and the old instances', and compares
// them per metric. A metric whose canary values are significantly
// higher (two-sided Mann-Whitney U test at Confidence) fails, or is
// marginal when its canary mean is within Tolerance of the old one; the
// score is the share of passing metrics (a marginal one counts half),
// over those with enough data. While the phase runs the check fails
// below MarginalThreshold; at the phase's end it passes at
// PassThreshold and above, as Spinnaker's canary stage judges
// intermediate and final results.
type CanaryCheck struct {
	Metrics           []string `yaml:"metrics" json:"metrics,omitempty"`
	Sample            Duration `yaml:"sample_interval" json:"sample_interval,omitempty"`
	Confidence        float64  `yaml:"confidence" json:"confidence,omitempty"`
	Tolerance         *float64 `yaml:"tolerance" json:"tolerance,omitempty"`
	PassThreshold     float64  `yaml:"pass_threshold" json:"pass_threshold,omitempty"`
	MarginalThreshold *float64 `yaml:"marginal_threshold" json:"marginal_threshold,omitempty"`
	MinSamples        int      `yaml:"min_samples" json:"min_samples,omitempty"`
	MinConnections    *int     `yaml:"min_connections" json:"min_connections,omitempty"`
	// Critical metrics fail the analysis when they fail, whatever the
	// score, as a Kayenta metric marked critical does.
	Critical []string `yaml:"critical" json:"critical,omitempty"`
	// Prometheus, when set, is where the nodes' series are read (by
	// instance label) instead of their own /metrics (gate_canary_prom.go).
	Prometheus *CanaryPrometheus `yaml:"prometheus" json:"prometheus,omitempty"`
}

// Validate checks the keys and fills Kayenta's defaults: confidence
// 0.98, pass 95, marginal 75; and tolerance 0.25, 5 samples a side, 20
// connections for the per-connection metrics, sampling every 5s.
func (cc *CanaryCheck) Validate(at func(key, format string, args ...any)) {
	for i, m := range cc.Metrics {
		if !slices.Contains(canaryMetrics, m) {
			at("metrics", "%q; valid: %s", m, strings.Join(canaryMetrics, ", "))
		}
		if slices.Contains(cc.Metrics[:i], m) {
			// it would count twice in the score
			at("metrics", "%q is listed twice", m)
		}
	}
	if len(cc.Metrics) == 0 {
		cc.Metrics = canaryDefaultMetrics
	}
	if cc.Prometheus != nil {
		cc.Prometheus.validate(at)
	}
	for _, m := range cc.Critical {
		if !slices.Contains(cc.Metrics, m) {
			at("critical", "%q is not among the metrics compared (%s)", m, strings.Join(cc.Metrics, ", "))
		}
	}
	if cc.Sample.D() < 0 || cc.Sample.D() > time.Hour {
		outOfRange(at, "sample_interval", cc.Sample.D(), "1ms to 1h (0 or absent: 5s)")
	}
	if cc.Sample == 0 {
		cc.Sample = Duration(5 * time.Second)
	}
	if cc.Confidence == 0 {
		cc.Confidence = 0.98
	}
	if !(cc.Confidence >= 0.5 && cc.Confidence < 1) {
		outOfRange(at, "confidence", cc.Confidence, "0.5 to below 1 (absent: 0.98)")
	}
	if cc.Tolerance == nil {
		cc.Tolerance = ptrTo(0.25)
	}
	if !(*cc.Tolerance >= 0 && *cc.Tolerance <= 100) {
		outOfRange(at, "tolerance", *cc.Tolerance, "0 to 100 (a share of the old instances' mean; absent: 0.25)")
	}
	if cc.PassThreshold == 0 {
		cc.PassThreshold = 95
	}
	if cc.MarginalThreshold == nil {
		cc.MarginalThreshold = ptrTo(75.0)
	}
	if !(cc.PassThreshold > 0 && cc.PassThreshold <= 100) {
		outOfRange(at, "pass_threshold", cc.PassThreshold, "more than 0 and at most 100 (absent: 95)")
	}
	if m := *cc.MarginalThreshold; !(m >= 0 && m <= cc.PassThreshold) {
		outOfRange(at, "marginal_threshold", m, "0 to pass_threshold (absent: 75)")
	}
	if cc.MinSamples == 0 {
		cc.MinSamples = 5
	}
	if cc.MinSamples < 2 || cc.MinSamples > 100_000 {
		outOfRange(at, "min_samples", cc.MinSamples, "2 to 100000 (absent: 5)")
	}
	if cc.MinConnections == nil {
		cc.MinConnections = ptrTo(20)
	}
	if *cc.MinConnections < 1 {
		outOfRange(at, "min_connections", *cc.MinConnections, "1 or more (absent: 20)")
	}
}

func ptrTo[T any](v T) *T { return &v }

// Describe says what is compared and how it is judged.
func (cc *CanaryCheck) Describe() string {
	from := "the nodes' /metrics"
	if cc.Prometheus != nil {
		from = "Prometheus " + cc.Prometheus.URL
	}
	return fmt.Sprintf("canary against old instances every %s from %s on %s: Mann-Whitney at %g confidence, score at least %g (fail below %g while it runs)",
		cc.Sample.D(), from, strings.Join(cc.Metrics, ", "), cc.Confidence, cc.PassThreshold, *cc.MarginalThreshold)
}

// Gate returns a gate with nothing sampled yet.
func (cc *CanaryCheck) Gate() Gate {
	return &canaryGate{spec: cc, now: time.Now, prev: map[string]nodeScrape{}, obs: map[string]*canarySamples{}}
}

// CanaryAnalysis is a canary analysis's table: the verdict per metric,
// the score and the thresholds. The report shows it.
type CanaryAnalysis struct {
	Score    float64        `json:"score"`
	Pass     float64        `json:"pass_threshold"`
	Marginal float64        `json:"marginal_threshold"`
	Verdict  string         `json:"verdict"` // pass, marginal, fail, nodata
	Critical []string       `json:"critical,omitempty"`
	Metrics  []CanaryMetric `json:"metrics"`
	Canary   int            `json:"canary_instances"`
	Old      int            `json:"old_instances"`
}

// CanaryMetric is one metric's comparison.
type CanaryMetric struct {
	Name         string  `json:"name"`
	CanaryN      int     `json:"canary_samples"`
	OldN         int     `json:"old_samples"`
	CanaryMedian float64 `json:"canary_median"`
	OldMedian    float64 `json:"old_median"`
	P            float64 `json:"p"`
	Verdict      string  `json:"verdict"` // pass, marginal, fail, nodata
}

// canarySamples are one metric's observations, per side.
type canarySamples struct{ canary, old []float64 }

// nodeScrape is what one scrape of a node read.
type nodeScrape struct {
	at          time.Time
	errors      float64
	messagesIn  float64
	hsOK        float64
	hsFailed    float64
	connects    float64
	cpu         float64
	rss         float64
	connections float64
	buckets     []bucket // the delivery latency histogram, cumulative
	latCount    float64
}

type bucket struct{ le, n float64 }

// canaryGate samples in the background from Begin to End.
type canaryGate struct {
	spec *CanaryCheck

	mu      sync.Mutex
	prev    map[string]nodeScrape     // by instance id
	obs     map[string]*canarySamples // by metric
	canary  map[string]bool           // instance ids seen on each side
	old     map[string]bool
	frozen  bool  // a canary left service: its drain is not its behaviour
	scraped int   // scrapes that answered
	lastErr error // the last scrape that did not

	now    func() time.Time // the scrapes' clock
	group  Group            // the latest group seen, when env has no Observe
	prom   promv1.API       // the Prometheus the series come from, if the check names one
	cancel context.CancelFunc
	done   chan struct{}
}

// Begin starts sampling.
func (g *canaryGate) Begin(ctx context.Context, env PhaseEnv) error {
	if env.Checker.MetricsURL == nil {
		return fmt.Errorf("canary analysis: no node metrics address")
	}
	if g.spec.Prometheus != nil {
		api, err := g.spec.Prometheus.client(env.Checker)
		if err != nil {
			return fmt.Errorf("canary analysis: %w", err)
		}
		g.prom = api
	}
	g.canary, g.old = map[string]bool{}, map[string]bool{}
	g.group = env.Group
	ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	g.done = make(chan struct{})
	go func() {
		defer close(g.done)
		t := time.NewTicker(g.spec.Sample.D())
		defer t.Stop()
		for {
			g.sample(ctx, env)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// sample scrapes every in-service, healthy instance once and adds an
// observation per metric for each that was scraped before.
func (g *canaryGate) sample(ctx context.Context, env PhaseEnv) {
	grp := g.latestGroup()
	if env.Observe != nil {
		if got, err := env.Observe(ctx); err == nil {
			grp = got
		}
	}
	type scraped struct {
		in Instance
		s  nodeScrape
		ok bool
	}
	var (
		wg  sync.WaitGroup
		out = make([]scraped, 0, len(grp.Instances))
		mu  sync.Mutex
	)
	leaving := false
	var serving []Instance
	for _, in := range grp.Instances {
		if in.Lifecycle == "InService" && (in.Health == "" || in.Health == "healthy") {
			serving = append(serving, in)
		} else if in.Image == env.Image && g.seenCanary(in.ID) {
			leaving = true
		}
	}
	if g.prom != nil {
		got, err := scrapeProm(ctx, g.prom, g.spec.Prometheus, env.Checker, serving, g.now())
		if err != nil {
			g.mu.Lock()
			g.lastErr = err
			g.mu.Unlock()
		}
		for _, in := range serving {
			if s, ok := got[in.ID]; ok {
				out = append(out, scraped{in: in, s: s, ok: true})
			}
		}
		serving = nil
	}
	for _, in := range serving {
		wg.Add(1)
		go func(in Instance) {
			defer wg.Done()
			s, err := scrapeNode(ctx, env.Checker, in, g.now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				g.mu.Lock()
				g.lastErr = fmt.Errorf("metrics of %s: %w", in.ID, err)
				g.mu.Unlock()
				return
			}
			out = append(out, scraped{in: in, s: s, ok: true})
		}(in)
	}
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	if leaving {
		g.frozen = true
	}
	if g.frozen {
		return
	}
	for _, sc := range out {
		g.scraped++
		prev, had := g.prev[sc.in.ID]
		g.prev[sc.in.ID] = sc.s
		onImage := sc.in.Image == env.Image
		if onImage {
			g.canary[sc.in.ID] = true
		} else {
			g.old[sc.in.ID] = true
		}
		if !had {
			continue
		}
		for name, v := range observe(prev, sc.s, *g.spec.MinConnections) {
			if !slices.Contains(g.spec.Metrics, name) {
				continue
			}
			o := g.obs[name]
			if o == nil {
				o = &canarySamples{}
				g.obs[name] = o
			}
			if onImage {
				o.canary = append(o.canary, v)
			} else {
				o.old = append(o.old, v)
			}
		}
	}
}

func (g *canaryGate) seenCanary(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.canary[id]
}

func (g *canaryGate) latestGroup() Group {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.group
}

// observe derives one observation per metric from two scrapes of a node;
// a metric with nothing to measure in the interval (no messages, no
// handshakes, no deliveries, too few connections, a counter reset) has
// none, nor one whose value is not finite (NaN or ±Inf in /metrics, which
// the rank test could not order).
func observe(a, b nodeScrape, minConns int) map[string]float64 {
	out := observeAll(a, b, minConns)
	for name, v := range out {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(out, name)
		}
	}
	return out
}

// observeAll is observe's derivation, non-finite values included.
func observeAll(a, b nodeScrape, minConns int) map[string]float64 {
	out := map[string]float64{}
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return out
	}
	if dm, de := b.messagesIn-a.messagesIn, b.errors-a.errors; dm > 0 && de >= 0 {
		out["error_rate"] = de / dm
	}
	if ok, failed := b.hsOK-a.hsOK, b.hsFailed-a.hsFailed; ok >= 0 && failed >= 0 && ok+failed > 0 {
		out["handshake_failures"] = failed / (ok + failed)
	}
	if dc := b.connects - a.connects; dc >= 0 {
		out["reconnects"] = dc / dt
	}
	if q, ok := quantileDelta(0.99, a.buckets, b.buckets); ok {
		out["latency_p99"] = q
	}
	if b.connections >= float64(minConns) {
		if dcpu := b.cpu - a.cpu; dcpu >= 0 {
			out["cpu_per_connection"] = dcpu / dt / b.connections
		}
		if b.rss > 0 {
			out["rss_per_connection"] = b.rss / b.connections
		}
	}
	return out
}

// quantileDelta is the q-quantile of the observations a histogram took
// between two scrapes (cumulative buckets a then b), interpolated
// linearly within its bucket as PromQL's histogram_quantile does; the
// +Inf bucket answers the largest finite bound.
func quantileDelta(q float64, a, b []bucket) (float64, bool) {
	if len(b) == 0 || len(a) != len(b) {
		return 0, false
	}
	d := make([]bucket, len(b))
	for i := range b {
		if b[i].le != a[i].le || b[i].n < a[i].n {
			return 0, false // not the same histogram, or reset
		}
		d[i] = bucket{le: b[i].le, n: b[i].n - a[i].n}
	}
	total := d[len(d)-1].n
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, bk := range d {
		if bk.n >= rank {
			if math.IsInf(bk.le, 1) {
				if i > 0 {
					return d[i-1].le, true
				}
				return 0, false
			}
			in := bk.n - below
			if in <= 0 {
				return bk.le, true
			}
			return lower + (bk.le-lower)*(rank-below)/in, true
		}
		lower, below = bk.le, bk.n
	}
	return d[len(d)-1].le, true
}

// scrapeNode reads an instance's /metrics in Prometheus's text format.
func scrapeNode(ctx context.Context, c *Checker, in Instance, now func() time.Time) (nodeScrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.MetricsURL(in), nil)
	if err != nil {
		return nodeScrape{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.client().Do(req)
	if err != nil {
		return nodeScrape{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nodeScrape{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	at := now()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nodeScrape{}, fmt.Errorf("parse: %w", err)
	}
	s := nodeScrape{
		at:          at,
		errors:      famSum(fams["wsfleet_errors_total"], nil),
		messagesIn:  famSum(fams["wsfleet_messages_in_total"], nil),
		hsOK:        famSum(fams["wsfleet_handshakes_total"], map[string]string{"outcome": "ok"}),
		hsFailed:    famSum(fams["wsfleet_handshakes_total"], map[string]string{"outcome": "failed"}),
		connects:    famSum(fams["wsfleet_connects_total"], nil),
		cpu:         famSum(fams["process_cpu_seconds_total"], nil),
		rss:         famSum(fams["process_resident_memory_bytes"], nil),
		connections: famSum(fams["wsfleet_connections"], nil),
	}
	if f := fams["wsfleet_publish_deliver_seconds"]; f != nil && len(f.GetMetric()) > 0 {
		h := f.GetMetric()[0].GetHistogram()
		for _, b := range h.GetBucket() {
			s.buckets = append(s.buckets, bucket{le: b.GetUpperBound(), n: float64(b.GetCumulativeCount())})
		}
		s.buckets = append(s.buckets, bucket{le: math.Inf(1), n: float64(h.GetSampleCount())})
		s.latCount = float64(h.GetSampleCount())
	}
	return s, nil
}

// famSum adds a family's samples whose labels include want.
func famSum(f *dto.MetricFamily, want map[string]string) float64 {
	if f == nil {
		return 0
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !labelsInclude(labels, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// analyse judges every metric on what was sampled so far.
func (g *canaryGate) analyse() CanaryAnalysis {
	g.mu.Lock()
	defer g.mu.Unlock()
	cc := g.spec
	a := CanaryAnalysis{Pass: cc.PassThreshold, Marginal: *cc.MarginalThreshold, Critical: cc.Critical, Canary: len(g.canary), Old: len(g.old)}
	alpha := 1 - cc.Confidence
	points, counted := 0.0, 0
	for _, name := range cc.Metrics {
		m := CanaryMetric{Name: name, Verdict: "nodata", P: 1}
		if o := g.obs[name]; o != nil {
			m.CanaryN, m.OldN = len(o.canary), len(o.old)
			m.CanaryMedian, m.OldMedian = median(slices.Clone(o.canary)), median(slices.Clone(o.old))
			// Samples too few for the test ever to reach the confidence
			// (however far apart) would read as "no difference": no
			// verdict then, as for too few samples.
			if m.CanaryN >= cc.MinSamples && m.OldN >= cc.MinSamples && mannWhitneyBestP(m.CanaryN, m.OldN) < alpha {
				t := MannWhitneyU(o.canary, o.old)
				m.P = t.P
				switch {
				case t.P >= alpha || t.Z <= 0:
					m.Verdict = "pass" // not told apart, or the canary is lower
				case mean(o.canary) <= (1+*cc.Tolerance)*mean(o.old):
					m.Verdict = "marginal"
				default:
					m.Verdict = "fail"
				}
			}
		}
		switch m.Verdict {
		case "pass":
			points++
			counted++
		case "marginal":
			points += 0.5
			counted++
		case "fail":
			counted++
		}
		a.Metrics = append(a.Metrics, m)
	}
	switch {
	case counted == 0:
		a.Verdict = "nodata"
	case a.criticalFailed(cc.Critical) != "":
		a.Score = 100 * points / float64(counted)
		a.Verdict = "fail"
	default:
		a.Score = 100 * points / float64(counted)
		switch {
		case a.Score >= a.Pass:
			a.Verdict = "pass"
		case a.Score >= a.Marginal:
			a.Verdict = "marginal"
		default:
			a.Verdict = "fail"
		}
	}
	return a
}

// criticalFailed names the first critical metric that failed, "" for
// none.
func (a CanaryAnalysis) criticalFailed(critical []string) string {
	for _, m := range a.Metrics {
		if m.Verdict == "fail" && slices.Contains(critical, m.Name) {
			return m.Name
		}
	}
	return ""
}

// summary is the analysis in one line: the score and the metrics that
// did not pass, with what was seen against what was allowed.
func (a CanaryAnalysis) summary() string {
	var bad []string
	for _, m := range a.Metrics {
		if m.Verdict == "fail" || m.Verdict == "marginal" {
			bad = append(bad, fmt.Sprintf("%s %s (canary median %.4g, old %.4g, p %.2g)", m.Name, m.Verdict, m.CanaryMedian, m.OldMedian, m.P))
		}
	}
	s := fmt.Sprintf("score %.0f (pass at %g, marginal at %g) over %d canary and %d old instances", a.Score, a.Pass, a.Marginal, a.Canary, a.Old)
	if m := a.criticalFailed(a.Critical); m != "" {
		s += "; critical metric " + m + " failed"
	}
	if len(bad) > 0 {
		s += ": " + strings.Join(bad, "; ")
	}
	if none := a.noData(); len(none) > 0 {
		s += "; no data: " + strings.Join(none, ", ")
	}
	return s
}

// noData names the metrics without a verdict, with their sample counts
// (a canary that serves no traffic has none of its own): the score is
// over the others only, so a summary must say which were not judged.
func (a CanaryAnalysis) noData() []string {
	var out []string
	for _, m := range a.Metrics {
		if m.Verdict == "nodata" {
			out = append(out, fmt.Sprintf("%s (%d canary, %d old samples)", m.Name, m.CanaryN, m.OldN))
		}
	}
	return out
}

// criticalNoData names the first critical metric without a verdict, ""
// for none.
func (a CanaryAnalysis) criticalNoData() string {
	for _, m := range a.Metrics {
		if m.Verdict == "nodata" && slices.Contains(a.Critical, m.Name) {
			return m.Name
		}
	}
	return ""
}

// Evaluate judges what was sampled so far: it fails only below the
// marginal threshold, and passes while there is not enough data yet.
func (g *canaryGate) Evaluate(_ context.Context, env PhaseEnv) GateResult {
	g.mu.Lock()
	if len(env.Group.Instances) > 0 {
		g.group = env.Group
	}
	g.mu.Unlock()
	a := g.analyse()
	switch a.Verdict {
	case "nodata":
		return GateResult{Pass: true, Detail: fmt.Sprintf("collecting: not yet %d samples a side for any metric (%d canary, %d old instances)", g.spec.MinSamples, a.Canary, a.Old), Analysis: &a}
	case "fail":
		return GateResult{Detail: "canary analysis failed: " + a.summary(), Analysis: &a}
	}
	return GateResult{Pass: true, Detail: "so far " + a.summary(), Analysis: &a}
}

// End stops sampling and gives the final verdict: pass at the pass
// threshold; no data at all (nothing compared) fails, except in a
// rollback, where there is no canary to judge.
func (g *canaryGate) End(_ context.Context, env PhaseEnv) *GateResult {
	if g.cancel != nil {
		g.cancel()
		<-g.done
	}
	a := g.analyse()
	g.mu.Lock()
	lastErr := g.lastErr
	g.mu.Unlock()
	switch a.Verdict {
	case "pass":
		if m := a.criticalNoData(); m != "" {
			return &GateResult{Detail: "canary analysis: critical metric " + m + " has no data: " + a.summary(), Analysis: &a}
		}
		return &GateResult{Pass: true, Detail: a.summary(), Analysis: &a}
	case "nodata":
		if env.Phase == "rollback" {
			return &GateResult{Pass: true, Detail: "not judged in a rollback: no canary to compare", Analysis: &a}
		}
		why := fmt.Sprintf("nothing to compare: too few samples a side for any metric (at least %d each, and enough to tell apart at confidence %g) (%d canary, %d old instances)", g.spec.MinSamples, g.spec.Confidence, a.Canary, a.Old)
		if none := a.noData(); len(none) > 0 {
			why += "; no data: " + strings.Join(none, ", ")
		}
		if lastErr != nil {
			why += "; last scrape error: " + lastErr.Error()
		}
		return &GateResult{Detail: "canary analysis: " + why, Analysis: &a}
	}
	return &GateResult{Detail: "canary analysis failed: " + a.summary(), Analysis: &a}
}

// canaryTable writes an analysis as a Markdown table.
func canaryTable(w io.Writer, a *CanaryAnalysis) {
	fmt.Fprintf(w, "| metric | canary samples | old samples | canary median | old median | p | verdict |\n|---|---|---|---|---|---|---|\n")
	for _, m := range a.Metrics {
		fmt.Fprintf(w, "| %s | %d | %d | %.4g | %.4g | %.3g | %s |\n", m.Name, m.CanaryN, m.OldN, m.CanaryMedian, m.OldMedian, m.P, m.Verdict)
	}
	crit := ""
	if m := a.criticalFailed(a.Critical); m != "" {
		crit = "; critical metric " + m + " failed"
	}
	fmt.Fprintf(w, "\nScore %.0f: %s (pass at %g, marginal at %g%s; %d canary, %d old instances).\n", a.Score, a.Verdict, a.Pass, a.Marginal, crit, a.Canary, a.Old)
}

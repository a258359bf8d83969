package rollout

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNode serves a ws node's /metrics in Prometheus's text format, its
// counters moving on at every scrape: handshakes (a share failing),
// messages and errors, connects, CPU, and deliveries into the latency
// histogram around a typical latency.
type fakeNode struct {
	mu         sync.Mutex
	rnd        *rand.Rand
	failShare  float64 // share of handshakes that fail
	latency    float64 // typical delivery latency, seconds
	hsOK, hsF  float64
	msgs, errs float64
	connects   float64
	cpu        float64
	conns      float64
	buckets    []float64 // cumulative counts per bound of latBounds
	count      float64
}

var latBounds = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}

func newFakeNode(seed uint64, failShare, latency float64) *fakeNode {
	return &fakeNode{rnd: rand.New(rand.NewPCG(seed, 7)), failShare: failShare, latency: latency, conns: 50, buckets: make([]float64, len(latBounds))}
}

func (n *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	hs := float64(10 + n.rnd.IntN(10))
	failed := math.Round(hs * n.failShare * (0.5 + n.rnd.Float64()))
	n.hsOK += hs - failed
	n.hsF += failed
	m := float64(100 + n.rnd.IntN(50))
	n.msgs += m
	n.errs += failed + float64(n.rnd.IntN(2))
	n.connects += float64(n.rnd.IntN(3))
	n.cpu += 0.01 + 0.005*n.rnd.Float64()
	for range 20 {
		v := n.latency * (0.5 + n.rnd.Float64())
		n.count++
		for i, b := range latBounds {
			if v <= b {
				n.buckets[i]++
			}
		}
	}
	fmt.Fprintf(w, "# TYPE wsfleet_handshakes_total counter\nwsfleet_handshakes_total{outcome=\"ok\"} %g\nwsfleet_handshakes_total{outcome=\"failed\"} %g\n", n.hsOK, n.hsF)
	fmt.Fprintf(w, "# TYPE wsfleet_messages_in_total counter\nwsfleet_messages_in_total %g\n", n.msgs)
	fmt.Fprintf(w, "# TYPE wsfleet_errors_total counter\nwsfleet_errors_total{code=\"500\"} %g\n", n.errs)
	fmt.Fprintf(w, "# TYPE wsfleet_connects_total counter\nwsfleet_connects_total{transport=\"websocket\"} %g\n", n.connects)
	fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n", n.cpu)
	fmt.Fprintf(w, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %g\n", 3e7+1e5*n.rnd.Float64())
	fmt.Fprintf(w, "# TYPE wsfleet_connections gauge\nwsfleet_connections{transport=\"websocket\"} %g\n", n.conns)
	fmt.Fprintf(w, "# TYPE wsfleet_publish_deliver_seconds histogram\n")
	for i, b := range latBounds {
		fmt.Fprintf(w, "wsfleet_publish_deliver_seconds_bucket{le=\"%g\"} %g\n", b, n.buckets[i])
	}
	fmt.Fprintf(w, "wsfleet_publish_deliver_seconds_bucket{le=\"+Inf\"} %g\nwsfleet_publish_deliver_seconds_sum 0\nwsfleet_publish_deliver_seconds_count %g\n", n.count, n.count)
}

// canaryFleet runs 4 old nodes and one canary node made by canary, and
// returns an env whose group lists them.
func canaryFleet(t *testing.T, canary *fakeNode) PhaseEnv {
	t.Helper()
	urls := map[string]string{}
	var g Group
	add := func(id, image string, n *fakeNode) {
		srv := httptest.NewServer(n)
		t.Cleanup(srv.Close)
		urls[id] = srv.URL + "/metrics"
		g.Instances = append(g.Instances, Instance{ID: id, Image: image, Lifecycle: "InService", Health: "healthy"})
	}
	for i := range 4 {
		add(fmt.Sprintf("i-old%d", i), "ami-old", newFakeNode(uint64(i), 0, 0.004))
	}
	add("i-canary", "ami-new", canary)
	return PhaseEnv{
		Checker: &Checker{MetricsURL: func(in Instance) string { return urls[in.ID] }},
		Phase:   "canary", Image: "ami-new", Group: g,
	}
}

func validCanary(t *testing.T, cc *CanaryCheck) *CanaryCheck {
	t.Helper()
	cc.Validate(func(key, format string, args ...any) { t.Fatalf("%s: %s", key, fmt.Sprintf(format, args...)) })
	return cc
}

// runCanary samples until every side has n samples, then evaluates and
// ends the gate.
func runCanary(t *testing.T, env PhaseEnv, n int) (GateResult, *GateResult) {
	t.Helper()
	return runCanaryCheck(t, env, n, &CanaryCheck{})
}

func runCanaryCheck(t *testing.T, env PhaseEnv, n int, cc *CanaryCheck) (GateResult, *GateResult) {
	t.Helper()
	cc.Sample, cc.MinSamples, cc.MinConnections = Duration(5*time.Millisecond), 10, ptrTo(20)
	cc = validCanary(t, cc)
	g := cc.Gate().(*canaryGate)
	if err := g.Begin(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g.mu.Lock()
		o := g.obs["handshake_failures"]
		enough := o != nil && len(o.canary) >= n
		g.mu.Unlock()
		if enough {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("too few samples")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := g.Evaluate(context.Background(), env)
	return r, g.End(context.Background(), env)
}

func TestCanaryAnalysis(t *testing.T) {
	t.Run("a good canary passes", func(t *testing.T) {
		env := canaryFleet(t, newFakeNode(99, 0, 0.004))
		r, end := runCanary(t, env, 30)
		if !r.Pass || end == nil || !end.Pass || end.Analysis == nil || end.Analysis.Verdict != "pass" {
			t.Fatalf("evaluate %+v\nend %+v", r, end)
		}
		for _, m := range end.Analysis.Metrics {
			if m.Verdict != "pass" {
				t.Errorf("%s: %+v", m.Name, m)
			}
		}
	})
	t.Run("failing handshakes fail it, named with what was seen", func(t *testing.T) {
		env := canaryFleet(t, newFakeNode(99, 0.3, 0.004))
		r, end := runCanary(t, env, 30)
		if r.Pass || end.Pass {
			t.Fatalf("evaluate %+v\nend %+v", r, end)
		}
		verdicts := map[string]string{}
		for _, m := range end.Analysis.Metrics {
			verdicts[m.Name] = m.Verdict
		}
		if verdicts["handshake_failures"] != "fail" || verdicts["error_rate"] != "fail" || verdicts["latency_p99"] != "pass" {
			t.Errorf("verdicts %v", verdicts)
		}
		if !strings.Contains(end.Detail, "canary analysis failed: score ") || !strings.Contains(end.Detail, "handshake_failures fail (canary median 0.") {
			t.Errorf("detail %q", end.Detail)
		}
	})
	t.Run("a slow canary fails on latency", func(t *testing.T) {
		env := canaryFleet(t, newFakeNode(99, 0, 0.2))
		_, end := runCanary(t, env, 30)
		if end.Pass {
			t.Fatalf("end %+v", end)
		}
		for _, m := range end.Analysis.Metrics {
			if m.Name == "latency_p99" && (m.Verdict != "fail" || m.CanaryMedian < 0.1 || m.OldMedian > 0.01) {
				t.Errorf("latency %+v", m)
			}
		}
		var buf bytes.Buffer
		WriteReport(&buf, &State{Phases: []PhaseRecord{{Name: "canary", Checks: []CheckResult{{Name: "aca", Detail: end.Detail, Analysis: end.Analysis}}}}})
		if !strings.Contains(buf.String(), "### Canary analysis: aca, phase canary") || !strings.Contains(buf.String(), "| latency_p99 | ") {
			t.Errorf("report:\n%s", buf.String())
		}
	})
	t.Run("a critical metric fails it whatever the score", func(t *testing.T) {
		// one metric of six failing scores 83: a pass at 50, unless
		// that metric is critical
		_, end := runCanaryCheck(t, canaryFleet(t, newFakeNode(99, 0, 0.2)), 30, &CanaryCheck{PassThreshold: 50, MarginalThreshold: ptrTo(40.0)})
		if !end.Pass {
			t.Errorf("not critical: %+v", end)
		}
		_, end = runCanaryCheck(t, canaryFleet(t, newFakeNode(99, 0, 0.2)), 30, &CanaryCheck{PassThreshold: 50, MarginalThreshold: ptrTo(40.0), Critical: []string{"latency_p99"}})
		if end.Pass || !strings.Contains(end.Detail, "critical metric latency_p99 failed") {
			t.Errorf("critical: %+v", end)
		}
	})
	t.Run("no old instances: nothing to compare fails, except in a rollback", func(t *testing.T) {
		env := canaryFleet(t, newFakeNode(99, 0, 0.004))
		env.Image = "ami-none"
		cc := validCanary(t, &CanaryCheck{Sample: Duration(5 * time.Millisecond)})
		g := cc.Gate().(*canaryGate)
		g.Begin(context.Background(), env)
		time.Sleep(50 * time.Millisecond)
		if r := g.End(context.Background(), env); r.Pass || !strings.Contains(r.Detail, "nothing to compare") {
			t.Errorf("%+v", r)
		}
		env.Phase = "rollback"
		g = cc.Gate().(*canaryGate)
		g.Begin(context.Background(), env)
		if r := g.End(context.Background(), env); !r.Pass {
			t.Errorf("rollback %+v", r)
		}
	})
}

func TestQuantileDelta(t *testing.T) {
	inf := math.Inf(1)
	a := []bucket{{0.1, 10}, {0.5, 10}, {1, 10}, {inf, 10}}
	// 100 new observations: 50 up to 0.1, 40 in (0.1, 0.5], 10 in (0.5, 1].
	b := []bucket{{0.1, 60}, {0.5, 100}, {1, 110}, {inf, 110}}
	for _, tc := range []struct{ q, want float64 }{
		{0.5, 0.1},           // rank 50: the top of the first bucket
		{0.9, 0.5},           // rank 90: the top of the second
		{0.99, 0.5 + 0.5*.9}, // rank 99: 9 of the 10 in (0.5, 1]
		{0.25, 0.05},         // rank 25: half way into the first
	} {
		got, ok := quantileDelta(tc.q, a, b)
		if !ok || math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("q %g = %g, %v; want %g", tc.q, got, ok, tc.want)
		}
	}
	if _, ok := quantileDelta(0.99, a, a); ok {
		t.Error("no new observations gave a quantile")
	}
}

func TestCanaryPlanKeys(t *testing.T) {
	for _, tc := range []struct {
		cc   CanaryCheck
		want string
	}{
		{CanaryCheck{Metrics: []string{"latency"}}, `metrics: "latency"; valid: error_rate, latency_p99`},
		{CanaryCheck{Metrics: []string{"error_rate", "latency_p99", "error_rate"}}, `metrics: "error_rate" is listed twice`},
		{CanaryCheck{Confidence: 1}, "confidence: 1 is out of range"},
		{CanaryCheck{PassThreshold: 50, MarginalThreshold: ptrTo(60.0)}, "marginal_threshold: 60 is out of range"},
		{CanaryCheck{MinSamples: 1}, "min_samples: 1 is out of range"},
		{CanaryCheck{Metrics: []string{"error_rate"}, Critical: []string{"latency_p99"}}, `critical: "latency_p99" is not among the metrics compared (error_rate)`},
		{CanaryCheck{Prometheus: &CanaryPrometheus{URL: "prom:9090"}}, `prometheus.url: "prom:9090"; want`},
		{CanaryCheck{Prometheus: &CanaryPrometheus{URL: "http://prom:9090", InstanceLabel: "bad-label"}}, `prometheus.instance_label: "bad-label" is not a label name`},
	} {
		var got []string
		tc.cc.Validate(func(key, format string, args ...any) { got = append(got, key+": "+fmt.Sprintf(format, args...)) })
		if !strings.Contains(strings.Join(got, "\n"), tc.want) {
			t.Errorf("%+v: %q, want %q", tc.cc, got, tc.want)
		}
	}
	cc := validCanary(t, &CanaryCheck{})
	if cc.Confidence != 0.98 || cc.PassThreshold != 95 || *cc.MarginalThreshold != 75 || !slices.Equal(cc.Metrics, []string{"error_rate", "latency_p99", "handshake_failures", "cpu_per_connection", "rss_per_connection"}) || cc.Sample.D() != 5*time.Second {
		t.Errorf("defaults %+v", cc)
	}
}

// canaryWith is a gate of cc whose samples are obs, not yet begun.
func canaryWith(t *testing.T, cc *CanaryCheck, obs map[string]*canarySamples) *canaryGate {
	t.Helper()
	g := validCanary(t, cc).Gate().(*canaryGate)
	g.obs = obs
	return g
}

// TestCanaryTooFewToTell: a metric whose samples are too few for the
// test ever to reach the confidence (here 5 a side at 0.99: even a
// canary a hundred times slower on every sample has p 0.012) is not a
// pass by "no difference": it has no verdict, and the analysis says so.
func TestCanaryTooFewToTell(t *testing.T) {
	slow := []float64{10, 10.1, 10.2, 10.3, 10.4}
	fast := []float64{0.1, 0.11, 0.12, 0.13, 0.14}
	g := canaryWith(t, &CanaryCheck{Confidence: 0.99, Metrics: []string{"latency_p99"}}, map[string]*canarySamples{
		"latency_p99": {canary: slow, old: fast},
	})
	a := g.analyse()
	if m := a.Metrics[0]; m.Verdict != "nodata" || a.Verdict != "nodata" {
		t.Errorf("metric %+v, analysis %s; want nodata: 5 a side cannot tell at 0.99", m, a.Verdict)
	}
	if r := g.End(context.Background(), PhaseEnv{Phase: "canary"}); r.Pass || !strings.Contains(r.Detail, "too few") {
		t.Errorf("end %+v", r)
	}
	// One more a side can: the slow canary fails.
	g = canaryWith(t, &CanaryCheck{Confidence: 0.99, Metrics: []string{"latency_p99"}}, map[string]*canarySamples{
		"latency_p99": {canary: append(slices.Clone(slow), 10.5), old: append(slices.Clone(fast), 0.15)},
	})
	if a := g.analyse(); a.Metrics[0].Verdict != "fail" {
		t.Errorf("6 a side: %+v", a.Metrics[0])
	}
}

// TestCanaryWithoutTraffic: a canary that serves no messages has only
// its reconnects to compare; the analysis must not read that as a clean
// canary: the summary names the metrics without data, and a critical one
// without data fails the phase's end.
func TestCanaryWithoutTraffic(t *testing.T) {
	five := func(v float64) []float64 { return []float64{v, v * 1.1, v * 1.2, v * 1.3, v * 1.4} }
	obs := func() map[string]*canarySamples {
		return map[string]*canarySamples{
			"reconnects":  {canary: five(0.1), old: five(0.1)},
			"error_rate":  {old: five(0.001)},
			"latency_p99": {old: five(0.004)},
		}
	}
	g := canaryWith(t, &CanaryCheck{Metrics: []string{"error_rate", "latency_p99", "reconnects"}}, obs())
	r := g.End(context.Background(), PhaseEnv{Phase: "canary"})
	if !strings.Contains(r.Detail, "no data: error_rate (0 canary, 5 old samples), latency_p99 (0 canary, 5 old samples)") {
		t.Errorf("end detail %q does not name the metrics without data", r.Detail)
	}
	g = canaryWith(t, &CanaryCheck{Metrics: []string{"error_rate", "latency_p99", "reconnects"}, Critical: []string{"latency_p99"}}, obs())
	if r := g.End(context.Background(), PhaseEnv{Phase: "canary"}); r.Pass || !strings.Contains(r.Detail, "critical metric latency_p99 has no data") {
		t.Errorf("critical without data: %+v", r)
	}
}

// TestObserveNonFinite: a node's /metrics may carry NaN or ±Inf (the text
// format allows them); an observation made from them is not a number the
// rank test can order, and is left out rather than given to it.
func TestObserveNonFinite(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)
	a := nodeScrape{at: t0, messagesIn: 10, errors: 1, hsOK: 5, connections: 30, cpu: 1, rss: 1e6}
	for _, tc := range []struct {
		name string
		b    nodeScrape
	}{
		{"inf counters", nodeScrape{at: t0.Add(time.Second), messagesIn: math.Inf(1), errors: math.Inf(1), hsOK: math.Inf(1), hsFailed: math.Inf(1), connects: math.Inf(1), connections: 30, cpu: math.Inf(1), rss: math.Inf(1)}},
		{"nan gauges", nodeScrape{at: t0.Add(time.Second), messagesIn: 20, errors: 2, hsOK: 6, connections: math.Inf(1), cpu: math.NaN(), rss: math.NaN(), connects: math.NaN()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, v := range observe(a, tc.b, 20) {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Errorf("%s = %g", name, v)
				}
			}
		})
	}
}

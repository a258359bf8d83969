package rollout

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// prometheusKind is the prometheus check: a PromQL instant query against
// a Prometheus server, bounded by max, min or max_increase over the
// phase's baseline.
var prometheusKind = GateKind{Key: "prometheus", Spec: func() GateSpec { return &PrometheusCheck{} }}

// PrometheusCheck runs Query on the Prometheus server at URL when the
// phase begins (the baseline) and at every round of checks, and fails
// when a series of the answer is above Max, below Min, or risen by more
// than MaxIncrease since the baseline. A query that answers nothing, or a
// server that stays unreachable, fails the check: it never passes for
// want of data.
type PrometheusCheck struct {
	URL   string `yaml:"url" json:"url"`
	Query string `yaml:"query" json:"query"`
	// BearerTokenEnv names the environment variable holding a bearer
	// token for the server, if it wants one. The token itself is read
	// when the phase begins and is never logged or stored.
	BearerTokenEnv string   `yaml:"bearer_token_env" json:"bearer_token_env,omitempty"`
	Max            *float64 `yaml:"max" json:"max,omitempty"`
	Min            *float64 `yaml:"min" json:"min,omitempty"`
	MaxIncrease    *float64 `yaml:"max_increase" json:"max_increase,omitempty"`
	// Timeout bounds one query (sent to the server too); default 10s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Retries is how many times a query that met a network error, a
	// 429 or a 5xx is tried again, with backoff, honouring Retry-After;
	// default 3.
	Retries *int `yaml:"retries" json:"retries,omitempty"`
}

// Bounds of a prometheus check.
const (
	maxPromTimeout = 5 * time.Minute
	maxPromRetries = 10
)

// Validate wants a URL, a query, at least one bound, and a proper
// variable name for the bearer token; whether it is set is
// CheckCredentials' to say (vendor.go), when the plan is about to be used.
func (pc *PrometheusCheck) Validate(at func(key, format string, args ...any)) {
	if !strings.HasPrefix(pc.URL, "http://") && !strings.HasPrefix(pc.URL, "https://") {
		at("url", "%q; want the Prometheus server's http:// or https:// URL, e.g. http://127.0.0.1:9090", pc.URL)
	}
	if strings.TrimSpace(pc.Query) == "" {
		at("query", "missing; give a PromQL instant query, e.g. sum(rate(wsfleet_errors_total[1m]))")
	}
	if pc.Max == nil && pc.Min == nil && pc.MaxIncrease == nil {
		at("max", "missing; a check needs at least one of max, min, max_increase")
	}
	for key, v := range map[string]*float64{"max": pc.Max, "min": pc.Min, "max_increase": pc.MaxIncrease} {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
			outOfRange(at, key, *v, "a finite number")
		}
	}
	if pc.MaxIncrease != nil && *pc.MaxIncrease < 0 {
		outOfRange(at, "max_increase", *pc.MaxIncrease, "0 or more")
	}
	if pc.Max != nil && pc.Min != nil && *pc.Min > *pc.Max {
		at("min", "%g is above max %g; nothing could pass", *pc.Min, *pc.Max)
	}
	secretEnv(at, "bearer_token_env", pc.BearerTokenEnv, false)
	if pc.Timeout.D() < 0 || pc.Timeout.D() > maxPromTimeout {
		outOfRange(at, "timeout", pc.Timeout.D(), "1ms to "+maxPromTimeout.String()+" (0 or absent: 10s)")
	}
	if pc.Retries != nil && (*pc.Retries < 0 || *pc.Retries > maxPromRetries) {
		outOfRange(at, "retries", *pc.Retries, fmt.Sprintf("0 to %d (absent: 3)", maxPromRetries))
	}
}

func (pc *PrometheusCheck) credentialVars() []credVar {
	return []credVar{{"bearer_token_env", pc.BearerTokenEnv}}
}

// Describe says what is queried and what is allowed.
func (pc *PrometheusCheck) Describe() string {
	return fmt.Sprintf("Prometheus %s: %s %s", pc.URL, pc.Query, strings.Join(pc.bounds(), ", "))
}

func (pc *PrometheusCheck) bounds() []string {
	var b []string
	if pc.Max != nil {
		b = append(b, fmt.Sprintf("at most %g", *pc.Max))
	}
	if pc.Min != nil {
		b = append(b, fmt.Sprintf("at least %g", *pc.Min))
	}
	if pc.MaxIncrease != nil {
		b = append(b, fmt.Sprintf("rises by at most %g over the phase", *pc.MaxIncrease))
	}
	return b
}

// Gate returns a gate with no baseline yet.
func (pc *PrometheusCheck) Gate() Gate {
	return &promGate{spec: pc, sleep: Sleep}
}

// promGate keeps the phase's baseline per series. Evaluate may run in
// the background while End runs: mu guards the baseline.
type promGate struct {
	spec  *PrometheusCheck
	sleep func(ctx context.Context, d time.Duration) error // the retries' waits

	mu       sync.Mutex
	api      promv1.API
	baseline map[string]float64 // by the series' labels
	hasBase  bool
}

// Begin connects (the token is read now, from the environment) and
// takes the baseline when the check bounds an increase.
func (g *promGate) Begin(ctx context.Context, env PhaseEnv) error {
	if env.Checker.Sleep != nil {
		g.sleep = env.Checker.Sleep
	}
	retries := 3
	if g.spec.Retries != nil {
		retries = *g.spec.Retries
	}
	api, err := newPromAPI(env.Checker, g.spec.URL, g.spec.BearerTokenEnv, retries, g.sleep)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.api = api
	g.mu.Unlock()
	if g.spec.MaxIncrease == nil {
		return nil
	}
	series, err := g.query(ctx, env.Now)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	g.mu.Lock()
	g.baseline, g.hasBase = series, true
	g.mu.Unlock()
	return nil
}

// End has no verdict beyond the rounds'.
func (g *promGate) End(context.Context, PhaseEnv) *GateResult { return nil }

// Evaluate queries now and judges every series against the bounds.
func (g *promGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	series, err := g.query(ctx, env.Now)
	if err != nil {
		return verdict("", err)
	}
	if len(series) == 0 {
		return verdict("", fmt.Errorf("%s answered no data at %s (a query that may be empty can end in `or vector(0)`)", g.spec.Query, g.spec.URL))
	}
	g.mu.Lock()
	base, hasBase := g.baseline, g.hasBase
	g.mu.Unlock()
	keys := make([]string, 0, len(series))
	for k := range series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pc := g.spec
	var seen []string
	for _, k := range keys {
		v := series[k]
		name := pc.Query + k
		if pc.Max != nil && !(v <= *pc.Max) {
			return verdict("", fmt.Errorf("%s = %g, above the max %g", name, v, *pc.Max))
		}
		if pc.Min != nil && !(v >= *pc.Min) {
			return verdict("", fmt.Errorf("%s = %g, below the min %g", name, v, *pc.Min))
		}
		if pc.MaxIncrease != nil && hasBase {
			b := base[k] // a series new in the phase rose from 0
			if inc := v - b; !(inc <= *pc.MaxIncrease) {
				return verdict("", fmt.Errorf("%s = %g, risen by %g since the phase began at %g; max increase %g", name, v, inc, b, *pc.MaxIncrease))
			}
		}
		seen = append(seen, fmt.Sprintf("%s%s = %g", pc.Query, k, v))
	}
	if len(seen) > 3 {
		seen = append(seen[:3], fmt.Sprintf("and %d more series", len(seen)-3))
	}
	return verdict(strings.Join(seen, "; ")+" ("+strings.Join(pc.bounds(), ", ")+")", nil)
}

// query runs the instant query at ts and returns its value per series,
// keyed by the series' labels ("" for a scalar or a series without
// labels).
func (g *promGate) query(ctx context.Context, ts time.Time) (map[string]float64, error) {
	to := g.spec.Timeout.D()
	if to == 0 {
		to = 10 * time.Second
	}
	g.mu.Lock()
	api := g.api
	g.mu.Unlock()
	if api == nil {
		return nil, fmt.Errorf("prometheus %s: not begun", g.spec.URL)
	}
	if ts.IsZero() {
		ts = time.Now()
	}
	// the client's whole call, retries included, may take the timeout
	// per attempt
	retries := 3
	if g.spec.Retries != nil {
		retries = *g.spec.Retries
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(retries+1)*(to+promMaxWait))
	defer cancel()
	val, _, _, err := api.Query(ctx, g.spec.Query, ts, promv1.WithTimeout(to))
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: query %s: %w", g.spec.URL, g.spec.Query, err)
	}
	out := map[string]float64{}
	switch v := val.(type) {
	case model.Vector:
		for _, s := range v {
			out[labelString(s.Metric)] = float64(s.Value)
		}
	case *model.Scalar:
		out[""] = float64(v.Value)
	default:
		return nil, fmt.Errorf("prometheus %s: query %s answered a %s; want an instant vector or a scalar", g.spec.URL, g.spec.Query, val.Type())
	}
	return out, nil
}

// labelString is a series' labels as PromQL writes them, sorted, without
// the metric name; "" for none.
func labelString(m model.Metric) string {
	var ls []string
	for k, v := range m {
		if k == model.MetricNameLabel {
			continue
		}
		ls = append(ls, fmt.Sprintf("%s=%q", k, v))
	}
	if len(ls) == 0 {
		return ""
	}
	sort.Strings(ls)
	return "{" + strings.Join(ls, ",") + "}"
}

// newPromAPI is a Prometheus API client for url, sending the bearer
// token of the variable tokenEnv names (if any; read now, never kept
// elsewhere), retrying through c's transport.
func newPromAPI(c *Checker, url, tokenEnv string, retries int, sleep func(context.Context, time.Duration) error) (promv1.API, error) {
	token := secret(tokenEnv)
	if tokenEnv != "" && token == "" {
		return nil, fmt.Errorf("prometheus %s: environment variable %s is not set", url, tokenEnv)
	}
	base := c.client().Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client, err := promapi.NewClient(promapi.Config{Address: url, RoundTripper: &promRetry{next: base, token: token, retries: retries, sleep: sleep}})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", url, err)
	}
	return promv1.NewAPI(client), nil
}

// promMaxWait bounds one wait between attempts, whatever Retry-After
// asks: a server that wants longer is as good as unreachable for a phase.
const promMaxWait = 30 * time.Second

// promRetry sends the bearer token and retries network errors, 429s and
// 5xx answers with exponential backoff (200ms, 400ms, …), or after the
// Retry-After the answer gives (seconds or an HTTP date), at most
// promMaxWait each.
type promRetry struct {
	next    http.RoundTripper
	token   string
	retries int
	sleep   func(ctx context.Context, d time.Duration) error
	now     func() time.Time // for Retry-After dates; default time.Now
}

func (t *promRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		r := req.Clone(req.Context())
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("prometheus request body: %w", err)
			}
			r.Body = body
		}
		if t.token != "" {
			r.Header.Set("Authorization", "Bearer "+t.token)
		}
		resp, err := t.next.RoundTrip(r)
		retry := err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if !retry || attempt >= t.retries || (req.Body != nil && req.GetBody == nil) {
			if err != nil {
				return nil, fmt.Errorf("unreachable after %d attempts: %w", attempt+1, err)
			}
			return resp, nil
		}
		wait := backoff
		if resp != nil {
			now := time.Now
			if t.now != nil {
				now = t.now
			}
			if ra, ok := retryAfter(resp.Header.Get("Retry-After"), now()); ok {
				wait = ra
			}
			resp.Body.Close()
		}
		if err := t.sleep(req.Context(), min(wait, promMaxWait)); err != nil {
			return nil, err
		}
		backoff *= 2
	}
}

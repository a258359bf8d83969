package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProm answers /api/v1/query as Prometheus's HTTP API documents it
// (POST form or GET query; {"status":"success","data":{"resultType":…,
// "result":…}}), with the value the test sets, and the failures it asks
// for first.
type fakeProm struct {
	mu      sync.Mutex
	result  string   // the data.result JSON for a vector, e.g. [{"metric":{},"value":[0,"1"]}]
	fail    []int    // statuses to answer first, one per request
	headers []string // the Retry-After sent with each failure
	auth    []string // the Authorization header of every request
	queries []string
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.queries = append(f.queries, r.Form.Get("query"))
	if r.Form.Get("time") == "" || r.Form.Get("timeout") == "" {
		http.Error(w, "want time and timeout", 400)
		return
	}
	if len(f.fail) > 0 {
		code := f.fail[0]
		f.fail = f.fail[1:]
		if len(f.headers) > 0 {
			w.Header().Set("Retry-After", f.headers[0])
			f.headers = f.headers[1:]
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"status":"error","errorType":"unavailable","error":"status %d"}`, code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, f.result)
}

func (f *fakeProm) set(result string) {
	f.mu.Lock()
	f.result = result
	f.mu.Unlock()
}

func vec(v string) string {
	return `[{"metric":{"instance":"10.0.0.9:8080"},"value":[1700000000,"` + v + `"]}]`
}

func fp(v float64) *float64 { return &v }

// promGateFor makes a begun gate for spec against srv, with its waits
// recorded instead of slept.
func promGateFor(t *testing.T, spec *PrometheusCheck) (*promGate, *[]time.Duration) {
	t.Helper()
	var waits []time.Duration
	g := spec.Gate().(*promGate)
	g.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }
	env := PhaseEnv{Checker: &Checker{}, Now: time.Unix(1700000000, 0)}
	if err := g.Begin(context.Background(), env); err != nil {
		t.Fatalf("begin: %v", err)
	}
	return g, &waits
}

func TestPrometheusGate(t *testing.T) {
	env := PhaseEnv{Checker: &Checker{}, Now: time.Unix(1700000000, 0)}
	ctx := context.Background()

	t.Run("max and min: what was seen against what was allowed", func(t *testing.T) {
		f := &fakeProm{result: vec("0.2")}
		srv := httptest.NewServer(f)
		defer srv.Close()
		g, _ := promGateFor(t, &PrometheusCheck{URL: srv.URL, Query: "errors", Max: fp(0.5), Min: fp(0.1)})
		if r := g.Evaluate(ctx, env); !r.Pass || r.Detail != `errors{instance="10.0.0.9:8080"} = 0.2 (at most 0.5, at least 0.1)` {
			t.Errorf("0.2: %+v", r)
		}
		f.set(vec("0.7"))
		if r := g.Evaluate(ctx, env); r.Pass || r.Detail != `errors{instance="10.0.0.9:8080"} = 0.7, above the max 0.5` {
			t.Errorf("0.7: %+v", r)
		}
		f.set(vec("0.05"))
		if r := g.Evaluate(ctx, env); r.Pass || r.Detail != `errors{instance="10.0.0.9:8080"} = 0.05, below the min 0.1` {
			t.Errorf("0.05: %+v", r)
		}
		f.set(vec("NaN"))
		if r := g.Evaluate(ctx, env); r.Pass {
			t.Errorf("NaN passed: %+v", r)
		}
	})

	t.Run("max_increase over the baseline taken at Begin", func(t *testing.T) {
		f := &fakeProm{result: vec("10")}
		srv := httptest.NewServer(f)
		defer srv.Close()
		g, _ := promGateFor(t, &PrometheusCheck{URL: srv.URL, Query: "sum(failures)", MaxIncrease: fp(3)})
		f.set(vec("13"))
		if r := g.Evaluate(ctx, env); !r.Pass {
			t.Errorf("+3: %+v", r)
		}
		f.set(vec("14"))
		r := g.Evaluate(ctx, env)
		if r.Pass || r.Detail != `sum(failures){instance="10.0.0.9:8080"} = 14, risen by 4 since the phase began at 10; max increase 3` {
			t.Errorf("+4: %+v", r)
		}
		// a series that appears during the phase rose from nothing
		f.set(`[{"metric":{"instance":"new"},"value":[1700000000,"5"]}]`)
		if r := g.Evaluate(ctx, env); r.Pass || !strings.Contains(r.Detail, "risen by 5 since the phase began at 0") {
			t.Errorf("new series: %+v", r)
		}
	})

	t.Run("no data fails", func(t *testing.T) {
		f := &fakeProm{result: `[]`}
		srv := httptest.NewServer(f)
		defer srv.Close()
		g, _ := promGateFor(t, &PrometheusCheck{URL: srv.URL, Query: "absent_metric", Max: fp(1)})
		if r := g.Evaluate(ctx, env); r.Pass || !strings.Contains(r.Detail, "answered no data") {
			t.Errorf("%+v", r)
		}
	})

	t.Run("429 and 503 retried after Retry-After, then the answer", func(t *testing.T) {
		f := &fakeProm{result: vec("1"), fail: []int{429, 503}, headers: []string{"2", "Sun, 06 Nov 1994 08:49:37 GMT"}}
		srv := httptest.NewServer(f)
		defer srv.Close()
		g, waits := promGateFor(t, &PrometheusCheck{URL: srv.URL, Query: "up", Min: fp(1)})
		if r := g.Evaluate(ctx, env); !r.Pass {
			t.Fatalf("%+v", r)
		}
		// Retry-After: 2 is 2s; a date in the past is no wait at all.
		if fmt.Sprint(*waits) != "[2s 0s]" {
			t.Errorf("waits %v, want [2s 0s]", *waits)
		}
	})

	t.Run("5xx without Retry-After: exponential backoff, then the gate fails", func(t *testing.T) {
		f := &fakeProm{result: vec("1"), fail: []int{500, 502, 503, 504, 500}}
		srv := httptest.NewServer(f)
		defer srv.Close()
		g, waits := promGateFor(t, &PrometheusCheck{URL: srv.URL, Query: "up", Min: fp(1)})
		r := g.Evaluate(ctx, env)
		if r.Pass || !strings.Contains(r.Detail, "prometheus "+srv.URL+": query up: ") {
			t.Errorf("%+v", r)
		}
		if fmt.Sprint(*waits) != "[200ms 400ms 800ms]" {
			t.Errorf("waits %v", *waits)
		}
		if len(f.queries) != 4 {
			t.Errorf("%d requests, want 4 (1 + 3 retries)", len(f.queries))
		}
	})

	t.Run("unreachable: fails, never passes by default", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		g, waits := promGateFor(t, &PrometheusCheck{URL: url, Query: "up", Max: fp(1e9)})
		r := g.Evaluate(ctx, env)
		if r.Pass || !strings.Contains(r.Detail, "unreachable after 4 attempts") {
			t.Errorf("%+v", r)
		}
		if len(*waits) != 3 {
			t.Errorf("waits %v", *waits)
		}
	})

	t.Run("the bearer token is sent and never shown", func(t *testing.T) {
		const secret = "prom-secret-3f9a"
		t.Setenv("WSFLEET_TEST_PROM_TOKEN", secret)
		f := &fakeProm{result: vec("9")}
		srv := httptest.NewServer(f)
		defer srv.Close()
		spec := &PrometheusCheck{URL: srv.URL, Query: "up", Max: fp(1), BearerTokenEnv: "WSFLEET_TEST_PROM_TOKEN"}
		g, _ := promGateFor(t, spec)
		r := g.Evaluate(ctx, env)
		if r.Pass {
			t.Errorf("9 > 1 passed")
		}
		if len(f.auth) == 0 || f.auth[0] != "Bearer "+secret {
			t.Errorf("Authorization %q", f.auth)
		}
		js, _ := json.Marshal(Check{Name: "p", Kind: "prometheus", Spec: spec})
		for _, s := range []string{r.Detail, spec.Describe(), string(js)} {
			if strings.Contains(s, secret) {
				t.Errorf("the token shows in %q", s)
			}
		}
	})
}

func TestPrometheusPlanKeys(t *testing.T) {
	plan := func(check string) []byte {
		return []byte(strings.Replace(string(seedPlan("http://unused", "launch-before-terminate")),
			"  - {name: site, http: {url: http://unused, status: 200}}", check, 1))
	}
	t.Setenv("WSFLEET_TEST_PROM_SET", "x")
	for _, tc := range []struct{ check, want string }{
		{"  - {name: p, prometheus: {url: http://prom:9090, query: up, min: 1, bearer_token_env: WSFLEET_TEST_PROM_SET}}", ""},
		{"  - {name: p, prometheus: {url: http://prom:9090, query: up, max: 1, bearer_token_env: WSFLEET_TEST_PROM_UNSET}}",
			"line 8: checks[0].prometheus.bearer_token_env: environment variable WSFLEET_TEST_PROM_UNSET is not set"},
		{"  - {name: p, prometheus: {url: http://prom:9090, query: up, max: 1, bearer_token_env: 9BAD}}", `checks[0].prometheus.bearer_token_env: "9BAD" is not an environment variable name`},
		{"  - {name: p, prometheus: {url: http://prom:9090, query: up}}", "checks[0].prometheus.max: missing; a check needs at least one of max, min, max_increase"},
		{"  - {name: p, prometheus: {url: prom:9090, query: up, max: 1}}", `checks[0].prometheus.url: "prom:9090"; want`},
		{"  - {name: p, prometheus: {url: http://prom:9090, max: 1}}", "checks[0].prometheus.query: missing"},
		{"  - {name: p, prometheus: {url: http://prom:9090, query: up, max_increase: -1}}", "checks[0].prometheus.max_increase: -1 is out of range"},
		{"  - {name: p, prometheus: {url: http://prom:9090, query: up, min: 2, max: 1}}", "checks[0].prometheus.min: 2 is above max 1"},
	} {
		// a credential's variable is checked when the plan is about to
		// be used (plan, rollout, resume), as every check's is
		p, err := ParsePlan(plan(tc.check))
		if err == nil {
			err = p.CheckCredentials()
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.check, err)
		case tc.want != "" && (!errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s:\nerr  %v\nwant %s", tc.check, err, tc.want)
		}
	}
}

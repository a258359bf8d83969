package rollout

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// miniProm answers /api/v1/query as Prometheus does, from a fresh scrape
// of every node in targets (instance label: the node's host:port): the
// series a canary analysis asks for, named and labelled as Prometheus
// stores them (a histogram as _bucket series with le).
func miniProm(t *testing.T, targets []string, token string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		r.ParseForm()
		if r.URL.Path != "/api/v1/query" || !strings.Contains(r.Form.Get("query"), `instance=~`) {
			http.Error(w, "unexpected query", http.StatusBadRequest)
			return
		}
		type sample struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		var result []sample
		for _, target := range targets {
			resp, err := http.Get(target)
			if err != nil {
				continue
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Error(err)
				continue
			}
			u, _ := url.Parse(target)
			add := func(name string, labels map[string]string, v float64) {
				m := map[string]string{"__name__": name, "instance": u.Host, "job": "ws"}
				for k, l := range labels {
					m[k] = l
				}
				result = append(result, sample{Metric: m, Value: [2]any{1700000000.0, strconv.FormatFloat(v, 'g', -1, 64)}})
			}
			for name, f := range fams {
				for _, m := range f.GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					switch {
					case m.Counter != nil:
						add(name, labels, m.GetCounter().GetValue())
					case m.Gauge != nil:
						add(name, labels, m.GetGauge().GetValue())
					case m.Histogram != nil:
						for _, b := range m.GetHistogram().GetBucket() {
							add(name+"_bucket", map[string]string{"le": strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)}, float64(b.GetCumulativeCount()))
						}
						add(name+"_bucket", map[string]string{"le": "+Inf"}, float64(m.GetHistogram().GetSampleCount()))
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCanaryAnalysisFromPrometheus: the same verdicts with the series
// read from Prometheus by instance label, the bearer token sent.
func TestCanaryAnalysisFromPrometheus(t *testing.T) {
	t.Setenv("WSFLEET_TEST_ACA_TOKEN", "aca-token-77")
	for _, tc := range []struct {
		name string
		node *fakeNode
		pass bool
	}{
		{"good canary", newFakeNode(99, 0, 0.004), true},
		{"failing handshakes", newFakeNode(99, 0.3, 0.004), false},
		{"slow", newFakeNode(99, 0, 0.2), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := canaryFleet(t, tc.node)
			var targets []string
			for _, in := range env.Group.Instances {
				targets = append(targets, env.Checker.MetricsURL(in))
			}
			prom := miniProm(t, targets, "aca-token-77")
			_, end := runCanaryCheck(t, env, 30, &CanaryCheck{Prometheus: &CanaryPrometheus{URL: prom.URL, BearerTokenEnv: "WSFLEET_TEST_ACA_TOKEN"}})
			if end.Pass != tc.pass || end.Analysis == nil {
				t.Fatalf("end %+v", end)
			}
			if strings.Contains(end.Detail, "aca-token-77") {
				t.Error("the token shows in the detail")
			}
		})
	}
}

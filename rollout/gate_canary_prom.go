package rollout

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// CanaryPrometheus makes a canary analysis read the nodes' series from a
// Prometheus server that scrapes them, by instance label, instead of
// scraping the nodes itself: what a fleet whose nodes' /metrics the
// engine cannot reach offers.
type CanaryPrometheus struct {
	URL            string `yaml:"url" json:"url"`
	BearerTokenEnv string `yaml:"bearer_token_env" json:"bearer_token_env,omitempty"`
	// InstanceLabel is the label whose value is a node's scrape address
	// (host:port of its /metrics); default "instance", Prometheus's own.
	InstanceLabel string `yaml:"instance_label" json:"instance_label,omitempty"`
}

var promLabelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (cp *CanaryPrometheus) validate(at func(key, format string, args ...any)) {
	if !strings.HasPrefix(cp.URL, "http://") && !strings.HasPrefix(cp.URL, "https://") {
		at("prometheus.url", "%q; want the Prometheus server's http:// or https:// URL", cp.URL)
	}
	secretEnv(at, "prometheus.bearer_token_env", cp.BearerTokenEnv, false)
	if cp.InstanceLabel == "" {
		cp.InstanceLabel = "instance"
	}
	if !promLabelName.MatchString(cp.InstanceLabel) {
		at("prometheus.instance_label", "%q is not a label name", cp.InstanceLabel)
	}
}

func (cc *CanaryCheck) credentialVars() []credVar {
	if cc.Prometheus == nil {
		return nil
	}
	return []credVar{{"prometheus.bearer_token_env", cc.Prometheus.BearerTokenEnv}}
}

// canaryPromSeries are the series a canary analysis reads.
var canaryPromSeries = []string{
	"wsfleet_errors_total", "wsfleet_messages_in_total", "wsfleet_handshakes_total", "wsfleet_connects_total",
	"process_cpu_seconds_total", "process_resident_memory_bytes", "wsfleet_connections",
	"wsfleet_publish_deliver_seconds_bucket",
}

// promClient connects to the analysis's Prometheus, with the bearer
// token and the retries of the prometheus check.
func (cp *CanaryPrometheus) client(c *Checker) (promv1.API, error) {
	sleep := Sleep
	if c.Sleep != nil {
		sleep = c.Sleep
	}
	return newPromAPI(c, cp.URL, cp.BearerTokenEnv, 3, sleep)
}

// scrapeProm reads every instance's series at once, by its scrape
// address in the instance label; an instance Prometheus has nothing for
// is left out.
func scrapeProm(ctx context.Context, api promv1.API, cp *CanaryPrometheus, c *Checker, ins []Instance, now time.Time) (map[string]nodeScrape, error) {
	byAddr := map[string]string{} // instance label value -> instance id
	var addrs []string
	for _, in := range ins {
		u, err := url.Parse(c.MetricsURL(in))
		if err != nil || u.Host == "" {
			continue
		}
		byAddr[u.Host] = in.ID
		addrs = append(addrs, regexp.QuoteMeta(u.Host))
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	sort.Strings(addrs)
	q := fmt.Sprintf(`{__name__=~%q, %s=~%q}`, strings.Join(canaryPromSeries, "|"), cp.InstanceLabel, strings.Join(addrs, "|"))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	val, _, _, err := api.Query(ctx, q, now, promv1.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", cp.URL, err)
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("prometheus %s: answered a %s, want a vector", cp.URL, val.Type())
	}
	out := map[string]nodeScrape{}
	buckets := map[string][]bucket{}
	for _, smp := range vec {
		id, ok := byAddr[string(smp.Metric[model.LabelName(cp.InstanceLabel)])]
		if !ok {
			continue
		}
		s := out[id]
		s.at = now
		v := float64(smp.Value)
		switch name := string(smp.Metric[model.MetricNameLabel]); name {
		case "wsfleet_errors_total":
			s.errors += v
		case "wsfleet_messages_in_total":
			s.messagesIn += v
		case "wsfleet_handshakes_total":
			switch smp.Metric["outcome"] {
			case "ok":
				s.hsOK += v
			case "failed":
				s.hsFailed += v
			}
		case "wsfleet_connects_total":
			s.connects += v
		case "process_cpu_seconds_total":
			s.cpu += v
		case "process_resident_memory_bytes":
			s.rss += v
		case "wsfleet_connections":
			s.connections += v
		case "wsfleet_publish_deliver_seconds_bucket":
			le, err := strconv.ParseFloat(string(smp.Metric["le"]), 64)
			if err == nil {
				buckets[id] = append(buckets[id], bucket{le: le, n: v})
			}
		}
		out[id] = s
	}
	for id, bs := range buckets {
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		s := out[id]
		s.buckets = bs
		if len(bs) > 0 && math.IsInf(bs[len(bs)-1].le, 1) {
			s.latCount = bs[len(bs)-1].n
		}
		out[id] = s
	}
	return out, nil
}

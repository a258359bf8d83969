package rollout

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// metricKind is the metric check: a counter summed over the nodes must
// not grow by more than a bound over the phase.
var metricKind = GateKind{Key: "metric", Spec: func() GateSpec { return &MetricCheck{} }}

// MetricCheck sums a counter over every node's /metrics and fails when it
// grew by more than MaxIncrease since the phase began.
type MetricCheck struct {
	Name string `yaml:"name" json:"name"`
	// Labels, when set, restrict the sum to samples with these label
	// values, e.g. {code: "500"}.
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	MaxIncrease float64           `yaml:"max_increase" json:"max_increase"`
}

// Validate wants a counter's name, an increase that can be counted and
// a few labels.
func (m *MetricCheck) Validate(at func(key, format string, args ...any)) {
	if m.Name == "" {
		at("name", "missing; name a counter from the nodes' /metrics, e.g. bayeux_errors_total")
	}
	if !(m.MaxIncrease >= 0 && m.MaxIncrease <= maxMetricIncrease) {
		outOfRange(at, "max_increase", m.MaxIncrease, fmt.Sprintf("0 to %g (2^53: a counter's increase is counted exactly up to there)", float64(maxMetricIncrease)))
	}
	if len(m.Labels) > maxMetricLabels {
		outOfRange(at, "labels", fmt.Sprintf("%d labels", len(m.Labels)), fmt.Sprintf("0 to %d labels", maxMetricLabels))
	}
}

// Bounds of a metric check: a float64 counts whole numbers exactly up to
// 2^53, and a sample with more labels than this is not a counter's.
const (
	maxMetricIncrease = 1 << 53
	maxMetricLabels   = 32
)

// Describe says which counter and how much it may rise.
func (m *MetricCheck) Describe() string {
	name := m.Name
	if len(m.Labels) > 0 {
		var ls []string
		for k, v := range m.Labels {
			ls = append(ls, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(ls)
		name += "{" + strings.Join(ls, ",") + "}"
	}
	return fmt.Sprintf("%s summed over the nodes rises by at most %g", name, m.MaxIncrease)
}

// Gate returns a gate with no baseline yet.
func (m *MetricCheck) Gate() Gate { return &metricGate{spec: m} }

// metricGate keeps the phase's baseline, taken by Begin before any
// Evaluate.
type metricGate struct {
	spec     *MetricCheck
	baseline float64
	hasBase  bool
}

// Begin takes the baseline: the sum as the phase opens.
func (g *metricGate) Begin(ctx context.Context, env PhaseEnv) error {
	v, err := sumMetric(ctx, env.Checker, g.spec, env.Group)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	g.baseline, g.hasBase = v, true
	return nil
}

func (g *metricGate) End(context.Context, PhaseEnv) *GateResult { return nil }

// Evaluate compares the sum now with the baseline.
func (g *metricGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	v, err := sumMetric(ctx, env.Checker, g.spec, env.Group)
	if err != nil {
		return verdict("", err)
	}
	base := g.baseline
	if !g.hasBase {
		base = v
	}
	// Counters of terminated nodes leave the sum; only growth counts.
	m := g.spec
	inc := max(v-base, 0)
	if inc > m.MaxIncrease {
		return verdict("", fmt.Errorf("%s rose by %g (max %g)", m.Name, inc, m.MaxIncrease))
	}
	return verdict(fmt.Sprintf("%s +%g (max %g)", m.Name, inc, m.MaxIncrease), nil)
}

// sumMetric adds metric over every in-service node's /metrics. A node that
// cannot be read is skipped: it may be on its way out, and the http and
// probe checks cover reachability.
func sumMetric(ctx context.Context, c *Checker, m *MetricCheck, g Group) (float64, error) {
	if c.MetricsURL == nil {
		return 0, fmt.Errorf("metric %s: no node metrics address", m.Name)
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		sum     float64
		firstEr error
	)
	slots := make(chan struct{}, maxNodeCalls) // connections reused, not a thousand opened
	for _, in := range g.Instances {
		if in.Lifecycle != "InService" {
			continue
		}
		wg.Add(1)
		slots <- struct{}{}
		go func(in Instance) {
			defer wg.Done()
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.MetricsURL(in), nil)
			if err != nil {
				return
			}
			resp, err := c.client().Do(req)
			if err != nil {
				return // unreachable: skipped, see above
			}
			defer resp.Body.Close()
			// A counter vector with no sample yet is absent: that reads as 0.
			v, _, err := SumMetric(io.LimitReader(resp.Body, 8<<20), m.Name, m.Labels)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstEr == nil {
				firstEr = fmt.Errorf("metrics of %s: %w", in.Name, err)
			}
			sum += v
		}(in)
	}
	wg.Wait()
	return sum, firstEr
}

// SumMetric adds every sample of metric name whose labels include want
// (nil: any labels) in a Prometheus text exposition; n is how many samples
// it added.
func SumMetric(r io.Reader, name string, want map[string]string) (sum float64, n int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		metric, rest := line, ""
		if i := strings.IndexAny(line, "{ \t"); i >= 0 {
			metric, rest = line[:i], line[i:]
		}
		if metric != name {
			continue
		}
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := labelsEnd(rest)
			if end < 0 {
				return 0, n, fmt.Errorf("unterminated labels: %.80q", line)
			}
			if labels, err = parseLabels(rest[1:end]); err != nil {
				return 0, n, fmt.Errorf("%v in %.80q", err, line)
			}
			rest = rest[end+1:]
		}
		if !labelsInclude(labels, want) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, n, fmt.Errorf("sample without value: %.80q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, n, fmt.Errorf("bad value in %.80q", line)
		}
		sum += v
		n++
	}
	return sum, n, sc.Err()
}

// labelsInclude reports whether labels has every label of want.
func labelsInclude(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// parseLabels parses `a="x",b="y\"z"`.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, fmt.Errorf("bad label")
		}
		key := strings.TrimSpace(s[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, fmt.Errorf("unterminated label value")
		}
		out[key] = val.String()
		s = s[i+1:]
	}
}

// labelsEnd finds the '}' closing a label set, skipping quoted values.
func labelsEnd(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return i
		}
	}
	return -1
}

package rollout

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Prober starts synthetic clients (the probe library) through the load
// balancer; the engine keeps one running for each phase.
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

// Checker runs a phase's checks. It is the engine's only path to HTTP,
// metrics and commands besides the node admin API.
type Checker struct {
	HTTP   *http.Client
	Prober Prober
	// MetricsURL returns the /metrics URL of an instance's node.
	MetricsURL func(Instance) string
	// Settle bounds how long EndPhase waits for the probe to settle;
	// default 15s.
	Settle time.Duration

	mu        sync.Mutex
	probe     ProbeRun
	probeName string
	baseline  map[string]float64
}

// StartPhase begins what runs through a whole phase: the probe, and the
// baselines of the metric checks.
func (c *Checker) StartPhase(ctx context.Context, checks []Check, g Group, lbURL string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.baseline = map[string]float64{}
	for _, ch := range checks {
		switch {
		case ch.Metric != nil:
			v, err := c.sumMetric(ctx, ch.Metric, g)
			if err != nil {
				return fmt.Errorf("check %s: baseline: %w", ch.Name, err)
			}
			c.baseline[ch.Name] = v
		case ch.Probe != nil && c.probe == nil:
			if c.Prober == nil {
				return fmt.Errorf("check %s: no prober configured", ch.Name)
			}
			url := ch.Probe.URL
			if url == "" {
				url = lbURL
			}
			if url == "" {
				return fmt.Errorf("check %s: probe has no url and the provider knows no load balancer", ch.Name)
			}
			run, err := c.Prober.Start(ctx, ProbeSpec{URL: url, Clients: ch.Probe.Clients, Channels: ch.Probe.Channels, Rate: ch.Probe.Rate})
			if err != nil {
				return fmt.Errorf("check %s: start probe: %w", ch.Name, err)
			}
			c.probe, c.probeName = run, ch.Name
		}
	}
	return nil
}

// EndPhase stops the phase's probe and returns its final figures. It
// first lets the probe settle (every client connected again) for up to
// Settle, so that clients a last drain just released are not counted as
// losses while they replay; messages in flight are Stop's grace period's
// business (the publisher never stops, so some always are).
func (c *Checker) EndPhase(ctx context.Context) *ProbeResult {
	c.mu.Lock()
	run := c.probe
	c.probe = nil
	c.mu.Unlock()
	if run == nil {
		return nil
	}
	settle := c.Settle
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
	r := run.Stop(ctx)
	return &r
}

// Run runs every check once against the group as it is; final evaluates
// the probe with its final figures (r non-nil).
func (c *Checker) Run(ctx context.Context, checks []Check, g Group, final *ProbeResult, now time.Time) []CheckResult {
	out := make([]CheckResult, 0, len(checks))
	for _, ch := range checks {
		r := CheckResult{Name: ch.Name, At: now}
		var err error
		switch {
		case ch.HTTP != nil:
			r.Detail, err = c.runHTTP(ctx, ch.HTTP)
		case ch.Metric != nil:
			r.Detail, err = c.runMetric(ctx, ch, g)
		case ch.Command != nil:
			r.Detail, err = runCommand(ctx, ch.Command)
		case ch.Probe != nil:
			r.Detail, err = c.runProbe(ch.Probe, final)
		}
		r.Pass = err == nil
		if err != nil {
			r.Detail = err.Error()
		}
		out = append(out, r)
	}
	return out
}

func (c *Checker) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (c *Checker) runHTTP(ctx context.Context, h *HTTPCheck) (string, error) {
	to := h.Timeout.D()
	if to == 0 {
		to = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", h.URL, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	want := h.Status
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return "", fmt.Errorf("GET %s: status %d, want %d", h.URL, resp.StatusCode, want)
	}
	return fmt.Sprintf("status %d", resp.StatusCode), nil
}

func (c *Checker) runMetric(ctx context.Context, ch Check, g Group) (string, error) {
	v, err := c.sumMetric(ctx, ch.Metric, g)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	base, ok := c.baseline[ch.Name]
	c.mu.Unlock()
	if !ok {
		base = v
	}
	// Counters of terminated nodes leave the sum; only growth counts.
	inc := max(v-base, 0)
	if inc > ch.Metric.MaxIncrease {
		return "", fmt.Errorf("%s rose by %g (max %g)", ch.Metric.Name, inc, ch.Metric.MaxIncrease)
	}
	return fmt.Sprintf("%s +%g (max %g)", ch.Metric.Name, inc, ch.Metric.MaxIncrease), nil
}

// sumMetric adds metric over every in-service node's /metrics. A node that
// cannot be read is skipped: it may be on its way out, and the http and
// probe checks cover reachability.
func (c *Checker) sumMetric(ctx context.Context, m *MetricCheck, g Group) (float64, error) {
	if c.MetricsURL == nil {
		return 0, fmt.Errorf("metric %s: no node metrics address", m.Name)
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		sum     float64
		firstEr error
	)
	for _, in := range g.Instances {
		if in.Lifecycle != "InService" {
			continue
		}
		wg.Add(1)
		go func(in Instance) {
			defer wg.Done()
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
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
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

func runCommand(ctx context.Context, cc *CommandCheck) (string, error) {
	to := cc.Timeout.D()
	if to == 0 {
		to = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc.Run[0], cc.Run[1:]...)
	out, err := cmd.CombinedOutput()
	tail := strings.TrimSpace(string(out))
	if len(tail) > 200 {
		tail = "…" + tail[len(tail)-200:]
	}
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(cc.Run, " "), err, tail)
	}
	return "exit 0", nil
}

func (c *Checker) runProbe(pc *ProbeCheck, final *ProbeResult) (string, error) {
	var r ProbeResult
	if final != nil {
		r = *final
	} else {
		c.mu.Lock()
		run := c.probe
		c.mu.Unlock()
		if run == nil {
			return "", fmt.Errorf("probe is not running")
		}
		r = run.Snapshot()
	}
	detail := fmt.Sprintf("%d clients, sent %d, delivered %d, lost %d, gap p99 %s", r.Clients, r.Sent, r.Delivered, r.Lost, r.GapP99.Round(time.Millisecond))
	// Loss is judged on the phase's final figures only: while nodes
	// drain, a reconnecting client's missing messages count as lost in a
	// snapshot until its replay brings them.
	if final == nil {
		detail = fmt.Sprintf("%d clients, sent %d, delivered %d, missing so far %d, gap p99 %s", r.Clients, r.Sent, r.Delivered, r.Lost, r.GapP99.Round(time.Millisecond))
	} else if r.Lost > pc.MaxLoss {
		return "", fmt.Errorf("%s: lost %d > max %d", detail, r.Lost, pc.MaxLoss)
	}
	if pc.MaxGap > 0 && r.GapP99 > pc.MaxGap.D() {
		return "", fmt.Errorf("%s: gap p99 %s > max %s", detail, r.GapP99, pc.MaxGap.D())
	}
	return detail, nil
}

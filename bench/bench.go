package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Options configure a benchmark run. Zero fields take the full-size
// defaults of the issue; Quick shrinks them for a run of a minute or two.
type Options struct {
	// Binary is the wsfleet command the ws node is run from.
	Binary string
	// ServerCPU is the core both servers are pinned to (taskset), -1 for
	// none. The generator runs in this process: pin it to another core
	// (`wsfleet bench` re-executes itself under taskset for that).
	ServerCPU int
	// Servers to run, of "wsfleet" and "faye"; default both.
	Servers []string
	// Scenarios to run, of "idle", "fanout" and "churn"; default all.
	Scenarios []string

	IdleSessions int           // (a) default 10,000
	Subscribers  int           // (b) default 5,000
	Channels     int           // (b) default 50
	Rates        []float64     // (b) deliveries per second to try, in order
	Step, Warmup time.Duration // (b) measuring time and warm-up per rate
	MaxP99       time.Duration // (b) a rate is sustained while p99 ≤ this; default 100ms
	ChurnWorkers int           // (c) default 128
	ChurnTime    time.Duration // (c) default 10s
	// Attempts is how many times a rate is measured before it counts as
	// not sustained; default 2.
	Attempts int
	// Settle is how long a server is left alone before a measurement
	// (RSS, the first rate). Default 3s, quick 1s.
	Settle time.Duration
	// SourceAddrs is how many 127.0.0.x addresses connections are spread
	// over; default 8.
	SourceAddrs int
	Quick       bool
	AdminToken  string
	// Progress receives one line per step; Stderr the servers' output.
	Progress, Stderr io.Writer
}

func (o *Options) defaults() {
	def := func(v *int, full, quick int) {
		if *v <= 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	defD := func(v *time.Duration, full, quick time.Duration) {
		if *v <= 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	def(&o.IdleSessions, 10000, 1000)
	def(&o.Subscribers, 5000, 500)
	def(&o.Channels, 50, 10)
	def(&o.ChurnWorkers, 128, 32)
	def(&o.SourceAddrs, 8, 4)
	def(&o.Attempts, 2, 2)
	defD(&o.Step, 5*time.Second, 2*time.Second)
	defD(&o.Warmup, time.Second, 500*time.Millisecond)
	defD(&o.ChurnTime, 10*time.Second, 3*time.Second)
	defD(&o.Settle, 3*time.Second, time.Second)
	defD(&o.MaxP99, 100*time.Millisecond, 100*time.Millisecond)
	if len(o.Rates) == 0 {
		o.Rates = []float64{10e3, 20e3, 30e3, 40e3, 50e3, 60e3, 70e3, 80e3, 100e3, 120e3, 150e3, 200e3, 250e3, 300e3}
		if o.Quick {
			o.Rates = []float64{5e3, 10e3, 20e3, 40e3, 80e3, 120e3}
		}
	}
	if len(o.Servers) == 0 {
		o.Servers = []string{"wsfleet", "faye"}
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{"idle", "fanout", "churn"}
	}
	if o.AdminToken == "" {
		o.AdminToken = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result is one run, as written to JSON.
type Result struct {
	Started  time.Time               `json:"started"`
	Quick    bool                    `json:"quick"`
	Machine  Machine                 `json:"machine"`
	Settings map[string]any          `json:"settings"`
	Idle     map[string]*IdleResult  `json:"idle,omitempty"`
	Fanout   map[string]*FanoutCurve `json:"fanout,omitempty"`
	Churn    map[string]*ChurnResult `json:"churn,omitempty"`
	Table    []Row                   `json:"table"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	ServerCPU int    `json:"server_cpu"`
}

// IdleResult is scenario (a).
type IdleResult struct {
	Sessions      int     `json:"sessions"`
	Opened        int     `json:"opened"`
	RSSBeforeKiB  int64   `json:"rss_before_kib"`
	RSSAfterKiB   int64   `json:"rss_after_kib"`
	PerSessionKiB float64 `json:"per_session_kib"`
	OpenSeconds   float64 `json:"open_seconds"`
	Error         string  `json:"error,omitempty"`
}

// FanoutStep is one rate of scenario (b).
type FanoutStep struct {
	TargetPerSec    float64 `json:"target_deliveries_per_s"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	ServerCPU       float64 `json:"server_cpu_pct"`
	GenCPU          float64 `json:"generator_cpu_pct"`
	// ServerCoreBusy is how busy the server's core was in all, whoever
	// used it: well above ServerCPU means other processes shared the
	// core and the step's figures are not the server's alone.
	ServerCoreBusy float64 `json:"server_core_busy_pct"`
	Load1          float64 `json:"load1"`
	// Attempt numbers a repeated measurement of the same rate.
	Attempt       int   `json:"attempt"`
	PublishFailed int64 `json:"publish_failed"`
	Disconnected  int64 `json:"disconnected"`
	Sustained     bool  `json:"sustained"`
}

// FanoutCurve is scenario (b) for one server.
type FanoutCurve struct {
	Subscribers  int          `json:"subscribers"`
	Channels     int          `json:"channels"`
	Steps        []FanoutStep `json:"steps"`
	MaxSustained float64      `json:"max_sustained_deliveries_per_s"`
	// AtMax is the step that reached MaxSustained.
	AtMax *FanoutStep `json:"at_max,omitempty"`
	Error string      `json:"error,omitempty"`
}

// ChurnResult is scenario (c).
type ChurnResult struct {
	Handshakes     int64   `json:"handshakes"`
	Failed         int64   `json:"failed"`
	PerSecond      float64 `json:"handshakes_per_s"`
	ServerCPU      float64 `json:"server_cpu_pct"`
	GenCPU         float64 `json:"generator_cpu_pct"`
	ServerCoreBusy float64 `json:"server_core_busy_pct"`
	Load1          float64 `json:"load1"`
	ServerRSSKiB   int64   `json:"server_rss_after_kib"`
	Error          string  `json:"error,omitempty"`
	WorkersActive  int     `json:"workers"`
}

// Row is one line of the summary table.
type Row struct {
	Figure  string  `json:"figure"`
	Wsfleet float64 `json:"wsfleet"`
	Faye    float64 `json:"faye"`
	// Ratio is wsfleet/faye.
	Ratio float64 `json:"ratio"`
}

// Run runs the scenarios against each server and returns the results.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	res := &Result{
		Started: time.Now().UTC(), Quick: o.Quick,
		Machine: Machine{CPUs: cpuCount(), CPUModel: cpuModel(), ServerCPU: o.ServerCPU},
		Settings: map[string]any{
			"idle_sessions": o.IdleSessions, "subscribers": o.Subscribers, "channels": o.Channels,
			"step_s": o.Step.Seconds(), "warmup_s": o.Warmup.Seconds(), "max_p99_ms": ms(o.MaxP99),
			"churn_workers": o.ChurnWorkers, "churn_s": o.ChurnTime.Seconds(),
		},
		Idle: map[string]*IdleResult{}, Fanout: map[string]*FanoutCurve{}, Churn: map[string]*ChurnResult{},
	}
	d := newDialers(o.SourceAddrs)
	for _, sc := range o.Scenarios {
		for _, srv := range o.Servers {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			var err error
			switch sc {
			case "idle":
				res.Idle[srv], err = runIdle(ctx, &o, srv, d)
			case "fanout":
				res.Fanout[srv], err = runFanout(ctx, &o, srv, d)
			case "churn":
				res.Churn[srv], err = runChurn(ctx, &o, srv, d)
			default:
				return res, fmt.Errorf("bench: unknown scenario %q", sc)
			}
			if err != nil {
				return res, fmt.Errorf("bench %s on %s: %w", sc, srv, err)
			}
		}
	}
	res.Table = table(res)
	return res, nil
}

// startServer starts a fresh server of the given kind, pinned.
func startServer(ctx context.Context, o *Options, kind string) (*process, error) {
	switch kind {
	case "wsfleet":
		if o.Binary == "" {
			return nil, errors.New("bench: no wsfleet binary")
		}
		return startWsfleet(ctx, wsfleetOptions{Binary: o.Binary, AdminToken: o.AdminToken, CPU: o.ServerCPU,
			Args: []string{"--timeout", "30s"}, Stderr: o.Stderr})
	case "faye":
		return startFaye(ctx, fayeOptions{AdminToken: o.AdminToken, CPU: o.ServerCPU, Timeout: 30, Stderr: o.Stderr})
	}
	return nil, fmt.Errorf("bench: unknown server %q", kind)
}

func channelNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func runIdle(ctx context.Context, o *Options, kind string, d *dialers) (*IdleResult, error) {
	p, err := startServer(ctx, o, kind)
	if err != nil {
		return nil, err
	}
	// Killed, not stopped: a ws node drains on SIGTERM, which the
	// benchmark has no use for.
	defer p.kill()
	r := &IdleResult{Sessions: o.IdleSessions}
	settle(ctx, o.Settle)
	r.RSSBeforeKiB = rssKiB(p.pid())
	var st genStats
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	conns, err := openSessions(sctx, d, p.Addr, o.IdleSessions, channelNames("/bench/idle/", o.Channels), 64, &st)
	defer closeSessions(conns)
	stopReaders, rerr := startReaders(conns, &st)
	if rerr != nil {
		return nil, rerr
	}
	defer stopReaders()
	r.OpenSeconds = time.Since(start).Seconds()
	for _, c := range conns {
		if c != nil {
			r.Opened++
		}
	}
	if err != nil {
		r.Error = err.Error()
	}
	settle(ctx, o.Settle)
	r.RSSAfterKiB = rssKiB(p.pid())
	if r.Opened > 0 {
		r.PerSessionKiB = float64(r.RSSAfterKiB-r.RSSBeforeKiB) / float64(r.Opened)
	}
	fmt.Fprintf(o.Progress, "idle   %-7s %d/%d sessions in %.1fs, RSS %d → %d KiB, %.1f KiB/session\n",
		kind, r.Opened, r.Sessions, r.OpenSeconds, r.RSSBeforeKiB, r.RSSAfterKiB, r.PerSessionKiB)
	return r, nil
}

func runFanout(ctx context.Context, o *Options, kind string, d *dialers) (*FanoutCurve, error) {
	p, err := startServer(ctx, o, kind)
	if err != nil {
		return nil, err
	}
	// Killed, not stopped: a ws node drains on SIGTERM, which the
	// benchmark has no use for.
	defer p.kill()
	curve := &FanoutCurve{Subscribers: o.Subscribers, Channels: o.Channels}
	channels := channelNames("/bench/fan/", o.Channels)
	var st genStats
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns, err := openSessions(sctx, d, p.Addr, o.Subscribers, channels, 64, &st)
	defer closeSessions(conns)
	if err != nil {
		curve.Error = err.Error()
		fmt.Fprintf(o.Progress, "fanout %-7s %v\n", kind, err)
		return curve, nil
	}
	stopReaders, err := startReaders(conns, &st)
	if err != nil {
		return nil, err
	}
	defer stopReaders()
	perMsg := float64(o.Subscribers) / float64(o.Channels)
	pub := &publisher{url: "http://" + p.Addr + "/publish", token: o.AdminToken, channels: channels,
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	settle(ctx, o.Settle)
	measure := func(target float64, attempt int) FanoutStep {
		step := FanoutStep{TargetPerSec: target, Attempt: attempt}
		pctx, stop := context.WithCancel(sctx)
		done := make(chan struct{})
		go func() { defer close(done); pub.run(pctx, target/perMsg) }()
		settle(ctx, o.Warmup)
		h := &latHist{}
		st.lat.Store(h)
		d0, c0, f0 := st.deliveries.Load(), st.closed.Load(), pub.failed.Load()
		s0, g0, t0, k0 := procCPU(p.pid()), selfCPU(), time.Now(), coreBusy(o.ServerCPU)
		settle(ctx, o.Step)
		s1, g1, t1, k1 := procCPU(p.pid()), selfCPU(), time.Now(), coreBusy(o.ServerCPU)
		d1, c1, f1 := st.deliveries.Load(), st.closed.Load(), pub.failed.Load()
		st.lat.Store(nil)
		stop()
		<-done
		wall := t1.Sub(t0).Seconds()
		step.DeliveredPerSec = float64(d1-d0) / wall
		step.P50Ms, step.P99Ms, step.MaxMs, _ = h.h.quantiles()
		step.ServerCPU = 100 * (s1 - s0) / wall
		step.GenCPU = 100 * (g1 - g0) / wall
		step.ServerCoreBusy = 100 * (k1 - k0) / wall
		step.Load1 = load1()
		step.PublishFailed = f1 - f0
		step.Disconnected = c1 - c0
		step.Sustained = step.P99Ms <= ms(o.MaxP99) && step.DeliveredPerSec >= 0.95*target &&
			step.Disconnected == 0 && step.PublishFailed == 0
		fmt.Fprintf(o.Progress, "fanout %-7s target %7.0f/s delivered %8.0f/s p50 %6.1fms p99 %7.1fms max %7.1fms server %3.0f%% (core %3.0f%%) gen %3.0f%% load %.1f%s\n",
			kind, target, step.DeliveredPerSec, step.P50Ms, step.P99Ms, step.MaxMs, step.ServerCPU, step.ServerCoreBusy, step.GenCPU, step.Load1,
			map[bool]string{true: "", false: "  (not sustained)"}[step.Sustained])
		// Let queues drain before the next measurement.
		settle(ctx, time.Second)
		return step
	}
	for _, target := range o.Rates {
		if ctx.Err() != nil {
			break
		}
		// A rate that fails is measured once more before the run stops
		// there: on a machine shared with other work a passing spike of
		// someone else's load should not end the curve. Both attempts
		// are in the curve.
		var step FanoutStep
		for attempt := 1; attempt <= o.Attempts; attempt++ {
			step = measure(target, attempt)
			curve.Steps = append(curve.Steps, step)
			if step.Sustained || ctx.Err() != nil {
				break
			}
		}
		if step.Sustained && step.DeliveredPerSec > curve.MaxSustained {
			curve.MaxSustained = step.DeliveredPerSec
			s := step
			curve.AtMax = &s
		}
		if !step.Sustained {
			break
		}
	}
	return curve, nil
}

func runChurn(ctx context.Context, o *Options, kind string, d *dialers) (*ChurnResult, error) {
	p, err := startServer(ctx, o, kind)
	if err != nil {
		return nil, err
	}
	// Killed, not stopped: a ws node drains on SIGTERM, which the
	// benchmark has no use for.
	defer p.kill()
	settle(ctx, time.Second)
	r := &ChurnResult{WorkersActive: o.ChurnWorkers}
	cctx, cancel := context.WithTimeout(ctx, o.ChurnTime)
	defer cancel()
	s0, g0, t0, k0 := procCPU(p.pid()), selfCPU(), time.Now(), coreBusy(o.ServerCPU)
	r.Handshakes, r.Failed = churn(cctx, d, p.Addr, o.ChurnWorkers)
	s1, g1, t1, k1 := procCPU(p.pid()), selfCPU(), time.Now(), coreBusy(o.ServerCPU)
	wall := t1.Sub(t0).Seconds()
	r.PerSecond = float64(r.Handshakes) / wall
	r.ServerCPU = 100 * (s1 - s0) / wall
	r.GenCPU = 100 * (g1 - g0) / wall
	r.ServerCoreBusy = 100 * (k1 - k0) / wall
	r.Load1 = load1()
	r.ServerRSSKiB = rssKiB(p.pid())
	fmt.Fprintf(o.Progress, "churn  %-7s %.0f handshakes/s (%d failed) server %3.0f%% (core %3.0f%%) gen %3.0f%% load %.1f RSS after %d KiB\n",
		kind, r.PerSecond, r.Failed, r.ServerCPU, r.ServerCoreBusy, r.GenCPU, r.Load1, r.ServerRSSKiB)
	return r, nil
}

func table(r *Result) []Row {
	var rows []Row
	add := func(fig string, w, f float64) {
		row := Row{Figure: fig, Wsfleet: w, Faye: f}
		if f != 0 {
			row.Ratio = w / f
		}
		rows = append(rows, row)
	}
	if w, f := r.Idle["wsfleet"], r.Idle["faye"]; w != nil || f != nil {
		add("idle: RSS per session (KiB)", idleKiB(w), idleKiB(f))
	}
	if w, f := r.Fanout["wsfleet"], r.Fanout["faye"]; w != nil || f != nil {
		add("fan-out: highest sustained deliveries/s (p99 ≤ 100 ms)", maxSust(w), maxSust(f))
		add("fan-out: p99 at that rate (ms)", atMax(w, func(s *FanoutStep) float64 { return s.P99Ms }), atMax(f, func(s *FanoutStep) float64 { return s.P99Ms }))
		add("fan-out: server CPU at that rate (%)", atMax(w, func(s *FanoutStep) float64 { return s.ServerCPU }), atMax(f, func(s *FanoutStep) float64 { return s.ServerCPU }))
		add("fan-out: generator CPU at that rate (%)", atMax(w, func(s *FanoutStep) float64 { return s.GenCPU }), atMax(f, func(s *FanoutStep) float64 { return s.GenCPU }))
	}
	if w, f := r.Churn["wsfleet"], r.Churn["faye"]; w != nil || f != nil {
		add("churn: handshakes/s", churnF(w, func(c *ChurnResult) float64 { return c.PerSecond }), churnF(f, func(c *ChurnResult) float64 { return c.PerSecond }))
		add("churn: server CPU (%)", churnF(w, func(c *ChurnResult) float64 { return c.ServerCPU }), churnF(f, func(c *ChurnResult) float64 { return c.ServerCPU }))
		add("churn: generator CPU (%)", churnF(w, func(c *ChurnResult) float64 { return c.GenCPU }), churnF(f, func(c *ChurnResult) float64 { return c.GenCPU }))
	}
	return rows
}

func idleKiB(r *IdleResult) float64 {
	if r == nil {
		return 0
	}
	return r.PerSessionKiB
}

func maxSust(c *FanoutCurve) float64 {
	if c == nil {
		return 0
	}
	return c.MaxSustained
}

func atMax(c *FanoutCurve, f func(*FanoutStep) float64) float64 {
	if c == nil || c.AtMax == nil {
		return 0
	}
	return f(c.AtMax)
}

func churnF(c *ChurnResult, f func(*ChurnResult) float64) float64 {
	if c == nil {
		return 0
	}
	return f(c)
}

// WriteTable prints the summary table and each server's latency curve.
func WriteTable(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\twsfleet\tfaye\tratio\t")
	for _, row := range r.Table {
		ratio := "-"
		if row.Ratio != 0 {
			ratio = fmt.Sprintf("%.2fx", row.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", row.Figure, num(row.Wsfleet), num(row.Faye), ratio)
	}
	tw.Flush()
	for _, kind := range []string{"wsfleet", "faye"} {
		c := r.Fanout[kind]
		if c == nil || len(c.Steps) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nfan-out latency curve, %s (%d subscribers, %d channels):\n", kind, c.Subscribers, c.Channels)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target/s\ttry\tdelivered/s\tp50 ms\tp99 ms\tmax ms\tserver CPU\tits core\tgen CPU\tload\tsustained\t")
		for _, s := range c.Steps {
			fmt.Fprintf(tw, "%.0f\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f%%\t%.0f%%\t%.0f%%\t%.1f\t%v\t\n",
				s.TargetPerSec, s.Attempt, s.DeliveredPerSec, s.P50Ms, s.P99Ms, s.MaxMs, s.ServerCPU, s.ServerCoreBusy, s.GenCPU, s.Load1, s.Sustained)
		}
		tw.Flush()
	}
}

func num(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func settle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// clockTicks is USER_HZ, which is 100 on every Linux this runs on.
const clockTicks = 100

// procCPU returns a process's user+system CPU seconds from /proc.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	return (ut + stt) / clockTicks
}

// selfCPU returns this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func cpuCount() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return ""
}

// coreBusy returns the non-idle CPU seconds of core cpu since boot, from
// /proc/stat; 0 when cpu < 0 or unknown.
func coreBusy(cpu int) float64 {
	if cpu < 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)[1:]
		var busy float64
		for i, v := range f {
			n, _ := strconv.ParseFloat(v, 64)
			// idle and iowait are fields 3 and 4; guest time is already
			// counted in user.
			if i == 3 || i == 4 || i >= 8 {
				continue
			}
			busy += n
		}
		return busy / clockTicks
	}
	return 0
}

// load1 is the one-minute load average.
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

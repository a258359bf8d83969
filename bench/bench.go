package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
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
	// Servers to run, of "wsfleet", "faye", "centrifugo" and "bare" (the
	// bare writer, fan-out only: the limit a node's CPU per delivery is
	// held to); default all four.
	Servers []string
	// Centrifugo is the centrifugo binary; empty: the one
	// scripts/build-centrifugo.sh builds (the run builds it if missing,
	// and skips Centrifugo, saying why, if that fails).
	Centrifugo string
	// Scenarios to run, of "idle", "fanout" and "churn"; default all.
	Scenarios []string

	IdleSessions int           // (a) default 10,000
	Subscribers  int           // (b) default 5,000
	Channels     int           // (b) default 50
	Rates        []float64     // (b) deliveries per second to try, in order
	Step, Warmup time.Duration // (b) measuring time and warm-up per rate
	MaxP99       time.Duration // (b) a rate is sustained while p99 ≤ this; default 100ms
	// FixedRates are the rates (b) reports CPU per delivery at, for
	// every server; the bare writer runs these alone. Default 20,000 and
	// 40,000/s.
	FixedRates []float64
	// FixedRounds is how many times every server is measured at the
	// fixed rates, in rounds after the curves; its figure is the median.
	// Default 3, quick 1.
	FixedRounds int
	// NoSteer leaves out the fixed-rate tries with the loopback receive
	// steered off the servers' core (steerReceive), which change the
	// machine's loopback device while they run and need root.
	NoSteer bool
	// Refine is how many rates (b) tries between the last sustained rate
	// and the first that failed, halving the gap each time; default 3,
	// quick 2, negative for none.
	Refine       int
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
	def(&o.FixedRounds, 3, 1)
	if o.Refine < 0 {
		o.Refine = 0 // asked for none
	} else {
		def(&o.Refine, 3, 2)
	}
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
	if len(o.FixedRates) == 0 {
		o.FixedRates = []float64{20e3, 40e3}
	}
	if len(o.Servers) == 0 {
		o.Servers = []string{"wsfleet", "faye", "centrifugo", "bare"}
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
	// FixedRates are the rates CPU per delivery is compared at.
	FixedRates []float64 `json:"fixed_rates"`
	// Skipped names the servers that could not run, with why.
	Skipped map[string]string `json:"skipped,omitempty"`
	// SteerUnavailable says why the fixed rates were not also measured
	// with the loopback receive steered off the servers' core (not root,
	// servers not pinned, not Linux); empty when they were.
	SteerUnavailable string `json:"receive_steering_unavailable,omitempty"`
	Table            []Row  `json:"table"`
	// Targets are issue 22's ratios, each met or not.
	Targets []Target `json:"targets"`
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
	// AnonPerSessionKiB is the growth of the anonymous part of the RSS
	// (RssAnon) alone, per session: VmRSS also counts the executable's
	// pages the sessions' code touched for the first time, once (about
	// 3 MB for the ws node), which do not grow with the sessions. The
	// targets are on PerSessionKiB.
	AnonPerSessionKiB float64 `json:"anon_per_session_kib"`
	OpenSeconds       float64 `json:"open_seconds"`
	// GC is the ws node's collector setting, as its runtime reports it on
	// /metrics (go_gc_gogc_percent, go_gc_gomemlimit_bytes) while the
	// sessions are open: the idle figure depends on it. Empty for the
	// other servers.
	GC    string `json:"gc,omitempty"`
	Error string `json:"error,omitempty"`
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
	Attempt int `json:"attempt"`
	// Refine marks a rate tried between the last sustained and the first
	// failed rate of the list.
	Refine bool `json:"refine,omitempty"`
	// UsPerDelivery is the server's CPU time per delivered message in
	// microseconds; GenUsPerDelivery the generator's.
	UsPerDelivery    float64 `json:"server_cpu_us_per_delivery"`
	GenUsPerDelivery float64 `json:"generator_cpu_us_per_delivery"`
	// Steered marks a fixed-rate try with the loopback receive steered
	// off the servers' core (steerReceive).
	Steered bool `json:"receive_steered,omitempty"`
	// GeneratorBound marks a step where the generator used more than
	// 80% of its core: what failed there may be the generator.
	GeneratorBound bool  `json:"generator_bound"`
	PublishFailed  int64 `json:"publish_failed"`
	Disconnected   int64 `json:"disconnected"`
	// Delivered is Sustained without the latency bound: the rate arrived
	// in full (95%), nothing failed, nobody was disconnected.
	Delivered bool `json:"delivered"`
	Sustained bool `json:"sustained"`
}

// genBoundPct is the generator's CPU (% of its core) above which a step is
// marked generator-bound.
const genBoundPct = 80

// FixedPoint is a server's CPU per delivery at one of the fixed rates:
// the median of its tries there (see fixedPoints).
type FixedPoint struct {
	Rate             float64   `json:"rate"`
	Tries            int       `json:"tries"`
	Of               int       `json:"of"`
	UsTries          []float64 `json:"server_cpu_us_per_delivery_tries"`
	UsPerDelivery    float64   `json:"server_cpu_us_per_delivery"`
	GenUsPerDelivery float64   `json:"generator_cpu_us_per_delivery"`
	ServerCPU        float64   `json:"server_cpu_pct"`
	Delivered        bool      `json:"delivered"`
	Sustained        bool      `json:"sustained"`
	GeneratorBound   bool      `json:"generator_bound"`
}

// FanoutCurve is scenario (b) for one server.
type FanoutCurve struct {
	Subscribers  int          `json:"subscribers"`
	Channels     int          `json:"channels"`
	Steps        []FanoutStep `json:"steps"`
	MaxSustained float64      `json:"max_sustained_deliveries_per_s"`
	// AtMax is the step that reached MaxSustained.
	AtMax *FanoutStep `json:"at_max,omitempty"`
	// FailedGeneratorBound is set when the first rate above MaxSustained
	// failed with the generator past 80% of its core: the figure is then
	// a floor of the server's.
	FailedGeneratorBound bool `json:"failed_generator_bound,omitempty"`
	// FixedTries are the tries of the fixed rates, one per round
	// (runFixedRounds), and Fixed the figure from them at each rate.
	FixedTries []FanoutStep `json:"fixed_tries,omitempty"`
	Fixed      []FixedPoint `json:"fixed,omitempty"`
	// FixedSteered is the same from the tries with the loopback receive
	// steered off the servers' core (steerReceive): the server's own CPU
	// per delivery, as on a network.
	FixedSteered []FixedPoint `json:"fixed_receive_steered,omitempty"`
	Error        string       `json:"error,omitempty"`
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

// Row is one line of the summary table: a figure for each server (0:
// not measured).
type Row struct {
	Figure string             `json:"figure"`
	Values map[string]float64 `json:"values"`
	// Floor marks the servers whose value is a lower bound (the failing
	// step was generator-bound).
	Floor map[string]bool `json:"floor,omitempty"`
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
		Skipped: map[string]string{},
	}
	res.FixedRates = o.FixedRates
	res.Settings["refine"] = o.Refine
	res.Settings["fixed_rounds"] = o.FixedRounds
	res.Settings["receive_steering"] = !o.NoSteer
	res.Settings["centrifugo_version"] = CentrifugoVersion
	var servers []string
	for _, srv := range o.Servers {
		if why := prepareServer(ctx, &o, srv); why != "" {
			res.Skipped[srv] = why
			fmt.Fprintf(o.Progress, "%s: skipped: %s\n", srv, why)
			continue
		}
		servers = append(servers, srv)
	}
	d := newDialers(o.SourceAddrs)
	for _, sc := range o.Scenarios {
		for _, srv := range servers {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			// The bare writer is a measure of the fan-out limit, not a
			// server: nothing to hold idle or to churn, and no curve (it
			// runs in the fixed rounds).
			if srv == "bare" {
				continue
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
	if slices.Contains(o.Scenarios, "fanout") {
		if err := runFixedRounds(ctx, &o, servers, d, res); err != nil {
			return res, err
		}
	}
	res.Table = table(res)
	res.Targets = targets(res)
	return res, nil
}

// prepareServer checks that a server kind can run here (building
// Centrifugo if it is not yet built) and returns why not, or "".
func prepareServer(ctx context.Context, o *Options, kind string) string {
	switch kind {
	case "wsfleet", "bare":
		if o.Binary == "" {
			return "no wsfleet binary to run"
		}
	case "faye":
		if _, err := fayeNodePath(); err != nil {
			return err.Error()
		}
		if _, err := exec.LookPath("node"); err != nil {
			return errNoFaye.Error()
		}
	case "centrifugo":
		if o.Centrifugo != "" {
			return ""
		}
		log := o.Stderr
		if log == nil {
			log = o.Progress
		}
		if _, err := centrifugoBinary(); err != nil {
			fmt.Fprintf(o.Progress, "centrifugo: building %s with scripts/build-centrifugo.sh (the first time takes minutes)\n", CentrifugoVersion)
		}
		p, err := buildCentrifugo(ctx, log)
		if err != nil {
			return err.Error()
		}
		o.Centrifugo = p
	default:
		return fmt.Sprintf("unknown server %q", kind)
	}
	return ""
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
	case "centrifugo":
		if o.Centrifugo == "" {
			return nil, errNoCentrifugo
		}
		return startCentrifugo(ctx, centrifugoOptions{Binary: o.Centrifugo, APIKey: o.AdminToken, CPU: o.ServerCPU, Stderr: o.Stderr})
	case "bare":
		if o.Binary == "" {
			return nil, errNoBare
		}
		// The token goes through the environment, not the process list.
		return startListening(ctx, pinned(o.ServerCPU, o.Binary, []string{"bench", "--serve-bare", "127.0.0.1:0"}),
			[]string{"WSFLEET_ADMIN_TOKEN=" + o.AdminToken}, o.Stderr, false, parseFayeListening)
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
	anon0 := statusKiB(p.pid(), "RssAnon:")
	var st genStats
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	conns, err := openSessions(sctx, wireFor(kind), d, p.Addr, o.IdleSessions, channelNames("/bench/idle/", o.Channels), 64, &st)
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
	anon1 := statusKiB(p.pid(), "RssAnon:")
	if r.Opened > 0 {
		r.PerSessionKiB = float64(r.RSSAfterKiB-r.RSSBeforeKiB) / float64(r.Opened)
		r.AnonPerSessionKiB = float64(anon1-anon0) / float64(r.Opened)
	}
	if kind == "wsfleet" {
		gc, err := nodeGC(ctx, p.Addr)
		if err != nil {
			gc = "unknown: " + err.Error()
		}
		r.GC = gc
	}
	fmt.Fprintf(o.Progress, "idle   %-10s %d/%d sessions in %.1fs, RSS %d → %d KiB, %.1f KiB/session (anonymous %.1f) %s\n",
		kind, r.Opened, r.Sessions, r.OpenSeconds, r.RSSBeforeKiB, r.RSSAfterKiB, r.PerSessionKiB, r.AnonPerSessionKiB, r.GC)
	return r, nil
}

// fanoutRig is a server with the fan-out scenario's subscribers on it and
// a publisher ready: what a curve and a round of fixed-rate tries share.
type fanoutRig struct {
	o      *Options
	kind   string
	p      *process
	st     genStats
	pub    *publisher
	perMsg float64
	cancel context.CancelFunc
	ctx    context.Context
	close  func()
}

// openFanout starts a fresh server of kind and opens the subscribers on
// it. A session that could not be opened is an error of the run (err) or
// of the server (serverErr: the curve records it and the run goes on).
func openFanout(ctx context.Context, o *Options, kind string, d *dialers) (rig *fanoutRig, serverErr string, err error) {
	p, err := startServer(ctx, o, kind)
	if err != nil {
		return nil, "", err
	}
	r := &fanoutRig{o: o, kind: kind, p: p}
	r.ctx, r.cancel = context.WithCancel(ctx)
	var closers []func()
	r.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	// Killed, not stopped: a ws node drains on SIGTERM, which the
	// benchmark has no use for.
	closers = append(closers, p.kill, r.cancel)
	channels := channelNames("/bench/fan/", o.Channels)
	conns, err := openSessions(r.ctx, wireFor(kind), d, p.Addr, o.Subscribers, channels, 64, &r.st)
	closers = append(closers, func() { closeSessions(conns) })
	if err != nil {
		r.close()
		return nil, err.Error(), nil
	}
	stopReaders, err := startReaders(conns, &r.st)
	if err != nil {
		r.close()
		return nil, "", err
	}
	closers = append(closers, stopReaders)
	r.perMsg = float64(o.Subscribers) / float64(o.Channels)
	w := wireFor(kind)
	r.pub = &publisher{w: w, url: "http://" + p.Addr + w.publishPath(), token: o.AdminToken, channels: channels,
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	settle(ctx, o.Settle)
	return r, "", nil
}

// measure publishes at target deliveries/s for the warm-up and the step
// and returns what the step saw.
func (r *fanoutRig) measure(target float64, attempt int) FanoutStep {
	ctx, o, p, st, pub := r.ctx, r.o, r.p, &r.st, r.pub
	step := FanoutStep{TargetPerSec: target, Attempt: attempt}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); pub.run(pctx, target/r.perMsg) }()
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
	step.Delivered = step.DeliveredPerSec >= 0.95*target && step.Disconnected == 0 && step.PublishFailed == 0
	step.Sustained = step.Delivered && step.P99Ms <= ms(o.MaxP99)
	if d1 > d0 {
		step.UsPerDelivery = 1e6 * (s1 - s0) / float64(d1-d0)
		step.GenUsPerDelivery = 1e6 * (g1 - g0) / float64(d1-d0)
	}
	step.GeneratorBound = step.GenCPU > genBoundPct
	return step
}

// measureFixed is one try of a fixed rate, with the loopback receive
// steered off the servers' core for its length when steered (put back
// however the try ends); unavailable says why steering could not be set.
func (r *fanoutRig) measureFixed(target float64, attempt int, steered bool) (step FanoutStep, unavailable string, err error) {
	if steered {
		restore, serr := steerReceive(r.o.ServerCPU, cpuCount())
		if serr != nil {
			return step, serr.Error(), nil
		}
		defer func() {
			if rerr := restore(); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	step = r.measure(target, attempt)
	step.Steered = steered
	return step, "", nil
}

// progress prints one step's line; what is "fanout" for a curve's step
// and "fixed" for a round's try.
func (r *fanoutRig) progress(what string, step FanoutStep) {
	fmt.Fprintf(r.o.Progress, "%-6s %-10s target %7.0f/s delivered %8.0f/s p50 %6.1fms p99 %7.1fms max %7.1fms server %3.0f%% (core %3.0f%%) %5.1fµs/delivery gen %3.0f%% load %.1f%s%s\n",
		what, r.kind, step.TargetPerSec, step.DeliveredPerSec, step.P50Ms, step.P99Ms, step.MaxMs, step.ServerCPU, step.ServerCoreBusy, step.UsPerDelivery, step.GenCPU, step.Load1,
		map[bool]string{true: "  (generator-bound)", false: ""}[step.GeneratorBound],
		map[bool]string{true: "", false: "  (not sustained)"}[step.Sustained])
}

func runFanout(ctx context.Context, o *Options, kind string, d *dialers) (*FanoutCurve, error) {
	curve := &FanoutCurve{Subscribers: o.Subscribers, Channels: o.Channels}
	rig, serverErr, err := openFanout(ctx, o, kind, d)
	if err != nil {
		return nil, err
	}
	if serverErr != "" {
		curve.Error = serverErr
		fmt.Fprintf(o.Progress, "fanout %-10s %s\n", kind, serverErr)
		return curve, nil
	}
	defer rig.close()
	measure := func(target float64, attempt int) FanoutStep {
		step := rig.measure(target, attempt)
		rig.progress("fanout", step)
		// Let queues drain before the next measurement.
		settle(ctx, time.Second)
		return step
	}
	// rate measures target up to Attempts times: on a machine shared with
	// other work a passing spike of someone else's load should not end
	// the curve. Every attempt is in the curve.
	rate := func(target float64, refine bool) bool {
		var step FanoutStep
		for attempt := 1; attempt <= o.Attempts; attempt++ {
			step = measure(target, attempt)
			step.Refine = refine
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
		return step.Sustained
	}
	var lastPass, firstFail float64
	for _, target := range o.Rates {
		if ctx.Err() != nil {
			break
		}
		if !rate(target, false) {
			firstFail = target
			break
		}
		lastPass = target
	}
	// Near the knee: halve the gap between the last sustained rate and
	// the first failed one, Refine times at most.
	lo, hi := lastPass, firstFail
	for range o.Refine {
		mid := midRate(lo, hi)
		if mid == 0 || ctx.Err() != nil {
			break
		}
		if rate(mid, true) {
			lo = mid
		} else {
			hi = mid
		}
	}
	curve.FailedGeneratorBound = failedGeneratorBound(curve)
	return curve, nil
}

// runFixedRounds measures CPU per delivery at the fixed rates: FixedRounds
// rounds, each starting every server afresh (the bare writer too) and
// trying each fixed rate once, the servers' order rotated from round to
// round. A machine's noise moves a single try by a fifth either way (on
// this kind of machine the same binary gave 10.3 and 12.9 µs a delivery
// minutes apart), so each server's figure is the median of its tries, and
// the servers' tries are spread over the same minutes.
func runFixedRounds(ctx context.Context, o *Options, servers []string, d *dialers, res *Result) error {
	for round := range o.FixedRounds {
		for i := range servers {
			kind := servers[(i+round)%len(servers)]
			if err := ctx.Err(); err != nil {
				return err
			}
			c := res.Fanout[kind]
			if c == nil {
				c = &FanoutCurve{Subscribers: o.Subscribers, Channels: o.Channels}
				res.Fanout[kind] = c
			}
			rig, serverErr, err := openFanout(ctx, o, kind, d)
			if err != nil {
				return fmt.Errorf("bench fixed rates on %s: %w", kind, err)
			}
			if serverErr != "" {
				fmt.Fprintf(o.Progress, "fixed  %-10s %s\n", kind, serverErr)
				if c.Error == "" {
					c.Error = serverErr
				}
				continue
			}
			for _, target := range o.FixedRates {
				for _, steered := range []bool{false, true} {
					if ctx.Err() != nil || steered && (o.NoSteer || res.SteerUnavailable != "") {
						break
					}
					step, unavailable, err := rig.measureFixed(target, round+1, steered)
					if err != nil {
						rig.close()
						return err
					}
					if unavailable != "" {
						res.SteerUnavailable = unavailable
						fmt.Fprintf(o.Progress, "fixed  %s: the steered figures are not measured\n", unavailable)
						break
					}
					what := "fixed"
					if steered {
						what = "fixed~"
					}
					rig.progress(what, step)
					c.FixedTries = append(c.FixedTries, step)
					settle(ctx, time.Second)
				}
			}
			rig.close()
		}
	}
	for _, kind := range servers {
		if c := res.Fanout[kind]; c != nil {
			c.Fixed = fixedPoints(tries(c.FixedTries, false), o.FixedRates)
			c.FixedSteered = fixedPoints(tries(c.FixedTries, true), o.FixedRates)
			if kind == "bare" {
				// The limit is measured at the fixed rates only: its
				// tries are its curve.
				c.Steps = c.FixedTries
			}
		}
	}
	return nil
}

// midRate is the rate halfway between a sustained rate lo and a failed
// rate hi, rounded to a step of 1,000/s (100/s below 10,000/s); 0 when
// there is no such rate strictly between them (or either is unknown).
func midRate(lo, hi float64) float64 {
	if lo <= 0 || hi <= lo {
		return 0
	}
	mid := (lo + hi) / 2
	grain := 1000.0
	if mid < 10e3 {
		grain = 100
	}
	mid = math.Round(mid/grain) * grain
	if mid <= lo || mid >= hi {
		return 0
	}
	return mid
}

// failedGeneratorBound reports whether the lowest rate that no attempt
// sustained failed every attempt with the generator past 80% of its core.
func failedGeneratorBound(c *FanoutCurve) bool {
	sustained := map[float64]bool{}
	for _, s := range c.Steps {
		sustained[s.TargetPerSec] = sustained[s.TargetPerSec] || s.Sustained
	}
	first := 0.0
	for r, ok := range sustained {
		if !ok && (first == 0 || r < first) {
			first = r
		}
	}
	if first == 0 {
		return false
	}
	for _, s := range c.Steps {
		if s.TargetPerSec == first && !s.GeneratorBound {
			return false
		}
	}
	return true
}

// tries are the steps measured with the loopback receive steered off the
// servers' core (steered) or not.
func tries(steps []FanoutStep, steered bool) []FanoutStep {
	var out []FanoutStep
	for _, s := range steps {
		if s.Steered == steered {
			out = append(out, s)
		}
	}
	return out
}

// fixedPoints gives, for each fixed rate, the median of the tries at it
// that were sustained; when none was, of those delivered in full (late);
// when none was, of all. Tries and Of say how many tries the median is
// of, and of how many at that rate; rates never tried are left out.
func fixedPoints(steps []FanoutStep, rates []float64) []FixedPoint {
	var out []FixedPoint
	for _, r := range rates {
		var all, delivered, sustained []FanoutStep
		for _, s := range steps {
			if s.TargetPerSec != r {
				continue
			}
			all = append(all, s)
			if s.Delivered {
				delivered = append(delivered, s)
			}
			if s.Sustained {
				sustained = append(sustained, s)
			}
		}
		pick := sustained
		switch {
		case len(all) == 0:
			continue
		case len(sustained) > 0:
		case len(delivered) > 0:
			pick = delivered
		default:
			pick = all
		}
		p := FixedPoint{Rate: r, Tries: len(pick), Of: len(all), Sustained: len(sustained) > 0, Delivered: len(delivered) > 0,
			UsPerDelivery:    medianOf(pick, func(s FanoutStep) float64 { return s.UsPerDelivery }),
			GenUsPerDelivery: medianOf(pick, func(s FanoutStep) float64 { return s.GenUsPerDelivery }),
			ServerCPU:        medianOf(pick, func(s FanoutStep) float64 { return s.ServerCPU }),
		}
		for _, s := range pick {
			p.GeneratorBound = p.GeneratorBound || s.GeneratorBound
			p.UsTries = append(p.UsTries, s.UsPerDelivery)
		}
		out = append(out, p)
	}
	return out
}

// medianOf f over steps.
func medianOf(steps []FanoutStep, f func(FanoutStep) float64) float64 {
	v := make([]float64, len(steps))
	for i, s := range steps {
		v[i] = f(s)
	}
	return median(v)
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
	r.Handshakes, r.Failed = churn(cctx, wireFor(kind), d, p.Addr, o.ChurnWorkers)
	s1, g1, t1, k1 := procCPU(p.pid()), selfCPU(), time.Now(), coreBusy(o.ServerCPU)
	wall := t1.Sub(t0).Seconds()
	r.PerSecond = float64(r.Handshakes) / wall
	r.ServerCPU = 100 * (s1 - s0) / wall
	r.GenCPU = 100 * (g1 - g0) / wall
	r.ServerCoreBusy = 100 * (k1 - k0) / wall
	r.Load1 = load1()
	r.ServerRSSKiB = rssKiB(p.pid())
	fmt.Fprintf(o.Progress, "churn  %-10s %.0f handshakes/s (%d failed) server %3.0f%% (core %3.0f%%) gen %3.0f%% load %.1f RSS after %d KiB\n",
		kind, r.PerSecond, r.Failed, r.ServerCPU, r.ServerCoreBusy, r.GenCPU, r.Load1, r.ServerRSSKiB)
	return r, nil
}

// serverOrder is the order of the table's columns.
var serverOrder = []string{"wsfleet", "faye", "centrifugo", "bare"}

func table(r *Result) []Row {
	var rows []Row
	add := func(fig string, f func(kind string) (float64, bool)) {
		row := Row{Figure: fig, Values: map[string]float64{}}
		for _, kind := range serverOrder {
			v, floor := f(kind)
			if v == 0 {
				continue
			}
			row.Values[kind] = v
			if floor {
				if row.Floor == nil {
					row.Floor = map[string]bool{}
				}
				row.Floor[kind] = true
			}
		}
		rows = append(rows, row)
	}
	idle := func(f func(*IdleResult) float64) func(string) (float64, bool) {
		return func(kind string) (float64, bool) {
			if x := r.Idle[kind]; x != nil {
				return f(x), false
			}
			return 0, false
		}
	}
	atMax := func(f func(*FanoutStep) float64) func(string) (float64, bool) {
		return func(kind string) (float64, bool) {
			if c := r.Fanout[kind]; c != nil && c.AtMax != nil && kind != "bare" {
				return f(c.AtMax), false
			}
			return 0, false
		}
	}
	churnF := func(f func(*ChurnResult) float64) func(string) (float64, bool) {
		return func(kind string) (float64, bool) {
			if c := r.Churn[kind]; c != nil {
				return f(c), false
			}
			return 0, false
		}
	}
	if len(r.Idle) > 0 {
		add("idle: RSS per session (KiB)", idle(func(x *IdleResult) float64 { return x.PerSessionKiB }))
	}
	if len(r.Fanout) > 0 {
		add("fan-out: highest sustained deliveries/s (p99 ≤ 100 ms)", func(kind string) (float64, bool) {
			if c := r.Fanout[kind]; c != nil && kind != "bare" {
				return c.MaxSustained, c.FailedGeneratorBound
			}
			return 0, false
		})
		add("fan-out: p99 at that rate (ms)", atMax(func(s *FanoutStep) float64 { return s.P99Ms }))
		add("fan-out: server CPU at that rate (%)", atMax(func(s *FanoutStep) float64 { return s.ServerCPU }))
		add("fan-out: generator CPU at that rate (%)", atMax(func(s *FanoutStep) float64 { return s.GenCPU }))
		for _, steered := range []bool{false, true} {
			if steered && !anySteered(r) {
				break
			}
			how := steeredSuffix(steered)
			for _, rate := range r.FixedRates {
				add(fmt.Sprintf("fan-out: server CPU µs per delivery at %.0f/s%s", rate, how), func(kind string) (float64, bool) {
					if p := fixedIn(r, kind, rate, steered); p != nil {
						return p.UsPerDelivery, false
					}
					return 0, false
				})
				add(fmt.Sprintf("fan-out: generator CPU µs per delivery at %.0f/s%s", rate, how), func(kind string) (float64, bool) {
					if p := fixedIn(r, kind, rate, steered); p != nil {
						return p.GenUsPerDelivery, false
					}
					return 0, false
				})
			}
		}
	}
	if len(r.Churn) > 0 {
		add("churn: handshakes/s", churnF(func(c *ChurnResult) float64 { return c.PerSecond }))
		add("churn: server CPU (%)", churnF(func(c *ChurnResult) float64 { return c.ServerCPU }))
		add("churn: generator CPU (%)", churnF(func(c *ChurnResult) float64 { return c.GenCPU }))
	}
	return rows
}

// points is the curve's fixed-rate figures from the steered tries or the
// plain ones.
func (c *FanoutCurve) points(steered bool) []FixedPoint {
	if steered {
		return c.FixedSteered
	}
	return c.Fixed
}

// steeredSuffix names the steered figures in the table's rows and lines.
func steeredSuffix(steered bool) string {
	if steered {
		return ", receive steered"
	}
	return ""
}

// fixedIn returns kind's sustained point at rate, from the steered tries
// or the plain ones, or nil. The bare writer's latency is not judged (it
// is the limit of CPU per delivery, and its p99 on a loaded core is the
// machine's noise): its point counts when the rate was delivered in full.
func fixedIn(r *Result, kind string, rate float64, steered bool) *FixedPoint {
	c := r.Fanout[kind]
	if c == nil {
		return nil
	}
	pts := c.points(steered)
	for i := range pts {
		if p := &pts[i]; p.Rate == rate && (p.Sustained || kind == "bare" && p.Delivered) {
			return p
		}
	}
	return nil
}

// Target is one of issue 22's goals, as a ratio (or a figure) from the
// run, and whether the run met it.
type Target struct {
	Name string `json:"name"`
	// Value is the measured ratio (or figure); Measured is false when
	// an operand is missing (a server skipped or a rate not sustained),
	// and Met is then false too.
	Value    float64 `json:"value"`
	Measured bool    `json:"measured"`
	// Op is ">=" or "<="; Limit the bound.
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
	Met   bool    `json:"met"`
	// Ratio says Value is a ratio (printed as 1.23x), not a figure.
	Ratio bool   `json:"ratio"`
	Note  string `json:"note,omitempty"`
}

// targetRate is the fixed rate issue 22's CPU-per-delivery targets are
// judged at.
const targetRate = 40e3

// targets computes issue 22's "Done when" ratios from a run.
func targets(r *Result) []Target {
	maxSust := func(kind string) (float64, bool) {
		c := r.Fanout[kind]
		if c == nil {
			return 0, false
		}
		return c.MaxSustained, c.FailedGeneratorBound
	}
	cpuIn := func(kind string, steered bool) float64 {
		if p := fixedIn(r, kind, targetRate, steered); p != nil {
			return p.UsPerDelivery
		}
		return 0
	}
	idle := func(kind string) float64 {
		if x := r.Idle[kind]; x != nil && x.Error == "" {
			return x.PerSessionKiB
		}
		return 0
	}
	ratio := func(name string, num, den float64, op string, limit float64, note string) Target {
		t := Target{Name: name, Op: op, Limit: limit, Ratio: true, Note: note}
		if num > 0 && den > 0 {
			t.Value, t.Measured = num/den, true
			t.Met = compare(t.Value, op, limit)
		}
		return t
	}
	w, wFloor := maxSust("wsfleet")
	note := ""
	if wFloor {
		note = "the node's figure is a floor: the generator was past 80% of its core where it failed"
	}
	cf, _ := maxSust("centrifugo")
	fy, _ := maxSust("faye")
	// The CPU targets are judged on the server's own CPU, the loopback
	// receive steered off its core (steerReceive), when the run measured
	// it; the plain loopback ratio is in the note either way.
	cpuRatio := func(name, den string, limit float64) Target {
		plain := ratio(name, cpuIn("wsfleet", false), cpuIn(den, false), "<=", limit, "")
		steered := ratio(name, cpuIn("wsfleet", true), cpuIn(den, true), "<=", limit, "")
		if !steered.Measured {
			if plain.Measured {
				plain.Note = "plain loopback: the server's figure includes the client's TCP receive"
			}
			return plain
		}
		steered.Note = "loopback receive steered off the servers' core"
		if plain.Measured {
			steered.Note += fmt.Sprintf("; on plain loopback %.2fx", plain.Value)
		}
		return steered
	}
	rate := strconv.FormatFloat(targetRate, 'f', 0, 64)
	out := []Target{
		ratio("fan-out at p99 ≤ 100 ms, wsfleet / centrifugo", w, cf, ">=", 1.5, note),
		ratio("fan-out at p99 ≤ 100 ms, wsfleet / faye", w, fy, ">=", 4, note),
		cpuRatio("server CPU per delivery at "+rate+"/s, wsfleet / centrifugo", "centrifugo", 0.6),
		cpuRatio("node CPU per delivery at "+rate+"/s, wsfleet / bare write", "bare", 1.15),
		ratio("idle RSS per session, wsfleet / faye", idle("wsfleet"), idle("faye"), "<=", 0.12, ""),
		ratio("idle RSS per session, wsfleet / centrifugo", idle("wsfleet"), idle("centrifugo"), "<=", 0.05, ""),
	}
	kib := Target{Name: "idle RSS per session, wsfleet (KiB)", Op: "<=", Limit: 2}
	if v := idle("wsfleet"); v > 0 {
		kib.Value, kib.Measured, kib.Met = v, true, v <= 2
	}
	return append(out, kib)
}

func compare(v float64, op string, limit float64) bool {
	if op == ">=" {
		return v >= limit
	}
	return v <= limit
}

// WriteTable prints the summary table, the targets and each server's
// latency curve.
func WriteTable(w io.Writer, r *Result) {
	var cols []string
	for _, kind := range serverOrder {
		for _, row := range r.Table {
			if _, ok := row.Values[kind]; ok {
				cols = append(cols, kind)
				break
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "figure\t%s\t\n", strings.Join(cols, "\t"))
	for _, row := range r.Table {
		fmt.Fprintf(tw, "%s\t", row.Figure)
		for _, kind := range cols {
			v := num(row.Values[kind])
			if row.Floor[kind] {
				v = "≥" + v
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, kind := range slices.Sorted(maps.Keys(r.Skipped)) {
		fmt.Fprintf(w, "%s skipped: %s\n", kind, r.Skipped[kind])
	}
	if x := r.Idle["wsfleet"]; x != nil && x.GC != "" {
		fmt.Fprintf(w, "wsfleet's collector in the idle run (its default): %s\n", x.GC)
	}
	writeFixedTries(w, r)
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets (issue 22):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			val, lim := "-", strconv.FormatFloat(t.Limit, 'f', -1, 64)
			if t.Measured {
				val = strconv.FormatFloat(t.Value, 'f', 2, 64)
			}
			if t.Ratio {
				lim += "x"
				if t.Measured {
					val += "x"
				}
			}
			verdict := map[bool]string{true: "met", false: "NOT met"}[t.Met]
			if !t.Measured {
				verdict = "not measured"
			}
			op := map[string]string{">=": "≥", "<=": "≤"}[t.Op]
			fmt.Fprintf(tw, "  %s\t%s\t%s %s\t%s\t%s\n", t.Name, val, op, lim, verdict, t.Note)
		}
		tw.Flush()
		for _, steered := range []bool{false, true} {
			b, c := fixedIn(r, "bare", targetRate, steered), fixedIn(r, "centrifugo", targetRate, steered)
			if b == nil || c == nil || c.UsPerDelivery <= 0 {
				continue
			}
			how := "on plain loopback"
			if steered {
				how = "receive steered"
			}
			fmt.Fprintf(w, "  (the limit's own ratio at %.0f/s %s, bare write / centrifugo: %.2fx; a node that writes once a delivery cannot go below it)\n",
				targetRate, how, b.UsPerDelivery/c.UsPerDelivery)
		}
	}
	for _, kind := range serverOrder {
		c := r.Fanout[kind]
		if c == nil || len(c.Steps) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nfan-out latency curve, %s (%d subscribers, %d channels):\n", kind, c.Subscribers, c.Channels)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target/s\ttry\tdelivered/s\tp50 ms\tp99 ms\tmax ms\tserver CPU\tits core\tµs/delivery\tgen CPU\tgen µs/dlv\tload\tsustained\t")
		for _, s := range c.Steps {
			target := strconv.FormatFloat(s.TargetPerSec, 'f', 0, 64)
			if s.Refine {
				target = "~" + target
			}
			if s.Steered {
				target = "^" + target
			}
			gen := fmt.Sprintf("%.0f%%", s.GenCPU)
			if s.GeneratorBound {
				gen += "!"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f%%\t%.0f%%\t%.2f\t%s\t%.2f\t%.1f\t%v\t\n",
				target, s.Attempt, s.DeliveredPerSec, s.P50Ms, s.P99Ms, s.MaxMs, s.ServerCPU, s.ServerCoreBusy, s.UsPerDelivery, gen, s.GenUsPerDelivery, s.Load1, s.Sustained)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\n(~: a rate tried between the last sustained and the first failed; ^: a fixed-rate try with loopback's receive steered off the servers' core; !: generator past 80% of its core; ≥: a floor, the failing step was generator-bound)")
}

// anySteered reports whether the run measured any fixed rate with the
// loopback receive steered.
func anySteered(r *Result) bool {
	for _, c := range r.Fanout {
		if len(c.FixedSteered) > 0 {
			return true
		}
	}
	return false
}

// writeFixedTries prints, under the table, each server's tries at the
// fixed rates that its CPU-per-delivery figure is the median of.
func writeFixedTries(w io.Writer, r *Result) {
	if r.SteerUnavailable != "" {
		fmt.Fprintf(w, "receive steering not measured: %s\n", r.SteerUnavailable)
	}
	for _, steered := range []bool{false, true} {
		writeFixedTriesOf(w, r, steered)
	}
}

func writeFixedTriesOf(w io.Writer, r *Result, steered bool) {
	for _, rate := range r.FixedRates {
		var parts []string
		for _, kind := range serverOrder {
			c := r.Fanout[kind]
			if c == nil {
				continue
			}
			for _, p := range c.points(steered) {
				if p.Rate != rate {
					continue
				}
				var v []string
				for _, u := range p.UsTries {
					v = append(v, strconv.FormatFloat(u, 'f', 1, 64))
				}
				what := "on time"
				if !p.Sustained {
					what = map[bool]string{true: "late", false: "short"}[p.Delivered]
				}
				parts = append(parts, fmt.Sprintf("%s %s (%d of %d %s)", kind, strings.Join(v, " "), p.Tries, p.Of, what))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "CPU µs per delivery at %.0f/s%s, the tries the median is of: %s\n", rate, steeredSuffix(steered), strings.Join(parts, "; "))
		}
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

// nodeGC reads a ws node's collector setting from its /metrics: GOGC and
// the soft memory limit, as the node's Go runtime reports them.
func nodeGC(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", fmt.Errorf("node GC setting: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("node GC setting: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("node GC setting: %w", err)
	}
	gogc, limit := "", ""
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "go_gc_gogc_percent "); ok {
			gogc = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "go_gc_gomemlimit_bytes "); ok {
			limit = strings.TrimSpace(v)
		}
	}
	if gogc == "" || limit == "" {
		return "", errors.New("node GC setting: not on /metrics")
	}
	out := "GOGC " + gogc
	if l, err := strconv.ParseFloat(limit, 64); err == nil && l < math.MaxInt64/2 {
		out += fmt.Sprintf(", memory limit %.0f MiB", l/(1<<20))
	} else {
		out += ", no memory limit"
	}
	return out, nil
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) int64 { return statusKiB(pid, "VmRSS:") }

// statusKiB reads one KiB figure (field, e.g. "RssAnon:") of a process's
// /proc status.
func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
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

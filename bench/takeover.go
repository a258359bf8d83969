package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"wsfleet/client"
	"wsfleet/nodeapi"
)

// TakeoverOptions configure RunTakeover, the take-over benchmark: how many
// clients moved from a draining node a receiving node takes over per
// second (a reconnect with the old clientId, the session read from the
// store, the missed messages replayed from NATS), at what CPU, with what
// gap and loss; and the same for fresh handshakes.
//
// Each step starts two `wsfleet serve` processes on one nats-server: A,
// where the clients start, and B, where they land, pinned to ServerCPU.
// The clients are the repository's Go client (package client) behind a
// dialer that plays the load balancer: it sends new connections to A
// until A is drained, then to B. A is drained by its admin API (POST
// /admin/drain with window 0 and max_rate R), so the releases are the
// node's own.
type TakeoverOptions struct {
	// Binary is the wsfleet command both nodes run (required).
	Binary string
	// NATSServer is the nats-server binary (required).
	NATSServer string
	// ServerCPU is the core node B is pinned to (taskset), -1 for none.
	// Node A and nats-server are not pinned by the benchmark: they
	// inherit this process's affinity (`wsfleet bench takeover` pins
	// itself to the generator's core, so all three share it).
	ServerCPU int
	// Clients moved in each step; default 3,000.
	Clients int
	// Channels the clients are spread over (one each); default 50.
	Channels int
	// MsgRate is messages published per second over all channels while a
	// step runs; default 50 (one a second per channel).
	MsgRate float64
	// Rates are the release rates to run, clients per second; 0 releases
	// all at once. Default 100, 200, 400, 800, 0.
	Rates []float64
	// NoFresh skips the fresh-handshake half of each step.
	NoFresh bool
	// Settle is how long baselines and steady states are measured;
	// default 1s.
	Settle time.Duration
	// MoveTimeout bounds a step's wait for every client to come back,
	// past the releases' own time (clients/rate); default 30s.
	MoveTimeout time.Duration
	// SourceAddrs is how many 127.0.0.x addresses connections come from;
	// default 4.
	SourceAddrs int
	AdminToken  string
	// Rand draws the clients' reconnect jitter; default a seeded
	// generator of the benchmark's own.
	Rand func() float64
	// Progress receives a line per phase; Stderr the processes' logs.
	Progress, Stderr io.Writer
}

func (o *TakeoverOptions) defaults() {
	if o.Clients <= 0 {
		o.Clients = 3000
	}
	if o.Channels <= 0 {
		o.Channels = 50
	}
	o.Channels = min(o.Channels, o.Clients)
	if o.MsgRate <= 0 {
		o.MsgRate = 50
	}
	if len(o.Rates) == 0 {
		o.Rates = []float64{100, 200, 400, 800, 0}
	}
	if o.Settle <= 0 {
		o.Settle = time.Second
	}
	if o.MoveTimeout <= 0 {
		o.MoveTimeout = 30 * time.Second
	}
	if o.SourceAddrs <= 0 {
		o.SourceAddrs = 4
	}
	if o.AdminToken == "" {
		o.AdminToken = crand.Text()
	}
	if o.Rand == nil {
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 22))
		var mu sync.Mutex
		o.Rand = func() float64 { mu.Lock(); defer mu.Unlock(); return r.Float64() }
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
}

// TakeoverResult is one run of the take-over benchmark.
type TakeoverResult struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	// ReceivingCores is how many cores node B could use: 1 when pinned,
	// else the machine's.
	ReceivingCores int            `json:"receiving_cores"`
	Settings       map[string]any `json:"settings"`
	Steps          []TakeoverStep `json:"steps"`
	// TakeoverUs is the median CPU µs per take-over over the steps that
	// moved every client and lost nothing; PerCore is 1e6 over it.
	TakeoverUs float64 `json:"takeover_cpu_us"`
	PerCore    float64 `json:"takeovers_per_s_per_core"`
	// FreshUs and FreshPerCore are the same for fresh handshakes.
	FreshUs      float64 `json:"fresh_cpu_us"`
	FreshPerCore float64 `json:"fresh_per_s_per_core"`
	// Budget is ReconnectBudget for one receiving node of one core at
	// TakeoverShare: the plan's default drain.max_rate rests on it.
	Budget float64 `json:"budget_one_core"`
}

// TakeoverStep is one release rate, in one mode: "takeover" (clients
// moved from A by its drain) or "fresh" (new clients handshaking with B).
type TakeoverStep struct {
	Mode string `json:"mode"`
	// Rate is the release (or arrival) rate asked, per second; 0 is all
	// at once.
	Rate    float64 `json:"rate"`
	Clients int     `json:"clients"`
	// Done is how many clients arrived on B (taken over, or handshaken
	// and subscribed) within the step.
	Done int `json:"done"`
	// Rehandshakes counts moved clients that B did not take over (they
	// handshook anew): a take-over that failed.
	Rehandshakes int `json:"rehandshakes,omitempty"`
	// Restored is B's wsfleet_sessions_restored_total{outcome="ok"} over
	// the step.
	Restored float64 `json:"restored,omitempty"`
	// Seconds is from the first release (or dial) to the last arrival;
	// PerSec is Done over it.
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_s"`
	// CPUPercent is B's CPU over the window (from the first release or
	// dial to a settle time after the last arrival), in percent of one
	// core; CoreBusy how busy its core was in all (whoever used it).
	CPUPercent float64 `json:"cpu_pct"`
	CoreBusy   float64 `json:"core_busy_pct"`
	// BaseCPU is B's CPU before the first arrival and FullCPU after the
	// last (percent of a core): what cpuPerOp takes out.
	BaseCPU float64 `json:"base_cpu_pct"`
	FullCPU float64 `json:"full_cpu_pct"`
	// CPUUs is B's CPU µs per arrival, net of its baseline and of the
	// arrived clients' deliveries (cpuPerOp); PerCore is 1e6 over it.
	CPUUs   float64 `json:"cpu_us_per_op"`
	PerCore float64 `json:"per_s_per_core"`
	// Gap quantiles, ms: for a take-over from the client losing A to
	// being up on B; for a fresh client from its dial to its
	// subscription's acknowledgement.
	GapP50Ms float64 `json:"gap_p50_ms"`
	GapP99Ms float64 `json:"gap_p99_ms"`
	GapMaxMs float64 `json:"gap_max_ms"`
	// Published is how many messages the step published (PublishFailed
	// of them in requests that failed, which the node may not have
	// published); Lost how many of the others a moved client never
	// received (must be 0); InGap how many it
	// received that were published while it was between nodes (replayed
	// by B); Duplicates what the client dropped as seen.
	Published     int64 `json:"published,omitempty"`
	PublishFailed int64 `json:"publish_failed,omitempty"`
	// PublishError is the last failed publish request's error.
	PublishError string `json:"publish_error,omitempty"`
	Lost         int64  `json:"lost"`
	InGap        int64  `json:"in_gap,omitempty"`
	Duplicates   int64  `json:"duplicates,omitempty"`
	// MovedAgain counts clients that lost their node more than once in
	// the step (after the move, B closed them too).
	MovedAgain int `json:"moved_again,omitempty"`
	// GenCPU is this process's CPU over the window (percent of a core).
	GenCPU float64 `json:"generator_cpu_pct"`
	Load1  float64 `json:"load1"`
	Error  string  `json:"error,omitempty"`
}

// ok reports whether a step counts toward the per-core figure: every
// client arrived (a moved one as a take-over, which B counted as restored)
// and nothing was lost.
func (s *TakeoverStep) ok() bool {
	if s.Mode == "takeover" && s.Restored != float64(s.Done) {
		return false
	}
	return s.Error == "" && s.Done == s.Clients && s.Rehandshakes == 0 && s.Lost == 0 && s.PublishFailed == 0 && s.CPUUs > 0
}

// RunTakeover runs every rate, take-over then fresh, each on a fresh pair
// of nodes, and returns the steps with the per-core figures.
func RunTakeover(ctx context.Context, o TakeoverOptions) (*TakeoverResult, error) {
	o.defaults()
	if o.Binary == "" || o.NATSServer == "" {
		return nil, errors.New("bench takeover: the wsfleet and nats-server binaries are required")
	}
	res := &TakeoverResult{
		Started: time.Now().UTC(),
		Machine: Machine{CPUs: cpuCount(), CPUModel: cpuModel(), ServerCPU: o.ServerCPU},
		Settings: map[string]any{"clients": o.Clients, "channels": o.Channels, "msg_rate": o.MsgRate,
			"rates": o.Rates, "settle_s": o.Settle.Seconds(), "fresh": !o.NoFresh},
	}
	if _, err := exec.LookPath("taskset"); err != nil && o.ServerCPU >= 0 {
		fmt.Fprintf(o.Progress, "takeover: no taskset: node B runs unpinned, on all %d cores\n", res.Machine.CPUs)
		o.ServerCPU = -1
		res.Machine.ServerCPU = -1
	}
	res.ReceivingCores = res.Machine.CPUs
	if o.ServerCPU >= 0 {
		res.ReceivingCores = 1
	}
	dir, err := os.MkdirTemp("", "wsfleet-bench-takeover-")
	if err != nil {
		return res, fmt.Errorf("bench takeover: %w", err)
	}
	defer os.RemoveAll(dir)
	// startNATSServer picks a free port and then starts the server on it:
	// on a busy machine another process may take the port in between, so
	// it has three tries.
	var (
		ns      *exec.Cmd
		natsURL string
	)
	for try := 0; try < 3; try++ {
		if ns, natsURL, err = startNATSServer(ctx, o.NATSServer, dir, o.Stderr); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return res, fmt.Errorf("bench takeover: %w", err)
	}
	defer func() { _ = ns.Process.Kill(); _ = ns.Wait() }()
	fmt.Fprintf(o.Progress, "takeover: nats-server %s at %s; node B on core %s of %d\n", o.NATSServer, natsURL, coreName(o.ServerCPU), res.Machine.CPUs)
	for i, rate := range o.Rates {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		r := &takeoverRun{o: &o, natsURL: natsURL, rate: rate, prefix: fmt.Sprintf("/bench/takeover/%d", i), d: newDialers(o.SourceAddrs)}
		steps, err := r.run(ctx)
		res.Steps = append(res.Steps, steps...)
		if err != nil {
			return res, fmt.Errorf("bench takeover at %s: %w", rateName(rate), err)
		}
	}
	res.summarize()
	return res, nil
}

// summarize sets the per-core figures from the steps.
func (r *TakeoverResult) summarize() {
	med := func(mode string) float64 {
		var v []float64
		for _, s := range r.Steps {
			if s.Mode == mode && s.ok() {
				v = append(v, s.CPUUs)
			}
		}
		return median(v)
	}
	r.TakeoverUs, r.FreshUs = med("takeover"), med("fresh")
	r.PerCore, r.FreshPerCore = perCore(r.TakeoverUs), perCore(r.FreshUs)
	r.Budget = ReconnectBudget(r.PerCore, 1, 1, TakeoverShare)
}

// median of v (sorted in place); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func coreName(cpu int) string {
	if cpu < 0 {
		return "unpinned"
	}
	return strconv.Itoa(cpu)
}

func rateName(rate float64) string {
	if rate <= 0 {
		return "all at once"
	}
	return strconv.FormatFloat(rate, 'f', 0, 64) + "/s"
}

// takeoverRun is one rate: its nodes, clients and publisher.
type takeoverRun struct {
	o       *TakeoverOptions
	natsURL string
	rate    float64
	prefix  string
	d       *dialers
	lb      balancer
	a, b    *process
}

// balancer sends every new connection to its current target, as a load
// balancer that has taken the draining node out sends clients elsewhere.
type balancer struct {
	target atomic.Pointer[string]
	d      *dialers
}

func (l *balancer) set(addr string) { l.target.Store(&addr) }

func (l *balancer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	return l.d.pick().DialContext(ctx, network, *l.target.Load())
}

func (r *takeoverRun) startNode(ctx context.Context, name string, cpu int) (*process, error) {
	return startWsfleet(ctx, wsfleetOptions{Binary: r.o.Binary, AdminToken: r.o.AdminToken, CPU: cpu, Stderr: r.o.Stderr,
		Args: []string{"--nats", r.natsURL, "--node-id", name, "--timeout", "30s"}})
}

func (r *takeoverRun) run(ctx context.Context) ([]TakeoverStep, error) {
	var err error
	if r.a, err = r.startNode(ctx, "bench-a", -1); err != nil {
		return nil, err
	}
	defer r.a.kill()
	if r.b, err = r.startNode(ctx, "bench-b", r.o.ServerCPU); err != nil {
		return nil, err
	}
	defer r.b.kill()
	r.lb.d = r.d
	var steps []TakeoverStep
	if !r.o.NoFresh {
		s, err := r.fresh(ctx)
		if err != nil {
			return steps, err
		}
		steps = append(steps, s)
	}
	s, err := r.takeover(ctx)
	if err != nil {
		return steps, err
	}
	return append(steps, s), nil
}

// tkClient is one benchmark client and what it saw.
type tkClient struct {
	c       *client.Client
	channel int

	mu       sync.Mutex
	seen     seqSet
	down     time.Time // when it last lost its node; zero while up
	upAt     time.Time // when it came back after its first loss
	gap      time.Duration
	moved    bool
	rehand   bool
	inGap    int64
	ups      int // up again after a loss, every time
	onMoved  func()
	dialedAt time.Time
}

// onState records the first move: down on A, up again (on B).
func (t *tkClient) onState(s client.State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !s.Up {
		if t.down.IsZero() {
			t.down = s.At
		}
		return
	}
	if t.down.IsZero() {
		return
	}
	t.ups++
	if !t.moved {
		t.moved, t.upAt, t.gap = true, s.At, s.At.Sub(t.down)
		t.rehand = s.Rehandshake
		if t.onMoved != nil {
			t.onMoved()
		}
	}
	t.down = time.Time{}
}

// deliver records a message's number, and whether it was published while
// the client was between nodes.
func (t *tkClient) deliver(d client.Delivery) {
	var m struct {
		N uint64 `json:"n"`
		T int64  `json:"t"`
	}
	if json.Unmarshal(d.Data, &m) != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen.add(m.N)
	if !t.down.IsZero() || (t.moved && m.T < t.upAt.UnixNano() && m.T >= t.upAt.Add(-t.gap).UnixNano()) {
		t.inGap++
	}
}

// newClient dials a client through the balancer and subscribes it.
func (r *takeoverRun) newClient(ctx context.Context, hc *http.Client, prefix string, channel int) (*tkClient, error) {
	t := &tkClient{channel: channel, dialedAt: time.Now()}
	c, err := client.Dial(ctx, client.Config{URL: "http://wsfleet-bench-lb/bayeux", HTTPClient: hc,
		// The client's own backoff is kept short (up to 20 ms before the
		// first retry) so that the gap measures the nodes, not the
		// client's politeness.
		RetryMin: 20 * time.Millisecond, RetryMax: time.Second, Rand: r.o.Rand, OnState: t.onState})
	if err != nil {
		return nil, err
	}
	t.c = c
	if err := c.Subscribe(ctx, channelName(prefix, channel), t.deliver); err != nil {
		c.Close()
		return nil, err
	}
	t.mu.Lock()
	t.upAt = time.Now()
	t.mu.Unlock()
	return t, nil
}

// channelName is the i-th channel under prefix.
func channelName(prefix string, i int) string { return prefix + "/c" + strconv.Itoa(i) }

func (r *takeoverRun) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: r.lb.dial, MaxIdleConnsPerHost: 4}}
}

// openClients opens n clients, subscribed to prefix's channels, at rate
// per second (0: all at once), concurrency at a time, and returns them in
// order (nil where one failed) with the first error.
func (r *takeoverRun) openClients(ctx context.Context, prefix string, n int, rate float64, concurrency int) ([]*tkClient, error) {
	hc := r.httpClient()
	out := make([]*tkClient, n)
	var (
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	paced := func(i int) bool {
		if rate > 0 {
			settle(ctx, time.Until(start.Add(time.Duration(float64(i)/rate*float64(time.Second)))))
		}
		return ctx.Err() == nil
	}
	forEach(n, concurrency, paced, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		t, err := r.newClient(cctx, hc, prefix, i%r.o.Channels)
		if err != nil {
			mu.Lock()
			if first == nil {
				first = fmt.Errorf("client %d: %w", i, err)
			}
			mu.Unlock()
			return
		}
		out[i] = t
	})
	return out, first
}

// closeClients disconnects the clients (the node forgets them at once).
func closeClients(cs []*tkClient) {
	forEach(len(cs), 64, nil, func(i int) {
		if cs[i] == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cs[i].c.Disconnect(ctx)
	})
}

// forEach runs f(0) … f(n-1), at most limit at a time, and waits for them;
// before, when set, runs ahead of starting each i and ends the loop when
// it returns false.
func forEach(n, limit int, before func(i int) bool, f func(i int)) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, max(limit, 1))
	for i := range n {
		if before != nil && !before(i) {
			break
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			f(i)
		})
	}
	wg.Wait()
}

// cpuRate measures B's CPU seconds per second over the settle time.
func (r *takeoverRun) cpuRate(ctx context.Context) float64 {
	c0, t0 := procCPU(r.b.pid()), time.Now()
	settle(ctx, r.o.Settle)
	return (procCPU(r.b.pid()) - c0) / time.Since(t0).Seconds()
}

// meter is a window's start readings.
type meter struct {
	cpu, gen, core float64
	at             time.Time
}

func (r *takeoverRun) meter() meter {
	return meter{cpu: procCPU(r.b.pid()), gen: selfCPU(), core: coreBusy(r.o.ServerCPU), at: time.Now()}
}

// fresh is the comparison: clients with no session handshake with B at
// the step's rate while messages flow.
func (r *takeoverRun) fresh(ctx context.Context) (TakeoverStep, error) {
	st := TakeoverStep{Mode: "fresh", Rate: r.rate, Clients: r.o.Clients}
	r.lb.set(r.b.Addr)
	prefix := r.prefix + "/fresh"
	pub := r.publisher(prefix)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go pub.run(pctx)
	settle(ctx, r.o.Settle)
	base := r.cpuRate(ctx)
	m0 := r.meter()
	cs, err := r.openClients(ctx, prefix, r.o.Clients, r.rate, max(64, r.o.Clients))
	defer closeClients(cs)
	if err != nil {
		st.Error = err.Error()
	}
	var last time.Time
	var gaps []time.Duration
	for _, t := range cs {
		if t == nil {
			continue
		}
		st.Done++
		// subscribed when Subscribe returned: openClients set it then
		end := t.subscribedAt()
		gaps = append(gaps, end.Sub(t.dialedAt))
		if end.After(last) {
			last = end
		}
	}
	r.finish(ctx, &st, m0, base, last, gaps, cs, func(t *tkClient) time.Time { return t.subscribedAt() })
	stop()
	fmt.Fprintln(r.o.Progress, st.line())
	return st, nil
}

// subscribedAt is when a fresh client's subscription was acknowledged
// (newClient records it in upAt).
func (t *tkClient) subscribedAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.upAt
}

// finish fills a step's rates, CPU and gaps from its window, which ends at
// last (the last arrival); arrived gives each client's arrival.
func (r *takeoverRun) finish(ctx context.Context, st *TakeoverStep, m0 meter, base float64, last time.Time, gaps []time.Duration, cs []*tkClient, arrived func(*tkClient) time.Time) {
	if last.IsZero() || last.Before(m0.at) {
		last = time.Now()
	}
	// The window ends a settle time after the last arrival: what the
	// arrivals leave B to do (the connects that follow a handshake,
	// interest switches, the collection of the burst's garbage) is theirs,
	// and is not then taken for the clients' steady cost below.
	settle(ctx, r.o.Settle)
	m1 := r.meter()
	wall := m1.at.Sub(m0.at).Seconds()
	var clientSeconds float64
	for _, t := range cs {
		if t == nil {
			continue
		}
		if a := arrived(t); !a.IsZero() {
			clientSeconds += m1.at.Sub(a).Seconds()
		}
	}
	full := r.cpuRate(ctx)
	var perClient float64
	if st.Done > 0 {
		perClient = max(full-base, 0) / float64(st.Done)
	}
	st.Seconds = last.Sub(m0.at).Seconds()
	if st.Seconds > 0 {
		st.PerSec = float64(st.Done) / st.Seconds
	}
	st.BaseCPU, st.FullCPU = 100*base, 100*full
	st.CPUPercent = 100 * (m1.cpu - m0.cpu) / wall
	st.CoreBusy = 100 * (m1.core - m0.core) / wall
	st.GenCPU = 100 * (m1.gen - m0.gen) / wall
	st.CPUUs = cpuPerOp(cpuWindow{CPU: m1.cpu - m0.cpu, Seconds: wall, Base: base, PerClient: perClient, ClientSeconds: clientSeconds, Ops: st.Done})
	st.PerCore = perCore(st.CPUUs)
	g := gapQuantiles(gaps)
	st.GapP50Ms, st.GapP99Ms, st.GapMaxMs = g.P50, g.P99, g.Max
	st.Load1 = load1()
}

// takeover is the measured move: clients on A, traffic flowing, A
// drained at the step's rate, the clients reconnecting to B.
func (r *takeoverRun) takeover(ctx context.Context) (TakeoverStep, error) {
	st := TakeoverStep{Mode: "takeover", Rate: r.rate, Clients: r.o.Clients}
	r.lb.set(r.a.Addr)
	prefix := r.prefix + "/moved"
	cs, err := r.openClients(ctx, prefix, r.o.Clients, 0, 64)
	if err != nil {
		closeClients(cs)
		return st, fmt.Errorf("open clients on A: %w", err)
	}
	defer func() {
		for _, t := range cs {
			if t != nil {
				t.c.Close()
			}
		}
	}()
	var moved atomic.Int64
	for _, t := range cs {
		t.mu.Lock()
		t.upAt, t.onMoved = time.Time{}, func() { moved.Add(1) }
		t.mu.Unlock()
	}
	pub := r.publisher(prefix)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.run(pctx) }()
	settle(ctx, r.o.Settle)
	base := r.cpuRate(ctx)
	restored0, err := counterOr0(ctx, r.b.Addr, restoredOK)
	if err != nil {
		return st, fmt.Errorf("node B: %w", err)
	}

	// A leaves the load balancer, then drains.
	r.lb.set(r.b.Addr)
	m0 := r.meter()
	req := nodeapi.DrainRequest{Window: nodeapi.Dur(0), MaxRate: r.rate, Deadline: nodeapi.Dur(5 * time.Minute)}
	if r.rate <= 0 {
		req.MaxRate = nodeapi.MaxDrainRate
	}
	nc := &nodeapi.Client{Token: r.o.AdminToken}
	if err := nc.Drain(ctx, "http://"+r.a.Addr, req); err != nil {
		return st, fmt.Errorf("drain A: %w", err)
	}
	deadline := time.Now().Add(r.o.MoveTimeout)
	if r.rate > 0 {
		deadline = deadline.Add(time.Duration(float64(r.o.Clients) / r.rate * float64(time.Second)))
	}
	for moved.Load() < int64(len(cs)) && time.Now().Before(deadline) && ctx.Err() == nil {
		settle(ctx, 5*time.Millisecond)
	}
	var last time.Time
	var gaps []time.Duration
	for _, t := range cs {
		t.mu.Lock()
		if t.moved {
			st.Done++
			gaps = append(gaps, t.gap)
			if t.rehand {
				st.Rehandshakes++
			}
			if t.upAt.After(last) {
				last = t.upAt
			}
		}
		t.mu.Unlock()
	}
	if st.Done < st.Clients {
		st.Error = fmt.Sprintf("%d of %d clients came back within the step", st.Done, st.Clients)
	}
	r.finish(ctx, &st, m0, base, last, gaps, cs, func(t *tkClient) time.Time {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.upAt
	})
	restored1, err := counterOr0(ctx, r.b.Addr, restoredOK)
	if err != nil {
		return st, fmt.Errorf("node B: %w", err)
	}
	st.Restored = restored1 - restored0

	// Stop publishing, let the last messages arrive, count the lost.
	stop()
	<-pubDone
	counts, unsent := pub.published()
	for _, n := range counts {
		st.Published += int64(n)
	}
	st.PublishFailed = pub.failed.Load()
	st.PublishError = pub.lastError()
	for until := time.Now().Add(15 * time.Second); ; {
		st.Lost = 0
		for _, t := range cs {
			t.mu.Lock()
			st.Lost += int64(t.seen.missing(counts[t.channel], &unsent[t.channel]))
			t.mu.Unlock()
		}
		if st.Lost == 0 || time.Now().After(until) || ctx.Err() != nil {
			break
		}
		settle(ctx, 50*time.Millisecond)
	}
	shown := 0
	for i, t := range cs {
		cst := t.c.Stats()
		t.mu.Lock()
		st.InGap += t.inGap
		if t.ups > 1 {
			st.MovedAgain++
		}
		if miss := t.seen.missing(counts[t.channel], &unsent[t.channel]); miss > 0 && shown < 3 {
			shown++
			fmt.Fprintf(r.o.Progress, "takeover: client %d (%s) missed %d of %d on channel %d (%v): down %v after the drain began, gap %v, up %d times, re-handshook %v, stats %+v\n",
				i, t.c.ID(), miss, counts[t.channel], t.channel, t.seen.missingList(counts[t.channel], &unsent[t.channel], 10), t.upAt.Add(-t.gap).Sub(m0.at).Round(time.Millisecond),
				t.gap.Round(time.Millisecond), t.ups, t.rehand, cst)
		}
		t.mu.Unlock()
		st.Duplicates += cst.Duplicates
	}
	fmt.Fprintln(r.o.Progress, st.line())
	return st, nil
}

// restoredOK is the counter of sessions B took over.
const restoredOK = `wsfleet_sessions_restored_total{outcome="ok"}`

// counterOr0 reads one counter from a node's /metrics; a labelled counter
// that has not counted yet has no line, which is 0.
func counterOr0(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, nil
}

func (s TakeoverStep) line() string {
	out := fmt.Sprintf("takeover %-8s %-11s %d/%d in %.2fs = %.0f/s, B CPU %.0f%% (core %.0f%%) %.0f µs each = %.0f/s per core, gap p50 %.0f ms p99 %.0f ms max %.0f ms, gen %.0f%%",
		s.Mode, rateName(s.Rate), s.Done, s.Clients, s.Seconds, s.PerSec, s.CPUPercent, s.CoreBusy, s.CPUUs, s.PerCore, s.GapP50Ms, s.GapP99Ms, s.GapMaxMs, s.GenCPU)
	if s.Mode == "takeover" {
		out += fmt.Sprintf(", restored %.0f, rehandshakes %d, moved again %d, lost %d of %d published (in gap %d, duplicates %d)", s.Restored, s.Rehandshakes, s.MovedAgain, s.Lost, s.Published, s.InGap, s.Duplicates)
		if s.PublishFailed > 0 {
			out += fmt.Sprintf(", %d in failed publish requests (%s)", s.PublishFailed, s.PublishError)
		}
	}
	if s.Error != "" {
		out += " ERROR " + s.Error
	}
	return out
}

// numberedPublisher posts to B's /publish at MsgRate, round robin over
// the step's channels, numbering each channel's messages 1, 2, … so that
// a client can tell which it missed. The requests are the fan-out
// publisher's (its Bayeux wire, its post).
type numberedPublisher struct {
	pub      *publisher
	channels []string
	rate     float64
	failed   atomic.Int64

	mu      sync.Mutex
	next    int // the channel of the next message, round robin
	counts  []uint64
	unsent  []seqSet // per channel, the numbers of failed requests
	lastErr error
}

func (r *takeoverRun) publisher(prefix string) *numberedPublisher {
	chs := make([]string, r.o.Channels)
	for i := range chs {
		chs[i] = channelName(prefix, i)
	}
	w := wireFor("wsfleet")
	pub := &publisher{w: w, url: "http://" + r.b.Addr + w.publishPath(), token: r.o.AdminToken, hc: &http.Client{Timeout: 10 * time.Second}}
	return &numberedPublisher{pub: pub, channels: chs, rate: r.o.MsgRate, counts: make([]uint64, len(chs)), unsent: make([]seqSet, len(chs))}
}

// published returns each channel's count of numbers used and the numbers
// whose request failed.
func (p *numberedPublisher) published() ([]uint64, []seqSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.counts...), append([]seqSet(nil), p.unsent...)
}

// lastError is the last failed request's error, "" if none failed.
func (p *numberedPublisher) lastError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastErr == nil {
		return ""
	}
	return p.lastErr.Error()
}

// run publishes until ctx ends, every 20 ms what the rate owes by then.
// A failed request's numbers are kept apart: the node may have published
// none, some or all of them, so a client that lacks one has not lost it;
// the step reports the failures.
func (p *numberedPublisher) run(ctx context.Context) {
	begin, sent := time.Now(), int64(0)
	for ctx.Err() == nil {
		settle(ctx, 20*time.Millisecond)
		owed := int64(p.rate*time.Since(begin).Seconds()) - sent
		// at most maxBatch a request: the node refuses a longer batch
		// (400), which a publisher catching up after a stall would send
		for owed > 0 && ctx.Err() == nil {
			k := min(owed, maxBatch)
			owed -= k
			sent += k
			p.send(int(k))
		}
	}
}

// maxBatch is the most messages one publish request carries: the node's
// default --max-batch.
const maxBatch = 100

// send posts k messages, the next number of each channel in turn.
func (p *numberedPublisher) send(k int) {
	type num struct {
		ch int
		n  uint64
	}
	nums := make([]num, k)
	var body bytes.Buffer
	stamp := time.Now().UnixNano()
	p.mu.Lock()
	for i := range nums {
		ch := p.next % len(p.channels)
		p.next++
		p.counts[ch]++
		nums[i] = num{ch, p.counts[ch]}
	}
	p.mu.Unlock()
	w := p.pub.w
	w.beginBatch(&body)
	for i, x := range nums {
		if i > 0 {
			body.WriteByte(',')
		}
		w.item(&body, p.channels[x.ch], fmt.Sprintf(`{"n":%d,"t":%d,"text":%q}`, x.n, stamp, chatText))
	}
	w.endBatch(&body)
	// not the step's ctx: a request cut by the step's end would leave
	// numbers counted but never sent
	err := p.pub.post(context.Background(), body.Bytes())
	if err == nil {
		return
	}
	p.failed.Add(int64(k))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range nums {
		p.unsent[x.ch].add(x.n)
	}
	p.lastErr = err
}

// WriteTakeoverTable prints the steps and the figures derived from them.
func WriteTakeoverTable(w io.Writer, r *TakeoverResult) {
	fmt.Fprintf(w, "take-over benchmark: %v clients, %v channels, %v messages/s; node B on %d core(s) (%s)\n",
		r.Settings["clients"], r.Settings["channels"], r.Settings["msg_rate"], r.ReceivingCores, r.Machine.CPUModel)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\trelease\tdone\tper s\tB CPU\tits core\tbefore/after\tµs each\tper s per core\tgap p50 ms\tp99 ms\tmax ms\tlost\tin gap\tgen CPU\tload\t")
	for _, s := range r.Steps {
		lost := "-"
		if s.Mode == "takeover" {
			lost = strconv.FormatInt(s.Lost, 10)
			if s.PublishFailed > 0 {
				lost += fmt.Sprintf(" (%d unsent)", s.PublishFailed)
			}
		}
		core := "-"
		if r.Machine.ServerCPU >= 0 {
			core = fmt.Sprintf("%.0f%%", s.CoreBusy)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%.0f\t%.0f%%\t%s\t%.0f/%.0f%%\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%d\t%.0f%%\t%.1f\t\n",
			s.Mode, rateName(s.Rate), s.Done, s.Clients, s.PerSec, s.CPUPercent, core, s.BaseCPU, s.FullCPU, s.CPUUs, s.PerCore, s.GapP50Ms, s.GapP99Ms, s.GapMaxMs, lost, s.InGap, s.GenCPU, s.Load1)
	}
	tw.Flush()
	fmt.Fprintf(w, "take-overs/s per core: %.0f (median %.0f µs each); fresh handshakes/s per core: %.0f (%.0f µs each)\n",
		r.PerCore, r.TakeoverUs, r.FreshPerCore, r.FreshUs)
	fmt.Fprintf(w, "reconnect budget for one receiving one-core node at %.0f%% of its core: %.0f/s (fleet-wide: that × receiving nodes × their cores)\n",
		100*TakeoverShare, r.Budget)
}

// WriteTakeoverJSON writes r as indented JSON.
func WriteTakeoverJSON(w io.Writer, r *TakeoverResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// FindNATSServer returns the nats-server to run: WSFLEET_NATS_SERVER,
// else one on PATH, else Debian's package's path; an error says what to
// install.
func FindNATSServer() (string, error) {
	if p := os.Getenv("WSFLEET_NATS_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nats-server"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("no nats-server: run scripts/test-deps.sh (Debian's nats-server) or scripts/build-nats-server.sh, or pass --nats-server")
}

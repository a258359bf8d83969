package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The soak holds a node's worth of sessions for a long time with churn and
// fan-out, and watches the node's memory and goroutines for a leak: a real
// `wsfleet serve` on a real nats-server (JetStream on disk, as nodes run in
// production), the generator in this process (10,000 websockets need their
// own process under a limit of 20,000 open files), and a sample of the
// node every few seconds. Its verdict is a rule over the samples (flat.go),
// never a timed assertion.

// SoakOptions configure RunSoak. Zero fields take the defaults of issue
// 22's soak: 10,000 sessions for 30 minutes.
type SoakOptions struct {
	// Binary is the wsfleet command the node is run from; NATSServer the
	// nats-server binary the node joins.
	Binary, NATSServer string
	// ServerCPU pins the node to a core with taskset; -1 for none.
	ServerCPU int
	// Sessions is how many sessions are held (default 10,000), over
	// Channels channels (default 100), one subscription each.
	Sessions, Channels int
	// Duration is how long the sessions are held after they are all open
	// (default 30m); Interval how often the node is sampled (default 5s).
	Duration, Interval time.Duration
	// PublishRate is messages published per second, round robin over the
	// channels (default 20: with the defaults, 2,000 deliveries/s).
	PublishRate float64
	// ChurnRate is sessions replaced per second (default 10), in turn: a
	// client that says /meta/disconnect and a new one, a client that drops
	// its socket without a word and a new one, and a client that drops its
	// socket and reconnects with its old clientId.
	ChurnRate float64
	// ReconnectJitter bounds the random wait before a reconnect with the
	// old clientId (default 250ms, as the Go client's first retry;
	// negative: none, the reconnect follows the close at once).
	ReconnectJitter time.Duration
	// FlatLimitPct is the flatness bound (default 5): see Flatness.
	FlatLimitPct float64
	// Grace is how long the last round of messages (one per channel) has
	// to arrive before every session is checked for it (default 10s).
	Grace       time.Duration
	SourceAddrs int // loopback source addresses (default 8)
	AdminToken  string
	// Now and Rand are the clock and the randomness (which session churn
	// picks); default the wall clock and a random seed.
	Now  func() time.Time
	Rand *rand.Rand
	// Progress receives a line per sample; Stderr the servers' output.
	Progress, Stderr io.Writer
}

func (o *SoakOptions) defaults() {
	if o.Sessions <= 0 {
		o.Sessions = 10000
	}
	if o.Channels <= 0 {
		o.Channels = 100
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.PublishRate <= 0 {
		o.PublishRate = 20
	}
	if o.ChurnRate <= 0 {
		o.ChurnRate = 10
	}
	if o.ReconnectJitter == 0 {
		o.ReconnectJitter = 250 * time.Millisecond
	}
	if o.FlatLimitPct <= 0 {
		o.FlatLimitPct = 5
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.SourceAddrs <= 0 {
		o.SourceAddrs = 8
	}
	if o.AdminToken == "" {
		o.AdminToken = "soak-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// SoakResult is one soak, as written to JSON.
type SoakResult struct {
	Started  time.Time      `json:"started"`
	Machine  Machine        `json:"machine"`
	Settings map[string]any `json:"settings"`
	// Load1 is the machine's one-minute load at the start and the end:
	// the figures of a loaded machine are not a quiet one's.
	Load1Start float64 `json:"load1_start"`
	Load1End   float64 `json:"load1_end"`
	// RampSeconds is how long opening the sessions took; the hold starts
	// there (HoldStart, seconds since the start, as every sample's T).
	RampSeconds float64      `json:"ramp_s"`
	HoldStart   float64      `json:"hold_start_s"`
	Samples     []SoakSample `json:"samples"`
	// Flat is the flatness of RSS and goroutines (Flatness).
	Flat []FlatCheck `json:"flat"`
	// Totals are the run's counts; Errors names every non-zero error
	// count (empty: none).
	Totals SoakTotals `json:"totals"`
	Errors []string   `json:"errors"`
	// Pass is every Flat check flat and no error; Verdict says it in words.
	Pass    bool   `json:"pass"`
	Verdict string `json:"verdict"`
}

// SoakSample is the node and the generator at one moment.
type SoakSample struct {
	T     float64 `json:"t_s"` // seconds since the start
	Phase string  `json:"phase"`
	// The node: resident memory (/proc), goroutines (its /metrics),
	// open file descriptors (/proc), CPU % of a core since the last
	// sample, sessions and connections it holds, messages it handed to
	// clients, and its error counters summed (nodeErrorMetrics).
	RSSKiB      int64   `json:"rss_kib"`
	Goroutines  float64 `json:"goroutines"`
	FDs         int     `json:"fds"`
	CPUPct      float64 `json:"cpu_pct"`
	Sessions    float64 `json:"sessions"`
	Connections float64 `json:"connections"`
	MessagesOut float64 `json:"messages_out"`
	NodeErrors  float64 `json:"node_errors"`
	// NATSRSSKiB is the nats-server's resident memory.
	NATSRSSKiB int64 `json:"nats_rss_kib"`
	// The generator: sessions open, deliveries, replaced and reconnected
	// sessions, failures, lost and duplicated messages so far.
	Live        int64 `json:"gen_live"`
	Delivered   int64 `json:"gen_delivered"`
	Churned     int64 `json:"gen_churned"`
	Reconnected int64 `json:"gen_reconnected"`
	Failures    int64 `json:"gen_failures"`
	Lost        int64 `json:"lost"`
	Duplicated  int64 `json:"duplicated"`
	// GenRSSKiB and GenGoroutines are the generator's own (not judged:
	// they tell a generator-side leak from a node's).
	GenRSSKiB     int64 `json:"gen_rss_kib"`
	GenGoroutines int   `json:"gen_goroutines"`
	// MetricsErr is why the node's /metrics could not be read, if so.
	MetricsErr string `json:"metrics_error,omitempty"`
}

// SoakTotals are a soak's counts at its end.
type SoakTotals struct {
	Published   int64 `json:"published"`
	PublishFail int64 `json:"publish_failed"`
	Delivered   int64 `json:"delivered"`
	Churned     int64 `json:"churned"`
	Left        int64 `json:"left_with_disconnect"`
	Abandoned   int64 `json:"abandoned"`
	Reconnected int64 `json:"reconnected_with_old_client_id"`
	// OpenFailed counts handshakes and subscribes that failed,
	// ReconnectFailed reconnects the node refused or that failed, Closed
	// sockets closed by the node or the network, not by the generator.
	OpenFailed      int64 `json:"open_failed"`
	ReconnectFailed int64 `json:"reconnect_failed"`
	Closed          int64 `json:"closed_unexpectedly"`
	Lost            int64 `json:"lost"`
	Duplicated      int64 `json:"duplicated"`
	// TailMissing counts sessions that did not get the last message of
	// their channel within the grace period.
	TailMissing int64 `json:"tail_missing"`
	// NodeErrors are the node's error counters at the end, by metric.
	NodeErrors map[string]float64 `json:"node_errors"`
	// FirstFailure is the first failure's text, for the report.
	FirstFailure string `json:"first_failure,omitempty"`
}

// soakData is what the publisher puts in each message: the channel's
// index, its sequence number there, and the send time.
type soakData struct {
	C int   `json:"c"`
	S int64 `json:"s"`
}

// soakClient is one held session: its channel, its clientId, the socket
// it reads now, and how far it got (the last sequence number of its
// channel and the broker's ext.seq it saw).
//
// Its connects carry ids, and only the answer to the connect outstanding
// renews it: when a socket is replaced before the node noticed the old
// one close, the node answers the old socket's held connect on the new
// one, and a client that renewed on every answer would then keep two
// connects in flight, each answered at once by the next, forever.
type soakClient struct {
	slot int
	ch   int
	id   []byte
	g    *genConn
	done chan struct{}
	// leaving is set when the generator ends the socket; wmu orders it
	// with the reader's renewed connects, so that none follows a
	// /meta/disconnect (the node would answer it 401, an error of the
	// generator's making).
	wmu     sync.Mutex
	leaving atomic.Bool
	lastS   atomic.Int64 // -1: nothing yet
	lastSeq atomic.Uint64
	// connects numbers the connects; outstanding is the id of the one
	// the node holds ("": the first, which subscribe sends without one).
	// Only the reader touches them while it runs.
	connects    int
	outstanding string
}

// nextConnect returns a connect for c with a new id (and ext.since when
// since > 0), which becomes the outstanding one.
func (c *soakClient) nextConnect(since uint64) []byte {
	c.connects++
	c.outstanding = "k" + strconv.Itoa(c.connects)
	msg := `[{"channel":"/meta/connect","clientId":"` + string(c.id) + `","connectionType":"websocket","id":"` + c.outstanding + `"`
	if since > 0 {
		msg += `,"ext":{"since":` + strconv.FormatUint(since, 10) + `}`
	}
	return []byte(msg + `}]`)
}

// soakRun is one soak's state.
type soakRun struct {
	o       *SoakOptions
	ctx     context.Context
	addr    string
	d       *dialers
	channel []string

	slotsMu sync.Mutex
	slots   []*soakClient
	busy    []atomic.Bool // a churn operation owns the slot

	delivered, published, publishFail                 atomic.Int64
	churned, left, abandoned, reconnected             atomic.Int64
	openFailed, reconnectFailed, closed, lost, dupped atomic.Int64
	firstFailure                                      atomic.Pointer[string]
}

// fail counts a failure in n and keeps the first one's text.
func (r *soakRun) fail(n *atomic.Int64, format string, args ...any) {
	n.Add(1)
	msg := fmt.Sprintf(format, args...)
	r.firstFailure.CompareAndSwap(nil, &msg)
}

// failures is every generator failure so far.
func (r *soakRun) failures() int64 {
	return r.openFailed.Load() + r.reconnectFailed.Load() + r.closed.Load() + r.publishFail.Load()
}

// RunSoak starts a nats-server and a node on it, holds o.Sessions sessions
// for o.Duration with churn and fan-out, samples the node every
// o.Interval, and judges the run. The result is returned with whatever
// was measured when err is not nil.
func RunSoak(ctx context.Context, o SoakOptions) (*SoakResult, error) {
	o.defaults()
	if o.Binary == "" || o.NATSServer == "" {
		return nil, errors.New("soak: the wsfleet and nats-server binaries are required")
	}
	res := &SoakResult{
		Started: o.Now().UTC(),
		Machine: Machine{CPUs: cpuCount(), CPUModel: cpuModel(), ServerCPU: o.ServerCPU},
		Settings: map[string]any{
			"sessions": o.Sessions, "channels": o.Channels, "duration_s": o.Duration.Seconds(),
			"interval_s": o.Interval.Seconds(), "publish_per_s": o.PublishRate, "churn_per_s": o.ChurnRate,
			"flat_limit_pct": o.FlatLimitPct, "grace_s": o.Grace.Seconds(), "reconnect_jitter_s": max(o.ReconnectJitter, 0).Seconds(),
			"deliveries_per_s": o.PublishRate * float64(o.Sessions) / float64(o.Channels),
		},
		Load1Start: load1(),
	}
	dir, err := os.MkdirTemp("", "wsfleet-soak")
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer os.RemoveAll(dir)
	nats, url, err := startNATSServer(ctx, o.NATSServer, dir, o.Stderr)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer func() { _ = nats.Process.Kill(); _ = nats.Wait() }()
	node, err := startWsfleet(ctx, wsfleetOptions{Binary: o.Binary, AdminToken: o.AdminToken, CPU: o.ServerCPU,
		Args: []string{"--nats", url, "--node-id", "soak", "--timeout", "30s"}, Stderr: o.Stderr})
	if err != nil {
		return nil, fmt.Errorf("soak: start node: %w", err)
	}
	// Killed, not stopped: a node drains on SIGTERM, which the soak has
	// no use for.
	defer node.kill()

	r := &soakRun{o: &o, ctx: ctx, addr: node.Addr, d: newDialers(o.SourceAddrs),
		channel: channelNames("/soak/", o.Channels),
		slots:   make([]*soakClient, o.Sessions), busy: make([]atomic.Bool, o.Sessions)}
	defer r.closeAll()

	start := o.Now()
	smp := newSampler(node, nats.Process.Pid, r, start, o.Now)
	var samplesMu sync.Mutex
	phase := "ramp"
	take := func() {
		s := smp.sample()
		samplesMu.Lock()
		s.Phase = phase
		res.Samples = append(res.Samples, s)
		samplesMu.Unlock()
		fmt.Fprintf(o.Progress, "soak %6.0fs %-5s RSS %7d KiB  goroutines %6.0f  fds %6d  cpu %3.0f%%  sessions %6.0f  live %6d  delivered %9d  churned %6d  failures %d  lost %d  dup %d  node errors %.0f\n",
			s.T, s.Phase, s.RSSKiB, s.Goroutines, s.FDs, s.CPUPct, s.Sessions, s.Live, s.Delivered, s.Churned, s.Failures, s.Lost, s.Duplicated, s.NodeErrors)
	}
	setPhase := func(p string) {
		samplesMu.Lock()
		phase = p
		samplesMu.Unlock()
	}
	sctx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(o.Interval)
		defer tick.Stop()
		for {
			take()
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	finish := func() {
		stopSampling()
		sampling.Wait()
		take() // the last sample, after the grace period
	}

	// Ramp: open every session.
	r.ramp()
	res.RampSeconds = o.Now().Sub(start).Seconds()
	res.HoldStart = res.RampSeconds
	fmt.Fprintf(o.Progress, "soak: %d sessions open in %.0fs (%d failed)\n", r.live(), res.RampSeconds, r.openFailed.Load())
	setPhase("hold")

	// Hold: publish and churn for the duration.
	hctx, stopHold := context.WithTimeout(ctx, o.Duration)
	defer stopHold()
	seqs := make([]int64, o.Channels)
	pub := &publisher{w: bayeuxWire{}, url: "http://" + node.Addr + "/publish", token: o.AdminToken,
		hc: &http.Client{Timeout: 30 * time.Second}}
	var pubDone sync.WaitGroup
	pubDone.Add(1)
	go func() {
		defer pubDone.Done()
		r.publish(hctx, pub, seqs)
	}()
	r.churn(hctx)
	pubDone.Wait()

	// The fence: one more message on every channel, which every session
	// must get; the seconds it is given are not part of the hold.
	setPhase("fence")
	r.publishRound(ctx, pub, seqs)
	settle(ctx, o.Grace)
	finish()
	res.Load1End = load1()

	t := &res.Totals
	t.TailMissing = r.checkTail(seqs)
	t.Published, t.PublishFail, t.Delivered = r.published.Load(), r.publishFail.Load(), r.delivered.Load()
	t.Churned, t.Left, t.Abandoned, t.Reconnected = r.churned.Load(), r.left.Load(), r.abandoned.Load(), r.reconnected.Load()
	t.OpenFailed, t.ReconnectFailed, t.Closed = r.openFailed.Load(), r.reconnectFailed.Load(), r.closed.Load()
	t.Lost, t.Duplicated = r.lost.Load(), r.dupped.Load()
	if f := r.firstFailure.Load(); f != nil {
		t.FirstFailure = *f
	}
	m, merr := smp.metrics()
	if merr != nil {
		res.Errors = append(res.Errors, "read the node's metrics at the end: "+merr.Error())
	}
	t.NodeErrors = nodeErrors(m)
	judgeSoak(res, o.FlatLimitPct)
	return res, ctx.Err()
}

// goroutineFloor is the goroutines' drift that is flat however small
// their mean (FlatCheck.Floor).
const goroutineFloor = 10

// judgeSoak fills res's Flat checks, Errors, Pass and Verdict from its
// samples and totals.
func judgeSoak(res *SoakResult, limitPct float64) {
	var ts, rss, gor []float64
	for _, s := range res.Samples {
		if s.Phase != "hold" {
			continue
		}
		ts = append(ts, s.T)
		rss = append(rss, float64(s.RSSKiB))
		gor = append(gor, s.Goroutines)
	}
	res.Flat = []FlatCheck{Flatness("rss_kib", ts, rss, limitPct, 0), Flatness("goroutines", ts, gor, limitPct, goroutineFloor)}
	t := res.Totals
	count := func(name string, n int64) {
		if n != 0 {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %d", name, n))
		}
	}
	count("publish failed", t.PublishFail)
	count("handshake or subscribe failed", t.OpenFailed)
	count("reconnect with the old clientId failed", t.ReconnectFailed)
	count("socket closed by the node or the network", t.Closed)
	count("messages lost", t.Lost)
	count("messages duplicated", t.Duplicated)
	count("sessions without their channel's last message", t.TailMissing)
	for _, name := range nodeErrorMetrics {
		if v := t.NodeErrors[name]; v != 0 {
			res.Errors = append(res.Errors, fmt.Sprintf("node %s: %.0f", name, v))
		}
	}
	if t.Delivered == 0 {
		res.Errors = append(res.Errors, "nothing delivered")
	}
	flat := true
	for _, f := range res.Flat {
		flat = flat && f.Flat
	}
	res.Pass = flat && len(res.Errors) == 0
	switch {
	case res.Pass:
		res.Verdict = "flat, no error"
	case flat:
		res.Verdict = fmt.Sprintf("flat, but %d kinds of error", len(res.Errors))
	case len(res.Errors) == 0:
		res.Verdict = "NOT flat, no error"
	default:
		res.Verdict = fmt.Sprintf("NOT flat, and %d kinds of error", len(res.Errors))
	}
}

// live counts the sessions open now.
func (r *soakRun) live() int64 {
	var n int64
	for _, c := range r.snapshot() {
		if c != nil {
			n++
		}
	}
	return n
}

// snapshot copies the slots.
func (r *soakRun) snapshot() []*soakClient {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	return append([]*soakClient(nil), r.slots...)
}

func (r *soakRun) set(i int, c *soakClient) {
	r.slotsMu.Lock()
	r.slots[i] = c
	r.slotsMu.Unlock()
}

// clear empties c's slot if c still holds it.
func (r *soakRun) clear(c *soakClient) {
	r.slotsMu.Lock()
	if r.slots[c.slot] == c {
		r.slots[c.slot] = nil
	}
	r.slotsMu.Unlock()
}

func (r *soakRun) get(i int) *soakClient {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	return r.slots[i]
}

// ramp opens a session in every slot, 64 at a time, with the bench's
// openSessions (slot i on channel i mod the channels, as open does).
func (r *soakRun) ramp() {
	conns, err := openSessions(r.ctx, bayeuxWire{}, r.d, r.addr, len(r.slots), r.channel, 64, &genStats{})
	if err != nil && r.ctx.Err() == nil {
		msg := err.Error()
		r.firstFailure.CompareAndSwap(nil, &msg)
	}
	for i, g := range conns {
		if g == nil {
			if r.ctx.Err() == nil {
				r.openFailed.Add(1)
			}
			continue
		}
		r.set(i, r.track(i, g))
	}
}

// open opens a new session for slot i, subscribed to its channel, and
// starts reading it; nil (a failure counted) when it could not.
func (r *soakRun) open(i int) *soakClient {
	ch := i % len(r.channel)
	octx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	failed := func(err error) *soakClient {
		if r.ctx.Err() == nil {
			r.fail(&r.openFailed, "open a session: %v", err)
		}
		return nil
	}
	g, err := handshake(octx, bayeuxWire{}, r.d.pick(), r.addr)
	if err != nil {
		return failed(err)
	}
	if err := g.subscribe(octx, r.channel[ch]); err != nil {
		g.c.close()
		return failed(err)
	}
	return r.track(i, g)
}

// track makes g, a session subscribed to slot i's channel, slot i's
// client, and starts reading it.
func (r *soakRun) track(i int, g *genConn) *soakClient {
	c := &soakClient{slot: i, ch: i % len(r.channel), id: g.id}
	c.lastS.Store(-1)
	r.start(c, g)
	return c
}

// start reads g for c in a goroutine of its own.
func (r *soakRun) start(c *soakClient, g *genConn) {
	c.g, c.done = g, make(chan struct{})
	c.leaving.Store(false)
	go r.read(c, g, c.done)
}

// read reads c's socket until it closes: counts deliveries, checks their
// sequence, renews the connect.
func (r *soakRun) read(c *soakClient, g *genConn, done chan struct{}) {
	defer close(done)
	for {
		b, err := g.read()
		if err != nil {
			if !c.leaving.Load() && r.ctx.Err() == nil {
				r.fail(&r.closed, "session %s: socket closed: %v", c.id, err)
			}
			return
		}
		if !r.frame(c, g, b) {
			// The session is over: its slot is empty until churn
			// picks it and opens a new one.
			c.leaving.Store(true)
			g.c.close()
			r.clear(c)
			return
		}
	}
}

// soakMsg is what the generator reads of a message from the node.
type soakMsg struct {
	Channel    string          `json:"channel"`
	ID         string          `json:"id"`
	Successful *bool           `json:"successful"`
	Error      string          `json:"error"`
	Data       json.RawMessage `json:"data"`
	Ext        struct {
		Seq uint64 `json:"seq"`
	} `json:"ext"`
}

// frame handles one frame of c's socket; false when the session is over
// (the node refused a connect).
func (r *soakRun) frame(c *soakClient, g *genConn, b []byte) bool {
	var msgs []soakMsg
	if err := json.Unmarshal(b, &msgs); err != nil {
		r.fail(&r.closed, "session %s: bad frame: %v: %.200s", c.id, err, b)
		return false
	}
	for _, m := range msgs {
		switch {
		case m.Channel == "/meta/connect":
			if m.Successful != nil && !*m.Successful {
				r.fail(&r.reconnectFailed, "session %s: connect refused: %s", c.id, m.Error)
				return false
			}
			if m.ID != c.outstanding {
				continue // a superseded connect's answer
			}
			if !r.renew(c, g) {
				return false
			}
		case len(m.Data) > 0:
			var d soakData
			if err := json.Unmarshal(m.Data, &d); err != nil {
				r.fail(&r.closed, "session %s: bad data: %v", c.id, err)
				continue
			}
			r.delivered.Add(1)
			if m.Ext.Seq > c.lastSeq.Load() {
				c.lastSeq.Store(m.Ext.Seq)
			}
			lost, dup := checkSeq(&c.lastS, d.S)
			r.lost.Add(lost)
			r.dupped.Add(dup)
		}
	}
	return true
}

// renew sends c's next connect on g unless the generator is ending the
// socket; false when the write failed.
func (r *soakRun) renew(c *soakClient, g *genConn) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.leaving.Load() {
		return true
	}
	if err := g.c.writeText(c.nextConnect(0)); err != nil && r.ctx.Err() == nil {
		r.fail(&r.closed, "session %s: renew connect: %v", c.id, err)
		return false
	}
	return true
}

// checkSeq records s, the next sequence number a session saw on its
// channel, after *last, and returns how many were skipped (lost) and
// whether s was seen already (a duplicate). The first number a session
// sees sets where it starts.
func checkSeq(last *atomic.Int64, s int64) (lost, dup int64) {
	l := last.Load()
	switch {
	case l < 0:
	case s <= l:
		return 0, 1
	case s > l+1:
		lost = s - l - 1
	}
	last.Store(s)
	return lost, 0
}

// publish publishes o.PublishRate messages a second round robin over the
// channels, in a request per tick, until ctx ends; seqs[k] is the last
// sequence number of channel k.
func (r *soakRun) publish(ctx context.Context, p *publisher, seqs []int64) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	begin := r.o.Now()
	var issued int64
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int64(r.o.PublishRate*r.o.Now().Sub(begin).Seconds()) - issued
		for due > 0 {
			k := min(due, 100)
			due -= k
			issued += k
			chans := make([]int, k)
			for i := range chans {
				chans[i] = next
				next = (next + 1) % len(seqs)
			}
			// The request is not cut when the hold ends: its messages
			// are numbered already, and the sessions must get them.
			r.post(r.ctx, p, chans, seqs)
		}
	}
}

// publishRound publishes one message on every channel.
func (r *soakRun) publishRound(ctx context.Context, p *publisher, seqs []int64) {
	for lo := 0; lo < len(seqs); lo += 100 {
		var chans []int
		for k := lo; k < min(lo+100, len(seqs)); k++ {
			chans = append(chans, k)
		}
		r.post(ctx, p, chans, seqs)
	}
}

// post publishes one message on each of chans in one request, numbering
// them on from seqs.
func (r *soakRun) post(ctx context.Context, p *publisher, chans []int, seqs []int64) {
	var body bytes.Buffer
	p.w.beginBatch(&body)
	now := strconv.FormatInt(r.o.Now().UnixNano(), 10)
	for i, k := range chans {
		if i > 0 {
			body.WriteByte(',')
		}
		seqs[k]++
		p.w.item(&body, r.channel[k], `{"c":`+strconv.Itoa(k)+`,"s":`+strconv.FormatInt(seqs[k], 10)+`,"t":`+now+`,"text":"`+chatText+`"}`)
	}
	p.w.endBatch(&body)
	if err := p.post(ctx, body.Bytes()); err != nil {
		if ctx.Err() != nil {
			return // the run was interrupted
		}
		r.publishFail.Add(int64(len(chans)))
		msg := "publish: " + err.Error()
		r.firstFailure.CompareAndSwap(nil, &msg)
		return
	}
	r.published.Add(int64(len(chans)))
}

// churn replaces o.ChurnRate sessions a second until ctx ends, and waits
// for the replacements under way. Operations take turns: leave with
// /meta/disconnect, abandon the socket, reconnect with the old clientId.
func (r *soakRun) churn(ctx context.Context) {
	every := time.Duration(float64(time.Second) / r.o.ChurnRate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	op := 0
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		i := r.o.Rand.IntN(len(r.slots))
		if !r.busy[i].CompareAndSwap(false, true) {
			continue
		}
		kind := op % 3
		op++
		// A reconnect waits as the Go client's first retry does: full
		// jitter up to 250 ms.
		var wait time.Duration
		if r.o.ReconnectJitter > 0 {
			wait = time.Duration(r.o.Rand.Int64N(int64(r.o.ReconnectJitter)))
		}
		select {
		case sem <- struct{}{}:
		default:
			// Too many replacements under way: the node is slow to
			// answer; skip rather than pile up.
			r.busy[i].Store(false)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem; r.busy[i].Store(false) }()
			r.replace(i, kind, wait)
		}()
	}
}

// replace churns slot i: kind 0 leaves with /meta/disconnect and opens a
// new session, 1 drops the socket and opens a new session, 2 drops the
// socket and reconnects with the same clientId, asking the node for what
// it missed since the last broker sequence number it saw (ext.since),
// after wait.
func (r *soakRun) replace(i, kind int, wait time.Duration) {
	c := r.get(i)
	if c == nil {
		// A session that failed earlier (already counted): open anew.
		r.set(i, r.open(i))
		return
	}
	c.wmu.Lock()
	c.leaving.Store(true)
	if kind == 0 {
		_ = c.g.c.writeText(bayeuxWire{}.bye(c.g))
	}
	c.wmu.Unlock()
	c.g.c.close()
	<-c.done
	if r.get(i) != c {
		// The node ended the session meanwhile (a failure the reader
		// counted, and it emptied the slot): a new one takes its place.
		r.set(i, r.open(i))
		return
	}
	r.churned.Add(1)
	switch kind {
	case 0, 1:
		if kind == 0 {
			r.left.Add(1)
		} else {
			r.abandoned.Add(1)
		}
		r.set(i, r.open(i))
	case 2:
		settle(r.ctx, wait)
		if !r.reconnect(c) {
			r.set(i, nil)
			return
		}
		r.reconnected.Add(1)
	}
}

// reconnect opens a new socket for c's session and sends its connect.
func (r *soakRun) reconnect(c *soakClient) bool {
	octx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	rc, err := rawDial(octx, r.d.pick(), r.addr, bayeuxWire{}.path())
	if err != nil {
		if r.ctx.Err() == nil {
			r.fail(&r.reconnectFailed, "session %s: reconnect: %v", c.id, err)
		}
		return false
	}
	g := &genConn{c: rc, w: bayeuxWire{}, id: c.id}
	if err := rc.writeText(c.nextConnect(c.lastSeq.Load())); err != nil {
		rc.close()
		if r.ctx.Err() == nil {
			r.fail(&r.reconnectFailed, "session %s: reconnect: %v", c.id, err)
		}
		return false
	}
	r.start(c, g)
	return true
}

// checkTail counts the sessions whose last message is not their
// channel's last.
func (r *soakRun) checkTail(seqs []int64) int64 {
	var n int64
	for _, c := range r.snapshot() {
		if c != nil && c.lastS.Load() != seqs[c.ch] {
			n++
			msg := fmt.Sprintf("session %s: last message %d of %d on %s", c.id, c.lastS.Load(), seqs[c.ch], r.channel[c.ch])
			r.firstFailure.CompareAndSwap(nil, &msg)
		}
	}
	return n
}

// closeAll closes every session's socket.
func (r *soakRun) closeAll() {
	for _, c := range r.snapshot() {
		if c != nil {
			c.leaving.Store(true)
			c.g.c.close()
		}
	}
}

// sampler reads the node's and the generator's figures.
type sampler struct {
	node    *process
	natsPID int
	r       *soakRun
	start   time.Time
	now     func() time.Time
	hc      *http.Client
	lastCPU float64
	lastT   time.Time
}

func newSampler(node *process, natsPID int, r *soakRun, start time.Time, now func() time.Time) *sampler {
	return &sampler{node: node, natsPID: natsPID, r: r, start: start, now: now,
		hc: &http.Client{Timeout: 10 * time.Second}, lastCPU: procCPU(node.pid()), lastT: now()}
}

// metrics reads the node's /metrics.
func (s *sampler) metrics() (map[string]float64, error) {
	resp, err := s.hc.Get("http://" + s.node.Addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get metrics: status %d", resp.StatusCode)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get metrics: %w", err)
	}
	return m, nil
}

func (s *sampler) sample() SoakSample {
	now := s.now()
	pid := s.node.pid()
	cpu := procCPU(pid)
	out := SoakSample{T: now.Sub(s.start).Seconds(), RSSKiB: rssKiB(pid), FDs: openFDs(pid), NATSRSSKiB: rssKiB(s.natsPID)}
	if dt := now.Sub(s.lastT).Seconds(); dt > 0 {
		out.CPUPct = 100 * (cpu - s.lastCPU) / dt
	}
	s.lastCPU, s.lastT = cpu, now
	if m, err := s.metrics(); err != nil {
		out.MetricsErr = err.Error()
	} else {
		out.Goroutines = m["go_goroutines"]
		out.Sessions = m["wsfleet_sessions"]
		out.Connections = m["wsfleet_connections"]
		out.MessagesOut = m["wsfleet_messages_out_total"]
		out.NodeErrors = nodeErrorSum(nodeErrors(m))
	}
	r := s.r
	out.Live = r.live()
	out.Delivered, out.Churned, out.Reconnected = r.delivered.Load(), r.churned.Load(), r.reconnected.Load()
	out.Failures, out.Lost, out.Duplicated = r.failures(), r.lost.Load(), r.dupped.Load()
	out.GenRSSKiB, out.GenGoroutines = rssKiB(os.Getpid()), runtime.NumGoroutine()
	return out
}

// openFDs counts a process's open file descriptors (/proc/PID/fd); -1
// when they cannot be read.
func openFDs(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// NATSServerPath is where the soak finds nats-server when not told: PATH.
func NATSServerPath() (string, error) {
	p, err := exec.LookPath("nats-server")
	if err != nil {
		return "", fmt.Errorf("soak: nats-server not found (scripts/test-deps.sh installs it): %w", err)
	}
	return p, nil
}

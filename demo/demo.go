// Package demo runs the seed's change end to end on the embedded default:
// a local cloud in this process with the seed's fleet of 8 ws nodes behind a
// load balancer, NATS embedded, chat clients and a publisher through the load
// balancer, and the rollout engine executing examples/gitter-ws-new-ami.yaml
// (or, with Naive, the seed's own hand steps). It samples every node while the
// change runs and ends with a report, an event log and a chart of connections
// per instance, so that a person sees in one command what wsfleet is for.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goccy/go-yaml"

	"wsfleet/broker"
	"wsfleet/examples"
	"wsfleet/localcloud"
	"wsfleet/probe"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

// The seed's names, as examples/ spells them.
const (
	groupName = "gitter-ws"
	oldImage  = "ami-old"
	newImage  = "ami-new"
	lbName    = "gitter"
	// planEndpoint and planSite are the addresses the plan file names
	// (the seed topology's fixed ports); the demo runs on free ports and
	// rewrites them (see planForDemo).
	planEndpoint = "http://127.0.0.1:4566"
	planSite     = "http://127.0.0.1:8000"
)

// Config configures a demo run. Zero values take the defaults noted.
type Config struct {
	// Clients is the number of chat clients (default 2,000), spread over
	// Channels rooms (default Clients/20) named like Gitter's
	// /api/v1/rooms/{id}/chatMessages; Rate messages per second are
	// published over all rooms (default 40).
	Clients  int
	Channels int
	Rate     float64
	// Fast shortens the plan's waits (TimeScale) and the local cloud's
	// health checks and deregistration delay so that the whole demo runs
	// in under three minutes; the plan file keeps the seed's timing.
	Fast bool
	// TimeScale multiplies the plan's waits; default 1, or 0.05 with Fast.
	TimeScale float64
	// Naive runs the seed's own hand steps instead of the engine:
	// terminate, then let the group replace, with no drain.
	Naive bool
	// Replay lets the chat clients ask the server for what they missed
	// (ext.since), as the Go client can. By default they do not, like
	// faye and halley: the loss the demo reports is what unmodified
	// clients would see.
	Replay bool
	// NATSCluster, above 1, runs that many NATS servers in one JetStream
	// cluster instead of one (the stream and the sessions get three
	// replicas), and shuts the stream's leader down for a few seconds in
	// the middle of the change (natscluster.go).
	NATSCluster int
	// NATSURL, when set, is a NATS server (with JetStream) of the
	// operator's own that the nodes use instead of one embedded in the
	// demo's process. At 100,000 clients the embedded server shares the
	// demo's process with the local cloud, its load balancer and the
	// probe, and stalled there (docs/demo.md): a nats-server process of
	// its own keeps its scheduler and its collector to itself.
	NATSURL string
	// Generators and LBNodes split the run over processes (generator.go):
	// the chat clients over that many generator processes, the load
	// balancer over that many node processes. 0 decides from the client
	// count and the open-file limit: none while everything fits in this
	// process (the default 2,000 clients do), else enough for each
	// process's budget.
	Generators int
	LBNodes    int
	// Out is where report.md, events.jsonl, chart.svg and summary.json
	// go; default ./wsfleet-demo.
	Out string
	// Executable is what both images run as `serve --aws --aws-lifecycle`;
	// default this process's own executable.
	Executable string
	// Progress receives live progress: a redrawn line when TTY is set,
	// plain periodic lines otherwise. Nil shows nothing.
	Progress io.Writer
	TTY      bool
	// SampleEvery is how often every node's /admin/status is read;
	// default 500ms. ProgressEvery is how often a plain progress line is
	// written when not on a terminal; default 5s.
	SampleEvery   time.Duration
	ProgressEvery time.Duration
	// Prometheus runs Debian's prometheus beside the demo, scraping every
	// node through the local cloud's service discovery list (its config,
	// data and log in Out/prometheus); the run fails if it is not
	// installed.
	Prometheus bool
	// TailGaps is how many of the longest client gaps are kept and put
	// next to what the change was doing (report.md, summary.json);
	// default 50. ListGaps of them are listed in the text summary.
	TailGaps int
	ListGaps int
	// Logger receives the demo's own log (the cloud's and the engine's
	// at warn and above); nil discards it.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Watch, when set, is called once the engine's state store exists,
	// before the change starts, with the store, the event log's file and
	// the chat clients' figures so far: `wsfleet demo --ui` serves the
	// dashboard from them.
	Watch func(store rollout.Backend, eventLog string, clients func() (probe.Report, bool))
}

func (c *Config) defaults() error {
	if c.Clients == 0 {
		c.Clients = 2000
	}
	if c.Clients < 1 {
		return fmt.Errorf("clients: %d, want at least 1", c.Clients)
	}
	if c.Channels == 0 {
		c.Channels = max(1, c.Clients/20)
	}
	if c.Rate == 0 {
		c.Rate = 40
	}
	if c.TimeScale == 0 {
		c.TimeScale = 1
		if c.Fast {
			c.TimeScale = 0.05
		}
	}
	if c.Out == "" {
		c.Out = "wsfleet-demo"
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable: %w", err)
		}
		c.Executable = exe
	}
	if c.SampleEvery == 0 {
		c.SampleEvery = 500 * time.Millisecond
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 5 * time.Second
	}
	if c.TailGaps == 0 {
		c.TailGaps = defaultTailGaps
	}
	if c.TailGaps < 0 || c.ListGaps < 0 {
		return fmt.Errorf("tail gaps: %d, list %d: want at least 0", c.TailGaps, c.ListGaps)
	}
	c.TailGaps = max(c.TailGaps, c.ListGaps)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// ErrNotClean is returned (wrapped) by Run when the change finished but
// the demo's promise does not hold: a message was lost in the normal mode,
// or the fleet is not all on the new image.
var ErrNotClean = errors.New("demo: change not clean")

// Run runs the demo and writes its files. It returns the summary even
// when it returns an error, as far as the run got.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	d := &run{cfg: cfg, log: cfg.Logger}
	sum, err := d.run(ctx)
	if cerr := d.close(); err == nil && cerr != nil {
		err = cerr
	}
	return sum, err
}

// run is one demo's moving parts.
type run struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	nats   *broker.Embedded
	natsC  *broker.EmbeddedCluster
	cloud  *localcloud.Cloud
	prov   *awsprov.Provider
	nodes  *rollout.HTTPNodes
	lbURL  string
	lbURLs []string // every load balancer node's URL
	probe  chatClients
	events *rollout.EventLog
	evFile *os.File
	stateD string
	samp   *sampler
	phase  phaseTracker
	routes *routeLog         // the chat clients' websockets, per client
	ups    [][]time.Duration // when each chat client came up, read at its end
	tail   []probe.Gap       // the chat clients' longest gaps, read at their end
	gapAt  *gapNodes         // the clients' nodes, for the tail gaps (placement)
	prom   *promServer       // Config.Prometheus

	replaced atomic.Int64 // nodes the change has replaced so far (natsFault waits for one)

	gens, lbNodes int         // generator processes and load balancer nodes (0: in this process)
	genProcs      *generators // the generator processes, when split
	cpu           *cpuMeter   // a split run's processes' CPU (scale.go)

	lineMu   sync.Mutex
	lineOpen bool // a progress line is drawn on the terminal
}

// say prints one line of narration under the live progress line.
func (d *run) say(format string, args ...any) {
	w := d.cfg.Progress
	if w == nil {
		return
	}
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	if d.lineOpen {
		io.WriteString(w, "\r\x1b[K")
		d.lineOpen = false
	}
	fmt.Fprintf(w, "%5.0fs  %s\n", d.since().Seconds(), fmt.Sprintf(format, args...))
}

// clearLine ends the live progress line.
func (d *run) clearLine() {
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	if d.lineOpen {
		io.WriteString(d.cfg.Progress, "\n")
		d.lineOpen = false
	}
}

func (d *run) close() error {
	var errs []error
	if d.samp != nil {
		d.samp.stop()
	}
	if d.cpu != nil {
		select {
		case <-d.cpu.done:
		default:
			d.cpu.stop()
		}
	}
	if d.probe != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d.probe.Stop(ctx)
		cancel()
	}
	if d.prom != nil {
		errs = append(errs, d.prom.stop())
	}
	if d.cloud != nil {
		errs = append(errs, d.cloud.Close())
	}
	if d.nats != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, d.nats.Shutdown(ctx))
		cancel()
	}
	if d.natsC != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, d.natsC.Shutdown(ctx))
		cancel()
	}
	if d.evFile != nil {
		errs = append(errs, d.evFile.Close())
	}
	if d.stateD != "" {
		os.RemoveAll(d.stateD)
	}
	return errors.Join(errs...)
}

func (d *run) event(typ, msg string, kv ...any) {
	if d.events != nil {
		d.events.Write(d.cfg.Now(), "demo", typ, msg, kv...)
	}
}

func (d *run) run(ctx context.Context) (*Summary, error) {
	cfg := d.cfg
	d.start = cfg.Now()
	d.phase.clock = d.since
	d.routes = newRouteLog(func(at time.Time) time.Duration { return at.Sub(d.start) })
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	f, err := os.Create(filepath.Join(cfg.Out, "events.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	d.evFile = f
	d.events = rollout.NewEventLog(f)
	mode := "rollout"
	if cfg.Naive {
		mode = "naive"
	}
	d.gens, d.lbNodes = split(cfg.Clients, cfg.Generators, cfg.LBNodes, openFileLimit())
	d.event("demo", "start", "mode", mode, "clients", cfg.Clients, "channels", cfg.Channels, "rate", cfg.Rate, "time_scale", cfg.TimeScale)
	if d.cfg.NATSURL != "" {
		d.say("starting the local cloud (8 ws nodes on %s) on NATS at %s", oldImage, d.cfg.NATSURL)
	} else {
		d.say("starting embedded NATS and the local cloud (8 ws nodes on %s)", oldImage)
	}

	if err := d.startFleet(ctx); err != nil {
		return nil, err
	}
	ready := d.since()
	d.event("demo", "fleet ready", "load_balancer", d.lbURL, "after", ready)
	d.say("fleet ready after %s; load balancer %s", ready.Round(100*time.Millisecond), d.lbURL)
	if cfg.Prometheus {
		p, err := startPrometheus(ctx, filepath.Join(cfg.Out, "prometheus"), d.cloud.Endpoint())
		if err != nil {
			return nil, err
		}
		d.prom = p
		d.event("demo", "prometheus", "url", p.url)
		d.say("Prometheus at %s scrapes every node (try wsfleet_connections)", p.url)
	}

	if err := d.startClients(ctx); err != nil {
		return nil, err
	}

	d.samp = newSampler(d)
	go d.samp.loop(ctx)
	if d.gens > 0 || d.lbNodes > 0 {
		d.startScale()
		d.cpu.markChange()
	}

	var res changeResult
	changeStart := d.since()
	natsDone := d.natsFault(ctx, &d.replaced)
	if cfg.Naive {
		res = d.runNaive(ctx)
	} else {
		res = d.runEngine(ctx)
	}
	changeEnd := d.since()
	var cpuChange map[string]time.Duration
	if d.cpu != nil {
		cpuChange = d.cpu.endChange()
	}
	natsErr := natsDone()
	d.event("demo", "change finished", "status", res.status, "err", res.err)

	// Let clients settle on their new nodes, then stop the probe: Stop
	// waits for deliveries still in flight before counting a loss.
	d.sleep(ctx, 2*time.Second)
	d.samp.stop() // before the clients close, which the chart would show
	d.clearLine()
	rep := d.stopClients()

	fleet, ferr := d.fleetImages(context.WithoutCancel(ctx))
	sum := d.summarize(mode, res, rep, fleet, changeStart, changeEnd)
	samples, _, _, _ := d.samp.result()
	sum.Scale = d.scaleSummary(samples, cpuChange)
	if ferr != nil {
		sum.Problems = append(sum.Problems, "reading the fleet at the end: "+ferr.Error())
	}
	if natsErr != nil {
		sum.Problems = append(sum.Problems, "NATS server outage: "+natsErr.Error())
	}
	if werr := d.writeFiles(sum, res); werr != nil {
		return sum, werr
	}
	if res.err != nil && !errors.Is(res.err, rollout.ErrFailed) {
		return sum, res.err
	}
	if !sum.OK() {
		return sum, fmt.Errorf("%w: %s", ErrNotClean, strings.Join(sum.Problems, "; "))
	}
	return sum, nil
}

// startClients opens the chat clients through the load balancer: in this
// process, or over the generator processes when the run is split.
func (d *run) startClients(ctx context.Context) error {
	cfg := d.cfg
	if d.gens > 0 {
		d.say("opening %d chat clients over %d rooms through %d load balancer nodes, from %d generator processes", cfg.Clients, cfg.Channels, len(d.lbURLs), d.gens)
		g, err := d.startGenerators(ctx, d.gens, d.lbURLs)
		if err != nil {
			return fmt.Errorf("start chat clients: %w", err)
		}
		d.probe, d.genProcs = g, g
	} else {
		d.say("opening %d chat clients over %d rooms through the load balancer", cfg.Clients, cfg.Channels)
		p, err := probe.Start(ctx, probe.Config{
			URL:           d.lbURL + "/bayeux",
			URLs:          bayeuxURLs(d.lbURLs),
			AdminToken:    adminToken,
			Clients:       cfg.Clients,
			Channels:      cfg.Channels,
			ChannelPrefix: "/api/v1/rooms/{id}/chatMessages",
			Rate:          cfg.Rate,
			NoReplay:      !cfg.Replay,
			ClientParam:   clientParam,
			TailGaps:      cfg.TailGaps,
			Logger:        d.log.With("part", "probe"),
			Now:           cfg.Now,
		})
		if err != nil {
			return fmt.Errorf("start chat clients: %w", err)
		}
		d.probe = p
	}
	d.event("demo", "clients connected", "clients", cfg.Clients, "after", d.since())
	return nil
}

// bayeuxURLs are the Bayeux endpoints of several load balancer nodes; nil
// for one (the probe's URL).
func bayeuxURLs(lbs []string) []string {
	if len(lbs) < 2 {
		return nil
	}
	out := make([]string, len(lbs))
	for i, u := range lbs {
		out[i] = u + "/bayeux"
	}
	return out
}

// stopClients stops the chat clients and returns their report; it keeps
// when each came up (d.ups).
func (d *run) stopClients() probe.Report {
	wait := 30 * time.Second
	if d.gens > 0 {
		// Each generator waits for its deliveries, then closes its
		// clients, thousands of them.
		wait = 3 * time.Minute
	}
	sctx, cancel := context.WithTimeout(context.Background(), wait)
	rep := d.probe.Stop(sctx)
	cancel()
	for _, us := range d.probe.ClientUps() {
		ds := make([]time.Duration, len(us))
		for i, u := range us {
			ds[i] = u.Sub(d.start)
		}
		d.ups = append(d.ups, ds)
	}
	if p, ok := d.probe.(interface{ TailGaps() []probe.Gap }); ok {
		d.tail = p.TailGaps() // in this process only: generators keep theirs
	}
	d.probe = nil
	return rep
}

func (d *run) since() time.Duration { return d.cfg.Now().Sub(d.start) }

func (d *run) sleep(ctx context.Context, t time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(t):
	}
}

// adminToken is the seed topology's node admin token (its user data); a
// local demo value, not a secret.
const adminToken = "local-admin-token"

// startFleet starts NATS, the cloud, the seed topology, and waits until the
// 8 nodes are in service, healthy and ready.
func (d *run) startFleet(ctx context.Context) error {
	cfg := d.cfg
	var natsURLs string
	switch {
	case cfg.NATSURL != "":
		natsURLs = cfg.NATSURL
	case cfg.NATSCluster > 1:
		nc, err := broker.StartEmbeddedCluster(cfg.NATSCluster, "127.0.0.1:0", nil)
		if err != nil {
			return fmt.Errorf("embedded NATS cluster: %w", err)
		}
		d.natsC, natsURLs = nc, nc.URLs()
	default:
		nats, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0"})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		d.nats, natsURLs = nats, nats.ClientURL()
	}

	lc := localcloud.Config{
		Listen:   "127.0.0.1:0",
		Images:   map[string]localcloud.Image{oldImage: {Command: cfg.Executable, Name: "gitter-ws old"}, newImage: {Command: cfg.Executable, Name: "gitter-ws new"}},
		Tick:     100 * time.Millisecond,
		BootTime: 500 * time.Millisecond,
		// The load balancer must notice a draining node's failed
		// readiness well inside the drain window, or it sends released
		// clients back to the node they left (refused with "Node
		// draining", counted as errors); the seed's 10 s interval is
		// longer than a --fast window.
		HealthCheckInterval:    500 * time.Millisecond,
		DeregistrationDelayMax: 5 * time.Second,
		KillGrace:              15 * time.Second,
		LogDir:                 filepath.Join(cfg.Out, "nodes"),
		OnProxied:              d.routes.record,
		LBNodes:                d.lbNodes,
		LBNodeCommand:          d.lbNodeCommand(),
		Logger:                 d.log.With("part", "cloud"),
		Now:                    cfg.Now,
	}
	if cfg.Naive {
		// The seed's Faye servers handed nothing over when they stopped;
		// a wsfleet node saves its sessions on the way out even without
		// a drain, so the naive mode kills its nodes outright to show
		// what the seed's way cost its clients.
		lc.KillGrace = -1
	}
	if !cfg.Naive {
		// The engine takes each node out of the load balancer before
		// draining it: the seed's deregistration delay (30 s) must outlast
		// the drain, or the load balancer cuts what is left.
		lc.DeregistrationDelayMax = 0
	}
	if cfg.Fast {
		lc.HealthCheckInterval = 250 * time.Millisecond
		if cfg.Naive {
			lc.DeregistrationDelayMax = 2 * time.Second
		}
	}
	if d.gens > 0 || d.lbNodes > 0 {
		// At scale a check's timeout (at most its interval) of 250 or
		// 500 ms is shorter than a loaded node's answer: two missed
		// checks and the group (health check type ELB) replaces a node
		// that is only busy. The engine takes a node out of the load
		// balancer before it drains it, so the checks need not be fast
		// for that; a cordon then takes 2 × 2 s, against drains of
		// minutes. (The seed's target group checks every 10 s.)
		lc.HealthCheckInterval = 2 * time.Second
	}
	os.RemoveAll(lc.LogDir)
	if err := os.MkdirAll(lc.LogDir, 0o755); err != nil {
		return fmt.Errorf("node log directory: %w", err)
	}
	c, err := localcloud.Start(ctx, lc)
	if err != nil {
		return fmt.Errorf("local cloud: %w", err)
	}
	d.cloud = c
	topo, err := topologyForDemo(examples.SeedTopology, natsURLs, cfg)
	if err != nil {
		return err
	}
	lbPort, err := freePort()
	if err != nil {
		return err
	}
	topo.LoadBalancers[0].Listeners[0].Port = int32(lbPort)
	if err := c.Bootstrap(ctx, topo); err != nil {
		return fmt.Errorf("bootstrap seed topology: %w", err)
	}
	d.lbURL = c.LoadBalancerURL(lbName)
	d.lbURLs = c.LoadBalancerURLs(lbName)
	d.prov, err = awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: c.Endpoint(), MaxBackoff: time.Second, Logger: d.log.With("part", "provider")})
	if err != nil {
		return err
	}
	d.nodes = &rollout.HTTPNodes{Port: 8080, Token: adminToken}
	_, err = d.waitFleet(ctx, 8, 90*time.Second, func(in rollout.Instance) bool { return in.Image == oldImage })
	return err
}

// waitFleet waits until n live instances pass ok and are in service,
// healthy in the target group and ready on their admin API.
func (d *run) waitFleet(ctx context.Context, n int, timeout time.Duration, ok func(rollout.Instance) bool) (rollout.Group, error) {
	deadline := d.cfg.Now().Add(timeout)
	for {
		g, err := d.prov.Group(ctx, groupName)
		good := 0
		var why string
		if err == nil {
			for _, in := range g.Instances {
				if !in.Live() || !ok(in) {
					continue
				}
				if in.Lifecycle != "InService" || in.Health != "healthy" {
					why = fmt.Sprintf("%s %s/%s", orDash(in.Name), in.Lifecycle, orDash(in.Health))
					continue
				}
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				st, serr := d.nodes.Status(sctx, in)
				cancel()
				if serr != nil || st.State != "ready" {
					why = fmt.Sprintf("%s node not ready", orDash(in.Name))
					continue
				}
				good++
			}
			if good >= n {
				return g, nil
			}
		} else {
			why = err.Error()
		}
		if d.cfg.Now().After(deadline) {
			return g, fmt.Errorf("wait for %d healthy instances: %d after %s (%s)", n, good, timeout, why)
		}
		select {
		case <-ctx.Done():
			return g, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// topologyForDemo is the seed topology with the demo's overrides, each a
// property of running on one machine rather than a change to the fleet:
// the nodes join the embedded NATS on its free port, and with Fast their
// own drain on SIGTERM is shortened. In the naive mode the nodes behave as
// the seed's Faye servers did: the group has no lifecycle hook (the seed's
// had none), the nodes do not watch their lifecycle state (which would
// make them drain on a plain terminate) and exit at once on SIGTERM; a
// terminated instance's clients are cut off when the load balancer's
// deregistration delay ends.
func topologyForDemo(data []byte, natsURL string, cfg Config) (*localcloud.Topology, error) {
	var topo localcloud.Topology
	if err := yaml.UnmarshalWithOptions(data, &topo, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("seed topology: %w", err)
	}
	if len(topo.LoadBalancers) != 1 || len(topo.LoadBalancers[0].Listeners) != 1 || len(topo.LaunchTemplates)+len(topo.LaunchConfigurations) != 1 || len(topo.Groups) != 1 {
		return nil, errors.New("seed topology: want one load balancer with one listener, one launch configuration or template, and one group")
	}
	launch := topo.Launch()
	var ud []string
	found := false
	for _, line := range strings.Split(strings.TrimSpace(launch.UserData), "\n") {
		switch {
		case strings.HasPrefix(line, "--nats="):
			line = "--nats=" + natsURL
			found = true
		case cfg.Naive && strings.HasPrefix(line, "--drain-window="):
			line = "--drain-window=0s"
		case cfg.Naive && strings.HasPrefix(line, "--drain-deadline="):
			line = "--drain-deadline=1ms"
		case cfg.Naive && strings.HasPrefix(line, "--aws-lifecycle-interval="):
			// The first look comes after one interval: never, here.
			line = "--aws-lifecycle-interval=24h"
		case cfg.Fast && strings.HasPrefix(line, "--drain-window="):
			line = "--drain-window=2s"
		case cfg.Fast && strings.HasPrefix(line, "--drain-deadline="):
			line = "--drain-deadline=10s"
		}
		ud = append(ud, line)
	}
	if !found {
		return nil, errors.New("seed topology: the launch configuration's user data has no --nats= line to point at the embedded NATS")
	}
	launch.UserData = strings.Join(ud, "\n") + "\n"
	// At scale the drain deadline grows (scale.go): the deregistration
	// delay must not be shorter, or the load balancer cuts the drained
	// node's clients first.
	if !cfg.Naive && len(topo.TargetGroups) == 1 && topo.TargetGroups[0].DeregistrationDelaySeconds != nil {
		dl, err := scaledDrainDeadline(examples.NewAMIPlan, cfg.Clients)
		if err != nil {
			return nil, err
		}
		if s := int(dl / time.Second); s > *topo.TargetGroups[0].DeregistrationDelaySeconds {
			topo.TargetGroups[0].DeregistrationDelaySeconds = &s
		}
	}
	if cfg.Naive {
		topo.Groups[0].LifecycleHooks = nil
	}
	return &topo, nil
}

// planForDemo is the plan file with the addresses it names (the seed
// topology's fixed ports 4566 and 8000) replaced by the demo's free ones.
// Everything else, timing included, is the file as shipped; the engine's
// TimeScale shortens the waits.
func planForDemo(data []byte, endpoint, lbURL string) ([]byte, error) {
	for _, s := range []string{planEndpoint, planSite} {
		if !bytes.Contains(data, []byte(s)) {
			return nil, fmt.Errorf("plan: %s not found; the demo rewrites it to the local cloud's address", s)
		}
	}
	data = bytes.ReplaceAll(data, []byte(planEndpoint), []byte(endpoint))
	data = bytes.ReplaceAll(data, []byte(planSite), []byte(lbURL))
	if _, err := rollout.ParsePlan(data); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return data, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fleetImages reads, for every live instance, the image the cloud says it
// runs and the one its node reports in /admin/status.
func (d *run) fleetImages(ctx context.Context) ([]FleetMember, error) {
	g, err := d.prov.Group(ctx, groupName)
	if err != nil {
		return nil, err
	}
	var out []FleetMember
	for _, in := range g.Instances {
		if !in.Live() {
			continue
		}
		m := FleetMember{Name: in.Name, ID: in.ID, Image: in.Image, Lifecycle: in.Lifecycle}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := d.nodes.Status(sctx, in)
		cancel()
		if err != nil {
			m.NodeImage = "unreachable"
		} else {
			m.NodeImage = st.Image
		}
		out = append(out, m)
	}
	return out, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

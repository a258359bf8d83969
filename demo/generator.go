package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"wsfleet/probe"
)

// At scale the chat clients and the load balancer do not fit in the demo's
// process: every client is a socket in the process that holds it, and
// every proxied connection two in the load balancer's, against a limit of
// open files per process (`ulimit -n`). So, when the clients need it (or
// when Config.Generators or Config.LBNodes say so), the demo runs the
// load balancer as several node processes (localcloud.Config.LBNodes, as
// an ALB's DNS name resolves to several nodes) and the clients as
// generator processes (`wsfleet demo generator`, RunGenerator): each a
// probe over its own slice of the clients and rooms, publishing to its
// own rooms at their share of the rate, with its own source addresses
// (127.0.0.100 up) so that no address runs out of ephemeral ports, and
// spreading its clients over every load balancer node. Each reports its
// figures back over its standard output (probe.Part), and the demo merges
// them into one report of the same form as the in-process one.

// chatClients is what the demo needs of its chat clients: an in-process
// probe, or the generator processes.
type chatClients interface {
	Snapshot() probe.Report
	Stop(ctx context.Context) probe.Report
	ClientUps() [][]time.Time
}

// Per-process budgets at scale, in clients: a generator holds one socket
// per client, a load balancer node two. The demo's own process, in-process,
// holds three per client.
const (
	clientsPerGenerator = 12000
	clientsPerLBNode    = 8000
	// fdReserve is what a process keeps for everything else (NATS, the
	// nodes' admin API, logs, the engine's own probe).
	fdReserve = 2000
	// generatorFirstIP is the last octet of the first generator source
	// address, 127.0.0.100; the load balancer nodes are 127.0.0.20 up.
	generatorFirstIP = 100
	// connectInFlight bounds the handshakes in flight over all generators
	// while they open their clients. The in-process probe's 200 at once,
	// in each of nine generators, had 1,800 handshakes (each a session
	// and a subscription in NATS) in flight on two cores: the nodes'
	// readiness checks timed out, the group replaced them, and 4 % of
	// 100,000 clients had subscribed after two minutes. Bounded, the
	// opening paces itself at what the fleet absorbs.
	connectInFlight = 64
	// sourceAddrClients is how many clients share one source address
	// (the probe's own default, well within 28,000 ephemeral ports).
	sourceAddrClients = 4000
)

// openFileLimit is this process's limit of open files.
func openFileLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 1 << 30
	}
	return int(l.Cur)
}

// split decides how many generator processes and load balancer nodes the
// run uses: the configured counts when set, else none (everything in this
// process, as the default demo runs) while three sockets per client fit
// in the open-file limit, else enough of each for its budget.
func split(clients, generators, lbNodes, fdLimit int) (int, int) {
	inProcess := 3*clients+fdReserve <= fdLimit
	if generators == 0 && !inProcess {
		generators = (clients + clientsPerGenerator - 1) / clientsPerGenerator
	}
	if lbNodes == 0 && !inProcess {
		lbNodes = (clients + clientsPerLBNode - 1) / clientsPerLBNode
	}
	return generators, lbNodes
}

// generatorConfig is the first line a generator reads: its probe.
type generatorConfig struct {
	URL           string   `json:"url"`
	URLs          []string `json:"urls"`
	AdminToken    string   `json:"admin_token"`
	Clients       int      `json:"clients"`
	Channels      int      `json:"channels"`
	ChannelPrefix string   `json:"channel_prefix"`
	Rate          float64  `json:"rate"`
	NoReplay      bool     `json:"no_replay"`
	ClientParam   string   `json:"client_param"`
	ClientOffset  int      `json:"client_offset"`
	ChannelOffset int      `json:"channel_offset"`
	SourceAddrs   []string `json:"source_addrs"`
	// ConnectConcurrency bounds this generator's handshakes in flight.
	ConnectConcurrency int `json:"connect_concurrency"`
}

// generatorReport is a line a generator writes: started (its clients are
// open and it publishes), a snapshot every second, its final part.
type generatorReport struct {
	Started  bool          `json:"started,omitempty"`
	Error    string        `json:"error,omitempty"`
	Snapshot *probe.Report `json:"snapshot,omitempty"`
	Final    *probe.Part   `json:"final,omitempty"`
}

// generatorStop is what the demo writes to stop a generator.
type generatorStop struct {
	Stop bool `json:"stop"`
}

// RunGenerator is `wsfleet demo generator`: it reads its configuration
// from in, runs its probe, writes a snapshot every second to out, and on
// the demo's stop (or the end of in) stops the probe and writes its final
// part.
func RunGenerator(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	dec := json.NewDecoder(in)
	var cfg generatorConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("generator: read config: %w", err)
	}
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	write := func(r generatorReport) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(r)
	}
	p, err := probe.Start(ctx, probe.Config{
		URL: cfg.URL, URLs: cfg.URLs, AdminToken: cfg.AdminToken, Clients: cfg.Clients, Channels: cfg.Channels,
		ChannelPrefix: cfg.ChannelPrefix, Rate: cfg.Rate, NoReplay: cfg.NoReplay, ClientParam: cfg.ClientParam,
		ClientOffset: cfg.ClientOffset, ChannelOffset: cfg.ChannelOffset, SourceAddrs: cfg.SourceAddrs,
		ConnectConcurrency: cfg.ConnectConcurrency, Logger: log,
	})
	if err != nil {
		write(generatorReport{Error: err.Error()})
		return fmt.Errorf("generator: %w", err)
	}
	if err := write(generatorReport{Started: true}); err != nil {
		p.Stop(context.Background())
		return fmt.Errorf("generator: report: %w", err)
	}
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		var s generatorStop
		dec.Decode(&s) // a stop, or the end of in: either way stop
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-stop:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			r := p.Snapshot()
			if err := write(generatorReport{Snapshot: &r}); err != nil {
				break wait
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.Stop(sctx)
	pt, err := p.Part()
	if err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	if err := write(generatorReport{Final: &pt}); err != nil {
		return fmt.Errorf("generator: report final: %w", err)
	}
	return nil
}

// generators are the demo's generator processes.
type generators struct {
	procs []*generatorProc
}

type generatorProc struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	offset  int // its first client
	clients int
	done    chan struct{} // closed when its output ends

	mu        sync.Mutex
	isStarted bool
	snap      probe.Report
	final     *probe.Part
	err       string
}

// startGenerators starts n generator processes for the demo's clients
// over the load balancer's nodes (urls), and waits until every one has
// opened its clients and publishes.
func (d *run) startGenerators(ctx context.Context, n int, urls []string) (*generators, error) {
	cfg := d.cfg
	if n > cfg.Channels {
		return nil, fmt.Errorf("%d generator processes for %d rooms: each needs a room of its own", n, cfg.Channels)
	}
	g := &generators{}
	next := generatorFirstIP
	for k := range n {
		lo, hi := cfg.Clients*k/n, cfg.Clients*(k+1)/n
		clo, chi := cfg.Channels*k/n, cfg.Channels*(k+1)/n
		var addrs []string
		for range 1 + (hi-lo)/sourceAddrClients {
			if next > 254 {
				return g, errors.New("generator source addresses: more than 127.0.0.100 to 127.0.0.254")
			}
			addrs = append(addrs, "127.0.0."+strconv.Itoa(next))
			next++
		}
		gc := generatorConfig{
			URL: urls[k%len(urls)] + "/bayeux", AdminToken: adminToken, Clients: hi - lo, Channels: chi - clo,
			ChannelPrefix: "/api/v1/rooms/{id}/chatMessages", Rate: cfg.Rate * float64(chi-clo) / float64(cfg.Channels),
			NoReplay: !cfg.Replay, ClientParam: clientParam, ClientOffset: lo, ChannelOffset: clo, SourceAddrs: addrs,
			ConnectConcurrency: max(4, connectInFlight/n),
		}
		// Client i of this generator goes to node (k+i) mod len(urls):
		// every generator spreads over every node.
		for i := range urls {
			gc.URLs = append(gc.URLs, urls[(k+i)%len(urls)]+"/bayeux")
		}
		p, err := d.startGenerator(k, gc)
		if err != nil {
			g.kill()
			return nil, err
		}
		p.offset, p.clients = lo, hi-lo
		g.procs = append(g.procs, p)
	}
	// Each opens its clients at its own pace; wait for all.
	for k, p := range g.procs {
		for {
			p.mu.Lock()
			started, perr := p.isStarted, p.err
			p.mu.Unlock()
			if perr != "" {
				g.kill()
				return nil, fmt.Errorf("generator %d: %s", k, perr)
			}
			if started {
				break
			}
			select {
			case <-ctx.Done():
				g.kill()
				return nil, ctx.Err()
			case <-p.done:
				g.kill()
				return nil, fmt.Errorf("generator %d exited before its clients were open (its log: %s)", k, d.generatorLog(k))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return g, nil
}

func (d *run) generatorLog(k int) string {
	return filepath.Join(d.cfg.Out, "nodes", "generator-"+strconv.Itoa(k)+".log")
}

func (d *run) startGenerator(k int, gc generatorConfig) (*generatorProc, error) {
	cmd := exec.Command(d.cfg.Executable, "demo", generatorCommand)
	logf, err := os.Create(d.generatorLog(k))
	if err != nil {
		return nil, fmt.Errorf("generator %d log: %w", k, err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("generator %d: %w", k, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("generator %d: %w", k, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("generator %d: start %s: %w", k, d.cfg.Executable, err)
	}
	p := &generatorProc{cmd: cmd, in: in, done: make(chan struct{})}
	if err := json.NewEncoder(in).Encode(gc); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("generator %d: send config: %w", k, err)
	}
	go func() {
		defer close(p.done)
		defer cmd.Wait()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		for sc.Scan() {
			var r generatorReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				d.log.Warn("generator: bad report", "generator", k, "err", err)
				continue
			}
			p.mu.Lock()
			switch {
			case r.Error != "":
				p.err = r.Error
			case r.Started:
				p.isStarted = true
			case r.Snapshot != nil:
				p.snap = *r.Snapshot
			case r.Final != nil:
				p.final = r.Final
			}
			p.mu.Unlock()
		}
	}()
	return p, nil
}

// generatorCommand is the hidden `wsfleet demo generator`.
const generatorCommand = "generator"

// Snapshot adds up the generators' latest snapshots (the latency and gap
// quantiles are the highest of theirs: a live view, not the report).
func (g *generators) Snapshot() probe.Report {
	var r probe.Report
	r.Errors = map[string]int64{}
	for _, p := range g.procs {
		p.mu.Lock()
		s := p.snap
		p.mu.Unlock()
		r.Clients += s.Clients
		r.Channels += s.Channels
		r.ClientsConnected += s.ClientsConnected
		r.ClientsSubscribed += s.ClientsSubscribed
		r.Sent += s.Sent
		r.PublishFailed += s.PublishFailed
		r.Expected += s.Expected
		r.Delivered += s.Delivered
		r.Lost += s.Lost
		r.Pending += s.Pending
		r.Duplicated += s.Duplicated
		r.OutOfOrder += s.OutOfOrder
		r.Reconnects += s.Reconnects
		r.ElapsedMs = max(r.ElapsedMs, s.ElapsedMs)
		r.Latency.P99 = max(r.Latency.P99, s.Latency.P99)
		r.Gap.P99 = max(r.Gap.P99, s.Gap.P99)
		for k, v := range s.Errors {
			r.Errors[k] += v
		}
	}
	return r
}

// Stop stops every generator at once and merges their final parts; a
// generator that gives none counts all its clients as lost to the demo
// (its figures are unknown), under errors["generator_failed"].
func (g *generators) Stop(ctx context.Context) probe.Report {
	for _, p := range g.procs {
		json.NewEncoder(p.in).Encode(generatorStop{Stop: true})
		p.in.Close()
	}
	var parts []probe.Part
	failed := 0
	for _, p := range g.procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			p.cmd.Process.Kill()
			<-p.done
		}
		p.mu.Lock()
		if p.final != nil {
			parts = append(parts, *p.final)
		} else {
			failed++
		}
		p.mu.Unlock()
	}
	r := probe.Merge(parts)
	if failed > 0 {
		r.Final = false
		r.Errors["generator_failed"] += int64(failed)
	}
	return r
}

// ClientUps are every generator's ClientUps, by the demo's client index.
func (g *generators) ClientUps() [][]time.Time {
	var out [][]time.Time
	for _, p := range g.procs {
		p.mu.Lock()
		f := p.final
		p.mu.Unlock()
		ups := make([][]time.Time, p.clients)
		if f != nil {
			for i, ns := range f.Ups {
				if i >= len(ups) {
					break
				}
				for _, n := range ns {
					ups[i] = append(ups[i], time.Unix(0, n))
				}
			}
		}
		out = append(out, ups...)
	}
	return out
}

// kill ends every generator at once (a failed start).
func (g *generators) kill() {
	for _, p := range g.procs {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// lbNodeCommand is the local cloud's node command line at scale.
func (d *run) lbNodeCommand() []string {
	return []string{d.cfg.Executable, "cloud", "lb-node"}
}

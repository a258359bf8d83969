package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// InterestOptions configure RunInterest, the benchmark of interest-based
// delivery: N `wsfleet serve` processes on one nats-server, each with its
// own subscribers on its own rooms and its own publisher, so that the
// fleet's publish rate grows with N while each node's own traffic does
// not. A node's CPU per delivered message stays flat when it reads only
// its own rooms from NATS, and grows with N when it reads the whole stream.
type InterestOptions struct {
	Binary     string // wsfleet binary (required)
	NATSServer string // nats-server binary (required)
	Nodes      []int  // fleet sizes; default 2, 8, 32
	// Interest lists the modes to run: true for --nats-interest=true,
	// false for the whole stream; default both, interest first.
	Interest []bool
	// Rate is messages per second published per node (k); default 5.
	Rate float64
	// Rooms and SubsPerRoom are each node's rooms and the websocket
	// subscribers of each; defaults 2 and 5.
	Rooms, SubsPerRoom int
	// Warmup runs before the window; Window is the measured time;
	// defaults 5s and 60s.
	Warmup, Window time.Duration
	// Stderr receives the processes' logs (default discarded).
	Stderr io.Writer
	// Progress receives a line per step (default discarded).
	Progress io.Writer
}

func (o *InterestOptions) defaults() {
	if len(o.Nodes) == 0 {
		o.Nodes = []int{2, 8, 32}
	}
	if len(o.Interest) == 0 {
		o.Interest = []bool{true, false}
	}
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.Rooms <= 0 {
		o.Rooms = 2
	}
	if o.SubsPerRoom <= 0 {
		o.SubsPerRoom = 5
	}
	if o.Warmup <= 0 {
		o.Warmup = 5 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 60 * time.Second
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// InterestRow is one fleet size and mode: sums over the nodes within the
// measured window.
type InterestRow struct {
	Nodes    int
	Interest bool
	Seconds  float64
	// FleetRate is the messages published per second by the whole fleet.
	FleetRate float64
	// Received is messages per second a node took from NATS (mean).
	Received float64
	// Delivered is messages per second a node handed to its clients
	// (mean), from the nodes' wsfleet_messages_out_total.
	Delivered float64
	// ClientDeliveries is what the subscribers counted, fleet-wide.
	ClientDeliveries int64
	// CPUPerDelivery is the nodes' CPU (utime+stime) over their
	// deliveries, in microseconds; MinNode and MaxNode the range over
	// the nodes.
	CPUPerDelivery, MinNode, MaxNode float64
	// CPUPercent is a node's mean CPU use, in percent of one core.
	CPUPercent float64
}

const interestToken = "bench-interest"

// RunInterest runs every fleet size in every mode and returns a row each.
func RunInterest(ctx context.Context, o InterestOptions) ([]InterestRow, error) {
	o.defaults()
	if o.Binary == "" || o.NATSServer == "" {
		return nil, errors.New("bench interest: the wsfleet and nats-server binaries are required")
	}
	var rows []InterestRow
	for _, n := range o.Nodes {
		for _, on := range o.Interest {
			r, err := runInterestStep(ctx, &o, n, on)
			if err != nil {
				return rows, fmt.Errorf("bench interest: %d nodes, interest %v: %w", n, on, err)
			}
			fmt.Fprintf(o.Progress, "%d nodes, interest %v: %.0f µs CPU per delivery, %.1f received/s per node, %.1f delivered/s per node\n",
				n, on, r.CPUPerDelivery, r.Received, r.Delivered)
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// startNATSServer runs nats-server with JetStream on a free loopback port
// and a store under dir, and returns its URL once it accepts connections.
func startNATSServer(ctx context.Context, bin, dir string, stderr io.Writer) (*exec.Cmd, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", dir)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start nats-server: %w", err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return cmd, "nats://" + addr, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, "", fmt.Errorf("nats-server on %s did not start", addr)
}

// runInterestStep is one fleet: a fresh nats-server, n nodes, their
// subscribers and publishers, the warm-up and the window.
func runInterestStep(ctx context.Context, o *InterestOptions, n int, interest bool) (InterestRow, error) {
	row := InterestRow{Nodes: n, Interest: interest}
	dir, err := os.MkdirTemp("", "wsfleet-bench-interest-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	ns, url, err := startNATSServer(ctx, o.NATSServer, dir, o.Stderr)
	if err != nil {
		return row, err
	}
	defer func() {
		_ = ns.Process.Signal(os.Interrupt)
		_ = ns.Wait()
	}()
	nodes := make([]*process, 0, n)
	defer func() {
		for _, p := range nodes {
			p.stop()
		}
	}()
	for i := range n {
		p, err := startWsfleet(ctx, wsfleetOptions{Binary: o.Binary, AdminToken: interestToken, CPU: -1, Stderr: o.Stderr,
			Args: []string{"--nats", url, "--node-id", fmt.Sprintf("bench-%02d", i), "--nats-interest=" + strconv.FormatBool(interest)}})
		if err != nil {
			return row, fmt.Errorf("node %d: %w", i, err)
		}
		nodes = append(nodes, p)
	}
	d := newDialers(1)
	st := &genStats{}
	st.lat.Store(&latHist{})
	var conns []*genConn
	defer func() { closeSessions(conns) }()
	rooms := make([][]string, n)
	for i, p := range nodes {
		rooms[i] = channelNames(fmt.Sprintf("/bench/node-%02d/room", i), o.Rooms)
		cs, err := openSessions(ctx, bayeuxWire{}, d, p.Addr, o.Rooms*o.SubsPerRoom, rooms[i], 8, st)
		conns = append(conns, cs...)
		if err != nil {
			return row, fmt.Errorf("node %d: %w", i, err)
		}
	}
	stopReaders, err := startReaders(conns, st)
	if err != nil {
		return row, err
	}
	defer stopReaders()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubs := make([]*publisher, n)
	for i, p := range nodes {
		pubs[i] = &publisher{w: bayeuxWire{}, url: "http://" + p.Addr + "/publish", token: interestToken, channels: rooms[i], hc: &http.Client{Timeout: 10 * time.Second}}
		go pubs[i].run(pctx, o.Rate)
	}
	settle(ctx, o.Warmup)

	type sample struct{ cpu, received, delivered float64 }
	read := func() ([]sample, int64, int64, error) {
		out := make([]sample, n)
		for i, p := range nodes {
			m, err := scrape(ctx, p.Addr, "wsfleet_broker_received_total", "wsfleet_messages_out_total")
			if err != nil {
				return nil, 0, 0, fmt.Errorf("node %d: %w", i, err)
			}
			out[i] = sample{cpu: procCPU(p.pid()), received: m[0], delivered: m[1]}
		}
		var sent int64
		for _, p := range pubs {
			sent += p.sent.Load()
		}
		return out, sent, st.deliveries.Load(), nil
	}
	before, sent0, got0, err := read()
	if err != nil {
		return row, err
	}
	start := time.Now()
	settle(ctx, o.Window)
	if err := ctx.Err(); err != nil {
		return row, err
	}
	after, sent1, got1, err := read()
	if err != nil {
		return row, err
	}
	secs := time.Since(start).Seconds()
	row.Seconds = secs
	row.FleetRate = float64(sent1-sent0) / secs
	row.ClientDeliveries = got1 - got0
	var cpu, recv, deliv float64
	per := make([]float64, n)
	for i := range n {
		c := after[i].cpu - before[i].cpu
		dl := after[i].delivered - before[i].delivered
		cpu += c
		recv += after[i].received - before[i].received
		deliv += dl
		if dl > 0 {
			per[i] = c / dl * 1e6
		}
	}
	if deliv == 0 {
		return row, errors.New("no deliveries in the window")
	}
	row.Received = recv / float64(n) / secs
	row.Delivered = deliv / float64(n) / secs
	row.CPUPerDelivery = cpu / deliv * 1e6
	row.MinNode, row.MaxNode = slices.Min(per), slices.Max(per)
	row.CPUPercent = cpu / float64(n) / secs * 100
	var failed int64
	for _, p := range pubs {
		failed += p.failed.Load()
	}
	if failed > 0 {
		return row, fmt.Errorf("%d publishes failed", failed)
	}
	return row, nil
}

// scrape reads the named counters from a node's /metrics, in order.
func scrape(ctx context.Context, addr string, names ...string) ([]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	out := make([]float64, len(names))
	found := make([]bool, len(names))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if i := slices.Index(names, f[0]); i >= 0 {
			out[i], _ = strconv.ParseFloat(f[1], 64)
			found[i] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("metrics: no %s", names[i])
		}
	}
	return out, nil
}

// WriteInterestTable prints the rows as a Markdown table, with each mode's
// CPU per delivery relative to its smallest fleet.
func WriteInterestTable(w io.Writer, rows []InterestRow) {
	fmt.Fprintln(w, "| nodes | delivery | fleet publishes/s | received/s per node | delivered/s per node | CPU per delivery (µs) | vs smallest fleet | node range (µs) | CPU per node |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	base := map[bool]float64{}
	for _, r := range rows {
		if _, ok := base[r.Interest]; !ok {
			base[r.Interest] = r.CPUPerDelivery
		}
		mode := "whole stream"
		if r.Interest {
			mode = "interest"
		}
		fmt.Fprintf(w, "| %d | %s | %.0f | %.1f | %.1f | %.0f | %+.0f %% | %.0f–%.0f | %.2f %% |\n", r.Nodes, mode, r.FleetRate, r.Received,
			r.Delivered, r.CPUPerDelivery, (r.CPUPerDelivery/base[r.Interest]-1)*100, r.MinNode, r.MaxNode, r.CPUPercent)
	}
}

package localcloud

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Load balancer nodes in their own processes. An ALB is several nodes
// behind one DNS name that resolves to all of their addresses, and its
// clients spread over them; each node routes on its own, from the target
// group's registered targets and their health. With Config.LBNodes the
// local cloud runs each listener that way: node k is a process
// (Config.LBNodeCommand, which runs RunLBNode) listening on 127.0.0.(20+k)
// at the listener's port, so that no process holds more than its share of
// the proxied connections (two file descriptors each) and a demo of
// 100,000 clients stays within a per-process open-file limit. The cloud
// keeps the target group: it sends every node the targets that may get new
// requests (targetPool: healthy, or fail-open) whenever they change, at
// once on a registration or deregistration and within lbPushEvery on a
// health change, and tells every node to cut a target's connections when
// its deregistration delay ends. Each node routes round robin on its own
// position, as each ALB node does. A node exits when the cloud closes its
// standard input, and dies with the cloud (setProcAttr).

// LBNodeFirstIP is the last octet of the first load balancer node's
// address, 127.0.0.20; node k listens on 127.0.0.(20+k). The instances'
// addresses start at 127.0.1.1.
const LBNodeFirstIP = 20

// MaxLBNodes bounds Config.LBNodes (127.0.0.20 to 127.0.0.99).
const MaxLBNodes = 80

// lbPushEvery is how often the cloud looks for a change of the targets'
// health to send to its load balancer nodes.
const lbPushEvery = 20 * time.Millisecond

// lbNodeConfig is the first line the cloud sends a node.
type lbNodeConfig struct {
	Listen   string `json:"listen"`
	DialFrom string `json:"dial_from"`
	// Proxied asks the node to report each target response (OnProxied).
	Proxied bool `json:"proxied"`
}

// lbOrder is a line the cloud sends a node after the config: the targets
// that may get new requests, or a target whose connections to cut.
type lbOrder struct {
	Healthy []string `json:"healthy,omitempty"`
	Open    []string `json:"open,omitempty"`
	Pool    bool     `json:"pool,omitempty"`
	Cut     string   `json:"cut,omitempty"`
	// Seq numbers a pool; the node answers with it once it routes by it.
	Seq int64 `json:"seq,omitempty"`
}

// lbReport is a line a node sends the cloud: its address once it listens,
// then each target response when asked (Config.OnProxied).
type lbReport struct {
	Ready   string `json:"ready,omitempty"`
	AtNs    int64  `json:"at,omitempty"`
	Target  string `json:"target,omitempty"`
	Method  string `json:"method,omitempty"`
	URI     string `json:"uri,omitempty"`
	Host    string `json:"host,omitempty"`
	Status  int    `json:"status,omitempty"`
	Proxied bool   `json:"proxied,omitempty"`
	Applied int64  `json:"applied,omitempty"` // the Seq of the pool now in use
}

// lbNode is the cloud's end of one node process.
type lbNode struct {
	addr string
	cmd  *exec.Cmd
	in   io.WriteCloser
	done chan struct{} // closed when the process has exited

	mu     sync.Mutex
	queue  []lbOrder
	wake   chan struct{}
	closed bool

	healthy, open []string // the pool last sent, under the cloud's mutex
	sent          bool
	seq           int64 // the last pool's Seq, under the cloud's mutex

	applied atomic.Int64  // the Seq of the pool the node routes by
	ack     chan struct{} // hears each answer
}

// startLBNodes starts Config.LBNodes node processes for l and waits until
// each listens.
func (c *Cloud) startLBNodes(l *listener) error {
	if len(c.cfg.LBNodeCommand) == 0 {
		return errors.New("load balancer nodes: no LBNodeCommand")
	}
	for k := range c.cfg.LBNodes {
		ip := fmt.Sprintf("127.0.0.%d", LBNodeFirstIP+k)
		n, err := c.startLBNode(l, k, ip)
		if err != nil {
			l.close()
			return fmt.Errorf("load balancer node %s: %w", ip, err)
		}
		l.nodes = append(l.nodes, n)
		if k == 0 {
			l.addr = n.addr
		}
		c.log.Info("load balancer node listening", "lb", l.lb.name, "addr", n.addr, "pid", n.cmd.Process.Pid)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.pushPools(l)
	}()
	return nil
}

func (c *Cloud) startLBNode(l *listener, k int, ip string) (*lbNode, error) {
	cmd := exec.Command(c.cfg.LBNodeCommand[0], c.cfg.LBNodeCommand[1:]...)
	cmd.Env = append(os.Environ(), c.cfg.LBNodeEnv...)
	setProcAttr(cmd)
	logf, err := os.Create(filepath.Join(c.cfg.LogDir, "lb-node-"+strconv.Itoa(l.port)+"-"+strconv.Itoa(k)+".log"))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close() // the child holds its own copy
	cmd.Stderr = logf
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.cfg.LBNodeCommand[0], err)
	}
	n := &lbNode{cmd: cmd, in: in, done: make(chan struct{}), wake: make(chan struct{}, 1), ack: make(chan struct{}, 1)}
	cfg := lbNodeConfig{Listen: net.JoinHostPort(ip, strconv.Itoa(l.port)), DialFrom: ip, Proxied: c.cfg.OnProxied != nil}
	if err := json.NewEncoder(in).Encode(cfg); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("send config: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ready := make(chan string, 1)
	go func() {
		defer close(n.done)
		defer cmd.Wait()
		c.readLBNode(n, sc, ready)
	}()
	select {
	case n.addr = <-ready:
	case <-n.done:
		return nil, fmt.Errorf("exited before it listened (its log: %s)", logf.Name())
	case <-time.After(15 * time.Second):
		n.close()
		return nil, errors.New("not listening after 15s")
	}
	if n.addr == "" {
		n.close()
		return nil, fmt.Errorf("could not listen on %s (its log: %s)", cfg.Listen, logf.Name())
	}
	go n.write()
	return n, nil
}

// readLBNode reads a node's reports until it exits: its address (sent on
// ready, "" when it could not listen), then the target responses it
// passed on, each given to Config.OnProxied with the time the node saw it.
func (c *Cloud) readLBNode(n *lbNode, sc *bufio.Scanner, ready chan<- string) {
	for sc.Scan() {
		var r lbReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			c.log.Warn("load balancer node: bad report", "err", err)
			continue
		}
		switch {
		case r.Applied != 0:
			n.applied.Store(r.Applied)
			select {
			case n.ack <- struct{}{}:
			default:
			}
		case r.Proxied:
			if f := c.cfg.OnProxied; f != nil {
				u, err := url.ParseRequestURI(r.URI)
				if err != nil {
					continue
				}
				u.Host = r.Target
				f(time.Unix(0, r.AtNs), r.Target, &http.Request{Method: r.Method, URL: u, Host: r.Host}, r.Status)
			}
		default:
			ready <- r.Ready
		}
	}
}

// send queues an order for the node; it never blocks, so that the cloud
// may call it under its mutex.
func (n *lbNode) send(o lbOrder) {
	n.mu.Lock()
	if !n.closed {
		n.queue = append(n.queue, o)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// write sends queued orders to the node, in order, until it is closed.
func (n *lbNode) write() {
	w := bufio.NewWriter(n.in)
	enc := json.NewEncoder(w)
	for {
		select {
		case <-n.wake:
		case <-n.done:
			return
		}
		n.mu.Lock()
		q, closed := n.queue, n.closed
		n.queue = nil
		n.mu.Unlock()
		for _, o := range q {
			if err := enc.Encode(o); err != nil {
				return
			}
		}
		if err := w.Flush(); err != nil || closed {
			n.in.Close()
			return
		}
	}
}

func (n *lbNode) cut(addr string) { n.send(lbOrder{Cut: addr}) }

// close ends the node: its standard input closes, it closes its
// connections and exits; it is killed if it has not after 5 s.
func (n *lbNode) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	go func() {
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			n.cmd.Process.Kill()
		}
	}()
}

// pushPools sends l's nodes the targets that may get new requests each
// time they change, until the cloud closes.
func (c *Cloud) pushPools(l *listener) {
	t := time.NewTicker(lbPushEvery)
	defer t.Stop()
	for {
		c.mu.Lock()
		c.pushPoolLocked(l)
		c.mu.Unlock()
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pushPoolLocked sends l's nodes the current pool if it changed since the
// last one, and returns the nodes it sent it to; the caller holds the
// cloud's mutex.
func (c *Cloud) pushPoolLocked(l *listener) []*lbNode {
	healthy, open := c.targetPool(l.tgARN)
	var sent []*lbNode
	for _, n := range l.nodes {
		if n.sent && slices.Equal(n.healthy, healthy) && slices.Equal(n.open, open) {
			continue
		}
		n.healthy, n.open, n.sent = healthy, open, true
		n.seq++
		n.send(lbOrder{Pool: true, Healthy: healthy, Open: open, Seq: n.seq})
		sent = append(sent, n)
	}
	return sent
}

// lbChangedLocked pushes the pools of the listeners of tg that run as
// nodes and waits (up to lbAckWait) until each node routes by it, so that
// no node sends a deregistered target a new request once
// DeregisterTargets has returned, as the in-process listener does. The
// caller holds the cloud's mutex; the nodes' answers need none.
func (c *Cloud) lbChangedLocked(tg *targetGroup) {
	for _, l := range c.listeners {
		if l.tgARN != tg.arn || len(l.nodes) == 0 {
			continue
		}
		for _, n := range c.pushPoolLocked(l) {
			n.waitApplied(n.seq, lbAckWait)
		}
	}
}

// lbAckWait bounds how long a registration or deregistration waits for a
// node to take the new pool (a node that does not answer in time gets it
// all the same, late).
const lbAckWait = 2 * time.Second

// waitApplied waits until the node routes by pool seq, the node exits, or
// wait passes.
func (n *lbNode) waitApplied(seq int64, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for n.applied.Load() < seq {
		select {
		case <-n.ack:
		case <-n.done:
			return
		case <-t.C:
			return
		}
	}
}

// RunLBNode runs one load balancer node (`wsfleet cloud lb-node`): it
// reads its configuration and then its orders from in (the cloud's pipe),
// proxies as the cloud's in-process listener does, writes its reports to
// out, and returns when in ends or ctx is done.
func RunLBNode(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	dec := json.NewDecoder(in)
	var cfg lbNodeConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("load balancer node: read config: %w", err)
	}
	log = log.With("listen", cfg.Listen)
	var outMu sync.Mutex
	enc := json.NewEncoder(out)
	report := func(r lbReport) error {
		outMu.Lock()
		defer outMu.Unlock()
		return enc.Encode(r)
	}
	var (
		poolMu        sync.Mutex
		healthy, open []string
		rr            int
	)
	pick := func() string {
		poolMu.Lock()
		defer poolMu.Unlock()
		return choose(healthy, open, &rr)
	}
	var onProxied func(string, *http.Request, int)
	if cfg.Proxied {
		onProxied = func(target string, req *http.Request, status int) {
			if err := report(lbReport{Proxied: true, AtNs: time.Now().UnixNano(), Target: target, Method: req.Method, URI: req.URL.RequestURI(), Host: req.Host, Status: status}); err != nil {
				log.Warn("load balancer node: report", "err", err)
			}
		}
	}
	px, err := startProxy(cfg.Listen, cfg.DialFrom, pick, onProxied, log)
	if err != nil {
		report(lbReport{})
		return fmt.Errorf("load balancer node: %w", err)
	}
	defer px.close()
	if err := report(lbReport{Ready: px.addr}); err != nil {
		return fmt.Errorf("load balancer node: report ready: %w", err)
	}
	orders := make(chan lbOrder)
	errc := make(chan error, 1)
	go func() {
		defer close(orders)
		for {
			var o lbOrder
			if err := dec.Decode(&o); err != nil {
				if !errors.Is(err, io.EOF) {
					errc <- fmt.Errorf("load balancer node: read order: %w", err)
				}
				return
			}
			orders <- o
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case o, ok := <-orders:
			if !ok {
				select {
				case err := <-errc:
					return err
				default:
					return nil
				}
			}
			if o.Pool {
				poolMu.Lock()
				healthy, open = o.Healthy, o.Open
				poolMu.Unlock()
				if err := report(lbReport{Applied: o.Seq}); err != nil {
					return fmt.Errorf("load balancer node: report: %w", err)
				}
			}
			if o.Cut != "" {
				px.cut(o.Cut)
			}
		}
	}
}

// ProcessIDs are the process ids of the running instances' nodes and of
// the load balancer nodes, for a caller measuring their CPU (the demo at
// scale).
func (c *Cloud) ProcessIDs() (nodes, lbNodes []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, in := range c.instOrder {
		if in.proc != nil && in.proc.cmd.Process != nil {
			nodes = append(nodes, in.proc.cmd.Process.Pid)
		}
	}
	for _, l := range c.listeners {
		for _, n := range l.nodes {
			lbNodes = append(lbNodes, n.cmd.Process.Pid)
		}
	}
	return nodes, lbNodes
}

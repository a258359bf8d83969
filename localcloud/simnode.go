package localcloud

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"wsfleet/nodeapi"
)

// Simulated nodes. A simulated instance runs no process, but a rollout
// still talks to its node: it waits for a replacement's node to report
// ready, drains the old ones and waits for them to empty, and its gates
// read every node's /metrics. So the cloud answers for each simulated
// instance, from its own process, what a ws node would: the admin API
// (nodeapi), /healthz, /readyz and /metrics, on one extra listener with a
// path per instance. The instance's wsfleet:admin tag holds that base URL,
// which is where the engine looks for a node's admin API before it tries
// PrivateIP:admin_port (each process instance, on its own address, needs
// no tag). A thousand simulated instances cost a thousand small records,
// not a thousand processes.
//
// A simulated node is ready once its instance runs (unless it is one of
// SimulatedFailureRate's failures, whose node never comes up), holds a
// settable number of connections, and drains as a node does: its
// connections are released one every max(window/n, 1/max_rate), on the
// cloud's clock, and what is left is closed at the deadline.

// AdminTag is the instance tag holding the base URL of a node's admin API
// when it is not at the instance's private address (the rollout engine's
// rollout.AdminTag).
const AdminTag = "wsfleet:admin"

// simVersion is the build a simulated node reports.
const simVersion = "simulated"

// The drain options a node uses for what a drain request leaves out: the
// defaults of `wsfleet serve`'s --drain-* flags.
const (
	simDrainWindow   = 30 * time.Second
	simDrainMaxRate  = 200.0
	simDrainDeadline = 5 * time.Minute
)

// DefaultSimulatedConnections is how many connections a simulated node
// holds when Config.SimulatedConnections is zero.
const DefaultSimulatedConnections = 100

// simNode is the node of a simulated instance; the cloud's mutex guards
// it.
type simNode struct {
	log    *slog.Logger
	token  string         // the admin token it accepts; "" turns the admin API off
	conns  int            // connections while ready
	errors map[string]int // wsfleet_errors_total by code
	drain  *simDrain      // nil until drained
}

// simDrain is a drain in progress: n connections, released one per step
// from started, the rest closed at deadline.
type simDrain struct {
	started  time.Time
	n        int
	step     time.Duration // 0 releases everything at once
	deadline time.Duration
}

// released is how many connections the drain has released at now.
func (d *simDrain) released(now time.Time) int {
	el := now.Sub(d.started)
	if d.step <= 0 || el >= d.deadline {
		return d.n
	}
	if el < 0 {
		return 0
	}
	return min(d.n, int(el/d.step))
}

// newSimNode makes the node of a simulated instance launched with the
// given (base64) user data. Its admin token is the user data's
// --admin-token, as a process node reads it, else Config.SimulatedAdminToken.
func (c *Cloud) newSimNode(id, userData string) *simNode {
	tok := c.cfg.SimulatedAdminToken
	if t, ok := userDataFlag(userData, "admin-token"); ok {
		tok = t
	}
	return &simNode{
		log:    c.log.With("instance", id, "node", "simulated"),
		token:  tok,
		conns:  c.cfg.SimulatedConnections,
		errors: map[string]int{},
	}
}

// userDataFlag returns the value of `--name=value` in base64 user data
// written as `wsfleet serve --aws` reads it (one flag per line; # starts a
// comment; a script for someone else, #! or #cloud-config, sets nothing).
// The last line naming the flag wins, as with repeated flags.
func userDataFlag(userData, name string) (string, bool) {
	b, err := base64.StdEncoding.DecodeString(userData)
	if err != nil {
		return "", false
	}
	s := string(b)
	if strings.HasPrefix(s, "#!") || strings.HasPrefix(s, "#cloud-config") {
		return "", false
	}
	var val string
	found := false
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "-") {
			continue
		}
		k, v, _ := strings.Cut(strings.TrimLeft(line, "-"), "=")
		if k == name {
			val, found = v, true
		}
	}
	return val, found
}

// startSimListener serves every simulated node on one listener beside the
// API endpoint's, at /sim/<instance-id>/.
func (c *Cloud) startSimListener() error {
	host, _, err := net.SplitHostPort(c.ln.Addr().String())
	if err != nil {
		return fmt.Errorf("simulated nodes: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("simulated nodes: listen: %w", err)
	}
	c.simLn = ln
	c.simSrv = &http.Server{Handler: http.HandlerFunc(c.serveSim), ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// simURL is the base URL of a simulated instance's node.
func (c *Cloud) simURL(id string) string {
	return "http://" + c.simLn.Addr().String() + "/sim/" + id
}

// simState is what a simulated node is at now: whether it is up at all
// (its instance runs and it is not a failure), and its state and open
// connections.
func (c *Cloud) simState(in *instance, now time.Time) (up bool, st nodeapi.State, conns int) {
	if in.sim == nil || in.state != stateRunning || in.simFail {
		return false, "", 0
	}
	d := in.sim.drain
	if d == nil {
		return true, nodeapi.StateReady, in.sim.conns
	}
	left := d.n - d.released(now)
	if left <= 0 {
		return true, nodeapi.StateDrained, 0
	}
	return true, nodeapi.StateDraining, left
}

// simCheck is a load balancer health check of path on a simulated node:
// the status code the node answers, 0 when it is not up.
func (c *Cloud) simCheck(in *instance, path string, now time.Time) int {
	up, st, _ := c.simState(in, now)
	switch {
	case !up:
		return 0
	case path == "/readyz" && st != nodeapi.StateReady:
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// serveSim answers a request to a simulated node: /sim/<instance-id> then
// the node's own path.
func (c *Cloud) serveSim(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/sim/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	id, path, _ := strings.Cut(rest, "/")
	path = "/" + path
	var body []byte
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = b
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in := c.instances[id]
	if in == nil || in.sim == nil {
		http.Error(w, "no simulated instance "+id, http.StatusNotFound)
		return
	}
	now := c.now()
	up, st, conns := c.simState(in, now)
	if !up {
		// A process node that is not running does not answer at all;
		// this is as close as HTTP gets.
		http.Error(w, fmt.Sprintf("node of %s is not running (instance %s)", id, in.state), http.StatusServiceUnavailable)
		return
	}
	n := in.sim
	switch path {
	case "/healthz":
		io.WriteString(w, "ok\n")
	case "/readyz":
		if st != nodeapi.StateReady {
			http.Error(w, "not ready: "+string(st), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	case "/metrics":
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeSimMetrics(w, n, conns)
	case nodeapi.PathStatus, nodeapi.PathDrain:
		want := http.MethodGet
		if path == nodeapi.PathDrain {
			want = http.MethodPost
		}
		if r.Method != want {
			w.Header().Set("Allow", want)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !nodeapi.Authorize(w, r, n.token) {
			return
		}
		if path == nodeapi.PathDrain {
			req, err := nodeapi.DecodeDrainRequest(body)
			if err != nil {
				n.errors["400"]++
				http.Error(w, "drain request: "+err.Error(), http.StatusBadRequest)
				return
			}
			if n.drain == nil {
				n.drain = newSimDrain(req, conns, now)
				n.log.Info("drain started", "connections", conns, "step", n.drain.step, "deadline", n.drain.deadline)
			}
			_, st, conns = c.simState(in, now)
			writeSimJSON(w, http.StatusAccepted, c.simStatus(in, st, conns, now))
			return
		}
		writeSimJSON(w, http.StatusOK, c.simStatus(in, st, conns, now))
	default:
		if strings.HasPrefix(path, "/admin/") {
			http.NotFound(w, r) // an admin request this node does not know
			return
		}
		// Anything else stands for the node's client endpoint (/bayeux),
		// which a simulated node has no clients on: it answers, so that
		// a health check of any path passes while the node runs.
		io.WriteString(w, "simulated node\n")
	}
}

// newSimDrain starts a drain of conns connections as a node paces it:
// one release every window/conns, no faster than max_rate, and whatever
// is left closed at the deadline. Fields left out take the node's
// defaults; a deadline of zero is the default too, as on the node.
func newSimDrain(req nodeapi.DrainRequest, conns int, now time.Time) *simDrain {
	window, rate, deadline := simDrainWindow, simDrainMaxRate, simDrainDeadline
	if req.Window != nil {
		window = req.Window.D()
	}
	if req.MaxRate > 0 {
		rate = req.MaxRate
	}
	if req.Deadline != nil && req.Deadline.D() > 0 {
		deadline = req.Deadline.D()
	}
	d := &simDrain{started: now, n: conns, deadline: deadline}
	if conns > 0 {
		d.step = window / time.Duration(conns)
	}
	if minStep := time.Duration(float64(time.Second) / rate); d.step < minStep {
		d.step = minStep
	}
	return d
}

// simStatus is a simulated node's GET /admin/status.
func (c *Cloud) simStatus(in *instance, st nodeapi.State, conns int, now time.Time) nodeapi.Status {
	name := in.tags["Name"]
	if name == "" {
		name = in.id
	}
	s := nodeapi.Status{
		// Version 1: a simulated node drains but has no cordon or shed
		// (version 2), so a change on simulated nodes runs without
		// connection placement rather than ask for what it lacks.
		APIVersion: 1, Node: name, Version: simVersion, Image: in.imageID,
		State: st, Connections: conns, Sessions: conns, Subscriptions: conns,
	}
	if d := in.sim.drain; d != nil {
		started := d.started
		s.Drain = nodeapi.DrainStatus{Remaining: conns, Released: d.released(now), StartedAt: &started}
	}
	return s
}

func writeSimJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeSimMetrics writes the node's metrics that rollouts read, with the
// names and labels of a ws node's: its connections and sessions, and its
// errors by code (code 500 always present, so that a gate on it has a
// sample to read).
func writeSimMetrics(w io.Writer, n *simNode, conns int) {
	fmt.Fprintf(w, "# HELP wsfleet_connections Open client connections by transport (simulated).\n# TYPE wsfleet_connections gauge\nwsfleet_connections{transport=\"websocket\"} %d\n", conns)
	fmt.Fprintf(w, "# HELP wsfleet_sessions Sessions held by this node (simulated).\n# TYPE wsfleet_sessions gauge\nwsfleet_sessions %d\n", conns)
	codes := []string{"500"}
	for code := range n.errors {
		if code != "500" {
			codes = append(codes, code)
		}
	}
	sort.Strings(codes)
	fmt.Fprintf(w, "# HELP wsfleet_errors_total Bayeux errors returned to clients, and HTTP 400s, by code (simulated).\n# TYPE wsfleet_errors_total counter\n")
	for _, code := range codes {
		fmt.Fprintf(w, "wsfleet_errors_total{code=%q} %d\n", code, n.errors[code])
	}
}

// ErrNotSimulated is returned for an instance that is not a live
// simulated instance.
var ErrNotSimulated = errors.New("not a live simulated instance")

// simulated returns the live simulated instance id, with the cloud's lock
// held.
func (c *Cloud) simulated(id string) (*instance, error) {
	in := c.instances[id]
	if in == nil || in.sim == nil || !in.alive() {
		return nil, fmt.Errorf("simulated node %s: %w", id, ErrNotSimulated)
	}
	return in, nil
}

// SetSimulatedConnections sets how many connections a simulated
// instance's node holds, so that a test can give a group a load (or none).
// A node that has started draining keeps the count it drains.
func (c *Cloud) SetSimulatedConnections(instanceID string, n int) error {
	if n < 0 {
		return fmt.Errorf("simulated node %s: %d connections", instanceID, n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in, err := c.simulated(instanceID)
	if err != nil {
		return err
	}
	in.sim.conns = n
	return nil
}

// AddSimulatedErrors adds n to a simulated node's wsfleet_errors_total
// with label code, as if it had answered n clients with that error: a
// test raises it to make a metric gate fail.
func (c *Cloud) AddSimulatedErrors(instanceID, code string, n int) error {
	if n < 0 || code == "" {
		return fmt.Errorf("simulated node %s: add %d errors of code %q", instanceID, n, code)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in, err := c.simulated(instanceID)
	if err != nil {
		return err
	}
	in.sim.errors[code] += n
	return nil
}

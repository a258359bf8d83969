package demo

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"wsfleet/rollout"
)

// The plan's drain at scale. The seed's plan (examples/gitter-ws-new-ami.yaml)
// paces every drain at drain.max_rate reconnects per second over the fleet
// (200, within the 250/s that the take-over benchmark supports for one
// receiving one-core node, docs/bench.md) and gives each drained node
// drain.deadline (30 s, inside the target group's 30 s deregistration
// delay) before the node closes what is left. At 2,000 clients the
// largest drain (the last batch: four old nodes and the retired canary,
// 5/9 of the clients with placement) takes 1,111/200 = 6 s; at 100,000 it
// takes 55,556/200 = 278 s, and a 30 s deadline would close 50,000
// clients at once, the reconnect storm the budget is there to prevent. So
// when the largest drain at max_rate outlasts the deadline, the demo
// raises drain.deadline (and the target group's deregistration delay,
// which must not be shorter) to three times that drain's time, rounded up
// to 10 s (under the demo's own load the nodes release below max_rate: a
// 20,000-client run's first batch hit a deadline of 1.25 times the drain,
// and at 100,000 clients, where the nodes released at 20 of their 45/s,
// three of the first half's four hit one of twice it and closed what was
// left at once: 422 reconnects in a second against the budget of 200);
// everything else, max_rate and every wait, stays the plan's.

// largestDrainShare is the part of the clients the seed plan's largest
// drain releases: the second half's four old nodes and the canary retired
// with them, of the nine nodes the clients are on after the canary phase.
const largestDrainShare = 5.0 / 9

// drainDeadlineFactor is how many times the largest drain's time at
// max_rate the deadline at scale gives it (see above).
const drainDeadlineFactor = 3

// scaledDrainDeadline is the drain deadline for clients under the plan
// (plan's own when it suffices; see above).
func scaledDrainDeadline(plan []byte, clients int) (time.Duration, error) {
	p, err := rollout.ParsePlan(plan)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}
	rate := p.Drain.MaxRate
	if rate <= 0 {
		rate = rollout.DefaultDrainMaxRate
	}
	need := time.Duration(float64(clients) * largestDrainShare / rate * float64(time.Second))
	if need <= p.Drain.Deadline.D() {
		return p.Drain.Deadline.D(), nil
	}
	tens := math.Ceil(need.Seconds() * drainDeadlineFactor / 10)
	return time.Duration(tens*10) * time.Second, nil
}

var drainDeadlineRE = regexp.MustCompile(`(?m)^(drain: \{.*deadline: )([0-9a-z]+)(\}.*)$`)

// withDrainDeadline is the plan with drain.deadline set to d.
func withDrainDeadline(plan []byte, d time.Duration) ([]byte, error) {
	if !drainDeadlineRE.Match(plan) {
		return nil, fmt.Errorf("plan: no \"drain: {…, deadline: …}\" line to set the deadline at scale in")
	}
	return drainDeadlineRE.ReplaceAll(plan, []byte("${1}"+d.String()+"${3}")), nil
}

// scalePlan is planForDemo's output with the drain deadline for clients.
func scalePlan(plan []byte, clients int) ([]byte, error) {
	d, err := scaledDrainDeadline(plan, clients)
	if err != nil {
		return nil, err
	}
	p, _ := rollout.ParsePlan(plan)
	if d == p.Drain.Deadline.D() {
		return plan, nil
	}
	out, err := withDrainDeadline(plan, d)
	if err != nil {
		return nil, err
	}
	if q, err := rollout.ParsePlan(out); err != nil || q.Drain.Deadline.D() != d || !bytes.Contains(out, []byte("max_rate")) {
		return nil, fmt.Errorf("plan: setting drain.deadline %s: %v", d, err)
	}
	return out, nil
}

// Scale is what a split run adds to the summary: how it was split, the
// most connections one node held, and the CPU each kind of process used.
type Scale struct {
	Generators int `json:"generators"`
	LBNodes    int `json:"lb_nodes"`
	// PeakNodeConnections is the most connections one node held in any
	// sample, against the per-process open-file limit FDLimit.
	PeakNodeConnections int    `json:"peak_node_connections"`
	PeakNode            string `json:"peak_node"`
	FDLimit             int    `json:"fd_limit"`
	// CPU is the CPU time each kind of process used over the run (nodes,
	// load balancer nodes, generators, the demo itself), from
	// /proc/PID/stat read every second (a process that exits loses at
	// most its last second); CPUChange the same over the change alone.
	CPU       map[string]time.Duration `json:"cpu"`
	CPUChange map[string]time.Duration `json:"cpu_change"`
}

// cpuMeter reads the CPU time of the run's processes every second.
type cpuMeter struct {
	pids func() map[string][]int // by kind
	read func(pid int) (time.Duration, bool)

	mu   sync.Mutex
	last map[int]time.Duration // by pid, the latest reading
	kind map[int]string
	mark map[string]time.Duration // totals at the change's start

	done, finished chan struct{}
}

func newCPUMeter(pids func() map[string][]int) *cpuMeter {
	return &cpuMeter{pids: pids, read: procCPU, last: map[int]time.Duration{}, kind: map[int]string{},
		done: make(chan struct{}), finished: make(chan struct{})}
}

func (m *cpuMeter) loop() {
	defer close(m.finished)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.readAll()
		select {
		case <-m.done:
			return
		case <-t.C:
		}
	}
}

func (m *cpuMeter) readAll() {
	for kind, ps := range m.pids() {
		for _, pid := range ps {
			if v, ok := m.read(pid); ok {
				m.mu.Lock()
				m.last[pid], m.kind[pid] = v, kind
				m.mu.Unlock()
			}
		}
	}
}

// totals are the CPU per kind so far.
func (m *cpuMeter) totals() map[string]time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Duration{}
	for pid, v := range m.last {
		out[m.kind[pid]] += v
	}
	return out
}

// markChange remembers the totals at the change's start.
func (m *cpuMeter) markChange() {
	m.readAll()
	t := m.totals()
	m.mu.Lock()
	m.mark = t
	m.mu.Unlock()
}

// endChange returns the CPU per kind since markChange.
func (m *cpuMeter) endChange() map[string]time.Duration {
	m.readAll()
	t := m.totals()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range t {
		t[k] = v - m.mark[k]
	}
	return t
}

// stop takes a last reading and returns the totals over the run.
func (m *cpuMeter) stop() map[string]time.Duration {
	close(m.done)
	<-m.finished
	m.readAll()
	return m.totals()
}

// startScale starts measuring a split run's processes.
func (d *run) startScale() {
	gens := d.genProcs
	d.cpu = newCPUMeter(func() map[string][]int {
		nodes, lbs := d.cloud.ProcessIDs()
		out := map[string][]int{"nodes": nodes, "load balancer nodes": lbs, "demo": {os.Getpid()}}
		if gens != nil {
			for _, p := range gens.procs {
				out["generators"] = append(out["generators"], p.cmd.Process.Pid)
			}
		}
		return out
	})
	go d.cpu.loop()
}

// scaleSummary is the summary's Scale of a split run, nil otherwise.
func (d *run) scaleSummary(samples []Sample, cpuChange map[string]time.Duration) *Scale {
	if d.cpu == nil {
		return nil
	}
	sc := &Scale{Generators: d.gens, LBNodes: d.lbNodes, FDLimit: openFileLimit(), CPU: d.cpu.stop(), CPUChange: cpuChange}
	for _, smp := range samples {
		for _, in := range smp.Instances {
			if in.Connections > sc.PeakNodeConnections {
				sc.PeakNodeConnections, sc.PeakNode = in.Connections, in.Name
			}
		}
	}
	return sc
}

// writeText is the summary's scale line.
func (sc *Scale) writeText(w io.Writer, change time.Duration) {
	if sc == nil {
		return
	}
	fmt.Fprintf(w, "  scale:     %d generator processes, %d load balancer nodes; peak %d connections on one node (%s; open-file limit %d)\n",
		sc.Generators, sc.LBNodes, sc.PeakNodeConnections, sc.PeakNode, sc.FDLimit)
	var parts []string
	for _, k := range []string{"nodes", "load balancer nodes", "generators", "demo"} {
		v := sc.CPUChange[k]
		pct := 0.0
		if change > 0 {
			pct = 100 * v.Seconds() / change.Seconds()
		}
		parts = append(parts, fmt.Sprintf("%s %.0f s (%.0f%% of a core)", k, v.Seconds(), pct))
	}
	fmt.Fprintf(w, "  cpu:       over the change: %s\n", strings.Join(parts, ", "))
}

// procCPU is a process's user and system CPU time from /proc/PID/stat
// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

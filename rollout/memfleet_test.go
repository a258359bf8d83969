package rollout

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// memCloud is an in-memory Auto Scaling group that behaves like one: it
// launches instances when desired capacity rises (on the group's launch
// template version), boots them over bootTime, scales in unprotected
// instances when desired falls, replaces terminated instances unless the
// desired capacity was decremented, and runs a ws node on each instance
// whose connections drain over the drain window. It counts every call and
// records every violation of the rollout's promises (an instance
// terminated twice, serving capacity under the floor).
type memCloud struct {
	mu       sync.Mutex
	now      func() time.Time
	bootTime time.Duration
	name     string
	desired  int
	max      int
	versions []string // image per launch template version (1-based)
	version  int
	tokens   map[string]int
	tags     map[string]string
	inst     map[string]*memInst
	seq      int

	calls      map[string]int
	terminated map[string]int // effective terminations per instance
	floor      int            // serving instances must never drop under this (0: unchecked)
	violations []string
	unhealthy  map[string]bool // images whose nodes never become ready
	// elbKill, when set, makes the group replace a draining instance
	// that long after its drain began, as a group with ELB health checks
	// does once the node's failing readiness makes its target unhealthy.
	elbKill   time.Duration
	elbKilled int
	failCalls map[string]error
	failOnce  map[string]error // the next call of each fails, once
	// suspended is the group's suspended processes; while
	// ReplaceUnhealthy is, an instance marked unhealthy stays in service
	// and is replaced once it resumes.
	suspended map[string]bool
	// deregDelay is the target group's deregistration delay: a
	// deregistered target's open connections are cut when it ends.
	deregDelay      time.Duration
	launchedByGroup int // instances launched to replace unhealthy ones

	// place models connection placement (placement_test.go): clients a
	// drain or shed releases reconnect, round-robin, to the instances
	// whose target is healthy; a cordoned node's target turns unhealthy
	// hcLatency after its cordon. moves counts reconnects.
	place     bool
	hcLatency time.Duration
	moves     int
	rr        int
}

type memInst struct {
	id, name, image string
	lifecycle       string
	protected       bool
	launched        time.Time
	goneAt          time.Time
	conns           int
	drainAt         time.Time
	drainWindow     time.Duration
	drainConns      int
	drains          int
	registered      bool      // in the target group
	deregAt         time.Time // when it left the target group
	unhealthy       bool      // the group's health mark

	cordoned bool
	cordonAt time.Time
	// steeredUntil: an uncordoned target stays unhealthy until the
	// load balancer's checks pass again.
	steeredUntil time.Time
	shedIDs      map[string]int
	shedAt       time.Time
	shedCount    int
	shedDone     int
	shedWindow   time.Duration
}

var _ Provider = (*memCloud)(nil)

func newMemCloud(now func() time.Time, n int, image string) *memCloud {
	c := &memCloud{now: now, bootTime: 20 * time.Second, name: "gitter-ws", desired: n, max: n,
		versions: []string{image}, version: 1, tokens: map[string]int{}, tags: map[string]string{},
		inst: map[string]*memInst{}, calls: map[string]int{}, terminated: map[string]int{}, unhealthy: map[string]bool{}, failCalls: map[string]error{},
		suspended: map[string]bool{}, deregDelay: 5 * time.Minute}
	for i := 1; i <= n; i++ {
		in := c.launch()
		in.name = fmt.Sprintf("ws-%02d", i)
		in.lifecycle = "InService"
		in.launched = now().Add(-24 * time.Hour)
		in.conns = 250
		in.registered = true
	}
	return c
}

func (c *memCloud) launch() *memInst {
	c.seq++
	in := &memInst{id: fmt.Sprintf("i-%04d", c.seq), image: c.versions[c.version-1], lifecycle: "Pending", launched: c.now()}
	c.inst[in.id] = in
	return in
}

func (c *memCloud) count(op string) error {
	c.calls[op]++
	if err := c.failOnce[op]; err != nil {
		delete(c.failOnce, op)
		return err
	}
	return c.failCalls[op]
}

// tick moves the model to now: boots, drains, terminations, scaling.
func (c *memCloud) tick() {
	now := c.now()
	live := 0
	for _, in := range c.sorted() {
		switch in.lifecycle {
		case "Pending":
			if now.Sub(in.launched) >= c.bootTime {
				in.lifecycle = "InService"
			}
		case "Terminating":
			// The termination lifecycle hook holds a draining node
			// until it is empty.
			if now.Sub(in.goneAt) >= 2*time.Second && (in.drainAt.IsZero() || in.conns == 0) {
				in.lifecycle = "Terminated"
			}
		}
		if in.lifecycle == "InService" && in.deregAt.IsZero() && !in.registered {
			in.registered = true // AddToLoadBalancer
		}
		// A draining node fails its readiness: the group marks it
		// unhealthy, conservatively whether or not it is still in the
		// target group.
		if c.elbKill > 0 && in.lifecycle == "InService" && !in.drainAt.IsZero() && now.Sub(in.drainAt) >= c.elbKill {
			in.unhealthy = true
		}
		if in.unhealthy && in.lifecycle == "InService" && !c.suspended["ReplaceUnhealthy"] {
			in.lifecycle, in.goneAt = "Terminating", now
			c.elbKilled++
			c.launchedByGroup++
		}
		if !in.deregAt.IsZero() && in.conns > 0 && now.Sub(in.deregAt) > c.deregDelay && in.lifecycle != "Terminated" {
			c.violations = append(c.violations, fmt.Sprintf("%s (%s): the load balancer cut %d connections at the end of the deregistration delay", in.id, in.name, in.conns))
			in.conns = 0
		}
		if !in.drainAt.IsZero() && in.conns > 0 && !c.place {
			left := in.drainWindow - now.Sub(in.drainAt)
			if left <= 0 {
				in.conns = 0
			} else {
				in.conns = int(float64(in.drainConns) * float64(left) / float64(in.drainWindow))
			}
		}
		if (in.lifecycle == "Pending" || in.lifecycle == "InService") && in.drainAt.IsZero() {
			live++
		}
		_ = live
	}
	if c.place {
		c.placeClients(now)
		// The group's ELB health check marks a cordoned instance
		// unhealthy (the grace period long over): kept only while
		// ReplaceUnhealthy is suspended.
		for _, in := range c.inst {
			if in.lifecycle == "InService" && c.cordonSteered(in, now) {
				in.unhealthy = true
			}
		}
	}
	// The group keeps live (Pending or InService) instances at desired.
	var liveList []*memInst
	for _, in := range c.sorted() {
		if in.lifecycle == "Pending" || in.lifecycle == "InService" {
			liveList = append(liveList, in)
		}
	}
	for n := len(liveList); n < c.desired; n++ {
		c.launch()
	}
	if extra := len(liveList) - c.desired; extra > 0 {
		// Scale in: oldest template version first, never a protected one.
		sort.SliceStable(liveList, func(i, j int) bool { return liveList[i].image < liveList[j].image })
		for _, in := range liveList {
			if extra == 0 {
				break
			}
			if in.protected {
				continue
			}
			c.violations = append(c.violations, "scale-in terminated "+in.id+" ("+in.name+")")
			in.lifecycle, in.goneAt = "Terminating", now
			extra--
		}
	}
	if c.floor > 0 {
		serving := 0
		for _, in := range c.inst {
			if in.lifecycle == "InService" && in.drainAt.IsZero() && !c.unhealthy[in.image] {
				serving++
			}
		}
		if serving < c.floor {
			c.violations = append(c.violations, fmt.Sprintf("%s: %d serving instances, under %d", now.Format(time.TimeOnly), serving, c.floor))
		}
	}
}

func (c *memCloud) sorted() []*memInst {
	out := make([]*memInst, 0, len(c.inst))
	for _, in := range c.inst {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (c *memCloud) Group(ctx context.Context, name string) (Group, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("DescribeAutoScalingGroups"); err != nil {
		return Group{}, err
	}
	if name != c.name {
		return Group{}, fmt.Errorf("group %s: %w", name, ErrNotFound)
	}
	c.tick()
	g := Group{Name: c.name, Desired: c.desired, Max: c.max, Image: c.versions[c.version-1],
		Template: TemplateRef{ID: "lt-1", Name: "gitter-ws", Version: fmt.Sprint(c.version)}, Tags: map[string]string{}}
	for k, v := range c.tags {
		g.Tags[k] = v
	}
	for _, in := range c.sorted() {
		if in.lifecycle == "Terminated" {
			continue
		}
		health := "initial"
		if in.lifecycle == "InService" && !c.unhealthy[in.image] {
			health = "healthy"
		}
		switch {
		case !in.registered && !in.deregAt.IsZero() && c.now().Sub(in.deregAt) < c.deregDelay:
			health = "draining"
		case !in.registered && in.lifecycle != "Pending":
			health = "unregistered"
		case !in.drainAt.IsZero():
			health = "unhealthy" // its readiness fails
		case c.cordonSteered(in, c.now()):
			health = "unhealthy"
		}
		hs := "Healthy"
		if in.unhealthy {
			hs = "Unhealthy"
		}
		g.Instances = append(g.Instances, Instance{ID: in.id, Name: in.name, Image: in.image, Lifecycle: in.lifecycle,
			Health: health, HealthStatus: hs, Protected: in.protected, LaunchTime: in.launched, PrivateIP: "127.0.0.1"})
	}
	for p, on := range c.suspended {
		if on {
			g.Suspended = append(g.Suspended, p)
		}
	}
	sort.Strings(g.Suspended)
	return g, nil
}

func (c *memCloud) SetImage(ctx context.Context, group, image, token string) (TemplateChange, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("CreateLaunchTemplateVersion"); err != nil {
		return TemplateChange{}, err
	}
	prev := c.version
	if v, ok := c.tokens[token]; ok {
		prev = v - 1
	} else {
		c.versions = append(c.versions, image)
		c.tokens[token] = len(c.versions)
	}
	c.version = c.tokens[token]
	return TemplateChange{
		Previous:      TemplateRef{ID: "lt-1", Name: "gitter-ws", Version: fmt.Sprint(prev)},
		PreviousImage: c.versions[prev-1],
		New:           TemplateRef{ID: "lt-1", Name: "gitter-ws", Version: fmt.Sprint(c.version)},
	}, nil
}

func (c *memCloud) SetTemplateVersion(ctx context.Context, group string, t TemplateRef) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("UpdateAutoScalingGroup"); err != nil {
		return err
	}
	var v int
	fmt.Sscan(t.Version, &v)
	if v < 1 || v > len(c.versions) {
		return fmt.Errorf("version %s: %w", t.Version, ErrNotFound)
	}
	c.version = v
	return nil
}

func (c *memCloud) SetDesired(ctx context.Context, group string, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("SetDesiredCapacity"); err != nil {
		return err
	}
	c.desired = n
	c.max = max(c.max, n)
	c.tick()
	return nil
}

func (c *memCloud) SetProtection(ctx context.Context, group string, ids []string, protected bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("SetInstanceProtection"); err != nil {
		return err
	}
	for _, id := range ids {
		if in, ok := c.inst[id]; ok {
			in.protected = protected
		}
	}
	return nil
}

func (c *memCloud) Terminate(ctx context.Context, group, id string, decrement bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("TerminateInstanceInAutoScalingGroup"); err != nil {
		return err
	}
	in, ok := c.inst[id]
	if !ok || (in.lifecycle != "Pending" && in.lifecycle != "InService") {
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	c.terminated[id]++
	in.lifecycle, in.goneAt = "Terminating", c.now()
	if decrement {
		c.desired--
	}
	c.tick()
	return nil
}

func (c *memCloud) TagInstance(ctx context.Context, id, key, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("CreateTags"); err != nil {
		return err
	}
	if in, ok := c.inst[id]; ok && key == "Name" {
		in.name = value
	}
	return nil
}

func (c *memCloud) TagGroup(ctx context.Context, group, key, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("CreateOrUpdateTags"); err != nil {
		return err
	}
	if value == "" {
		delete(c.tags, key)
	} else {
		c.tags[key] = value
	}
	return nil
}

var (
	_ ProcessSuspender = (*memCloud)(nil)
	_ TargetRegistrar  = (*memCloud)(nil)
)

func (c *memCloud) SuspendProcesses(ctx context.Context, group string, ps []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("SuspendProcesses"); err != nil {
		return err
	}
	for _, p := range ps {
		c.suspended[p] = true
	}
	return nil
}

func (c *memCloud) ResumeProcesses(ctx context.Context, group string, ps []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("ResumeProcesses"); err != nil {
		return err
	}
	for _, p := range ps {
		delete(c.suspended, p)
	}
	c.tick()
	return nil
}

func (c *memCloud) SetInstanceHealth(ctx context.Context, id string, healthy bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("SetInstanceHealth"); err != nil {
		return err
	}
	in, ok := c.inst[id]
	if !ok {
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	in.unhealthy = !healthy
	return nil
}

func (c *memCloud) DeregisterTargets(ctx context.Context, group string, ids []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("DeregisterTargets"); err != nil {
		return err
	}
	for _, id := range ids {
		if in, ok := c.inst[id]; ok && in.registered {
			in.registered, in.deregAt = false, c.now()
		}
	}
	return nil
}

func (c *memCloud) RegisterTargets(ctx context.Context, group string, ids []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("RegisterTargets"); err != nil {
		return err
	}
	for _, id := range ids {
		if in, ok := c.inst[id]; ok {
			in.registered, in.deregAt = true, time.Time{}
		}
	}
	return nil
}

func (c *memCloud) DeregistrationDelay(ctx context.Context, group string) (time.Duration, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.count("DescribeTargetGroupAttributes"); err != nil {
		return 0, false, err
	}
	return c.deregDelay, true, nil
}

// ImageExists knows the images the model was built with.
func (c *memCloud) ImageExists(ctx context.Context, image string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("DescribeImages")
	return image == "ami-old" || image == "ami-new", nil
}

func (c *memCloud) APICalls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// memNodes is the node admin API of memCloud's instances.
type memNodes struct{ c *memCloud }

// serving is the instance of id whose node answers op, with c.mu held.
func (c *memCloud) serving(op, id string) (*memInst, error) {
	m, ok := c.inst[id]
	if !ok || m.lifecycle != "InService" {
		return nil, fmt.Errorf("%s %s: connection refused", op, id)
	}
	return m, nil
}

func (n memNodes) Drain(ctx context.Context, in Instance, o DrainOptions) error {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.serving("drain", in.ID)
	if err != nil {
		return err
	}
	m.drains++
	if m.registered {
		// The load balancer would send released clients back to it
		// until its health check noticed ("500 Node draining").
		c.violations = append(c.violations, fmt.Sprintf("%s (%s) drained while still in the target group", m.id, m.name))
	}
	if m.drainAt.IsZero() {
		m.drainAt, m.drainWindow, m.drainConns = c.now(), max(o.Window, time.Second), m.conns
	}
	return nil
}

func (n memNodes) Status(ctx context.Context, in Instance) (NodeStatus, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.inst[in.ID]
	if !ok || (m.lifecycle != "InService" && (m.lifecycle != "Terminating" || m.drainAt.IsZero())) {
		return NodeStatus{}, fmt.Errorf("status %s: connection refused", in.ID)
	}
	st := NodeStatus{Node: m.name, Image: m.image, State: "ready", Connections: m.conns}
	if c.unhealthy[m.image] {
		st.State = "starting"
	}
	if !m.drainAt.IsZero() {
		st.State = "draining"
		if m.conns == 0 {
			st.State = "drained"
		}
	}
	return st, nil
}

// fakeClock is the engine's clock in tests: Sleep advances it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
	return nil
}

// health is the load balancer's view of an instance's target (as Group
// reports it).
func (c *memCloud) health(in *memInst, now time.Time) string {
	switch {
	case in.lifecycle != "InService" || c.unhealthy[in.image] || !in.registered:
		return "-"
	case !in.drainAt.IsZero():
		return "unhealthy"
	case c.cordonSteered(in, now):
		return "unhealthy"
	}
	return "healthy"
}

// cordonSteered reports whether the load balancer sees the instance's
// cordon: from hcLatency after it until hcLatency after its uncordon.
func (c *memCloud) cordonSteered(in *memInst, now time.Time) bool {
	return in.cordoned && now.Sub(in.cordonAt) >= c.hcLatency || now.Before(in.steeredUntil)
}

// placeClients releases what drains and sheds are due to release by now
// and reconnects those clients to the healthy targets, round-robin (to
// every serving one when none is healthy: the load balancer fails open).
func (c *memCloud) placeClients(now time.Time) {
	released := 0
	for _, in := range c.sorted() {
		if !in.drainAt.IsZero() && in.conns > 0 {
			left := in.drainWindow - now.Sub(in.drainAt)
			want := 0
			if left > 0 {
				want = int(float64(in.drainConns) * float64(left) / float64(in.drainWindow))
			}
			if want < in.conns {
				released += in.conns - want
				in.conns = want
			}
		}
		if in.shedCount > in.shedDone && in.drainAt.IsZero() {
			due := in.shedCount
			if el := now.Sub(in.shedAt); el < in.shedWindow {
				due = int(float64(in.shedCount) * float64(el) / float64(in.shedWindow))
			}
			n := min(due-in.shedDone, in.conns)
			if n > 0 {
				in.conns -= n
				in.shedDone += n
				released += n
			}
		}
	}
	if released == 0 {
		return
	}
	var pool []*memInst
	for _, in := range c.sorted() {
		if c.health(in, now) == "healthy" {
			pool = append(pool, in)
		}
	}
	if len(pool) == 0 {
		for _, in := range c.sorted() {
			if c.health(in, now) != "-" {
				pool = append(pool, in)
			}
		}
	}
	if len(pool) == 0 {
		c.violations = append(c.violations, fmt.Sprintf("%d released clients found no instance", released))
		return
	}
	for range released {
		pool[c.rr%len(pool)].conns++
		c.rr++
	}
	c.moves += released
}

// placeNodes is memNodes with the admin API's cordon and shed.
type placeNodes struct{ memNodes }

var _ Placer = placeNodes{}

func (n placeNodes) Cordon(ctx context.Context, in Instance, cordoned bool) error {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.serving("cordon", in.ID)
	if err != nil {
		return err
	}
	if cordoned && !m.cordoned {
		m.cordonAt = c.now()
	}
	if !cordoned && c.cordonSteered(m, c.now()) {
		m.steeredUntil = c.now().Add(c.hcLatency)
	}
	m.cordoned = cordoned
	return nil
}

func (n placeNodes) Shed(ctx context.Context, in Instance, o ShedOptions) error {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.serving("shed", in.ID)
	if err != nil {
		return err
	}
	if m.shedIDs == nil {
		m.shedIDs = map[string]int{}
	}
	m.shedIDs[o.ID]++
	if m.shedIDs[o.ID] > 1 {
		return nil // the same shed again: nothing new
	}
	c.tick()
	m.shedAt, m.shedCount, m.shedDone, m.shedWindow = c.now(), o.Count, 0, max(o.Window, time.Second)
	return nil
}

// placeCloud is memCloud with its target group's health check.
type placeCloud struct{ processView }

func (p placeCloud) TargetHealthChecks(ctx context.Context, group string) ([]HealthCheck, error) {
	return []HealthCheck{{TargetGroup: "gitter-ws", Enabled: true, Protocol: "HTTP", Path: ReadinessPath,
		Interval: p.hcLatency / 2, UnhealthyThreshold: 2, HealthyThreshold: 2}}, nil
}

// Status is memNodes' with the admin API version that has cordon and shed.
func (n placeNodes) Status(ctx context.Context, in Instance) (NodeStatus, error) {
	st, err := n.memNodes.Status(ctx, in)
	st.APIVersion = PlacementAPIVersion
	return st, err
}

package localcloud

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// Auto Scaling groups: the model and the reconciler that moves instances
// through their lifecycle as AWS documents it:
//
//	Pending → [Pending:Wait → Pending:Proceed] → registered, healthy → InService
//	Terminating → deregistered, deregistration delay → [Terminating:Wait →
//	Terminating:Proceed] → SIGTERM, SIGKILL after a grace → Terminated
//	InService → EnteringStandby → deregistered → Standby → Pending → InService

const (
	lcPending            = "Pending"
	lcPendingWait        = "Pending:Wait"
	lcPendingProceed     = "Pending:Proceed"
	lcInService          = "InService"
	lcTerminating        = "Terminating"
	lcTerminatingWait    = "Terminating:Wait"
	lcTerminatingProceed = "Terminating:Proceed"
	lcTerminated         = "Terminated"
	lcEnteringStandby    = "EnteringStandby"
	lcStandby            = "Standby"

	transLaunch    = "autoscaling:EC2_INSTANCE_LAUNCHING"
	transTerminate = "autoscaling:EC2_INSTANCE_TERMINATING"

	healthy   = "Healthy"
	unhealthy = "Unhealthy"
)

// asgInstance is a group's view of one of its instances.
type asgInstance struct {
	g          *group
	lifecycle  string
	health     string
	protected  bool
	registered bool                 // registered with the group's target groups
	actions    map[string]*lcAction // lifecycle actions in progress, by hook name
	activity   *activity            // the launch or terminate activity in progress
	inService  time.Time            // when it came into service; the grace period counts from here
	// unhealthyCause is the activity cause recorded when a health check
	// marked the instance unhealthy; it waits here while ReplaceUnhealthy
	// or Terminate is suspended.
	unhealthyCause string
}

type asgTag struct {
	value     string
	propagate bool
}

type activity struct {
	id, group, desc, cause, status, statusMsg, details string
	start, end                                         time.Time
	progress                                           int
}

type group struct {
	name, arn           string
	created             time.Time
	ltID, ltVersion     string
	lcName              string // the launch configuration, when the group has no launch template
	min, max, desired   int
	cooldown            int
	azs                 []string
	vpcZone             string
	tgARNs              []string
	healthType          string
	grace               int
	termPolicies        []string
	newProtected        bool
	tags                map[string]asgTag
	hooks               []*hook
	instances           []*instance
	activities          []*activity
	cause               string // why capacity last changed, for activity causes
	maxInstanceLifetime int
	deleting            bool
	suspendedProcs      map[string]string // suspended scaling process → SuspensionReason
}

// reconcile is one pass of every control loop: EC2 states, target
// deregistrations, then each group.
func (c *Cloud) reconcile() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.tickInstances(now)
	c.tickTargets(now)
	names := make([]string, 0, len(c.groups))
	for n := range c.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c.reconcileGroup(c.groups[n], now)
	}
}

func (c *Cloud) reconcileGroup(g *group, now time.Time) {
	for _, in := range append([]*instance(nil), g.instances...) {
		c.stepInstance(g, in, now)
	}
	if g.deleting {
		if len(g.instances) == 0 {
			delete(c.groups, g.name)
		}
		return
	}
	capacity := 0
	for _, in := range g.instances {
		if inCapacity(in.asg.lifecycle) {
			capacity++
		}
	}
	switch {
	case capacity < g.desired && g.suspended(procLaunch):
		// The group stays short until Launch resumes.
	case capacity > g.desired && g.suspended(procTerminate):
		// No scale-in until Terminate resumes.
	case capacity < g.desired:
		cause := g.cause
		if cause == "" {
			cause = fmt.Sprintf("At %s an instance was started in response to a difference between desired and actual capacity", isoTime(now))
		}
		cause = fmt.Sprintf("%s, increasing the capacity from %d to %d.", trimDot(cause), capacity, g.desired)
		for i := capacity; i < g.desired; i++ {
			if err := c.launchInGroup(g, now, cause); err != nil {
				c.recordActivity(g, now, "Launching a new EC2 instance.  Status Reason: "+err.Message, cause, "Failed", err.Message)
				break
			}
		}
		g.cause = ""
	case capacity > g.desired:
		cause := g.cause
		if cause == "" {
			cause = fmt.Sprintf("At %s an instance was taken out of service in response to a difference between desired and actual capacity", isoTime(now))
		}
		cause = fmt.Sprintf("%s, shrinking the capacity from %d to %d.", trimDot(cause), capacity, g.desired)
		for i := g.desired; i < capacity; i++ {
			v := c.pickVictim(g, now)
			if v == nil {
				break // every candidate is protected from scale-in
			}
			c.startTerminate(g, v, now, cause)
		}
		g.cause = ""
	}
}

func trimDot(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '.' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// inCapacity reports whether an instance in this state counts toward the
// group's capacity. Standby instances do not: that is why entering standby
// without decrementing the desired capacity launches a replacement.
func inCapacity(lifecycle string) bool {
	switch lifecycle {
	case lcPending, lcPendingWait, lcPendingProceed, lcInService:
		return true
	}
	return false
}

// stepInstance advances one instance of g by as many states as now allows.
func (c *Cloud) stepInstance(g *group, in *instance, now time.Time) {
	a := in.asg
	if a.lifecycle == lcDetaching {
		c.stepDetaching(g, in, now) // detach.go
		return
	}
	// An instance shut down behind the group's back (EC2
	// TerminateInstances) is unhealthy and goes without hooks.
	if !in.alive() && a.lifecycle != lcTerminatingProceed && a.lifecycle != lcTerminated {
		a.health = unhealthy
		if a.lifecycle != lcTerminating && a.lifecycle != lcTerminatingWait {
			c.startTerminate(g, in, now, fmt.Sprintf("At %s an instance was taken out of service in response to an EC2 instance status check failure.", isoTime(now)))
		}
		c.deregisterInstance(g, in, now)
		a.lifecycle = lcTerminatingProceed
	}
	for range 6 {
		before := a.lifecycle
		switch a.lifecycle {
		case lcPending:
			if in.state != stateRunning {
				return
			}
			if hooks := g.hooksFor(transLaunch); len(hooks) > 0 {
				c.startActions(in, hooks, now)
				a.lifecycle = lcPendingWait
			} else {
				a.lifecycle = lcPendingProceed
				c.addToLoadBalancer(g, in, now)
			}
		case lcPendingWait:
			result, done := c.actionsDone(in, now)
			if !done {
				return
			}
			if result == "ABANDON" {
				a.health = unhealthy
				c.startTerminate(g, in, now, fmt.Sprintf("At %s an instance was taken out of service because a launch lifecycle action was abandoned.", isoTime(now)))
				break
			}
			a.lifecycle = lcPendingProceed
			c.addToLoadBalancer(g, in, now)
		case lcPendingProceed:
			allHealthy, anyUnhealthy := c.targetHealth(g, in)
			pastGrace := now.Sub(in.launched) >= time.Duration(g.grace)*time.Second
			switch {
			case allHealthy:
				c.enterService(g, in, now)
			case anyUnhealthy && pastGrace && g.healthType == "ELB" && !g.suspended(procHealthCheck):
				c.markUnhealthy(in, now)
				if g.suspended(procReplaceUnhealthy) {
					// Kept, marked unhealthy, until ReplaceUnhealthy resumes.
					c.enterService(g, in, now)
					break
				}
				// Suspending Terminate holds back only InService instances.
				c.startTerminate(g, in, now, a.unhealthyCause)
			case anyUnhealthy && pastGrace:
				// Health check type EC2 (or a suspended HealthCheck) does
				// not wait for the load balancer.
				c.enterService(g, in, now)
			default:
				return
			}
		case lcInService:
			// AWS: the grace period is the time after an instance "has come
			// into service" before a failed health check marks it unhealthy.
			if a.health != unhealthy && g.healthType == "ELB" && !g.suspended(procHealthCheck) &&
				now.Sub(a.inService) >= time.Duration(g.grace)*time.Second {
				if _, anyUnhealthy := c.targetHealth(g, in); anyUnhealthy {
					c.markUnhealthy(in, now)
				}
			}
			// ReplaceUnhealthy terminates through the Terminate process:
			// while either is suspended the instance stays, still marked
			// unhealthy (it never recovers by itself, as on AWS).
			if a.health == unhealthy && !g.suspended(procReplaceUnhealthy) && !g.suspended(procTerminate) {
				c.startTerminate(g, in, now, a.unhealthyCause)
				break
			}
			return
		case lcTerminating:
			if !c.deregistered(in) {
				return
			}
			if hooks := g.hooksFor(transTerminate); len(hooks) > 0 {
				c.startActions(in, hooks, now)
				a.lifecycle = lcTerminatingWait
			} else {
				a.lifecycle = lcTerminatingProceed
			}
		case lcTerminatingWait:
			if _, done := c.actionsDone(in, now); !done {
				return
			}
			a.lifecycle = lcTerminatingProceed
		case lcTerminatingProceed:
			c.terminate(in, "Client.UserInitiatedShutdown: User initiated shutdown")
			if in.state != stateTerminated {
				return
			}
			a.lifecycle = lcTerminated
			if a.activity != nil {
				a.activity.status, a.activity.end, a.activity.progress = "Successful", now, 100
				a.activity = nil
			}
			g.remove(in)
			return
		case lcEnteringStandby:
			if !c.deregistered(in) {
				return
			}
			a.lifecycle = lcStandby
		default:
			return
		}
		if a.lifecycle == before {
			return
		}
		a.noteActivity()
	}
}

// noteActivity mirrors the instance's state in its activity's status code,
// as AWS reports an activity that waits on a hook or on connection
// draining.
func (a *asgInstance) noteActivity() {
	if a.activity == nil || a.activity.status == "Successful" || a.activity.status == "Cancelled" {
		return
	}
	switch a.lifecycle {
	case lcPendingWait, lcTerminatingWait:
		a.activity.status, a.activity.progress = "MidLifecycleAction", 50
	case lcTerminating:
		a.activity.status, a.activity.progress = "WaitingForELBConnectionDraining", 50
	case lcPendingProceed:
		a.activity.status, a.activity.progress = "PreInService", 30
	default:
		a.activity.status = "InProgress"
	}
}

func (c *Cloud) enterService(g *group, in *instance, now time.Time) {
	a := in.asg
	a.lifecycle = lcInService
	if a.unhealthyCause == "" {
		a.health = healthy
	}
	a.inService = now
	if a.activity != nil {
		a.activity.status, a.activity.end, a.activity.progress = "Successful", now, 100
		a.activity = nil
	}
	c.log.Info("instance in service", "group", g.name, "instance", in.id)
}

// markUnhealthy records that an ELB health check failed the instance, with
// the cause its replacement will carry.
func (c *Cloud) markUnhealthy(in *instance, now time.Time) {
	c.setUnhealthy(in, fmt.Sprintf("At %s an instance was taken out of service in response to an ELB system health check failure.", isoTime(now)))
}

func (c *Cloud) setUnhealthy(in *instance, cause string) {
	a := in.asg
	a.health = unhealthy
	a.unhealthyCause = cause
	c.log.Info("instance marked unhealthy", "group", a.g.name, "instance", in.id)
}

// addToLoadBalancer registers a starting instance with the group's target
// groups, unless AddToLoadBalancer is suspended: then it starts
// unregistered and stays so (AWS does not add it when the process resumes).
func (c *Cloud) addToLoadBalancer(g *group, in *instance, now time.Time) {
	if g.suspended(procAddToLoadBalancer) {
		return
	}
	c.registerInstance(g, in, now)
}

func (g *group) remove(in *instance) {
	for i, x := range g.instances {
		if x == in {
			g.instances = append(g.instances[:i], g.instances[i+1:]...)
			return
		}
	}
}

// startTerminate moves an instance to Terminating and deregisters it from
// the group's target groups.
func (c *Cloud) startTerminate(g *group, in *instance, now time.Time, cause string) {
	a := in.asg
	switch a.lifecycle {
	case lcTerminating, lcTerminatingWait, lcTerminatingProceed, lcTerminated:
		return
	}
	if a.activity != nil { // a launch that never reached InService
		a.activity.status, a.activity.end, a.activity.progress = "Cancelled", now, 100
	}
	a.lifecycle = lcTerminating
	a.actions = nil
	a.activity = c.recordActivity(g, now, "Terminating EC2 instance: "+in.id, cause, "InProgress", "")
	c.deregisterInstance(g, in, now)
	a.noteActivity()
	c.log.Info("instance terminating", "group", g.name, "instance", in.id)
}

func (c *Cloud) recordActivity(g *group, now time.Time, desc, cause, status, msg string) *activity {
	a := &activity{
		id: newUUID(), group: g.name, desc: desc, cause: cause, status: status, statusMsg: msg,
		start: now, details: fmt.Sprintf(`{"Subnet ID":"","Availability Zone":"%s"}`, firstOr(g.azs, c.cfg.Region+"a")),
	}
	if status != "InProgress" {
		a.end, a.progress = now, 100
	}
	g.activities = append(g.activities, a)
	if len(g.activities) > 5000 {
		g.activities = g.activities[len(g.activities)-5000:]
	}
	return a
}

func firstOr(xs []string, d string) string {
	if len(xs) > 0 {
		return xs[0]
	}
	return d
}

// launchInGroup starts one instance from the group's launch template (or
// launch configuration), in its least used Availability Zone, tagged as
// the group's tags propagate.
func (c *Cloud) launchInGroup(g *group, now time.Time, cause string) *apiError {
	spec, e := c.groupSpec(g)
	if e != nil {
		return e
	}
	if e := c.checkImage(spec.imageID); e != nil {
		return e
	}
	perAZ := map[string]int{}
	for _, in := range g.instances {
		perAZ[in.az]++
	}
	spec.az = g.azs[0]
	for _, az := range g.azs {
		if perAZ[az] < perAZ[spec.az] {
			spec.az = az
		}
	}
	for k, t := range g.tags {
		if t.propagate {
			spec.tags[k] = t.value
		}
	}
	spec.tags["aws:autoscaling:groupName"] = g.name
	in, e := c.launch(spec, c.newReservationID())
	if e != nil {
		return e
	}
	in.asg = &asgInstance{g: g, lifecycle: lcPending, health: healthy, protected: g.newProtected}
	in.asg.activity = c.recordActivity(g, now, "Launching a new EC2 instance: "+in.id, cause, "InProgress", "")
	g.instances = append(g.instances, in)
	return nil
}

// groupSpec is what the group launches: its launch configuration, or its
// launch template's version.
func (c *Cloud) groupSpec(g *group) (launchSpec, *apiError) {
	if g.lcName != "" {
		return c.specFromLC(g)
	}
	lt := c.templates[g.ltID]
	if lt == nil {
		return launchSpec{}, validationf("The launch template %s does not exist", g.ltID)
	}
	v, e := lt.resolve(g.ltVersion)
	if e != nil {
		return launchSpec{}, e
	}
	spec := specFromLT(lt, v)
	if spec.imageID == "" {
		return launchSpec{}, validationf("The launch template %s version %d has no ImageId", lt.id, v.number)
	}
	return spec, nil
}

// currentLTVersion is the version number new instances get.
func (c *Cloud) currentLTVersion(g *group) int {
	lt := c.templates[g.ltID]
	if lt == nil {
		return 0
	}
	v, e := lt.resolve(g.ltVersion)
	if e != nil {
		return 0
	}
	return v.number
}

// pickVictim chooses the instance to terminate on scale-in: never one
// protected from scale-in; first from the Availability Zone with the most
// instances, then by the group's termination policies in order, then by the
// default policy, then at random.
func (c *Cloud) pickVictim(g *group, now time.Time) *instance {
	perAZ := map[string]int{}
	var cands []*instance
	for _, in := range g.instances {
		if !inCapacity(in.asg.lifecycle) {
			continue
		}
		perAZ[in.az]++
		if !in.asg.protected {
			cands = append(cands, in)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	cands = keep(cands, func(in *instance) int { return -perAZ[in.az] })
	cur := c.currentLTVersion(g)
	oldestLT := func(in *instance) int {
		if g.lcName != "" { // a group on a launch configuration: those on another first
			if in.lcName != g.lcName {
				return -1 << 30
			}
			return 1 << 30
		}
		if in.ltID != g.ltID {
			return -1 << 30
		}
		if in.ltVersion == cur {
			return 1 << 30
		}
		return in.ltVersion
	}
	closestHour := func(in *instance) int {
		up := now.Sub(in.launched)
		return int((time.Hour - up%time.Hour) / time.Second)
	}
	policies := append(append([]string(nil), g.termPolicies...), "Default")
	for _, p := range policies {
		if len(cands) == 1 {
			break
		}
		switch p {
		case "OldestInstance":
			cands = keep(cands, func(in *instance) int { return int(in.launched.Sub(g.created) / time.Millisecond) })
		case "NewestInstance":
			cands = keep(cands, func(in *instance) int { return -int(in.launched.Sub(g.created) / time.Millisecond) })
		case "OldestLaunchTemplate", "OldestLaunchConfiguration":
			cands = keep(cands, oldestLT)
		case "ClosestToNextInstanceHour":
			cands = keep(cands, closestHour)
		case "Default":
			cands = keep(cands, oldestLT)
			cands = keep(cands, closestHour)
		}
	}
	return cands[rand.IntN(len(cands))]
}

// keep returns the candidates with the lowest rank.
func keep(cands []*instance, rank func(*instance) int) []*instance {
	best := 0
	var out []*instance
	for i, in := range cands {
		r := rank(in)
		if i == 0 || r < best {
			best, out = r, out[:0]
		}
		if r == best {
			out = append(out, in)
		}
	}
	return out
}

// groupARN builds a group's ARN.
func (c *Cloud) groupARN(name string) string {
	return "arn:aws:autoscaling:" + c.cfg.Region + ":" + accountID + ":autoScalingGroup:" + newUUID() + ":autoScalingGroupName/" + name
}

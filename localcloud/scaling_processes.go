package localcloud

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Suspending and resuming a group's scaling processes. A deployment
// suspends ReplaceUnhealthy (and AZRebalance) while it drains nodes: a
// draining node fails its load balancer health check on purpose, and
// without the suspension a group with health check type ELB would replace
// it after the grace period, cutting its clients.
//
// What each suspension does here, as AWS documents it:
//   - Launch: no launch fills the desired capacity (the group stays short).
//   - Terminate: no scale-in, and no replacement of an InService instance
//     marked unhealthy; instances in other states (Pending…) are still
//     terminated, and TerminateInstanceInAutoScalingGroup still works.
//   - HealthCheck: instances are not marked unhealthy by failed checks.
//   - ReplaceUnhealthy: instances are still marked unhealthy but stay in
//     the group (InService, HealthStatus Unhealthy) until it resumes; they
//     never recover by themselves, as on AWS.
//   - AddToLoadBalancer: instances that start while it is suspended are
//     not registered with the group's target groups, and are not
//     registered later when it resumes.
//   - AZRebalance, AlarmNotification, ScheduledActions, InstanceRefresh,
//     RemoveFromLoadBalancerLowPriority: recorded and reported; the local
//     cloud has no rebalancing, alarms, schedules or refreshes for them to
//     stop.

const (
	procLaunch            = "Launch"
	procTerminate         = "Terminate"
	procHealthCheck       = "HealthCheck"
	procReplaceUnhealthy  = "ReplaceUnhealthy"
	procAddToLoadBalancer = "AddToLoadBalancer"
)

// processNames are the process types DescribeScalingProcessTypes lists, in
// the order AWS lists them (byte order).
var processNames = []string{
	"AZRebalance", "AddToLoadBalancer", "AlarmNotification", "HealthCheck",
	"InstanceRefresh", "Launch", "RemoveFromLoadBalancerLowPriority",
	"ReplaceUnhealthy", "ScheduledActions", "Terminate",
}

// suspended reports whether the group's process p is suspended.
func (g *group) suspended(p string) bool {
	_, ok := g.suspendedProcs[p]
	return ok
}

// scalingProcesses reads ScalingProcesses: every process when the list is
// empty, else the names given, each of which must be a process type.
func scalingProcesses(p params) ([]string, *apiError) {
	names := p.list("ScalingProcesses.member")
	if len(names) == 0 {
		return processNames, nil
	}
	var bad []string
	for _, n := range names {
		if !slices.Contains(processNames, n) {
			bad = append(bad, n)
		}
	}
	if len(bad) > 0 {
		return nil, validationf("Unknown process type(s): %s. Valid process types are %s.", strings.Join(bad, ", "), strings.Join(processNames, ", "))
	}
	return names, nil
}

// groupProcesses reads the group and process names that SuspendProcesses
// and ResumeProcesses take.
func (c *Cloud) groupProcesses(p params) (*group, []string, *apiError) {
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return nil, nil, e
	}
	names, e := scalingProcesses(p)
	return g, names, e
}

func (c *Cloud) suspendProcesses(req *request, x *xmlw) *apiError {
	g, names, e := c.groupProcesses(req.Params)
	if e != nil {
		return e
	}
	if g.suspendedProcs == nil {
		g.suspendedProcs = map[string]string{}
	}
	reason := "User suspended at " + isoTime(c.now())
	for _, n := range names {
		if !g.suspended(n) { // a second suspension keeps the first reason
			g.suspendedProcs[n] = reason
		}
	}
	c.log.Info("processes suspended", "group", g.name, "processes", names)
	return nil
}

func (c *Cloud) resumeProcesses(req *request, x *xmlw) *apiError {
	g, names, e := c.groupProcesses(req.Params)
	if e != nil {
		return e
	}
	for _, n := range names {
		delete(g.suspendedProcs, n)
	}
	c.log.Info("processes resumed", "group", g.name, "processes", names)
	return nil
}

func (c *Cloud) describeProcessTypes(req *request, x *xmlw) *apiError {
	x.list("Processes", "member", len(processNames), func(i int) {
		x.leaf("ProcessName", processNames[i])
	})
	return nil
}

// writeSuspended writes a group's SuspendedProcesses, by name.
func writeSuspended(x *xmlw, g *group) {
	names := make([]string, 0, len(g.suspendedProcs))
	for n := range g.suspendedProcs {
		names = append(names, n)
	}
	sort.Strings(names)
	x.list("SuspendedProcesses", "member", len(names), func(i int) {
		x.leaf("ProcessName", names[i])
		x.leaf("SuspensionReason", g.suspendedProcs[names[i]])
	})
}

// setInstanceHealth sets an instance's health by hand. AWS documents it as
// mostly useful with ReplaceUnhealthy suspended: marking a drained node
// Healthy again (a rollback) keeps it from being replaced on resume, and
// marking one Unhealthy replaces it once replacement may run. A later
// failed health check (HealthCheck not suspended) overrides a Healthy set
// here, as on AWS.
func (c *Cloud) setInstanceHealth(req *request, x *xmlw) *apiError {
	p := req.Params
	id, e := p.required("InstanceId")
	if e != nil {
		return e
	}
	status, e := p.required("HealthStatus")
	if e != nil {
		return e
	}
	if status != healthy && status != unhealthy {
		return validationf("Valid requests must contain either Healthy or Unhealthy for the HealthStatus parameter. Invalid value: %s", status)
	}
	respect, set, e := p.boolOpt("ShouldRespectGracePeriod")
	if e != nil {
		return e
	}
	if !set {
		respect = true
	}
	in, e := c.managedInstance(id)
	if e != nil {
		return e
	}
	a := in.asg
	now := c.now()
	if status == healthy {
		a.health, a.unhealthyCause = healthy, ""
		return nil
	}
	since := a.inService
	if a.lifecycle != lcInService {
		since = in.launched
	}
	if respect && now.Sub(since) < time.Duration(a.g.grace)*time.Second {
		return nil // within the grace period the call is ignored
	}
	c.setUnhealthy(in, fmt.Sprintf("At %s an instance was taken out of service in response to a user health-check.", isoTime(now)))
	return nil
}

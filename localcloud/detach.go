package localcloud

import (
	"fmt"
	"time"
)

// DetachInstances, as the Auto Scaling API reference documents it: up to
// 20 instances of one group, each InService or Standby, leave the group;
// ShouldDecrementDesiredCapacity (required) lowers the desired capacity by
// their number, which may not go under the group's min size; otherwise
// the group launches replacements. Instances in a target group are
// deregistered and stay Detaching until their deregistration delay ends,
// then Detached, out of the group, still running: from then on only EC2
// knows them (TerminateInstances ends them).
const (
	lcDetaching = "Detaching"
	lcDetached  = "Detached"

	maxDetach = 20 // InstanceIds.member.N: "You can specify up to 20 instances."
)

func (c *Cloud) detachInstances(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	dec, e := p.requiredBool("ShouldDecrementDesiredCapacity")
	if e != nil {
		return e
	}
	ids := p.list("InstanceIds.member")
	if len(ids) > maxDetach {
		return validationf("1 validation error detected: Value '[%d items]' at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to %d", len(ids), maxDetach)
	}
	ins, e := c.groupInstances(g, ids, "")
	if e != nil {
		return e
	}
	for _, in := range ins {
		if l := in.asg.lifecycle; l != lcInService && l != lcStandby {
			return validationf("The instance %s is not in InService or Standby (it is %s).", in.id, l)
		}
	}
	if dec {
		n := 0
		for _, in := range ins {
			if in.asg.lifecycle == lcInService {
				n++ // a Standby instance is already out of the desired capacity
			}
		}
		if g.desired-n < g.min {
			return validationf("The number of instances to detach (%d) would decrease the desired capacity (%d) below the group's min size (%d); lower the min size first.", n, g.desired, g.min)
		}
	}
	now := c.now()
	var acts []*activity
	for _, in := range ins {
		before := g.desired
		if dec && in.asg.lifecycle == lcInService {
			g.desired--
		}
		cause := fmt.Sprintf("At %s instance %s was detached in response to a user request", isoTime(now), in.id)
		if before != g.desired {
			cause += fmt.Sprintf(", shrinking the capacity from %d to %d.", before, g.desired)
		} else {
			cause += "."
		}
		if in.asg.activity != nil {
			in.asg.activity.status, in.asg.activity.end, in.asg.activity.progress = "Cancelled", now, 100
		}
		in.asg.lifecycle = lcDetaching
		in.asg.actions = nil
		in.asg.activity = c.recordActivity(g, now, "Detaching EC2 instance: "+in.id, cause, "InProgress", "")
		c.deregisterInstance(g, in, now)
		acts = append(acts, in.asg.activity)
	}
	c.writeActivities(x, acts)
	return nil
}

// stepDetaching moves a Detaching instance out of the group once no
// target group holds it (or it stopped running): Detached, removed, and
// no longer the group's.
func (c *Cloud) stepDetaching(g *group, in *instance, now time.Time) {
	if in.alive() && !c.deregistered(in) {
		return
	}
	a := in.asg
	a.lifecycle = lcDetached
	if a.activity != nil {
		a.activity.status, a.activity.end, a.activity.progress = "Successful", now, 100
		a.activity = nil
	}
	g.remove(in)
	in.asg = nil
	c.log.Info("instance detached", "group", g.name, "instance", in.id)
}

package localcloud

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Auto Scaling API actions (the table is in actions.go).

func (c *Cloud) findGroup(name string) (*group, *apiError) {
	if name == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter AutoScalingGroupName")
	}
	g := c.groups[name]
	if g == nil || g.deleting {
		return nil, validationf("AutoScalingGroup name not found - AutoScalingGroup %s not found", name)
	}
	return g, nil
}

// groupInstance finds an instance of g, with AWS's message otherwise.
func (c *Cloud) groupInstance(g *group, id string) (*instance, *apiError) {
	in := c.instances[id]
	if in == nil || in.asg == nil || in.asg.g != g || in.asg.lifecycle == lcTerminated {
		return nil, validationf("The instance %s is not part of Auto Scaling group %s.", id, g.name)
	}
	return in, nil
}

// groupInstances finds the instances ids of g, each in the lifecycle state
// want unless want is "".
func (c *Cloud) groupInstances(g *group, ids []string, want string) ([]*instance, *apiError) {
	var ins []*instance
	for _, id := range ids {
		in, e := c.groupInstance(g, id)
		if e != nil {
			return nil, e
		}
		if want != "" && in.asg.lifecycle != want {
			return nil, validationf("The instance %s is not in %s.", id, want)
		}
		ins = append(ins, in)
	}
	return ins, nil
}

// parseGroupLT reads LaunchTemplate.{LaunchTemplateId,LaunchTemplateName,Version}.
func (c *Cloud) parseGroupLT(p params) (id, version string, e *apiError) {
	lid, lname := p.str("LaunchTemplate.LaunchTemplateId"), p.str("LaunchTemplate.LaunchTemplateName")
	if lid == "" && lname == "" {
		return "", "", validationf("You must use a valid fully-formed launch template. Specify either LaunchTemplateId or LaunchTemplateName")
	}
	if lid != "" && lname != "" {
		return "", "", validationf("You must use a valid fully-formed launch template. Specify either LaunchTemplateId or LaunchTemplateName, not both")
	}
	lt, e := c.findLT(lid, lname)
	if e != nil {
		return "", "", validationf("You must use a valid fully-formed launch template. %s", e.Message)
	}
	version = p.str("LaunchTemplate.Version")
	if version == "" {
		version = "$Default"
	}
	v, e := lt.resolve(version)
	if e != nil {
		return "", "", validationf("You must use a valid fully-formed launch template. %s", e.Message)
	}
	if v.data.ImageID == "" {
		return "", "", validationf("You must use a valid fully-formed launch template. The launch template %s version %d has no ImageId", lt.id, v.number)
	}
	return lt.id, version, nil
}

var validHealthTypes = map[string]bool{"EC2": true, "ELB": true, "EBS": true, "VPC_LATTICE": true}
var validTermPolicies = map[string]bool{"Default": true, "AllocationStrategy": true, "OldestLaunchTemplate": true, "OldestLaunchConfiguration": true, "OldestInstance": true, "NewestInstance": true, "ClosestToNextInstanceHour": true}

func (c *Cloud) createGroup(req *request, x *xmlw) *apiError {
	p := req.Params
	name, e := p.required("AutoScalingGroupName")
	if e != nil {
		return e
	}
	if len(name) > 255 {
		return validationf("1 validation error detected: Value at 'autoScalingGroupName' failed to satisfy constraint: Member must have length less than or equal to 255")
	}
	if _, dup := c.groups[name]; dup {
		return errf("AlreadyExists", "AutoScalingGroup by this name already exists - A group with the name %s already exists", name)
	}
	if p.has("MixedInstancesPolicy") || p.str("InstanceId") != "" {
		return validationf("The local cloud supports groups with a LaunchTemplate or a LaunchConfigurationName only")
	}
	ltID, ltVer, lcName, set, e := c.groupLaunchSource(p)
	if e != nil {
		return e
	}
	if !set {
		return validationf("Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
	}
	g := &group{name: name, arn: c.groupARN(name), created: c.now(), ltID: ltID, ltVersion: ltVer, lcName: lcName, cooldown: 300, healthType: "EC2", tags: map[string]asgTag{}}
	if g.min, e = p.requiredInt("MinSize"); e != nil {
		return e
	}
	if g.max, e = p.requiredInt("MaxSize"); e != nil {
		return e
	}
	g.desired = g.min
	if d, set, e := p.intOpt("DesiredCapacity"); e != nil {
		return e
	} else if set {
		g.desired = d
	}
	if e := checkSizes(g.min, g.max, g.desired); e != nil {
		return e
	}
	if e := c.applyGroupOptions(g, p); e != nil {
		return e
	}
	if len(g.azs) == 0 {
		return validationf("At least one Availability Zone or VPC Subnet is required.")
	}
	for _, arn := range p.list("TargetGroupARNs.member") {
		if c.targetGrps[arn] == nil {
			return validationf("Provided Target Groups may not be valid. Please ensure they exist and try again. Target group not found: %s", arn)
		}
		if !contains(g.tgARNs, arn) {
			g.tgARNs = append(g.tgARNs, arn)
		}
	}
	if e := applyASGTags(p.structs("Tags.member"), func(string) *group { return g }, name); e != nil {
		return e
	}
	for _, hp := range p.structs("LifecycleHookSpecificationList.member") {
		h, e := parseHook(hp, nil)
		if e != nil {
			return e
		}
		g.hooks = append(g.hooks, h)
	}
	g.cause = fmt.Sprintf("At %s a user request created an AutoScalingGroup changing the desired capacity from 0 to %d.", isoTime(g.created), g.desired)
	c.groups[name] = g
	c.log.Info("group created", "group", name, "desired", g.desired)
	return nil
}

func checkSizes(min, max, desired int) *apiError {
	if min < 0 || max < 0 {
		return validationf("MinSize and MaxSize must be at least 0")
	}
	if min > max {
		return validationf("Max bound, %d, must be greater than or equal to min bound, %d", max, min)
	}
	if desired < min {
		return validationf("Desired capacity:%d must be between the specified min size:%d and max size:%d", desired, min, max)
	}
	if desired > max {
		return validationf("Desired capacity:%d must be between the specified min size:%d and max size:%d", desired, min, max)
	}
	return nil
}

// applyGroupOptions reads the options Create and Update share.
func (c *Cloud) applyGroupOptions(g *group, p params) *apiError {
	if azs := p.list("AvailabilityZones.member"); len(azs) > 0 {
		for _, az := range azs {
			if !strings.HasPrefix(az, c.cfg.Region) {
				return validationf("The availability zone %s is not legal in region %s", az, c.cfg.Region)
			}
		}
		g.azs = azs
	}
	if v := p.str("VPCZoneIdentifier"); v != "" {
		g.vpcZone = v
		if len(p.list("AvailabilityZones.member")) == 0 {
			// Each subnet stands for one zone: a, b, c… in order.
			g.azs = nil
			for i, s := range strings.Split(v, ",") {
				if strings.TrimSpace(s) == "" {
					return validationf("The subnet ID '%s' is not valid", v)
				}
				g.azs = append(g.azs, c.cfg.Region+string(rune('a'+i%6)))
			}
		}
	}
	if v := p.str("HealthCheckType"); v != "" {
		if !validHealthTypes[v] {
			return validationf("Health check type %s is not valid; use EC2 or ELB", v)
		}
		g.healthType = v
	}
	if v, set, e := p.intOpt("HealthCheckGracePeriod"); e != nil {
		return e
	} else if set {
		if v < 0 {
			return validationf("HealthCheckGracePeriod must be at least 0")
		}
		g.grace = v
	}
	if v, set, e := p.intOpt("DefaultCooldown"); e != nil {
		return e
	} else if set {
		g.cooldown = v
	}
	if v, set, e := p.intOpt("MaxInstanceLifetime"); e != nil {
		return e
	} else if set {
		g.maxInstanceLifetime = v
	}
	if pols := p.list("TerminationPolicies.member"); len(pols) > 0 {
		for _, pol := range pols {
			if !validTermPolicies[pol] {
				return validationf("Termination policy %s is not valid", pol)
			}
		}
		g.termPolicies = pols
	} else if p.has("TerminationPolicies") {
		g.termPolicies = nil
	}
	if v, set, e := p.boolOpt("NewInstancesProtectedFromScaleIn"); e != nil {
		return e
	} else if set {
		g.newProtected = v
	}
	return nil
}

// applyASGTags applies CreateOrUpdateTags-style tags; groupOf resolves a
// ResourceId.
func applyASGTags(tags []params, groupOf func(string) *group, defaultGroup string) *apiError {
	for _, t := range tags {
		k := t.str("Key")
		if k == "" {
			return validationf("Tag key must not be empty")
		}
		if len(k) > 128 || len(t.str("Value")) > 256 {
			return validationf("Tag keys are limited to 128 and values to 256 characters")
		}
		if strings.HasPrefix(k, "aws:") {
			return validationf("Tag keys starting with 'aws:' are reserved for internal use")
		}
		if rt := t.str("ResourceType"); rt != "" && rt != "auto-scaling-group" {
			return validationf("Invalid resource type %s", rt)
		}
		id := t.str("ResourceId")
		if id == "" {
			id = defaultGroup
		}
		g := groupOf(id)
		if g == nil {
			return validationf("AutoScalingGroup name not found - AutoScalingGroup %s not found", id)
		}
		prop, _, e := t.boolOpt("PropagateAtLaunch")
		if e != nil {
			return e
		}
		g.tags[k] = asgTag{value: t.str("Value"), propagate: prop}
		if len(g.tags) > 50 {
			return errf("LimitExceeded", "A group can have at most 50 tags")
		}
	}
	return nil
}

func (c *Cloud) writeGroup(x *xmlw, g *group) {
	x.leaf("AutoScalingGroupName", g.name)
	x.leaf("AutoScalingGroupARN", g.arn)
	if g.lcName != "" {
		x.leaf("LaunchConfigurationName", g.lcName)
	} else {
		lt := c.templates[g.ltID]
		x.open("LaunchTemplate")
		x.leaf("LaunchTemplateId", g.ltID)
		if lt != nil {
			x.leaf("LaunchTemplateName", lt.name)
		}
		x.leaf("Version", g.ltVersion)
		x.close("LaunchTemplate")
	}
	x.int("MinSize", g.min)
	x.int("MaxSize", g.max)
	x.int("DesiredCapacity", g.desired)
	x.int("DefaultCooldown", g.cooldown)
	x.strings("AvailabilityZones", "member", g.azs)
	x.strings("LoadBalancerNames", "member", nil)
	x.strings("TargetGroupARNs", "member", g.tgARNs)
	x.leaf("HealthCheckType", g.healthType)
	x.int("HealthCheckGracePeriod", g.grace)
	members := c.visibleInstances(g.instances)
	x.list("Instances", "member", len(members), func(i int) {
		c.writeASGInstance(x, members[i], false)
	})
	x.time("CreatedTime", g.created)
	writeSuspended(x, g)
	x.opt("VPCZoneIdentifier", g.vpcZone)
	x.list("EnabledMetrics", "member", 0, nil)
	if g.deleting {
		x.leaf("Status", "Delete in progress")
	}
	tags := c.visibleASGTags(g)
	keys := sortedKeys(tags)
	x.list("Tags", "member", len(keys), func(i int) {
		writeASGTag(x, g.name, keys[i], tags[keys[i]])
	})
	pols := g.termPolicies
	if len(pols) == 0 {
		pols = []string{"Default"}
	}
	x.strings("TerminationPolicies", "member", pols)
	x.bool("NewInstancesProtectedFromScaleIn", g.newProtected)
	x.leaf("ServiceLinkedRoleARN", "arn:aws:iam::"+accountID+":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
	if g.maxInstanceLifetime > 0 {
		x.int("MaxInstanceLifetime", g.maxInstanceLifetime)
	}
	x.bool("CapacityRebalance", false)
}

func writeASGTag(x *xmlw, group, k string, t asgTag) {
	x.leaf("ResourceId", group)
	x.leaf("ResourceType", "auto-scaling-group")
	x.leaf("Key", k)
	x.leaf("Value", t.value)
	x.bool("PropagateAtLaunch", t.propagate)
}

func (c *Cloud) writeASGInstance(x *xmlw, in *instance, withGroup bool) {
	a := in.asg
	x.leaf("InstanceId", in.id)
	x.leaf("InstanceType", in.instanceType)
	if withGroup {
		x.leaf("AutoScalingGroupName", a.g.name)
	}
	x.leaf("AvailabilityZone", in.az)
	x.leaf("LifecycleState", a.lifecycle)
	if withGroup {
		x.leaf("HealthStatus", strings.ToUpper(a.health))
	} else {
		x.leaf("HealthStatus", a.health)
	}
	x.opt("LaunchConfigurationName", in.lcName)
	if lt := c.templates[in.ltID]; lt != nil {
		x.open("LaunchTemplate")
		x.leaf("LaunchTemplateId", lt.id)
		x.leaf("LaunchTemplateName", lt.name)
		x.leaf("Version", strconv.Itoa(in.ltVersion))
		x.close("LaunchTemplate")
	}
	x.bool("ProtectedFromScaleIn", a.protected)
}

func (c *Cloud) describeGroups(req *request, x *xmlw) *apiError {
	p := req.Params
	gs, e := asgFilters(p, c.groupsNamed(p.list("AutoScalingGroupNames.member")), func(g *group, name string, vals []string) (bool, *apiError) {
		ok := false
		for _, v := range vals {
			switch {
			case strings.HasPrefix(name, "tag:"):
				t, has := g.tags[strings.TrimPrefix(name, "tag:")]
				ok = ok || has && t.value == v
			case name == "tag-key":
				_, has := g.tags[v]
				ok = ok || has
			case name == "tag-value":
				for _, t := range g.tags {
					ok = ok || t.value == v
				}
			default:
				return false, validationf("Filter name %s is not valid", name)
			}
		}
		return ok, nil
	})
	if e != nil {
		return e
	}
	return writePage(x, p, asgPaging(50, 100), "AutoScalingGroups", gs, func(g *group) { c.writeGroup(x, g) })
}

// groupsNamed is the groups of a Describe call: those named that exist, in
// the order named, or every group by name when none is named.
func (c *Cloud) groupsNamed(names []string) []*group {
	var gs []*group
	if len(names) == 0 {
		names = sortedKeys(c.groups)
	}
	for _, n := range names {
		if g := c.groups[n]; g != nil {
			gs = append(gs, g)
		}
	}
	return gs
}

func (c *Cloud) updateGroup(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	ng := *g
	if ltID, ltVer, lcName, set, e := c.groupLaunchSource(p); e != nil {
		return e
	} else if set { // a group moves between a launch template and a launch configuration
		ng.ltID, ng.ltVersion, ng.lcName = ltID, ltVer, lcName
	}
	if p.has("MixedInstancesPolicy") {
		return validationf("The local cloud supports groups with a LaunchTemplate or a LaunchConfigurationName only")
	}
	minSet, maxSet, desSet := false, false, false
	var v int
	if v, minSet, e = p.intOpt("MinSize"); e != nil {
		return e
	} else if minSet {
		ng.min = v
	}
	if v, maxSet, e = p.intOpt("MaxSize"); e != nil {
		return e
	} else if maxSet {
		ng.max = v
	}
	if v, desSet, e = p.intOpt("DesiredCapacity"); e != nil {
		return e
	} else if desSet {
		ng.desired = v
	}
	// A new bound that excludes the current desired capacity moves it, as
	// AWS does, unless the request sets the desired capacity too.
	if !desSet {
		if minSet && ng.desired < ng.min {
			ng.desired = ng.min
		}
		if maxSet && ng.desired > ng.max {
			ng.desired = ng.max
		}
	}
	if e := checkSizes(ng.min, ng.max, ng.desired); e != nil {
		return e
	}
	if e := c.applyGroupOptions(&ng, p); e != nil {
		return e
	}
	if ng.min != g.min || ng.max != g.max || ng.desired != g.desired {
		ng.cause = fmt.Sprintf("At %s a user request update of AutoScalingGroup constraints to min: %d, max: %d, desired: %d changing the desired capacity from %d to %d.", isoTime(c.now()), ng.min, ng.max, ng.desired, g.desired, ng.desired)
	}
	*g = ng
	return nil
}

func (c *Cloud) deleteGroup(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	force, _, e := p.boolOpt("ForceDelete")
	if e != nil {
		return e
	}
	if len(g.instances) > 0 && !force {
		return errf("ResourceInUse", "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.")
	}
	g.deleting = true
	g.desired, g.min = 0, 0
	now := c.now()
	// ForceDelete does not wait: no deregistration delay, and outstanding
	// lifecycle actions are deleted, as AWS documents.
	for _, in := range append([]*instance(nil), g.instances...) {
		c.startTerminate(g, in, now, fmt.Sprintf("At %s a user request deleted the AutoScalingGroup.", isoTime(now)))
		for _, tg := range c.targetGrps {
			for _, t := range tg.targets {
				if t.id == in.id {
					t.drainUntil = now
				}
			}
		}
		in.asg.actions = nil
		in.asg.lifecycle = lcTerminatingProceed
	}
	if len(g.instances) == 0 {
		delete(c.groups, g.name)
	}
	return nil
}

func (c *Cloud) setDesiredCapacity(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	d, e := p.requiredInt("DesiredCapacity")
	if e != nil {
		return e
	}
	if d > g.max {
		return validationf("New SetDesiredCapacity value %d is above max value %d for the AutoScalingGroup.", d, g.max)
	}
	if d < g.min {
		return validationf("New SetDesiredCapacity value %d is below min value %d for the AutoScalingGroup.", d, g.min)
	}
	if d != g.desired {
		g.cause = fmt.Sprintf("At %s a user request explicitly set group desired capacity changing the desired capacity from %d to %d.", isoTime(c.now()), g.desired, d)
	}
	g.desired = d
	return nil
}

func (c *Cloud) setInstanceProtection(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	ids := p.list("InstanceIds.member")
	if len(ids) == 0 {
		return errf("MissingParameter", "The request must contain the parameter InstanceIds")
	}
	prot, e := p.requiredBool("ProtectedFromScaleIn")
	if e != nil {
		return e
	}
	ins, e := c.groupInstances(g, ids, "")
	if e != nil {
		return e
	}
	for _, in := range ins {
		in.asg.protected = prot
	}
	return nil
}

func (c *Cloud) writeActivities(x *xmlw, acts []*activity) {
	x.list("Activities", "member", len(acts), func(i int) { c.writeActivity(x, acts[i]) })
}

func (c *Cloud) writeActivity(x *xmlw, a *activity) {
	x.leaf("ActivityId", a.id)
	x.leaf("AutoScalingGroupName", a.group)
	x.leaf("Description", a.desc)
	x.leaf("Cause", a.cause)
	x.time("StartTime", a.start)
	if !a.end.IsZero() {
		x.time("EndTime", a.end)
	}
	x.leaf("StatusCode", a.status)
	x.opt("StatusMessage", a.statusMsg)
	x.int("Progress", a.progress)
	x.opt("Details", a.details)
	if g := c.groups[a.group]; g != nil {
		x.leaf("AutoScalingGroupARN", g.arn)
	}
}

// managedInstance finds an instance of some group that is not already
// being terminated, for the actions that take an instance id alone.
func (c *Cloud) managedInstance(id string) (*instance, *apiError) {
	in := c.instances[id]
	if in == nil || in.asg == nil || in.asg.lifecycle == lcTerminated {
		return nil, validationf("Instance Id not found - No managed instance found for instance ID: %s", id)
	}
	switch in.asg.lifecycle {
	case lcTerminating, lcTerminatingWait, lcTerminatingProceed:
		return nil, validationf("The instance %s is already being terminated (%s).", id, in.asg.lifecycle)
	}
	return in, nil
}

func (c *Cloud) terminateInGroup(req *request, x *xmlw) *apiError {
	p := req.Params
	id, e := p.required("InstanceId")
	if e != nil {
		return e
	}
	dec, e := p.requiredBool("ShouldDecrementDesiredCapacity")
	if e != nil {
		return e
	}
	in, e := c.managedInstance(id)
	if e != nil {
		return e
	}
	g := in.asg.g
	now := c.now()
	if dec && inCapacity(in.asg.lifecycle) {
		if g.desired-1 < g.min {
			return validationf("Currently, desiredSize equals minSize (%d). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.", g.min)
		}
		g.desired--
	}
	var cause string
	if dec {
		cause = fmt.Sprintf("At %s instance %s was taken out of service in response to a user request, shrinking the capacity from %d to %d.", isoTime(now), id, g.desired+1, g.desired)
	} else {
		cause = fmt.Sprintf("At %s instance %s was taken out of service in response to a user request.", isoTime(now), id)
	}
	c.startTerminate(g, in, now, cause)
	x.open("Activity")
	c.writeActivity(x, in.asg.activity)
	x.close("Activity")
	return nil
}

func (c *Cloud) describeASGInstances(req *request, x *xmlw) *apiError {
	p := req.Params
	ids := p.list("InstanceIds.member")
	var ins []*instance
	if len(ids) > 0 {
		for _, id := range ids {
			if in := c.instances[id]; in != nil && in.asg != nil && in.asg.lifecycle != lcTerminated {
				ins = append(ins, in)
			}
		}
	} else {
		for _, g := range c.groupsNamed(nil) {
			ins = append(ins, g.instances...)
		}
	}
	ins = c.visibleInstances(ins)
	return writePage(x, p, asgPaging(50, 50), "AutoScalingInstances", ins, func(in *instance) { c.writeASGInstance(x, in, true) })
}

func (c *Cloud) enterStandby(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	dec, e := p.requiredBool("ShouldDecrementDesiredCapacity")
	if e != nil {
		return e
	}
	ins, e := c.groupInstances(g, p.list("InstanceIds.member"), lcInService)
	if e != nil {
		return e
	}
	if dec && g.desired-len(ins) < g.min {
		return validationf("Cannot decrement the desired capacity below the group's min size %d", g.min)
	}
	now := c.now()
	var acts []*activity
	for _, in := range ins {
		before := g.desired
		if dec {
			g.desired--
		}
		cause := fmt.Sprintf("At %s instance %s was moved to standby in response to a user request", isoTime(now), in.id)
		if dec {
			cause += fmt.Sprintf(", shrinking the capacity from %d to %d.", before, g.desired)
		} else {
			cause += "."
		}
		in.asg.lifecycle = lcEnteringStandby
		c.deregisterInstance(g, in, now)
		acts = append(acts, c.recordActivity(g, now, "Moving EC2 instance to Standby: "+in.id, cause, "Successful", ""))
	}
	c.writeActivities(x, acts)
	return nil
}

func (c *Cloud) exitStandby(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	ins, e := c.groupInstances(g, p.list("InstanceIds.member"), lcStandby)
	if e != nil {
		return e
	}
	if g.desired+len(ins) > g.max {
		return validationf("Cannot exit standby: the desired capacity would exceed the group's max size %d", g.max)
	}
	now := c.now()
	var acts []*activity
	for _, in := range ins {
		g.desired++
		in.asg.lifecycle = lcPending
		in.asg.registered = false
		acts = append(acts, c.recordActivity(g, now, "Moving EC2 instance out of Standby: "+in.id,
			fmt.Sprintf("At %s instance %s was moved out of standby in response to a user request, increasing the capacity from %d to %d.", isoTime(now), in.id, g.desired-1, g.desired), "Successful", ""))
	}
	c.writeActivities(x, acts)
	return nil
}

func (c *Cloud) describeActivities(req *request, x *xmlw) *apiError {
	p := req.Params
	var names []string
	if n := p.str("AutoScalingGroupName"); n != "" {
		names = []string{n}
	}
	var acts []*activity
	for _, g := range c.groupsNamed(names) {
		acts = append(acts, g.activities...)
	}
	if ids := p.list("ActivityIds.member"); len(ids) > 0 {
		acts, _ = filterBy(acts, func(a *activity) (bool, *apiError) { return contains(ids, a.id), nil })
	}
	// Newest first, as AWS lists them.
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].start.After(acts[j].start) })
	return writePage(x, p, asgPaging(100, 100), "Activities", acts, func(a *activity) { c.writeActivity(x, a) })
}

func (c *Cloud) createOrUpdateASGTags(req *request, x *xmlw) *apiError {
	tags, e := req.Params.requiredStructs("Tags.member", "Tags")
	if e != nil {
		return e
	}
	for _, t := range tags {
		if t.str("ResourceId") == "" {
			return errf("MissingParameter", "Each tag must name its ResourceId")
		}
	}
	for _, t := range tags {
		if g := c.groups[t.str("ResourceId")]; g != nil {
			old, had := g.tags[t.str("Key")]
			c.noteTagWrite("asg:"+g.name, t.str("Key"), staleTag{value: old.value, propagate: old.propagate, had: had})
		}
	}
	return applyASGTags(tags, func(n string) *group { return c.groups[n] }, "")
}

func (c *Cloud) deleteASGTags(req *request, x *xmlw) *apiError {
	tags, e := req.Params.requiredStructs("Tags.member", "Tags")
	if e != nil {
		return e
	}
	for _, t := range tags {
		g, e := c.findGroup(t.str("ResourceId"))
		if e != nil {
			return e
		}
		if old, had := g.tags[t.str("Key")]; had {
			c.noteTagWrite("asg:"+g.name, t.str("Key"), staleTag{value: old.value, propagate: old.propagate, had: true})
		}
		delete(g.tags, t.str("Key"))
	}
	return nil
}

func (c *Cloud) describeASGTags(req *request, x *xmlw) *apiError {
	p := req.Params
	type row struct {
		g *group
		k string
		t asgTag
	}
	var rows []row
	for _, n := range sortedKeys(c.groups) {
		g := c.groups[n]
		tags := c.visibleASGTags(g)
		for _, k := range sortedKeys(tags) {
			rows = append(rows, row{g, k, tags[k]})
		}
	}
	rows, e := asgFilters(p, rows, func(r row, name string, vals []string) (bool, *apiError) {
		var v string
		switch name {
		case "auto-scaling-group":
			v = r.g.name
		case "key":
			v = r.k
		case "value":
			v = r.t.value
		case "propagate-at-launch":
			v = strconv.FormatBool(r.t.propagate)
		default:
			return false, validationf("Filter name %s is not valid", name)
		}
		return contains(vals, v), nil
	})
	if e != nil {
		return e
	}
	return writePage(x, p, asgPaging(100, 100), "Tags", rows, func(r row) { writeASGTag(x, r.g.name, r.k, r.t) })
}

func (c *Cloud) attachTargetGroups(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	arns := p.list("TargetGroupARNs.member")
	if len(arns) == 0 {
		return errf("MissingParameter", "The request must contain the parameter TargetGroupARNs")
	}
	for _, arn := range arns {
		if c.targetGrps[arn] == nil {
			return validationf("Provided Target Groups may not be valid. Please ensure they exist and try again. Target group not found: %s", arn)
		}
	}
	now := c.now()
	for _, arn := range arns {
		if contains(g.tgARNs, arn) {
			continue
		}
		g.tgARNs = append(g.tgARNs, arn)
		for _, in := range g.instances {
			if in.asg.registered {
				c.registerTarget(c.targetGrps[arn], in, 0, now)
			}
		}
	}
	return nil
}

func (c *Cloud) detachTargetGroups(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	now := c.now()
	for _, arn := range p.list("TargetGroupARNs.member") {
		for i, a := range g.tgARNs {
			if a != arn {
				continue
			}
			g.tgARNs = append(g.tgARNs[:i], g.tgARNs[i+1:]...)
			if tg := c.targetGrps[arn]; tg != nil {
				for _, in := range g.instances {
					c.deregisterTarget(tg, in.id, 0, now)
				}
			}
			break
		}
	}
	return nil
}

func (c *Cloud) describeGroupTargetGroups(req *request, x *xmlw) *apiError {
	g, e := c.findGroup(req.Params.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	x.list("LoadBalancerTargetGroups", "member", len(g.tgARNs), func(i int) {
		x.leaf("LoadBalancerTargetGroupARN", g.tgARNs[i])
		x.leaf("State", "InService")
	})
	return nil
}

func (c *Cloud) describeNotificationTypes(req *request, x *xmlw) *apiError {
	x.strings("AutoScalingNotificationTypes", "member", []string{
		"autoscaling:EC2_INSTANCE_LAUNCH", "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
		"autoscaling:EC2_INSTANCE_TERMINATE", "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
		"autoscaling:TEST_NOTIFICATION",
	})
	return nil
}

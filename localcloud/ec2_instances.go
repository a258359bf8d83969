package localcloud

import (
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// EC2 instances: their API (RunInstances, DescribeInstances,
// TerminateInstances). instance.go runs them as processes.

// EC2 instance states, with the codes EC2 reports.
const (
	statePending      = "pending"
	stateRunning      = "running"
	stateShuttingDown = "shutting-down"
	stateTerminated   = "terminated"
)

var stateCodes = map[string]int{statePending: 0, stateRunning: 16, stateShuttingDown: 32, stateTerminated: 48}

// instance is an EC2 instance and, when a group launched it, its Auto
// Scaling state.
type instance struct {
	id, imageID, instanceType, ip, az, reservation string
	keyName                                        string
	launched                                       time.Time
	bootDone                                       time.Time // when pending ends
	state                                          string
	stateReason                                    string
	terminatedAt                                   time.Time
	tags                                           map[string]string
	userData                                       string // base64
	ltID                                           string
	ltVersion                                      int
	lcName                                         string // the launch configuration a group launched it from
	clientToken                                    string // RunInstances' ClientToken, reported by DescribeInstances
	simulated                                      bool
	simFail                                        bool // a simulated instance that never gets healthy

	proc *proc
	imds *imdsServer
	sim  *simNode     // the node of a simulated instance
	hold net.Listener // the node port, reserved until the process starts

	asg *asgInstance // nil when no group owns it

	// hiddenUntil, when set, is when reads first see the instance: a
	// launch made late by the Stale fault (faults.go).
	hiddenUntil time.Time
}

func (in *instance) alive() bool { return in.state == statePending || in.state == stateRunning }

// launchSpec is what a new instance needs, from RunInstances or a group.
type launchSpec struct {
	imageID, instanceType, userData, keyName string
	tags                                     map[string]string
	lt                                       *launchTemplate
	ltVersion                                int
	lcName                                   string
	az                                       string
}

// specFromLT fills a launch spec from a template version.
func specFromLT(lt *launchTemplate, v *ltVersion) launchSpec {
	s := launchSpec{imageID: v.data.ImageID, instanceType: v.data.InstanceType, userData: v.data.UserData, keyName: v.data.KeyName, lt: lt, ltVersion: v.number, tags: map[string]string{}}
	for k, val := range v.data.InstanceTags {
		s.tags[k] = val
	}
	return s
}

func (c *Cloud) runInstances(req *request) (func(x *xmlw), *apiError) {
	p := req.Params
	minN, minSet, e := p.intOpt("MinCount")
	if e != nil {
		return nil, e
	}
	maxN, maxSet, e := p.intOpt("MaxCount")
	if e != nil {
		return nil, e
	}
	if !minSet {
		return nil, errf("MissingParameter", "The request must contain the parameter MinCount")
	}
	if !maxSet {
		return nil, errf("MissingParameter", "The request must contain the parameter MaxCount")
	}
	if minN < 1 || maxN < minN {
		return nil, errf("InvalidParameterValue", "MinCount must be at least 1 and MaxCount at least MinCount")
	}
	if maxN > 1000 {
		maxN = 1000
	}
	var spec launchSpec
	if p.has("LaunchTemplate") {
		lt, e := c.findLT(p.str("LaunchTemplate.LaunchTemplateId"), p.str("LaunchTemplate.LaunchTemplateName"))
		if e != nil {
			return nil, e
		}
		v, e := lt.resolve(p.str("LaunchTemplate.Version"))
		if e != nil {
			return nil, e
		}
		spec = specFromLT(lt, v)
	} else {
		spec.tags = map[string]string{}
	}
	if v := p.str("ImageId"); v != "" {
		spec.imageID = v
	}
	if v := p.str("InstanceType"); v != "" {
		spec.instanceType = v
	}
	if v := p.str("KeyName"); v != "" {
		spec.keyName = v
	}
	if v, ok := p["UserData"]; ok {
		if _, err := base64.StdEncoding.DecodeString(v); err != nil {
			return nil, errf("InvalidUserData.Malformed", "User data must be base64 encoded: %v", err)
		}
		spec.userData = v
	}
	for _, ts := range p.structs("TagSpecification") {
		if ts.str("ResourceType") != "instance" {
			continue
		}
		tags, e := ec2Tags(ts)
		if e != nil {
			return nil, e
		}
		for k, v := range tags {
			spec.tags[k] = v
		}
	}
	spec.az = p.str("Placement.AvailabilityZone")
	if spec.imageID == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter ImageId")
	}
	if e := c.checkImage(spec.imageID); e != nil {
		return nil, e
	}
	res := c.newReservationID()
	var launched []*instance
	for i := 0; i < maxN; i++ {
		in, e := c.launch(spec, res)
		if e != nil {
			if len(launched) >= minN {
				break
			}
			for _, in := range launched {
				c.terminate(in, "Client.InstanceInitiatedShutdown")
			}
			return nil, e
		}
		in.clientToken = p.str("ClientToken")
		launched = append(launched, in)
	}
	return func(x *xmlw) { c.writeReservation(x, res, launched) }, nil
}

func (c *Cloud) checkImage(id string) *apiError {
	if !strings.HasPrefix(id, "ami-") {
		return errf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", id)
	}
	if c.images[id] == nil {
		return errf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	return nil
}

func (c *Cloud) newReservationID() string {
	return "r-" + randHex(17)
}

// writeReservation writes a reservation's members, as RunInstances answers
// and DescribeInstances lists them.
func (c *Cloud) writeReservation(x *xmlw, id string, ins []*instance) {
	x.leaf("reservationId", id)
	x.leaf("ownerId", accountID)
	x.list("groupSet", "item", 0, nil)
	x.list("instancesSet", "item", len(ins), func(i int) { c.writeInstance(x, ins[i], i) })
}

func (c *Cloud) writeInstance(x *xmlw, in *instance, idx int) {
	x.leaf("instanceId", in.id)
	x.leaf("imageId", in.imageID)
	x.open("instanceState")
	x.int("code", stateCodes[in.state])
	x.leaf("name", in.state)
	x.close("instanceState")
	x.leaf("privateDnsName", privateDNS(in.ip))
	x.leaf("dnsName", "")
	x.opt("reason", in.stateReason)
	x.opt("keyName", in.keyName)
	x.int("amiLaunchIndex", idx)
	x.opt("clientToken", in.clientToken)
	x.leaf("instanceType", in.instanceType)
	x.time("launchTime", in.launched)
	x.open("placement")
	x.leaf("availabilityZone", in.az)
	x.leaf("tenancy", "default")
	x.close("placement")
	x.open("monitoring")
	x.leaf("state", "disabled")
	x.close("monitoring")
	if in.alive() {
		x.leaf("privateIpAddress", in.ip)
	}
	if in.stateReason != "" {
		x.open("stateReason")
		x.leaf("code", in.stateReason)
		x.leaf("message", in.stateReason)
		x.close("stateReason")
	}
	x.leaf("architecture", "x86_64")
	x.leaf("rootDeviceType", "ebs")
	x.leaf("virtualizationType", "hvm")
	x.leaf("hypervisor", "xen")
	if len(in.tags) > 0 {
		writeTagSet(x, "tagSet", c.visibleTags(in.id, in.tags))
	}
	x.open("metadataOptions")
	x.leaf("state", "applied")
	x.leaf("httpTokens", "optional")
	x.leaf("httpEndpoint", "enabled")
	x.leaf("instanceMetadataTags", "enabled")
	x.close("metadataOptions")
}

func privateDNS(ip string) string {
	if ip == "" {
		return ""
	}
	return "ip-" + strings.ReplaceAll(ip, ".", "-") + ".ec2.internal"
}

// findInstances resolves ids with EC2's error for unknown ones.
func (c *Cloud) findInstances(ids []string) ([]*instance, *apiError) {
	var missing []string
	var ins []*instance
	for _, id := range ids {
		if !strings.HasPrefix(id, "i-") {
			return nil, errf("InvalidInstanceID.Malformed", "Invalid id: %q", id)
		}
		in := c.instances[id]
		if in == nil || !c.visible(in) {
			missing = append(missing, id)
			continue
		}
		ins = append(ins, in)
	}
	if len(missing) > 0 {
		return nil, errf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
	}
	return ins, nil
}

func (c *Cloud) describeInstances(req *request, x *xmlw) *apiError {
	p := req.Params
	ids := p.list("InstanceId")
	fs, e := ec2Filters(p)
	if e != nil {
		return e
	}
	pg := ec2Paging
	pg.check = func(v int) *apiError {
		if len(ids) > 0 {
			return errf("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
		}
		if v < 5 || v > 1000 {
			return errf("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.", v)
		}
		return nil
	}
	maxR, e := pg.limit(p)
	if e != nil {
		return e
	}
	var cands []*instance
	if len(ids) > 0 {
		cands, e = c.findInstances(ids)
		if e != nil {
			return e
		}
	} else {
		cands = c.visibleInstances(c.instOrder)
	}
	kept, e := filterBy(cands, func(in *instance) (bool, *apiError) { return instanceMatches(in, fs) })
	if e != nil {
		return e
	}
	kept, next, e := pageOf(p, ec2Paging, maxR, kept)
	if e != nil {
		return e
	}
	// Instances are grouped by the reservation that launched them.
	var groups [][]*instance
	idx := map[string]int{}
	for _, in := range kept {
		i, ok := idx[in.reservation]
		if !ok {
			i = len(groups)
			idx[in.reservation] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], in)
	}
	x.list("reservationSet", "item", len(groups), func(i int) { c.writeReservation(x, groups[i][0].reservation, groups[i]) })
	x.opt("nextToken", next)
	return nil
}

func instanceMatches(in *instance, fs []filter) (bool, *apiError) {
	for _, f := range fs {
		if m, handled := tagFilter(f, in.tags); handled {
			if !m {
				return false, nil
			}
			continue
		}
		var m bool
		switch f.name {
		case "instance-id":
			m = f.match(in.id, true)
		case "instance-state-name":
			m = f.match(in.state, true)
		case "instance-state-code":
			m = f.match(strconv.Itoa(stateCodes[in.state]), true)
		case "image-id":
			m = f.match(in.imageID, true)
		case "instance-type":
			m = f.match(in.instanceType, true)
		case "private-ip-address":
			m = f.match(in.ip, in.alive())
		case "availability-zone":
			m = f.match(in.az, true)
		case "reservation-id":
			m = f.match(in.reservation, true)
		case "client-token":
			m = f.match(in.clientToken, in.clientToken != "")
		default:
			return false, errf("InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		if !m {
			return false, nil
		}
	}
	return true, nil
}

func (c *Cloud) terminateInstances(req *request, x *xmlw) *apiError {
	ids := req.Params.list("InstanceId")
	if len(ids) == 0 {
		return errf("MissingParameter", "The request must contain the parameter InstanceId")
	}
	ins, e := c.findInstances(ids)
	if e != nil {
		return e
	}
	prev := make([]string, len(ins))
	for i, in := range ins {
		prev[i] = in.state
		c.terminate(in, "Client.UserInitiatedShutdown: User initiated shutdown")
	}
	x.list("instancesSet", "item", len(ins), func(i int) {
		x.leaf("instanceId", ins[i].id)
		x.open("currentState")
		x.int("code", stateCodes[ins[i].state])
		x.leaf("name", ins[i].state)
		x.close("currentState")
		x.open("previousState")
		x.int("code", stateCodes[prev[i]])
		x.leaf("name", prev[i])
		x.close("previousState")
	})
	return nil
}

// instanceIDf formats an EC2 instance id.
func newInstanceID() string { return fmt.Sprintf("i-%s", randHex(17)) }

package localcloud

import (
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EC2: images, launch templates, instances and their tags.

type imageRec struct {
	Image
	id      string
	created time.Time
}

// ltData is a launch template version's data: what an instance launched
// from it runs and how it is tagged.
type ltData struct {
	ImageID      string
	InstanceType string
	UserData     string // base64, as EC2 takes and returns it
	KeyName      string
	InstanceTags map[string]string // TagSpecification ResourceType=instance
}

type ltVersion struct {
	number  int
	desc    string
	created time.Time
	data    ltData
}

type launchTemplate struct {
	id, name   string
	created    time.Time
	createdBy  string
	defaultVer int
	versions   []*ltVersion // versions[n-1] is version n
	tags       map[string]string
}

func (lt *launchTemplate) latest() int { return len(lt.versions) }

// resolve turns "$Default", "$Latest", "" or a number into a version.
func (lt *launchTemplate) resolve(v string) (*ltVersion, *apiError) {
	switch v {
	case "", "$Default":
		return lt.versions[lt.defaultVer-1], nil
	case "$Latest":
		return lt.versions[len(lt.versions)-1], nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return nil, errf("InvalidLaunchTemplateId.VersionNotFound", "Could not find launch template version %s of launch template %s", v, lt.id)
	}
	if n > len(lt.versions) {
		return nil, errf("InvalidLaunchTemplateId.VersionNotFound", "Could not find launch template version %d of launch template %s", n, lt.id)
	}
	return lt.versions[n-1], nil
}

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
	clientToken                                    string // RunInstances' ClientToken, reported by DescribeInstances
	simulated                                      bool
	simFail                                        bool // a simulated instance that never gets healthy

	proc *proc
	imds *imdsServer
	hold net.Listener // the node port, reserved until the process starts

	asg *asgInstance // nil when no group owns it
}

func (in *instance) alive() bool { return in.state == statePending || in.state == stateRunning }

// instanceTag is the filter and IMDS view of a tag key.
func (in *instance) tag(k string) string { return in.tags[k] }

func init() {
	for name, h := range map[string]handler{
		"DescribeImages":                 (*Cloud).describeImages,
		"CreateLaunchTemplate":           idempotent(128, (*Cloud).createLaunchTemplate),
		"CreateLaunchTemplateVersion":    idempotent(128, (*Cloud).createLaunchTemplateVersion),
		"DescribeLaunchTemplates":        (*Cloud).describeLaunchTemplates,
		"DescribeLaunchTemplateVersions": (*Cloud).describeLaunchTemplateVersions,
		"ModifyLaunchTemplate":           idempotent(128, (*Cloud).modifyLaunchTemplate),
		"RunInstances":                   idempotent(64, (*Cloud).runInstances),
		"DescribeInstances":              (*Cloud).describeInstances,
		"TerminateInstances":             (*Cloud).terminateInstances,
		"CreateTags":                     (*Cloud).createTags,
		"DeleteTags":                     (*Cloud).deleteTags,
		"DescribeTags":                   (*Cloud).describeTags,
	} {
		actions[svcEC2][name] = h
	}
}

// filter is an EC2 filter: Name and values, with * and ? wildcards.
type filter struct {
	name   string
	values []string
}

func ec2Filters(p params) ([]filter, *apiError) {
	var fs []filter
	for _, f := range p.structs("Filter") {
		name := f.str("Name")
		if name == "" {
			return nil, errf("InvalidParameterValue", "a filter must have a Name")
		}
		fs = append(fs, filter{name: name, values: f.list("Value")})
	}
	return fs, nil
}

// match reports whether any of the filter's values matches v.
func (f filter) match(v string, present bool) bool {
	if !present {
		return false
	}
	for _, pat := range f.values {
		if wildcard(pat, v) {
			return true
		}
	}
	return false
}

// wildcard matches s against an EC2 filter pattern: * any run, ? one
// character, \ escapes.
func wildcard(pat, s string) bool {
	pr, sr := []rune(pat), []rune(s)
	// Iterative matcher with backtracking on the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(sr) {
		if pi < len(pr) && pr[pi] == '\\' && pi+1 < len(pr) && pr[pi+1] == sr[si] {
			pi += 2
			si++
			continue
		}
		if pi < len(pr) && (pr[pi] == '?' || (pr[pi] == sr[si] && pr[pi] != '*' && pr[pi] != '\\')) {
			pi++
			si++
			continue
		}
		if pi < len(pr) && pr[pi] == '*' {
			star, mark = pi, si
			pi++
			continue
		}
		if star >= 0 {
			pi = star + 1
			mark++
			si = mark
			continue
		}
		return false
	}
	for pi < len(pr) && pr[pi] == '*' {
		pi++
	}
	return pi == len(pr)
}

// tagFilter handles tag:KEY and tag-key, common to every EC2 resource.
func tagFilter(f filter, tags map[string]string) (matched, handled bool) {
	if k, ok := strings.CutPrefix(f.name, "tag:"); ok {
		v, present := tags[k]
		return f.match(v, present), true
	}
	if f.name == "tag-key" {
		for k := range tags {
			if f.match(k, true) {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

func writeTagSet(x *xmlw, name string, tags map[string]string) {
	keys := sortedKeys(tags)
	x.list(name, "item", len(keys), func(i int) {
		x.leaf("key", keys[i])
		x.leaf("value", tags[keys[i]])
	})
}

// sortedKeys is a map's keys in order, for answers that list them stably.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *Cloud) describeImages(req *request, x *xmlw) *apiError {
	p := req.Params
	ids := p.list("ImageId")
	fs, e := ec2Filters(p)
	if e != nil {
		return e
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "ami-") {
			return errf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", id)
		}
		if c.images[id] == nil {
			return errf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
	}
	var all []*imageRec
	for _, id := range sortedKeys(c.images) {
		if len(ids) == 0 || contains(ids, id) {
			all = append(all, c.images[id])
		}
	}
	out, e := filterBy(all, func(im *imageRec) (bool, *apiError) {
		return matchAll(fs, func(f filter) (bool, bool) {
			switch f.name {
			case "image-id":
				return f.match(im.id, true), true
			case "name":
				return f.match(im.Name, true), true
			case "state":
				return f.match("available", true), true
			}
			return false, false
		})
	})
	if e != nil {
		return e
	}
	x.list("imagesSet", "item", len(out), func(i int) {
		im := out[i]
		x.leaf("imageId", im.id)
		x.leaf("name", im.Name)
		x.leaf("imageState", "available")
		x.leaf("imageOwnerId", accountID)
		x.leaf("creationDate", im.created.UTC().Format("2006-01-02T15:04:05.000Z"))
		x.leaf("architecture", "x86_64")
		x.leaf("imageType", "machine")
		x.bool("isPublic", false)
		x.leaf("rootDeviceType", "ebs")
		x.leaf("virtualizationType", "hvm")
		desc := "runs " + im.Command
		if im.Simulated {
			desc = "simulated instance"
		}
		x.leaf("description", desc)
	})
	return nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

var ltNameRE = regexp.MustCompile(`^[a-zA-Z0-9().\-/_]{3,128}$`)

// parseLTData reads LaunchTemplateData.*; base is the source version's data
// (or zero) that the request's fields override.
func (c *Cloud) parseLTData(p params, base ltData) (ltData, *apiError) {
	d := base
	if base.InstanceTags != nil {
		d.InstanceTags = map[string]string{}
		for k, v := range base.InstanceTags {
			d.InstanceTags[k] = v
		}
	}
	if v := p.str("ImageId"); v != "" {
		if !strings.HasPrefix(v, "ami-") {
			return d, errf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", v)
		}
		d.ImageID = v
	}
	if v := p.str("InstanceType"); v != "" {
		d.InstanceType = v
	}
	if v := p.str("KeyName"); v != "" {
		d.KeyName = v
	}
	if v, ok := p["UserData"]; ok {
		if _, err := base64.StdEncoding.DecodeString(v); err != nil {
			return d, errf("InvalidUserData.Malformed", "User data must be base64 encoded: %v", err)
		}
		if len(v) > 16384*4/3+4 {
			return d, errf("InvalidUserData.Malformed", "User data is limited to 16384 bytes")
		}
		d.UserData = v
	}
	for _, ts := range p.structs("TagSpecification") {
		if ts.str("ResourceType") != "instance" {
			continue
		}
		if d.InstanceTags == nil {
			d.InstanceTags = map[string]string{}
		}
		tags, e := ec2Tags(ts)
		if e != nil {
			return d, e
		}
		for k, v := range tags {
			d.InstanceTags[k] = v
		}
	}
	return d, nil
}

// ec2Tags reads Tag.N.Key/Value.
func ec2Tags(p params) (map[string]string, *apiError) {
	tags := map[string]string{}
	for _, t := range p.structs("Tag") {
		k := t.str("Key")
		if k == "" {
			return nil, errf("InvalidParameterValue", "Tag key must not be empty")
		}
		if len(k) > 128 || len(t.str("Value")) > 256 {
			return nil, errf("InvalidParameterValue", "Tag keys are limited to 128 and values to 256 characters")
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return nil, errf("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		}
		tags[k] = t.str("Value")
	}
	return tags, nil
}

// findLT finds a launch template by id or name, with EC2's errors.
func (c *Cloud) findLT(id, name string) (*launchTemplate, *apiError) {
	if id == "" && name == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter LaunchTemplateName or LaunchTemplateId")
	}
	if id != "" && name != "" {
		return nil, errf("InvalidParameterCombination", "Specify either LaunchTemplateName or LaunchTemplateId, not both")
	}
	if id != "" {
		if lt := c.templates[id]; lt != nil {
			return lt, nil
		}
		if !strings.HasPrefix(id, "lt-") {
			return nil, errf("InvalidLaunchTemplateId.Malformed", "The launch template ID '%s' is malformed", id)
		}
		return nil, errf("InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist.", id)
	}
	for _, lt := range c.templates {
		if lt.name == name {
			return lt, nil
		}
	}
	return nil, errf("InvalidLaunchTemplateName.NotFoundException", "The specified launch template, with template name %s, does not exist.", name)
}

func (c *Cloud) createLaunchTemplate(req *request) (func(x *xmlw), *apiError) {
	p := req.Params
	name, e := p.required("LaunchTemplateName")
	if e != nil {
		return nil, e
	}
	if !ltNameRE.MatchString(name) {
		return nil, errf("InvalidLaunchTemplateName.MalformedException", "A launch template name must be between 3 and 128 characters, and may contain letters, numbers, and the following characters: - ( ) . / _")
	}
	if !p.has("LaunchTemplateData") {
		return nil, errf("MissingParameter", "The request must contain the parameter LaunchTemplateData")
	}
	for _, lt := range c.templates {
		if lt.name == name {
			return nil, errf("InvalidLaunchTemplateName.AlreadyExistsException", "Launch template name already in use.")
		}
	}
	d, e := c.parseLTData(p.sub("LaunchTemplateData"), ltData{})
	if e != nil {
		return nil, e
	}
	tags := map[string]string{}
	for _, ts := range p.structs("TagSpecification") {
		if ts.str("ResourceType") == "launch-template" {
			t, e := ec2Tags(ts)
			if e != nil {
				return nil, e
			}
			for k, v := range t {
				tags[k] = v
			}
		}
	}
	now := c.now()
	lt := &launchTemplate{
		id: "lt-" + randHex(17), name: name, created: now, defaultVer: 1,
		createdBy: "arn:aws:iam::" + accountID + ":user/" + userOf(req), tags: tags,
	}
	lt.versions = append(lt.versions, &ltVersion{number: 1, desc: p.str("VersionDescription"), created: now, data: d})
	c.templates[lt.id] = lt
	return ltWriter(lt), nil
}

func userOf(req *request) string {
	if req.AccessKey != "" {
		return req.AccessKey
	}
	return "local"
}

// ltWriter writes a launch template as CreateLaunchTemplate and
// ModifyLaunchTemplate answer with it.
func ltWriter(lt *launchTemplate) func(x *xmlw) {
	return func(x *xmlw) {
		x.open("launchTemplate")
		writeLT(x, lt)
		x.close("launchTemplate")
	}
}

func writeLT(x *xmlw, lt *launchTemplate) {
	x.leaf("launchTemplateId", lt.id)
	x.leaf("launchTemplateName", lt.name)
	x.time("createTime", lt.created)
	x.leaf("createdBy", lt.createdBy)
	x.int("defaultVersionNumber", lt.defaultVer)
	x.int("latestVersionNumber", lt.latest())
	if len(lt.tags) > 0 {
		writeTagSet(x, "tagSet", lt.tags)
	}
}

func writeLTVersion(x *xmlw, lt *launchTemplate, v *ltVersion) {
	x.leaf("launchTemplateId", lt.id)
	x.leaf("launchTemplateName", lt.name)
	x.int("versionNumber", v.number)
	x.opt("versionDescription", v.desc)
	x.time("createTime", v.created)
	x.leaf("createdBy", lt.createdBy)
	x.bool("defaultVersion", v.number == lt.defaultVer)
	x.open("launchTemplateData")
	x.opt("imageId", v.data.ImageID)
	x.opt("instanceType", v.data.InstanceType)
	x.opt("keyName", v.data.KeyName)
	x.opt("userData", v.data.UserData)
	if len(v.data.InstanceTags) > 0 {
		x.list("tagSpecificationSet", "item", 1, func(int) {
			x.leaf("resourceType", "instance")
			writeTagSet(x, "tagSet", v.data.InstanceTags)
		})
	}
	x.close("launchTemplateData")
}

func (c *Cloud) createLaunchTemplateVersion(req *request) (func(x *xmlw), *apiError) {
	p := req.Params
	lt, e := c.findLT(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
	if e != nil {
		return nil, e
	}
	if !p.has("LaunchTemplateData") {
		return nil, errf("MissingParameter", "The request must contain the parameter LaunchTemplateData")
	}
	var base ltData
	if sv := p.str("SourceVersion"); sv != "" {
		src, e := lt.resolve(sv)
		if e != nil {
			return nil, e
		}
		base = src.data
	}
	if len(lt.versions) >= 10000 {
		return nil, errf("LaunchTemplateVersionLimitExceeded", "A launch template can have at most 10000 versions")
	}
	d, e := c.parseLTData(p.sub("LaunchTemplateData"), base)
	if e != nil {
		return nil, e
	}
	v := &ltVersion{number: lt.latest() + 1, desc: p.str("VersionDescription"), created: c.now(), data: d}
	lt.versions = append(lt.versions, v)
	return func(x *xmlw) {
		x.open("launchTemplateVersion")
		writeLTVersion(x, lt, v)
		x.close("launchTemplateVersion")
	}, nil
}

func (c *Cloud) describeLaunchTemplates(req *request, x *xmlw) *apiError {
	p := req.Params
	ids, names := p.list("LaunchTemplateId"), p.list("LaunchTemplateName")
	fs, e := ec2Filters(p)
	if e != nil {
		return e
	}
	var out []*launchTemplate
	for _, id := range ids {
		lt, e := c.findLT(id, "")
		if e != nil {
			return e
		}
		out = append(out, lt)
	}
	for _, n := range names {
		lt, e := c.findLT("", n)
		if e != nil {
			return e
		}
		out = append(out, lt)
	}
	if len(ids) == 0 && len(names) == 0 {
		for _, lt := range c.templates {
			out = append(out, lt)
		}
		sort.Slice(out, func(i, j int) bool {
			return out[i].created.Before(out[j].created) || out[i].created.Equal(out[j].created) && out[i].id < out[j].id
		})
	}
	kept, e := filterBy(out, func(lt *launchTemplate) (bool, *apiError) {
		return matchAll(fs, func(f filter) (bool, bool) {
			if m, handled := tagFilter(f, lt.tags); handled {
				return m, true
			}
			switch f.name {
			case "launch-template-name":
				return f.match(lt.name, true), true
			case "launch-template-id":
				return f.match(lt.id, true), true
			}
			return false, false
		})
	})
	if e != nil {
		return e
	}
	x.list("launchTemplates", "item", len(kept), func(i int) { writeLT(x, kept[i]) })
	return nil
}

func (c *Cloud) describeLaunchTemplateVersions(req *request, x *xmlw) *apiError {
	p := req.Params
	var lts []*launchTemplate
	if p.str("LaunchTemplateId") != "" || p.str("LaunchTemplateName") != "" {
		lt, e := c.findLT(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
		if e != nil {
			return e
		}
		lts = append(lts, lt)
	}
	versions := p.list("LaunchTemplateVersion")
	if len(lts) == 0 {
		if len(versions) > 0 {
			for _, v := range versions {
				if v != "$Latest" && v != "$Default" {
					return errf("InvalidParameterCombination", "Specific version numbers require a LaunchTemplateId or LaunchTemplateName")
				}
			}
		}
		for _, lt := range c.templates {
			lts = append(lts, lt)
		}
		sort.Slice(lts, func(i, j int) bool { return lts[i].id < lts[j].id })
	}
	minV, _, e := p.intOpt("MinVersion")
	if e != nil {
		return e
	}
	maxV, maxSet, e := p.intOpt("MaxVersion")
	if e != nil {
		return e
	}
	type pair struct {
		lt *launchTemplate
		v  *ltVersion
	}
	var out []pair
	for _, lt := range lts {
		if len(versions) > 0 {
			for _, s := range versions {
				v, e := lt.resolve(s)
				if e != nil {
					return e
				}
				out = append(out, pair{lt, v})
			}
			continue
		}
		for i := len(lt.versions) - 1; i >= 0; i-- {
			v := lt.versions[i]
			if v.number < minV || maxSet && v.number > maxV {
				continue
			}
			out = append(out, pair{lt, v})
		}
	}
	x.list("launchTemplateVersionSet", "item", len(out), func(i int) { writeLTVersion(x, out[i].lt, out[i].v) })
	return nil
}

func (c *Cloud) modifyLaunchTemplate(req *request) (func(x *xmlw), *apiError) {
	p := req.Params
	lt, e := c.findLT(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
	if e != nil {
		return nil, e
	}
	if dv := p.str("SetDefaultVersion"); dv != "" {
		v, e := lt.resolve(dv)
		if e != nil {
			return nil, e
		}
		lt.defaultVer = v.number
	}
	return ltWriter(lt), nil
}

// launchSpec is what a new instance needs, from RunInstances or a group.
type launchSpec struct {
	imageID, instanceType, userData, keyName string
	tags                                     map[string]string
	lt                                       *launchTemplate
	ltVersion                                int
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
		writeTagSet(x, "tagSet", in.tags)
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
	var out, missing []string
	var ins []*instance
	for _, id := range ids {
		if !strings.HasPrefix(id, "i-") {
			return nil, errf("InvalidInstanceID.Malformed", "Invalid id: %q", id)
		}
		in := c.instances[id]
		if in == nil {
			missing = append(missing, id)
			continue
		}
		out = append(out, id)
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
		cands = c.instOrder
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

// taggable resolves a resource id for CreateTags/DeleteTags.
func (c *Cloud) taggable(id string) (map[string]string, string, *apiError) {
	switch {
	case strings.HasPrefix(id, "i-"):
		in := c.instances[id]
		if in == nil {
			return nil, "", errf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		if in.tags == nil {
			in.tags = map[string]string{}
		}
		return in.tags, "instance", nil
	case strings.HasPrefix(id, "lt-"):
		lt := c.templates[id]
		if lt == nil {
			return nil, "", errf("InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist.", id)
		}
		return lt.tags, "launch-template", nil
	}
	return nil, "", errf("InvalidID", "The ID '%s' is not valid", id)
}

func (c *Cloud) createTags(req *request, x *xmlw) *apiError {
	p := req.Params
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return errf("MissingParameter", "The request must contain the parameter ResourceId")
	}
	if len(p.structs("Tag")) == 0 {
		return errf("MissingParameter", "The request must contain the parameter Tag")
	}
	tags, e := ec2Tags(p)
	if e != nil {
		return e
	}
	var maps []map[string]string
	for _, id := range ids {
		m, _, e := c.taggable(id)
		if e != nil {
			return e
		}
		maps = append(maps, m)
	}
	for _, m := range maps {
		for k, v := range tags {
			m[k] = v
		}
		if len(m) > 50 {
			return errf("TagLimitExceeded", "a resource can have at most 50 tags")
		}
	}
	x.bool("return", true)
	return nil
}

func (c *Cloud) deleteTags(req *request, x *xmlw) *apiError {
	p := req.Params
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return errf("MissingParameter", "The request must contain the parameter ResourceId")
	}
	for _, id := range ids {
		m, _, e := c.taggable(id)
		if e != nil {
			return e
		}
		for _, t := range p.structs("Tag") {
			k := t.str("Key")
			if v, ok := t["Value"]; ok && m[k] != v {
				continue
			}
			delete(m, k)
		}
	}
	x.bool("return", true)
	return nil
}

func (c *Cloud) describeTags(req *request, x *xmlw) *apiError {
	p := req.Params
	fs, e := ec2Filters(p)
	if e != nil {
		return e
	}
	type row struct{ id, typ, k, v string }
	var rows []row
	for _, in := range c.instOrder {
		for _, k := range sortedKeys(in.tags) {
			rows = append(rows, row{in.id, "instance", k, in.tags[k]})
		}
	}
	lts := make([]*launchTemplate, 0, len(c.templates))
	for _, lt := range c.templates {
		lts = append(lts, lt)
	}
	sort.Slice(lts, func(i, j int) bool { return lts[i].id < lts[j].id })
	for _, lt := range lts {
		for _, k := range sortedKeys(lt.tags) {
			rows = append(rows, row{lt.id, "launch-template", k, lt.tags[k]})
		}
	}
	kept, e := filterBy(rows, func(r row) (bool, *apiError) {
		return matchAll(fs, func(f filter) (bool, bool) {
			switch f.name {
			case "resource-id":
				return f.match(r.id, true), true
			case "resource-type":
				return f.match(r.typ, true), true
			case "key":
				return f.match(r.k, true), true
			case "value":
				return f.match(r.v, true), true
			}
			if k, isTag := strings.CutPrefix(f.name, "tag:"); isTag {
				return r.k == k && f.match(r.v, true), true
			}
			return false, false
		})
	})
	if e != nil {
		return e
	}
	return writePage(x, p, ec2Paging, "tagSet", kept, func(r row) {
		x.leaf("resourceId", r.id)
		x.leaf("resourceType", r.typ)
		x.leaf("key", r.k)
		x.leaf("value", r.v)
	})
}

// instanceIDf formats an EC2 instance id.
func newInstanceID() string { return fmt.Sprintf("i-%s", randHex(17)) }

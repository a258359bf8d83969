package localcloud

import (
	"encoding/base64"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EC2 launch templates and their versions.

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

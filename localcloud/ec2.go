package localcloud

import (
	"sort"
	"strings"
	"time"
)

// EC2: images and tags. Launch templates are in ec2_templates.go,
// instances in ec2_instances.go, filters in ec2_filters.go.

type imageRec struct {
	Image
	id      string
	created time.Time
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
	for i, id := range ids {
		for k := range tags {
			old, had := maps[i][k]
			c.noteTagWrite(id, k, staleTag{value: old, had: had})
		}
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
			if old, had := m[k]; had {
				c.noteTagWrite(id, k, staleTag{value: old, had: true})
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
	for _, in := range c.visibleInstances(c.instOrder) {
		tags := c.visibleTags(in.id, in.tags)
		for _, k := range sortedKeys(tags) {
			rows = append(rows, row{in.id, "instance", k, tags[k]})
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

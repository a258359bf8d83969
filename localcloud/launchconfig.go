package localcloud

import (
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Launch configurations (Auto Scaling's CreateLaunchConfiguration,
// DescribeLaunchConfigurations, DeleteLaunchConfiguration), and groups
// that launch from one instead of a launch template. Validation and error
// codes follow the Auto Scaling API reference and its service model: names
// of 1 to 255 XML characters, AlreadyExists for a name taken,
// ResourceInUse for a configuration a group uses, ValidationError for a
// name not found, LimitExceeded past the account's quota.

// maxLaunchConfigs is Auto Scaling's default quota of launch
// configurations per Region.
const maxLaunchConfigs = 200

// maxUserData is the service model's bound on UserData (base64).
const maxUserData = 21847

// launchConfig is one launch configuration. It never changes once made:
// AWS has no call that modifies one.
type launchConfig struct {
	name, arn             string
	imageID, instanceType string
	keyName, userData     string // userData: base64, as the API carries it
	iamProfile, tenancy   string
	kernelID, ramdiskID   string
	spotPrice, classicVPC string
	securityGroups        []string
	classicSGs            []string
	// blockDevices and metadata are kept as given (the API's member
	// names) and given back as they came: the cloud launches nothing
	// differently for them.
	blockDevices             []params
	metadata                 params
	monitoring, ebsOptimized bool
	publicIP                 *bool
	created                  time.Time
}

// lcs returns the launch configurations, made on first use.
func (c *Cloud) lcs() map[string]*launchConfig {
	if c.launchConfigs == nil {
		c.launchConfigs = map[string]*launchConfig{}
	}
	return c.launchConfigs
}

// checkXMLString checks a string parameter against the service model's
// XmlStringMaxLen<max> shape: min to max characters, none of them a
// control character other than tab, newline and carriage return. field is
// the member's name as AWS's messages write it (lowerCamelCase).
func checkXMLString(field, v string, max int) *apiError {
	n := utf8.RuneCountInString(v)
	if n < 1 {
		return validationf("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have length greater than or equal to 1", v, field)
	}
	if n > max {
		return validationf("1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", field, max)
	}
	for _, r := range v {
		if !utf8.ValidString(v) || (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0xFFFE || r == 0xFFFF {
			return validationf("1 validation error detected: Value at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\r\\n\\t]*", field)
		}
	}
	return nil
}

// requiredLCName reads LaunchConfigurationName, which every launch
// configuration call requires.
func requiredLCName(p params) (string, *apiError) {
	name, ok := p["LaunchConfigurationName"]
	if !ok {
		return "", validationf("1 validation error detected: Value null at 'launchConfigurationName' failed to satisfy constraint: Member must not be null")
	}
	if e := checkXMLString("launchConfigurationName", name, 255); e != nil {
		return "", e
	}
	return name, nil
}

// lcNotFound is AWS's answer for a launch configuration name that does
// not exist.
func lcNotFound(name string) *apiError {
	return validationf("Launch configuration name not found - Launch configuration %s not found", name)
}

func (c *Cloud) createLaunchConfiguration(req *request, x *xmlw) *apiError {
	p := req.Params
	name, e := requiredLCName(p)
	if e != nil {
		return e
	}
	if c.lcs()[name] != nil {
		return errf("AlreadyExists", "Launch Configuration by this name already exists - A launch configuration already exists with the name %s", name)
	}
	if len(c.lcs()) >= maxLaunchConfigs {
		return errf("LimitExceeded", "Launch configuration limit exceeded: the account has %d of its %d launch configurations in this Region", len(c.lcs()), maxLaunchConfigs)
	}
	lc := &launchConfig{name: name, created: c.now(), monitoring: true,
		arn: "arn:aws:autoscaling:" + c.cfg.Region + ":" + accountID + ":launchConfiguration:" + newUUID() + ":launchConfigurationName/" + name}
	for _, f := range []struct {
		key, field string
		max        int
		dst        *string
	}{
		{"ImageId", "imageId", 255, &lc.imageID},
		{"InstanceType", "instanceType", 255, &lc.instanceType},
		{"KeyName", "keyName", 255, &lc.keyName},
		{"IamInstanceProfile", "iamInstanceProfile", 1600, &lc.iamProfile},
		{"PlacementTenancy", "placementTenancy", 64, &lc.tenancy},
		{"KernelId", "kernelId", 255, &lc.kernelID},
		{"RamdiskId", "ramdiskId", 255, &lc.ramdiskID},
		{"SpotPrice", "spotPrice", 255, &lc.spotPrice},
		{"ClassicLinkVPCId", "classicLinkVPCId", 255, &lc.classicVPC},
	} {
		v, ok := p[f.key]
		if !ok {
			continue
		}
		if e := checkXMLString(f.field, v, f.max); e != nil {
			return e
		}
		*f.dst = v
	}
	if ud, ok := p["UserData"]; ok {
		if len(ud) > maxUserData {
			return validationf("1 validation error detected: Value at 'userData' failed to satisfy constraint: Member must have length less than or equal to %d", maxUserData)
		}
		lc.userData = ud
	}
	if id := p.str("InstanceId"); id != "" {
		// The configuration takes what it does not give from the
		// instance.
		in := c.instances[id]
		if in == nil || !in.alive() {
			return validationf("Invalid instance id %s: the instance does not exist or is not running", id)
		}
		if lc.imageID == "" {
			lc.imageID = in.imageID
		}
		if lc.instanceType == "" {
			lc.instanceType = in.instanceType
		}
		if lc.keyName == "" {
			lc.keyName = in.keyName
		}
		if _, ok := p["UserData"]; !ok {
			lc.userData = in.userData
		}
	}
	if lc.imageID == "" {
		return validationf("Valid requests must contain either the ImageId or the InstanceId parameter.")
	}
	if lc.instanceType == "" {
		return validationf("Valid requests must contain either the InstanceType or the InstanceId parameter.")
	}
	if e := c.checkImage(lc.imageID); e != nil {
		return validationf("AMI %s is invalid: %s", lc.imageID, e.Message)
	}
	lc.securityGroups = p.list("SecurityGroups.member")
	lc.classicSGs = p.list("ClassicLinkVPCSecurityGroups.member")
	for i, bd := range p.structs("BlockDeviceMappings.member") {
		if bd.str("DeviceName") == "" {
			return validationf("1 validation error detected: Value null at 'blockDeviceMappings.%d.member.deviceName' failed to satisfy constraint: Member must not be null", i+1)
		}
		lc.blockDevices = append(lc.blockDevices, bd)
	}
	if md := p.sub("MetadataOptions"); len(md) > 0 {
		if v := md.str("HttpTokens"); v != "" && v != "optional" && v != "required" {
			return validationf("1 validation error detected: Value '%s' at 'metadataOptions.httpTokens' failed to satisfy enum value set: [optional, required]", v)
		}
		if v := md.str("HttpEndpoint"); v != "" && v != "enabled" && v != "disabled" {
			return validationf("1 validation error detected: Value '%s' at 'metadataOptions.httpEndpoint' failed to satisfy enum value set: [disabled, enabled]", v)
		}
		lc.metadata = md
	}
	if v, set, e := p.boolOpt("InstanceMonitoring.Enabled"); e != nil {
		return e
	} else if set {
		lc.monitoring = v
	}
	if v, _, e := p.boolOpt("EbsOptimized"); e != nil {
		return e
	} else {
		lc.ebsOptimized = v
	}
	if v, set, e := p.boolOpt("AssociatePublicIpAddress"); e != nil {
		return e
	} else if set {
		lc.publicIP = &v
	}
	c.lcs()[name] = lc
	c.log.Info("launch configuration created", "launch_configuration", name, "image", lc.imageID)
	return nil
}

func (c *Cloud) describeLaunchConfigurations(req *request, x *xmlw) *apiError {
	p := req.Params
	names := p.list("LaunchConfigurationNames.member")
	if len(names) > 50 {
		return validationf("1 validation error detected: Value at 'launchConfigurationNames' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	var out []*launchConfig
	if len(names) == 0 {
		for _, n := range sortedKeys(c.lcs()) {
			out = append(out, c.lcs()[n])
		}
	} else {
		seen := map[string]bool{}
		for _, n := range names {
			if lc := c.lcs()[n]; lc != nil && !seen[n] {
				seen[n] = true
				out = append(out, lc)
			}
		}
	}
	return writePage(x, p, asgPaging(50, 100), "LaunchConfigurations", out, func(lc *launchConfig) { writeLaunchConfig(x, lc) })
}

// writeLaunchConfig writes one member of DescribeLaunchConfigurations.
func writeLaunchConfig(x *xmlw, lc *launchConfig) {
	x.leaf("LaunchConfigurationName", lc.name)
	x.leaf("LaunchConfigurationARN", lc.arn)
	x.leaf("ImageId", lc.imageID)
	x.opt("KeyName", lc.keyName)
	x.strings("SecurityGroups", "member", lc.securityGroups)
	x.opt("ClassicLinkVPCId", lc.classicVPC)
	x.strings("ClassicLinkVPCSecurityGroups", "member", lc.classicSGs)
	x.leaf("UserData", lc.userData)
	x.leaf("InstanceType", lc.instanceType)
	x.leaf("KernelId", lc.kernelID)
	x.leaf("RamdiskId", lc.ramdiskID)
	x.list("BlockDeviceMappings", "member", len(lc.blockDevices), func(i int) { writeNested(x, lc.blockDevices[i]) })
	x.opt("SpotPrice", lc.spotPrice)
	x.open("InstanceMonitoring")
	x.bool("Enabled", lc.monitoring)
	x.close("InstanceMonitoring")
	x.opt("IamInstanceProfile", lc.iamProfile)
	x.time("CreatedTime", lc.created)
	x.bool("EbsOptimized", lc.ebsOptimized)
	if lc.publicIP != nil {
		x.bool("AssociatePublicIpAddress", *lc.publicIP)
	}
	x.opt("PlacementTenancy", lc.tenancy)
	if len(lc.metadata) > 0 {
		x.open("MetadataOptions")
		writeNested(x, lc.metadata)
		x.close("MetadataOptions")
	}
}

// writeNested writes a structure given as Query parameters (dotted member
// names, no lists) as the XML elements of the same names, nested at the
// dots, members in name order.
func writeNested(x *xmlw, p params) {
	subs := map[string]params{}
	for _, k := range sortedKeys(p) {
		head, rest, nested := strings.Cut(k, ".")
		if !nested {
			x.leaf(k, p[k])
			continue
		}
		if subs[head] == nil {
			subs[head] = params{}
		}
		subs[head][rest] = p[k]
	}
	for _, head := range sortedKeys(subs) {
		x.open(head)
		writeNested(x, subs[head])
		x.close(head)
	}
}

func (c *Cloud) deleteLaunchConfiguration(req *request, x *xmlw) *apiError {
	name, e := requiredLCName(req.Params)
	if e != nil {
		return e
	}
	if c.lcs()[name] == nil {
		return lcNotFound(name)
	}
	var users []string
	for _, g := range c.groups {
		if g.lcName == name {
			users = append(users, g.name)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return errf("ResourceInUse", "Cannot delete launch configuration %s because it is attached to AutoScalingGroup %s", name, users[0])
	}
	delete(c.lcs(), name)
	c.log.Info("launch configuration deleted", "launch_configuration", name)
	return nil
}

// groupLaunchSource reads what a CreateAutoScalingGroup or
// UpdateAutoScalingGroup call says the group launches from: a launch
// template (id and version spec) or a launch configuration (its name).
// set is false when the call says neither. Both at once is refused, as
// AWS refuses it.
func (c *Cloud) groupLaunchSource(p params) (ltID, ltVersion, lcName string, set bool, e *apiError) {
	_, hasLC := p["LaunchConfigurationName"]
	hasLT := p.has("LaunchTemplate")
	switch {
	case hasLC && hasLT:
		return "", "", "", false, validationf("Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
	case hasLC:
		name := p.str("LaunchConfigurationName")
		if e := checkXMLString("launchConfigurationName", name, 255); e != nil {
			return "", "", "", false, e
		}
		if c.lcs()[name] == nil {
			return "", "", "", false, lcNotFound(name)
		}
		return "", "", name, true, nil
	case hasLT:
		id, ver, e := c.parseGroupLT(p)
		return id, ver, "", e == nil, e
	}
	return "", "", "", false, nil
}

// specFromLC fills a launch spec from the group's launch configuration.
func (c *Cloud) specFromLC(g *group) (launchSpec, *apiError) {
	lc := c.lcs()[g.lcName]
	if lc == nil {
		return launchSpec{}, validationf("The launch configuration %s does not exist", g.lcName)
	}
	return launchSpec{imageID: lc.imageID, instanceType: lc.instanceType, userData: lc.userData, keyName: lc.keyName,
		lcName: lc.name, tags: map[string]string{}}, nil
}

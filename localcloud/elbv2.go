package localcloud

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ELBv2: target groups with health checks and deregistration delays, and
// application load balancers whose listeners are real reverse proxies.

type target struct {
	id         string
	port       int
	state      string // initial, healthy, unhealthy, draining
	reason     string
	code       int // the status of the last check the matcher refused (Target.ResponseCodeMismatch)
	okRun      int
	failRun    int
	registered time.Time
	drainUntil time.Time
	nextCheck  time.Time
	checking   bool
}

func (t *target) key() string { return t.id + ":" + strconv.Itoa(t.port) }

type targetGroup struct {
	arn, name, protocol, vpc, targetType string
	port                                 int
	hcPath, hcProtocol, hcPort, matcher  string
	hcEnabled                            bool
	hcInterval, hcTimeout                int
	healthyN, unhealthyN                 int
	attrs                                map[string]string
	targets                              map[string]*target
	created                              time.Time
}

// deregDelay is how long a deregistered target of tg drains: the group's
// deregistration_delay.timeout_seconds, shortened to
// Config.DeregistrationDelayMax.
func (c *Cloud) deregDelay(tg *targetGroup) time.Duration {
	n, _ := strconv.Atoi(tg.attrs["deregistration_delay.timeout_seconds"])
	d := time.Duration(n) * time.Second
	if m := c.cfg.DeregistrationDelayMax; m > 0 && d > m {
		d = m
	}
	return d
}

// tgAttrs are tg's attributes as ModifyTargetGroupAttributes and
// DescribeTargetGroupAttributes report them: the deregistration delay is
// the one applied, so that a client sizing its drain by it (the rollout
// engine does) sees when the load balancer will cut the connections. The
// attribute counts whole seconds; a shorter delay reads as 1, never as 0
// (no delay at all).
func (c *Cloud) tgAttrs(tg *targetGroup) map[string]string {
	out := make(map[string]string, len(tg.attrs))
	for k, v := range tg.attrs {
		out[k] = v
	}
	d := c.deregDelay(tg)
	out["deregistration_delay.timeout_seconds"] = strconv.Itoa(int((d + time.Second - 1) / time.Second))
	return out
}

func (tg *targetGroup) sortedTargets() []*target {
	ts := make([]*target, 0, len(tg.targets))
	for _, t := range tg.targets {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool {
		if !ts[i].registered.Equal(ts[j].registered) {
			return ts[i].registered.Before(ts[j].registered)
		}
		return ts[i].key() < ts[j].key()
	})
	return ts
}

type loadBalancer struct {
	arn, name, scheme, typ, ipType string
	created                        time.Time
	subnets, sgs                   []string
}

var elbNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$`)

func (c *Cloud) createLoadBalancer(req *request, x *xmlw) *apiError {
	p := req.Params
	name, e := p.required("Name")
	if e != nil {
		return e
	}
	if !elbNameRE.MatchString(name) || strings.HasPrefix(name, "internal-") {
		return validationf("The load balancer name '%s' is not valid: up to 32 letters, digits and hyphens, not starting or ending with a hyphen", name)
	}
	typ := p.str("Type")
	if typ == "" {
		typ = "application"
	}
	if typ != "application" {
		return errf("UnsupportedProtocol", "The local cloud runs application load balancers only, not %s", typ)
	}
	scheme := p.str("Scheme")
	if scheme == "" {
		scheme = "internet-facing"
	}
	if scheme != "internet-facing" && scheme != "internal" {
		return validationf("Scheme %s is not valid", scheme)
	}
	// CreateLoadBalancer is idempotent: the same name returns the same
	// load balancer.
	for _, lb := range c.lbs {
		if lb.name == name {
			if lb.scheme != scheme {
				return errf("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
			}
			x.list("LoadBalancers", "member", 1, func(int) { c.writeLB(x, lb) })
			return nil
		}
	}
	lb := &loadBalancer{
		arn:  "arn:aws:elasticloadbalancing:" + c.cfg.Region + ":" + accountID + ":loadbalancer/app/" + name + "/" + randHex(16),
		name: name, scheme: scheme, typ: typ, ipType: "ipv4", created: c.now(),
		subnets: p.list("Subnets.member"), sgs: p.list("SecurityGroups.member"),
	}
	c.lbs[lb.arn] = lb
	x.list("LoadBalancers", "member", 1, func(int) { c.writeLB(x, lb) })
	return nil
}

func (c *Cloud) writeLB(x *xmlw, lb *loadBalancer) {
	x.leaf("LoadBalancerArn", lb.arn)
	// Listeners bind 127.0.0.1, so that is the DNS name clients connect to.
	x.leaf("DNSName", "127.0.0.1")
	x.leaf("CanonicalHostedZoneId", "Z35SXDOTRQ7X7K")
	x.time("CreatedTime", lb.created)
	x.leaf("LoadBalancerName", lb.name)
	x.leaf("Scheme", lb.scheme)
	x.leaf("VpcId", "vpc-local")
	x.open("State")
	x.leaf("Code", "active")
	x.close("State")
	x.leaf("Type", lb.typ)
	x.list("AvailabilityZones", "member", 1, func(int) {
		x.leaf("ZoneName", c.cfg.Region+"a")
		x.leaf("SubnetId", firstOr(lb.subnets, "subnet-local"))
	})
	x.strings("SecurityGroups", "member", lb.sgs)
	x.leaf("IpAddressType", lb.ipType)
}

func (c *Cloud) describeLoadBalancers(req *request, x *xmlw) *apiError {
	p := req.Params
	arns, names := p.list("LoadBalancerArns.member"), p.list("Names.member")
	out, e := lookup(c.lbs, arns, names, func(lb *loadBalancer) string { return lb.name }, func(s string, byName bool) *apiError {
		if byName {
			return errf("LoadBalancerNotFound", "Load balancers '[%s]' not found", s)
		}
		return errf("LoadBalancerNotFound", "One or more load balancers not found")
	})
	if e != nil {
		return e
	}
	if len(arns) == 0 && len(names) == 0 {
		for _, lb := range c.lbs {
			out = append(out, lb)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	}
	return writePage(x, p, elbPaging, "LoadBalancers", out, func(lb *loadBalancer) { c.writeLB(x, lb) })
}

func (c *Cloud) createListener(req *request, x *xmlw) *apiError {
	p := req.Params
	lbARN, e := p.required("LoadBalancerArn")
	if e != nil {
		return e
	}
	lb := c.lbs[lbARN]
	if lb == nil {
		return errf("LoadBalancerNotFound", "The load balancer '%s' does not exist", lbARN)
	}
	proto := p.str("Protocol")
	if proto == "" {
		proto = "HTTP"
	}
	if proto != "HTTP" {
		return errf("UnsupportedProtocol", "Protocol '%s' is not supported by the local cloud; use HTTP", proto)
	}
	port, e := requiredPort(p, "A listener port must be specified for Application Load Balancers")
	if e != nil {
		return e
	}
	acts, e := p.requiredStructs("DefaultActions.member", "DefaultActions")
	if e != nil {
		return e
	}
	if len(acts) > 1 || acts[0].str("Type") != "forward" {
		return errf("InvalidConfigurationRequest", "The local cloud supports a single forward default action")
	}
	tgARN := acts[0].str("TargetGroupArn")
	if tgARN == "" {
		if tgs := acts[0].structs("ForwardConfig.TargetGroups.member"); len(tgs) == 1 {
			tgARN = tgs[0].str("TargetGroupArn")
		}
	}
	if tgARN == "" {
		return validationf("A forward action needs a TargetGroupArn (or one target group in ForwardConfig)")
	}
	if c.targetGrps[tgARN] == nil {
		return errf("TargetGroupNotFound", "Target group '%s' not found", tgARN)
	}
	for _, l := range c.listeners {
		if l.lb == lb && l.port == port {
			if l.tgARN == tgARN {
				x.list("Listeners", "member", 1, func(int) { c.writeListener(x, l) })
				return nil
			}
			return errf("DuplicateListener", "A listener already exists on this port for this load balancer '%s'", lbARN)
		}
	}
	l, err := c.startListener(lb, port, tgARN)
	if err != nil {
		return errf("InvalidConfigurationRequest", "Cannot listen on 127.0.0.1:%d: %v", port, err)
	}
	c.listeners[l.arn] = l
	x.list("Listeners", "member", 1, func(int) { c.writeListener(x, l) })
	return nil
}

// requiredPort reads the Port of a listener or target group; missing is
// the action's error when there is none.
func requiredPort(p params, missing string) (int, *apiError) {
	port, set, e := p.intOpt("Port")
	if e != nil {
		return 0, e
	}
	if !set {
		return 0, validationf("%s", missing)
	}
	if port < 1 || port > 65535 {
		return 0, validationf("Port %d is not valid; it must be between 1 and 65535", port)
	}
	return port, nil
}

func (c *Cloud) writeListener(x *xmlw, l *listener) {
	x.leaf("ListenerArn", l.arn)
	x.leaf("LoadBalancerArn", l.lb.arn)
	x.int("Port", l.port)
	x.leaf("Protocol", "HTTP")
	x.list("DefaultActions", "member", 1, func(int) {
		x.leaf("Type", "forward")
		x.leaf("TargetGroupArn", l.tgARN)
		x.open("ForwardConfig")
		x.list("TargetGroups", "member", 1, func(int) {
			x.leaf("TargetGroupArn", l.tgARN)
			x.int("Weight", 1)
		})
		x.close("ForwardConfig")
	})
}

func (c *Cloud) describeListeners(req *request, x *xmlw) *apiError {
	p := req.Params
	lbARN := p.str("LoadBalancerArn")
	arns := p.list("ListenerArns.member")
	if lbARN == "" && len(arns) == 0 {
		return validationf("You must specify either listener ARNs or a load balancer ARN")
	}
	if lbARN != "" && c.lbs[lbARN] == nil {
		return errf("LoadBalancerNotFound", "The load balancer '%s' does not exist", lbARN)
	}
	var out []*listener
	for _, a := range arns {
		l := c.listeners[a]
		if l == nil {
			return errf("ListenerNotFound", "One or more listeners not found")
		}
		out = append(out, l)
	}
	if lbARN != "" {
		for _, l := range c.listeners {
			if l.lb.arn == lbARN {
				out = append(out, l)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	x.list("Listeners", "member", len(out), func(i int) { c.writeListener(x, out[i]) })
	return nil
}

func (c *Cloud) createTargetGroup(req *request, x *xmlw) *apiError {
	p := req.Params
	name, e := p.required("Name")
	if e != nil {
		return e
	}
	if !elbNameRE.MatchString(name) {
		return validationf("Target group name '%s' is not valid: up to 32 letters, digits and hyphens, not starting or ending with a hyphen", name)
	}
	tg := &targetGroup{
		name: name, protocol: p.str("Protocol"), vpc: p.str("VpcId"), targetType: p.str("TargetType"),
		hcPath: "/", hcProtocol: "HTTP", hcPort: "traffic-port", matcher: "200", hcEnabled: true,
		hcInterval: 30, hcTimeout: 5, healthyN: 5, unhealthyN: 2,
		attrs: map[string]string{
			"deregistration_delay.timeout_seconds":                "300",
			"deregistration_delay.connection_termination.enabled": "false",
			"stickiness.enabled":                                  "false",
			"stickiness.type":                                     "lb_cookie",
			"slow_start.duration_seconds":                         "0",
			"load_balancing.algorithm.type":                       "round_robin",
			"load_balancing.algorithm.anomaly_mitigation":         "off",
		},
		targets: map[string]*target{}, created: c.now(),
	}
	if tg.targetType == "" {
		tg.targetType = "instance"
	}
	if tg.targetType != "instance" {
		return validationf("The local cloud supports target type 'instance' only, not '%s'", tg.targetType)
	}
	if tg.protocol == "" {
		return validationf("A protocol must be specified for target groups of type instance")
	}
	if tg.protocol != "HTTP" {
		return errf("UnsupportedProtocol", "Protocol '%s' is not supported by the local cloud; use HTTP", tg.protocol)
	}
	if tg.port, e = requiredPort(p, "A port must be specified for target groups of type instance"); e != nil {
		return e
	}
	if e := tg.setHealthCheck(p); e != nil {
		return e
	}
	for _, old := range c.targetGrps {
		if old.name == name {
			if old.port != tg.port || old.protocol != tg.protocol {
				return errf("DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", name)
			}
			x.list("TargetGroups", "member", 1, func(int) { c.writeTG(x, old) })
			return nil
		}
	}
	tg.arn = "arn:aws:elasticloadbalancing:" + c.cfg.Region + ":" + accountID + ":targetgroup/" + name + "/" + randHex(16)
	c.targetGrps[tg.arn] = tg
	x.list("TargetGroups", "member", 1, func(int) { c.writeTG(x, tg) })
	return nil
}

// setHealthCheck applies the health check settings CreateTargetGroup and
// ModifyTargetGroup take, within the bounds AWS documents for an HTTP
// target group ("Health checks for Application Load Balancer target
// groups"): interval 5–300 s, timeout 2–120 s and below the interval,
// thresholds 2–10. A value out of bounds is ELBv2's ValidationError in the
// service's own wording; tg is left as it was when any setting is refused.
func (tg *targetGroup) setHealthCheck(p params) *apiError {
	next := *tg
	if v := p.str("HealthCheckPath"); v != "" {
		if !strings.HasPrefix(v, "/") || len(v) > 1024 {
			return validationf("Health check path '%s' must start with '/' and be at most 1024 characters", v)
		}
		next.hcPath = v
	}
	if v := p.str("HealthCheckProtocol"); v != "" {
		if v != "HTTP" {
			return errf("UnsupportedProtocol", "Health check protocol '%s' is not supported by the local cloud; use HTTP", v)
		}
	}
	if v := p.str("HealthCheckPort"); v != "" {
		if n, err := strconv.Atoi(v); v != "traffic-port" && (err != nil || n < 1 || n > 65535) {
			return validationf("Health check port '%s' is not valid", v)
		}
		next.hcPort = v
	}
	if v, set, e := p.boolOpt("HealthCheckEnabled"); e != nil {
		return e
	} else if set {
		next.hcEnabled = v
	}
	for _, f := range []struct {
		key, member string
		dst         *int
		min, max    int
	}{
		{"HealthCheckIntervalSeconds", "healthCheckIntervalSeconds", &next.hcInterval, 5, 300},
		{"HealthCheckTimeoutSeconds", "healthCheckTimeoutSeconds", &next.hcTimeout, 2, 120},
		{"HealthyThresholdCount", "healthyThresholdCount", &next.healthyN, 2, 10},
		{"UnhealthyThresholdCount", "unhealthyThresholdCount", &next.unhealthyN, 2, 10},
	} {
		v, set, e := p.intOpt(f.key)
		if e != nil {
			return e
		}
		if !set {
			continue
		}
		switch {
		case v < f.min:
			return validationf("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", v, f.member, f.min)
		case v > f.max:
			return validationf("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", v, f.member, f.max)
		}
		*f.dst = v
	}
	if next.hcTimeout >= next.hcInterval {
		return validationf("Health check timeout must be smaller than the interval")
	}
	if v := p.str("Matcher.HttpCode"); v != "" {
		if _, ok := parseMatcher(v); !ok {
			return validationf("Health check matcher HTTP code '%s' must be a code, a list or a range between 200 and 499", v)
		}
		next.matcher = v
	}
	tg.hcPath, tg.hcPort, tg.hcEnabled, tg.matcher = next.hcPath, next.hcPort, next.hcEnabled, next.matcher
	tg.hcInterval, tg.hcTimeout, tg.healthyN, tg.unhealthyN = next.hcInterval, next.hcTimeout, next.healthyN, next.unhealthyN
	return nil
}

// modifyTargetGroup changes a target group's health check settings, as
// an operator does to make a cordon take effect sooner (it takes
// UnhealthyThresholdCount × HealthCheckIntervalSeconds). Targets keep
// their state and their runs of passed or failed checks; the new interval
// applies from each target's next check.
func (c *Cloud) modifyTargetGroup(req *request, x *xmlw) *apiError {
	tg, e := c.findTG(req.Params)
	if e != nil {
		return e
	}
	if e := tg.setHealthCheck(req.Params); e != nil {
		return e
	}
	x.list("TargetGroups", "member", 1, func(int) { c.writeTG(x, tg) })
	return nil
}

// parseMatcher parses "200", "200,202" or "200-299".
func parseMatcher(s string) (func(int) bool, bool) {
	var ranges [][2]int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, false
			}
		}
		if a < 200 || b > 499 || a > b {
			return nil, false
		}
		ranges = append(ranges, [2]int{a, b})
	}
	return func(code int) bool {
		for _, r := range ranges {
			if code >= r[0] && code <= r[1] {
				return true
			}
		}
		return false
	}, true
}

func (c *Cloud) tgLoadBalancers(tg *targetGroup) []string {
	var out []string
	for _, l := range c.listeners {
		if l.tgARN == tg.arn && !contains(out, l.lb.arn) {
			out = append(out, l.lb.arn)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Cloud) writeTG(x *xmlw, tg *targetGroup) {
	x.leaf("TargetGroupArn", tg.arn)
	x.leaf("TargetGroupName", tg.name)
	x.leaf("Protocol", tg.protocol)
	x.int("Port", tg.port)
	x.opt("VpcId", tg.vpc)
	x.leaf("HealthCheckProtocol", tg.hcProtocol)
	x.leaf("HealthCheckPort", tg.hcPort)
	x.bool("HealthCheckEnabled", tg.hcEnabled)
	x.int("HealthCheckIntervalSeconds", tg.hcInterval)
	x.int("HealthCheckTimeoutSeconds", tg.hcTimeout)
	x.int("HealthyThresholdCount", tg.healthyN)
	x.int("UnhealthyThresholdCount", tg.unhealthyN)
	x.leaf("HealthCheckPath", tg.hcPath)
	x.open("Matcher")
	x.leaf("HttpCode", tg.matcher)
	x.close("Matcher")
	x.strings("LoadBalancerArns", "member", c.tgLoadBalancers(tg))
	x.leaf("TargetType", tg.targetType)
	x.leaf("ProtocolVersion", "HTTP1")
	x.leaf("IpAddressType", "ipv4")
}

func (c *Cloud) describeTargetGroups(req *request, x *xmlw) *apiError {
	p := req.Params
	arns, names := p.list("TargetGroupArns.member"), p.list("Names.member")
	lbARN := p.str("LoadBalancerArn")
	out, e := lookup(c.targetGrps, arns, names, func(tg *targetGroup) string { return tg.name }, func(string, bool) *apiError {
		return errf("TargetGroupNotFound", "One or more target groups not found")
	})
	if e != nil {
		return e
	}
	if len(arns) == 0 && len(names) == 0 {
		if lbARN != "" && c.lbs[lbARN] == nil {
			return errf("LoadBalancerNotFound", "The load balancer '%s' does not exist", lbARN)
		}
		for _, tg := range c.targetGrps {
			if lbARN == "" || contains(c.tgLoadBalancers(tg), lbARN) {
				out = append(out, tg)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	}
	return writePage(x, p, elbPaging, "TargetGroups", out, func(tg *targetGroup) { c.writeTG(x, tg) })
}

func (c *Cloud) findTG(p params) (*targetGroup, *apiError) {
	arn, e := p.required("TargetGroupArn")
	if e != nil {
		return nil, e
	}
	tg := c.targetGrps[arn]
	if tg == nil {
		return nil, errf("TargetGroupNotFound", "Target groups '%s' not found", arn)
	}
	return tg, nil
}

func writeAttrs(x *xmlw, attrs map[string]string) {
	keys := sortedKeys(attrs)
	x.list("Attributes", "member", len(keys), func(i int) {
		x.leaf("Key", keys[i])
		x.leaf("Value", attrs[keys[i]])
	})
}

func (c *Cloud) modifyTGAttributes(req *request, x *xmlw) *apiError {
	p := req.Params
	tg, e := c.findTG(p)
	if e != nil {
		return e
	}
	attrs, e := p.requiredStructs("Attributes.member", "Attributes")
	if e != nil {
		return e
	}
	next := map[string]string{}
	for k, v := range tg.attrs {
		next[k] = v
	}
	for _, a := range attrs {
		k, v := a.str("Key"), a.str("Value")
		if _, known := tg.attrs[k]; !known {
			return validationf("Target group attribute key '%s' is not recognized", k)
		}
		switch k {
		case "deregistration_delay.timeout_seconds":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 3600 {
				return validationf("Target group attribute '%s' must be an integer between 0 and 3600", k)
			}
		case "slow_start.duration_seconds":
			n, err := strconv.Atoi(v)
			if err != nil || n != 0 && (n < 30 || n > 900) {
				return validationf("Target group attribute '%s' must be 0 or between 30 and 900", k)
			}
		case "stickiness.enabled", "deregistration_delay.connection_termination.enabled":
			if v != "true" && v != "false" {
				return validationf("Target group attribute '%s' must be true or false", k)
			}
		case "load_balancing.algorithm.type":
			// AWS's routing algorithms; the listener routes every one of
			// them round robin (docs/cloud.md).
			if v != "round_robin" && v != "least_outstanding_requests" && v != "weighted_random" {
				return validationf("Target group attribute '%s' must be one of round_robin, least_outstanding_requests, weighted_random", k)
			}
		case "load_balancing.algorithm.anomaly_mitigation":
			if v != "on" && v != "off" {
				return validationf("Target group attribute '%s' must be on or off", k)
			}
		}
		next[k] = v
	}
	// Anomaly mitigation is part of the weighted random algorithm only
	// ("Edit target group attributes for your Application Load Balancer").
	if next["load_balancing.algorithm.anomaly_mitigation"] == "on" && next["load_balancing.algorithm.type"] != "weighted_random" {
		return validationf("Anomaly mitigation can be turned on only with the weighted_random load balancing algorithm")
	}
	tg.attrs = next
	writeAttrs(x, c.tgAttrs(tg))
	return nil
}

func (c *Cloud) describeTGAttributes(req *request, x *xmlw) *apiError {
	tg, e := c.findTG(req.Params)
	if e != nil {
		return e
	}
	writeAttrs(x, c.tgAttrs(tg))
	return nil
}

// tgTargets reads the target group and targets that RegisterTargets and
// DeregisterTargets take.
func (c *Cloud) tgTargets(p params) (*targetGroup, []params, *apiError) {
	tg, e := c.findTG(p)
	if e != nil {
		return nil, nil, e
	}
	ts, e := p.requiredStructs("Targets.member", "Targets")
	return tg, ts, e
}

func (c *Cloud) registerTargets(req *request, x *xmlw) *apiError {
	tg, ts, e := c.tgTargets(req.Params)
	if e != nil {
		return e
	}
	type reg struct {
		in   *instance
		port int
	}
	var regs []reg
	for _, t := range ts {
		id := t.str("Id")
		in := c.instances[id]
		if in == nil {
			return errf("InvalidTarget", "The following targets are not valid instances: '%s'", id)
		}
		if !in.alive() {
			return errf("InvalidTarget", "The following targets are not in a running state and cannot be registered: '%s'", id)
		}
		port, _, e := t.intOpt("Port")
		if e != nil {
			return e
		}
		if port < 0 || port > 65535 {
			return validationf("Port %d is not valid", port)
		}
		regs = append(regs, reg{in, port})
	}
	now := c.now()
	for _, r := range regs {
		c.registerTarget(tg, r.in, r.port, now)
	}
	return nil
}

func (c *Cloud) deregisterTargets(req *request, x *xmlw) *apiError {
	tg, ts, e := c.tgTargets(req.Params)
	if e != nil {
		return e
	}
	// Every target is checked before any is deregistered: a call that
	// names one target it refuses changes nothing, as on AWS.
	ports := make([]int, len(ts))
	for i, t := range ts {
		port, _, e := t.intOpt("Port")
		if e != nil {
			return e
		}
		if !c.targetRegistered(tg, t.str("Id"), port) {
			return errf("InvalidTarget", "The target '%s' is not registered in target group '%s'", t.str("Id"), tg.name)
		}
		ports[i] = port
	}
	now := c.now()
	for i, t := range ts {
		c.deregisterTarget(tg, t.str("Id"), ports[i], now)
	}
	return nil
}

// targetRegistered reports whether tg holds the instance id (on port, or
// on any port when port is 0), draining or not.
func (c *Cloud) targetRegistered(tg *targetGroup, id string, port int) bool {
	for _, t := range tg.targets {
		if t.id == id && (port == 0 || t.port == port) {
			return true
		}
	}
	return false
}

// registerTarget adds (or re-adds, ending a drain) a target; port 0 means
// the group's port.
func (c *Cloud) registerTarget(tg *targetGroup, in *instance, port int, now time.Time) {
	if port == 0 {
		port = tg.port
	}
	k := in.id + ":" + strconv.Itoa(port)
	if t := tg.targets[k]; t != nil {
		if t.state == "draining" {
			t.state, t.reason, t.okRun, t.failRun = "initial", "Elb.RegistrationInProgress", 0, 0
			c.lbChangedLocked(tg)
		}
		return
	}
	tg.targets[k] = &target{id: in.id, port: port, state: "initial", reason: "Elb.RegistrationInProgress", registered: now, nextCheck: now}
	c.lbChangedLocked(tg)
}

// deregisterTarget starts a target's drain; port 0 drains every port of
// the instance. It reports whether anything was registered.
func (c *Cloud) deregisterTarget(tg *targetGroup, id string, port int, now time.Time) bool {
	found := false
	delay := c.deregDelay(tg)
	for _, t := range tg.targets {
		if t.id != id || port != 0 && t.port != port {
			continue
		}
		found = true
		if t.state != "draining" {
			t.state, t.reason, t.drainUntil = "draining", "Target.DeregistrationInProgress", now.Add(delay)
		}
	}
	if found {
		c.lbChangedLocked(tg)
	}
	return found
}

// tickTargets ends drains whose deregistration delay has passed: the target
// leaves its group and, as on an ALB, its open connections are closed.
func (c *Cloud) tickTargets(now time.Time) {
	for _, tg := range c.targetGrps {
		for k, t := range tg.targets {
			if t.state != "draining" || now.Before(t.drainUntil) {
				continue
			}
			delete(tg.targets, k)
			if in := c.instances[t.id]; in != nil {
				addr := net.JoinHostPort(in.ip, strconv.Itoa(t.port))
				for _, l := range c.listeners {
					if l.tgARN == tg.arn {
						l.cut(addr)
					}
				}
			}
		}
	}
}

// registerInstance registers a group's instance with the group's target
// groups.
func (c *Cloud) registerInstance(g *group, in *instance, now time.Time) {
	for _, arn := range g.tgARNs {
		if tg := c.targetGrps[arn]; tg != nil {
			c.registerTarget(tg, in, 0, now)
		}
	}
	in.asg.registered = true
}

// deregisterInstance drains a group's instance out of every target group
// it is in.
func (c *Cloud) deregisterInstance(g *group, in *instance, now time.Time) {
	for _, tg := range c.targetGrps {
		c.deregisterTarget(tg, in.id, 0, now)
	}
	in.asg.registered = false
}

// deregistered reports whether no target group holds the instance any
// more, draining or not.
func (c *Cloud) deregistered(in *instance) bool {
	for _, tg := range c.targetGrps {
		for _, t := range tg.targets {
			if t.id == in.id {
				return false
			}
		}
	}
	return true
}

// targetHealth summarises an instance's health in its group's target
// groups.
func (c *Cloud) targetHealth(g *group, in *instance) (allHealthy, anyUnhealthy bool) {
	allHealthy = true
	for _, arn := range g.tgARNs {
		tg := c.targetGrps[arn]
		if tg == nil {
			continue
		}
		for _, t := range tg.targets {
			if t.id != in.id {
				continue
			}
			switch t.state {
			case "healthy":
			case "unhealthy":
				allHealthy, anyUnhealthy = false, true
			default:
				allHealthy = false
			}
		}
	}
	return allHealthy, anyUnhealthy
}

func (c *Cloud) describeTargetHealth(req *request, x *xmlw) *apiError {
	p := req.Params
	tg, e := c.findTG(p)
	if e != nil {
		return e
	}
	type row struct {
		id, hcPort, state, reason, desc string
		port                            int
	}
	var rows []row
	describe := func(t *target) row {
		r := row{id: t.id, port: t.port, hcPort: strconv.Itoa(t.port), state: t.state, reason: t.reason}
		if tg.hcPort != "traffic-port" {
			r.hcPort = tg.hcPort
		}
		if t.state == "healthy" {
			r.reason = ""
		}
		r.desc = reasonText[r.reason]
		if r.reason == "Target.ResponseCodeMismatch" && t.code != 0 {
			// As ELBv2 words it: the codes the check got.
			r.desc = fmt.Sprintf("Health checks failed with these codes: [%d]", t.code)
		}
		return r
	}
	if want := p.structs("Targets.member"); len(want) > 0 {
		for _, w := range want {
			id := w.str("Id")
			if c.instances[id] == nil {
				return errf("InvalidTarget", "The following targets are not valid instances: '%s'", id)
			}
			port, _, e := w.intOpt("Port")
			if e != nil {
				return e
			}
			matched := false
			for _, t := range tg.sortedTargets() {
				if t.id == id && (port == 0 || t.port == port) {
					rows = append(rows, describe(t))
					matched = true
				}
			}
			if !matched {
				if port == 0 {
					port = tg.port
				}
				rows = append(rows, row{id: id, port: port, hcPort: strconv.Itoa(port), state: "unused", reason: "Target.NotRegistered", desc: reasonText["Target.NotRegistered"]})
			}
		}
	} else {
		for _, t := range tg.sortedTargets() {
			rows = append(rows, describe(t))
		}
	}
	x.list("TargetHealthDescriptions", "member", len(rows), func(i int) {
		r := rows[i]
		x.open("Target")
		x.leaf("Id", r.id)
		x.int("Port", r.port)
		x.close("Target")
		x.leaf("HealthCheckPort", r.hcPort)
		x.open("TargetHealth")
		x.leaf("State", r.state)
		x.opt("Reason", r.reason)
		x.opt("Description", r.desc)
		x.close("TargetHealth")
	})
	return nil
}

var reasonText = map[string]string{
	"Elb.RegistrationInProgress":      "Target registration is in progress",
	"Elb.InitialHealthChecking":       "Initial health checks in progress",
	"Target.ResponseCodeMismatch":     "Health checks failed with these codes",
	"Target.Timeout":                  "Request timed out",
	"Target.FailedHealthChecks":       "Health checks failed",
	"Target.NotRegistered":            "Target is not registered to the target group",
	"Target.DeregistrationInProgress": "Target deregistration is in progress",
	"Target.InvalidState":             "Target is in the stopped or terminated state",
	"Target.HealthCheckDisabled":      "Health checks are disabled",
}

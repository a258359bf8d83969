package localcloud

import (
	"strings"
	"time"
)

// Auto Scaling lifecycle hooks: the hooks of a group and the actions
// that wait on its instances.

// lcAction is one lifecycle hook waiting on one instance.
type lcAction struct {
	hook     *hook
	token    string
	deadline time.Time // heartbeat timeout
	global   time.Time // the hook's global timeout, 100 × heartbeat at most 48 h
	result   string    // "" while waiting, then CONTINUE or ABANDON
}

type hook struct {
	name, transition, metadata, defaultResult string
	notificationTarget, role                  string
	heartbeat                                 int
}

func (g *group) hooksFor(transition string) []*hook {
	var out []*hook
	for _, h := range g.hooks {
		if h.transition == transition {
			out = append(out, h)
		}
	}
	return out
}

func (c *Cloud) startActions(in *instance, hooks []*hook, now time.Time) {
	in.asg.actions = map[string]*lcAction{}
	for _, h := range hooks {
		hb := time.Duration(h.heartbeat) * time.Second
		global := 100 * hb
		if global > 48*time.Hour {
			global = 48 * time.Hour
		}
		in.asg.actions[h.name] = &lcAction{hook: h, token: newUUID(), deadline: now.Add(hb), global: now.Add(global)}
	}
	c.log.Info("lifecycle hooks waiting", "instance", in.id, "hooks", len(hooks))
}

// actionsDone applies timeouts (a timed-out action takes its hook's
// DefaultResult) and reports whether every action has a result, and
// ABANDON if any abandoned.
func (c *Cloud) actionsDone(in *instance, now time.Time) (result string, done bool) {
	result = "CONTINUE"
	for _, act := range in.asg.actions {
		if act.result == "" && (!now.Before(act.deadline) || !now.Before(act.global)) {
			act.result = act.hook.defaultResult
			c.log.Info("lifecycle action timed out", "instance", in.id, "hook", act.hook.name, "result", act.result)
		}
		if act.result == "" {
			return "", false
		}
		if act.result == "ABANDON" {
			result = "ABANDON"
		}
	}
	in.asg.actions = nil
	return result, true
}

func parseHook(p params, existing *hook) (*hook, *apiError) {
	h := &hook{heartbeat: 3600, defaultResult: "ABANDON"}
	if existing != nil {
		cp := *existing
		h = &cp
	}
	if existing == nil {
		name, e := p.required("LifecycleHookName")
		if e != nil {
			return nil, e
		}
		if len(name) > 255 || strings.ContainsAny(name, "/:") {
			return nil, validationf("Lifecycle hook name %q is not valid", name)
		}
		h.name = name
	}
	if v := p.str("LifecycleTransition"); v != "" {
		if v != transLaunch && v != transTerminate {
			return nil, validationf("Lifecycle transition %s is not valid; use %s or %s", v, transLaunch, transTerminate)
		}
		h.transition = v
	}
	if h.transition == "" {
		return nil, validationf("A lifecycle hook needs a LifecycleTransition")
	}
	if v, set, e := p.intOpt("HeartbeatTimeout"); e != nil {
		return nil, e
	} else if set {
		if v < 30 || v > 7200 {
			return nil, validationf("HeartbeatTimeout must be between 30 and 7200 seconds")
		}
		h.heartbeat = v
	}
	if v := p.str("DefaultResult"); v != "" {
		if v != "CONTINUE" && v != "ABANDON" {
			return nil, validationf("DefaultResult must be CONTINUE or ABANDON")
		}
		h.defaultResult = v
	}
	if v, ok := p["NotificationMetadata"]; ok {
		h.metadata = v
	}
	if v, ok := p["NotificationTargetARN"]; ok {
		h.notificationTarget = v
	}
	if v, ok := p["RoleARN"]; ok {
		h.role = v
	}
	return h, nil
}

// groupHook reads the group and the hook name the hook actions take; i is
// the hook's index in the group, -1 when it has none of that name.
func (c *Cloud) groupHook(p params) (g *group, name string, i int, e *apiError) {
	if g, e = c.findGroup(p.str("AutoScalingGroupName")); e != nil {
		return nil, "", 0, e
	}
	if name, e = p.required("LifecycleHookName"); e != nil {
		return nil, "", 0, e
	}
	for i, h := range g.hooks {
		if h.name == name {
			return g, name, i, nil
		}
	}
	return g, name, -1, nil
}

func (c *Cloud) putLifecycleHook(req *request, x *xmlw) *apiError {
	p := req.Params
	g, _, i, e := c.groupHook(p)
	if e != nil {
		return e
	}
	if i >= 0 {
		nh, e := parseHook(p, g.hooks[i])
		if e != nil {
			return e
		}
		g.hooks[i] = nh
		return nil
	}
	if len(g.hooks) >= 50 {
		return errf("LimitExceeded", "A group can have at most 50 lifecycle hooks")
	}
	h, e := parseHook(p, nil)
	if e != nil {
		return e
	}
	g.hooks = append(g.hooks, h)
	return nil
}

func (c *Cloud) describeLifecycleHooks(req *request, x *xmlw) *apiError {
	p := req.Params
	g, e := c.findGroup(p.str("AutoScalingGroupName"))
	if e != nil {
		return e
	}
	names := p.list("LifecycleHookNames.member")
	var hs []*hook
	for _, h := range g.hooks {
		if len(names) == 0 || contains(names, h.name) {
			hs = append(hs, h)
		}
	}
	x.list("LifecycleHooks", "member", len(hs), func(i int) {
		h := hs[i]
		x.leaf("LifecycleHookName", h.name)
		x.leaf("AutoScalingGroupName", g.name)
		x.leaf("LifecycleTransition", h.transition)
		x.opt("NotificationTargetARN", h.notificationTarget)
		x.opt("RoleARN", h.role)
		x.opt("NotificationMetadata", h.metadata)
		x.int("HeartbeatTimeout", h.heartbeat)
		global := 100 * h.heartbeat
		if global > 172800 {
			global = 172800
		}
		x.int("GlobalTimeout", global)
		x.leaf("DefaultResult", h.defaultResult)
	})
	return nil
}

func (c *Cloud) deleteLifecycleHook(req *request, x *xmlw) *apiError {
	g, name, i, e := c.groupHook(req.Params)
	if e != nil {
		return e
	}
	if i >= 0 {
		g.hooks = append(g.hooks[:i], g.hooks[i+1:]...)
		return nil
	}
	return validationf("No Lifecycle Hook found with name %s for group %s", name, g.name)
}

// findAction resolves the lifecycle action a Complete or Heartbeat call
// names, by instance id or token.
func (c *Cloud) findAction(p params) (*lcAction, *instance, *apiError) {
	g, hookName, i, e := c.groupHook(p)
	if e != nil {
		return nil, nil, e
	}
	if i < 0 {
		return nil, nil, validationf("No Lifecycle Hook found with name %s for group %s", hookName, g.name)
	}
	id, tok := p.str("InstanceId"), p.str("LifecycleActionToken")
	if id == "" && tok == "" {
		return nil, nil, validationf("Either InstanceId or LifecycleActionToken must be specified")
	}
	for _, in := range g.instances {
		if id != "" && in.id != id {
			continue
		}
		if act := in.asg.actions[hookName]; act != nil && act.result == "" && (tok == "" || act.token == tok) {
			return act, in, nil
		}
	}
	if id != "" {
		return nil, nil, validationf("No active Lifecycle Action found with instance ID %s", id)
	}
	return nil, nil, validationf("No active Lifecycle Action found with token %s", tok)
}

func (c *Cloud) completeLifecycleAction(req *request, x *xmlw) *apiError {
	p := req.Params
	result, e := p.required("LifecycleActionResult")
	if e != nil {
		return e
	}
	if result != "CONTINUE" && result != "ABANDON" {
		return validationf("LifecycleActionResult must be CONTINUE or ABANDON")
	}
	act, in, e := c.findAction(p)
	if e != nil {
		return e
	}
	act.result = result
	c.log.Info("lifecycle action completed", "instance", in.id, "hook", act.hook.name, "result", result)
	return nil
}

func (c *Cloud) recordHeartbeat(req *request, x *xmlw) *apiError {
	act, _, e := c.findAction(req.Params)
	if e != nil {
		return e
	}
	next := c.now().Add(time.Duration(act.hook.heartbeat) * time.Second)
	if next.After(act.global) {
		next = act.global
	}
	act.deadline = next
	return nil
}

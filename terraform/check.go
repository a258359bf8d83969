package terraform

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"
)

// Resource types the check knows: the launch configuration or template
// that carries the image, and the group that refers to it.
const (
	TypeLaunchConfiguration = "aws_launch_configuration"
	TypeLaunchTemplate      = "aws_launch_template"
	TypeGroup               = "aws_autoscaling_group"
)

// groupReferenceAttrs are the aws_autoscaling_group attributes that name
// its launch configuration or template: the only ones an update in place
// may change.
var groupReferenceAttrs = map[string]bool{"launch_configuration": true, "launch_template": true}

// Change is one resource change of a saved plan: its address, Terraform's
// actions (create, update, delete, read, no-op; a replacement is two),
// and the top-level attributes that change.
type Change struct {
	Address string   `json:"address"`
	Type    string   `json:"type"`
	Actions []string `json:"actions"`
	Attrs   []string `json:"attrs,omitempty"`
	// Reason says why the change is refused; empty when it is allowed.
	Reason string `json:"reason,omitempty"`
}

// Action renders the actions as Terraform's plan output words them.
func (c Change) Action() string {
	a := tfjson.Actions(toActions(c.Actions))
	switch {
	case a.CreateBeforeDestroy():
		return "replace (create before destroy)"
	case a.DestroyBeforeCreate():
		return "replace (destroy before create)"
	case a.Create():
		return "create"
	case a.Delete():
		return "destroy"
	case a.Update():
		return "update in place"
	case a.Read():
		return "read"
	}
	return strings.Join(c.Actions, ", ")
}

// String is the address, the action and what changes.
func (c Change) String() string {
	s := c.Address + ": " + c.Action()
	if len(c.Attrs) > 0 {
		s += " (" + strings.Join(c.Attrs, ", ") + ")"
	}
	return s
}

func toActions(s []string) []tfjson.Action {
	out := make([]tfjson.Action, len(s))
	for i, a := range s {
		out[i] = tfjson.Action(a)
	}
	return out
}

// Summary is what a saved plan does, as the check read it.
type Summary struct {
	// Changes are the resource changes other than no-ops, in address order.
	Changes []Change `json:"changes"`
	// Drift lists what Terraform's refresh found changed outside
	// Terraform since the last apply (the plan's resource_drift).
	Drift []Change `json:"drift,omitempty"`
	// Variables are the plan's input variables with string values.
	Variables map[string]string `json:"variables,omitempty"`
}

// Refused returns the changes the check refuses.
func (s Summary) Refused() []Change {
	var out []Change
	for _, c := range s.Changes {
		if c.Reason != "" {
			out = append(out, c)
		}
	}
	return out
}

// RefusedError is returned when a plan changes more than the group's
// launch configuration or template and the group's reference to it.
type RefusedError struct {
	Changes []Change
	// Drift is what Terraform's refresh found changed outside it: a
	// refused change to the group is often Terraform putting that back.
	Drift []Change
}

// Addresses lists the refused resources' addresses.
func (e *RefusedError) Addresses() []string {
	out := make([]string, len(e.Changes))
	for i, c := range e.Changes {
		out[i] = c.Address
	}
	return out
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "terraform plan refused: it changes more than the launch configuration or template and the group's reference to it: %s", strings.Join(e.Addresses(), ", "))
	for _, c := range e.Changes {
		fmt.Fprintf(&b, "\n  %s: %s", c, c.Reason)
	}
	for _, d := range e.Drift {
		fmt.Fprintf(&b, "\n  drift: %s changed outside Terraform since its last apply (%s); the plan puts it back", d.Address, strings.Join(d.Attrs, ", "))
	}
	return b.String()
}

// Check reads a saved plan and refuses, with a *RefusedError listing
// their addresses, every resource change other than:
//   - a launch template updated in place (a new version) or created;
//   - a launch configuration created, or replaced create-before-destroy
//     (it is immutable: a new image is a new one, and the group must move
//     to it before the old one goes);
//   - an Auto Scaling group updated in place in launch_configuration or
//     launch_template only;
//   - a no-op or a read.
//
// Anything else (a tag, a size, another resource, terraform_data) is not
// the image change wsfleet is asked to roll out, and applying it under
// the rollout would hide it from review.
func Check(p *tfjson.Plan) (Summary, error) {
	var s Summary
	if p == nil {
		return s, fmt.Errorf("check plan: no plan")
	}
	if (p.Complete != nil && !*p.Complete) || len(p.DeferredChanges) > 0 {
		return s, fmt.Errorf("check plan: the plan is incomplete (Terraform deferred some changes); apply it by hand and use image: current")
	}
	s.Variables = map[string]string{}
	for name, v := range p.Variables {
		if v != nil {
			if str, ok := v.Value.(string); ok {
				s.Variables[name] = str
			}
		}
	}
	for _, rc := range p.ResourceChanges {
		if rc == nil || rc.Change == nil {
			continue
		}
		a := rc.Change.Actions
		if a.NoOp() || len(a) == 0 {
			continue
		}
		c := Change{Address: rc.Address, Type: rc.Type, Actions: actionStrings(a), Attrs: changedAttrs(rc.Change)}
		c.Reason = refusal(rc, c)
		s.Changes = append(s.Changes, c)
	}
	for _, rc := range p.ResourceDrift {
		if rc == nil || rc.Change == nil || rc.Change.Actions.NoOp() {
			continue
		}
		s.Drift = append(s.Drift, Change{Address: rc.Address, Type: rc.Type, Actions: actionStrings(rc.Change.Actions), Attrs: changedAttrs(rc.Change)})
	}
	sort.Slice(s.Changes, func(i, j int) bool { return s.Changes[i].Address < s.Changes[j].Address })
	sort.Slice(s.Drift, func(i, j int) bool { return s.Drift[i].Address < s.Drift[j].Address })
	if r := s.Refused(); len(r) > 0 {
		return s, &RefusedError{Changes: r, Drift: s.Drift}
	}
	return s, nil
}

// refusal is why change c is refused, or "" when it is allowed.
func refusal(rc *tfjson.ResourceChange, c Change) string {
	a := rc.Change.Actions
	if a.Read() {
		return ""
	}
	if rc.Mode != tfjson.ManagedResourceMode {
		return "not a managed resource"
	}
	switch rc.Type {
	case TypeLaunchConfiguration:
		switch {
		case a.Create(), a.CreateBeforeDestroy():
			return ""
		case a.DestroyBeforeCreate():
			return "a launch configuration replaced destroy-before-create: the group still uses the old one; set lifecycle { create_before_destroy = true }"
		}
		return "only a new launch configuration, or one replaced create-before-destroy, is part of an image change"
	case TypeLaunchTemplate:
		switch {
		case a.Update(), a.Create(), a.CreateBeforeDestroy():
			return ""
		}
		return "only a launch template updated in place (a new version) or created is part of an image change"
	case TypeGroup:
		if !a.Update() {
			return "the group may only be updated in place"
		}
		var other []string
		for _, attr := range c.Attrs {
			if !groupReferenceAttrs[attr] {
				other = append(other, attr)
			}
		}
		if len(other) > 0 {
			return "the group may change its launch configuration or template only, not " + strings.Join(other, ", ")
		}
		return ""
	}
	return "not the group's launch configuration or template"
}

func actionStrings(a tfjson.Actions) []string {
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = string(x)
	}
	return out
}

// changedAttrs lists the top-level attributes whose value differs
// between before and after, or that become unknown, in name order.
func changedAttrs(ch *tfjson.Change) []string {
	before, _ := ch.Before.(map[string]any)
	after, _ := ch.After.(map[string]any)
	unknown, _ := ch.AfterUnknown.(map[string]any)
	if before == nil || after == nil {
		return nil // a create or a delete: every attribute
	}
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	for k := range unknown {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if !reflect.DeepEqual(before[k], after[k]) || anyTrue(unknown[k]) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// anyTrue reports whether an after_unknown value marks anything unknown.
func anyTrue(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case []any:
		for _, e := range x {
			if anyTrue(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if anyTrue(e) {
				return true
			}
		}
	}
	return false
}

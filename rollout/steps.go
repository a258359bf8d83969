package rollout

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// StepKind is what one step of a compiled plan does.
type StepKind string

// The step kinds, in the order a phase uses them.
const (
	StepSetImage     StepKind = "set-image"     // new launch template version with the new image
	StepRestoreImage StepKind = "restore-image" // rollback: the previous version back
	StepWindow       StepKind = "window"        // wait for the phase's not_before
	StepProtect      StepKind = "protect"       // scale-in protection on the old instances
	StepUnprotect    StepKind = "unprotect"     // protection back off what we protected
	StepBatch        StepKind = "batch"         // launch, wait healthy, drain, terminate
	StepBake         StepKind = "bake"          // wait, with the checks running
	StepCheck        StepKind = "check"         // run every check once; all must pass
	StepSuspend      StepKind = "suspend"       // suspend the group's ReplaceUnhealthy and AZRebalance
	StepResume       StepKind = "resume"        // resume what the change suspended
	StepReregister   StepKind = "reregister"    // rollback: kept old instances back in the target groups, healthy
)

// Step is one unit of a compiled plan: what to do (fixed when the plan is
// compiled) and how far it got (updated as it runs). The engine persists
// the whole list, so a resumed engine runs the very steps the first one
// compiled, against instance ids rather than re-resolved names.
type Step struct {
	Kind  StepKind `json:"kind"`
	Phase int      `json:"phase"` // index into Plan.Phases; -1 outside phases

	// Batch: Launch new instances on Image named Names (in order), and
	// drain and terminate Targets (instance ids). TargetsFrom, when >= 0,
	// takes the targets from the instances that step adopted (a canary's
	// retirement). Strategy is the phase's.
	Launch      int      `json:"launch,omitempty"`
	Names       []string `json:"names,omitempty"`
	Targets     []string `json:"targets,omitempty"`
	TargetNames []string `json:"target_names,omitempty"`
	TargetsFrom int      `json:"targets_from,omitempty"`
	Image       string   `json:"image,omitempty"`
	// Ref, when set, is the launch template version or configuration the
	// batch's new instances are launched from (`image: current`): they
	// are told from old ones by it rather than by Image.
	Ref      *TemplateRef `json:"ref,omitempty"`
	Strategy Strategy     `json:"strategy,omitempty"`

	IDs       []string      `json:"ids,omitempty"`       // protect
	Duration  time.Duration `json:"duration,omitempty"`  // bake (unscaled)
	NotBefore time.Time     `json:"not_before,omitzero"` // window
	Version   TemplateRef   `json:"version,omitzero"`    // restore-image
	Note      string        `json:"note,omitempty"`      // a line for the rendered plan
	// MoveTo, on a canary's retirement, is the index of the next batch
	// step: with placement on, the canary is drained with that batch's
	// targets instead (placement.go).
	MoveTo int `json:"move_to,omitempty"`

	Progress
}

// Progress is a step's persisted state.
type Progress struct {
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	Done    bool      `json:"done,omitempty"`

	// Batch progress.
	Init         bool                 `json:"init,omitempty"`
	BaseDesired  int                  `json:"base_desired,omitempty"`
	Adopted      []Adoption           `json:"adopted,omitempty"`
	HealthySince map[string]time.Time `json:"healthy_since,omitempty"`
	Drains       map[string]time.Time `json:"drains,omitempty"`
	// Deregistered is when each target left the load balancer, just
	// before its drain.
	Deregistered map[string]time.Time `json:"deregistered,omitempty"`
	Terminated   map[string]time.Time `json:"terminated,omitempty"`
	// Retiring is when each target was decided retired (detached and
	// terminated in a batch): saved with the effect's intent, it marks a
	// target that may have left the group without being terminated yet.
	Retiring map[string]time.Time `json:"retiring,omitempty"`
	Ready    bool                 `json:"ready,omitempty"`
	// Known is every instance of the group when the batch began: none of
	// them can be a replacement the batch launched.
	Known []string `json:"known,omitempty"`

	// Placement (placement.go): a canary's share of the clients, a
	// batch's cordons and end balance, a canary retirement moved to the
	// next batch.
	Share    *ShareProgress `json:"share,omitempty"`
	Bake     *BakeShare     `json:"bake_share,omitempty"`
	Place    *MovePlace     `json:"place,omitempty"`
	Deferred bool           `json:"deferred,omitempty"`
}

// Adoption is a new instance a batch took as one of its replacements.
type Adoption struct {
	ID   string    `json:"id"`
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// Compile turns a validated plan into steps against the group as it is
// now. It fails, before anything changes, when the plan does not fit the
// group: names not in it, more instances than it holds, a canary larger
// than its max size, an image it already runs.
func Compile(p *Plan, g Group) ([]Step, error) {
	return CompileContext(context.Background(), p, g)
}

// CompileContext is Compile that stops with ctx's error when ctx ends
// (it polls ctx once a phase and every 1,024 names).
func CompileContext(ctx context.Context, p *Plan, g Group) ([]Step, error) {
	var errs PlanErrors
	image, ref, err := p.target(g)
	if err != nil {
		return nil, err
	}
	var old []Instance // live instances not on the new image, by name
	byName := map[string]Instance{}
	for _, in := range g.Instances {
		if !in.Live() {
			continue
		}
		if !runs(in, image, ref) {
			old = append(old, in)
		}
		byName[in.Name] = in
	}
	sort.Slice(old, func(i, j int) bool { return nameLess(old[i].Name, old[j].Name) })
	setImage := Step{Kind: StepSetImage, Phase: -1, Image: image,
		Note: fmt.Sprintf("new launch template version from %s with image %s (was %s), made the group's version", templateString(g.Template), image, g.Image)}
	if g.Template.IsLaunchConfig() {
		setImage.Note = fmt.Sprintf("copy of %s with image %s (was %s), named after it and the change (%s-%s), made the group's launch configuration; the old one is kept for the rollback",
			templateString(g.Template), image, g.Image, g.Template.LaunchConfig, p.Change)
	}
	if p.Image.Terraform != nil {
		setImage.Note = terraformSetImageNote(p, g) // image_terraform.go
	}
	switch {
	case ref != nil && len(old) == 0:
		errs = append(errs, p.errAt("image", "every live instance of group %s already runs its current %s; nothing to do", g.Name, templateString(g.Template)))
	case ref != nil:
		tc, err := currentChange(p, g)
		if err != nil {
			errs = append(errs, p.errAt("image", "%v", err))
			break
		}
		setImage.Version = tc.Previous
		setImage.Note = fmt.Sprintf("the group already runs %s (image %s), set outside wsfleet: nothing to make; %d old instances to cycle, most launched from %s (image %s), which the rollback goes back to",
			templateString(tc.New), tc.NewImage, len(old), templateString(tc.Previous), tc.PreviousImage)
	case g.Image == image && len(old) == 0:
		errs = append(errs, p.errAt("image", "group %s already runs %s on every instance; nothing to change", g.Name, image))
	}

	steps := []Step{{Kind: StepSuspend, Phase: -1, Note: "suspend the group's " + strings.Join(SuspendedProcesses, " and ") + " (those not already suspended) for the length of the change"}, setImage}
	claimed := map[string]string{} // instance id -> phase that replaces it
	taken := map[string]bool{}     // names in use or promised
	for _, in := range g.Instances {
		if in.Live() {
			taken[in.Name] = true
		}
	}
	retireAt := -1 // a canary's retirement the next batch may take over
	var oldIDs []string
	for _, in := range old {
		oldIDs = append(oldIDs, in.ID)
	}
	for i, ph := range p.Phases {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("compile plan %s: %w", p.Change, err)
		}
		key := fmt.Sprintf("phases[%d]", i)
		if ph.NotBefore != nil {
			steps = append(steps, Step{Kind: StepWindow, Phase: i, NotBefore: ph.NotBefore.Time,
				Note: "wait until " + ph.NotBefore.Time.UTC().Format(time.RFC3339)})
		}
		switch {
		case ph.Canary > 0:
			// The canary is a sample of the group: no larger than the
			// group may ever be (its max size, when the provider knows
			// it). The surge above max size while it runs is the
			// provider's to allow (SetDesired raises the max with it).
			if g.Max > 0 && ph.Canary > g.Max {
				errs = append(errs, p.errAt(key+".canary", "%d is larger than group %s's max size %d; allowed: 1 to %d", ph.Canary, g.Name, g.Max, g.Max))
				continue
			}
			nm := newNamer(g, taken)
			names := make([]string, 0, ph.Canary)
			for len(names) < ph.Canary {
				if len(names)%1024 == 1023 {
					if err := ctx.Err(); err != nil {
						return nil, fmt.Errorf("compile plan %s: %w", p.Change, err)
					}
				}
				name := nm.next()
				taken[name] = true
				names = append(names, name)
			}
			if ph.ProtectOld && len(oldIDs) > 0 {
				steps = append(steps, Step{Kind: StepProtect, Phase: i, IDs: oldIDs,
					Note: fmt.Sprintf("protect %d old instances from scale-in", len(oldIDs))})
			}
			launch := len(steps)
			steps = append(steps, Step{Kind: StepBatch, Phase: i, Launch: ph.Canary, Names: names, Image: image, Ref: ref,
				Strategy: LaunchBeforeTerminate, TargetsFrom: -1,
				Note: fmt.Sprintf("launch canary %s on %s (desired %d -> %d), wait until healthy", strings.Join(names, ", "), targetString(image, ref), g.Desired, g.Desired+ph.Canary)})
			if ph.Bake > 0 {
				steps = append(steps, Step{Kind: StepBake, Phase: i, Duration: ph.Bake.D(), Note: fmt.Sprintf("bake %s with the checks running", ph.Bake.D())})
			}
			steps = append(steps, Step{Kind: StepCheck, Phase: i, Note: "run the checks"})
			if ph.ProtectOld && len(oldIDs) > 0 {
				steps = append(steps, Step{Kind: StepUnprotect, Phase: i, IDs: oldIDs, Note: "remove the scale-in protection added above"})
			}
			retireAt = -1
			if !ph.KeepCanary {
				if !p.placement().Off {
					retireAt = len(steps)
				}
				steps = append(steps, Step{Kind: StepBatch, Phase: i, TargetsFrom: launch, TargetNames: names, Strategy: LaunchBeforeTerminate,
					Note: fmt.Sprintf("retire canary %s: drain, terminate (desired back to %d)", strings.Join(names, ", "), g.Desired)})
				for _, n := range names {
					delete(taken, n)
				}
			}
		case ph.Replace != nil:
			var targets []Instance
			switch {
			case len(ph.Replace.Names) > 0:
				for _, n := range ph.Replace.Names {
					in, ok := byName[n]
					switch {
					case !ok:
						errs = append(errs, p.errAt(key+".replace", "%s is not an instance of group %s; it has %s", n, g.Name, strings.Join(liveNames(g), ", ")))
					case runs(in, image, ref):
						errs = append(errs, p.errAt(key+".replace", "%s already runs %s", n, targetString(image, ref)))
					case claimed[in.ID] != "":
						errs = append(errs, p.errAt(key+".replace", "%s is already replaced by phase %q", n, claimed[in.ID]))
					default:
						targets = append(targets, in)
					}
				}
			default:
				var free []Instance
				for _, in := range old {
					if claimed[in.ID] == "" {
						free = append(free, in)
					}
				}
				n := len(free)
				switch {
				case ph.Replace.Count > 0:
					n = ph.Replace.Count
				case ph.Replace.Percent > 0:
					n = (g.Desired*ph.Replace.Percent + 99) / 100
				}
				if n > len(free) {
					errs = append(errs, p.errAt(key+".replace", "%s asks for %d instances but only %d old ones are left (%s)", ph.Replace, n, len(free), strings.Join(instNames(free), ", ")))
					n = len(free)
				}
				if n == 0 {
					errs = append(errs, p.errAt(key+".replace", "%s selects no instance: every old instance is already replaced by an earlier phase", ph.Replace))
				}
				targets = free[:n]
			}
			var ids, names []string
			for _, in := range targets {
				claimed[in.ID] = ph.Name
				ids = append(ids, in.ID)
				names = append(names, in.Name)
			}
			verb := "launch %d on %s (desired %d -> %d), wait until healthy, then drain and terminate %s"
			note := fmt.Sprintf(verb, len(ids), targetString(image, ref), g.Desired, g.Desired+len(ids), strings.Join(names, ", "))
			if ph.Strategy == TerminateThenReplace {
				note = fmt.Sprintf("drain and terminate %s, let the group launch %d on %s, wait until healthy", strings.Join(names, ", "), len(ids), targetString(image, ref))
			}
			if retireAt >= 0 && ph.Strategy != TerminateThenReplace {
				steps[retireAt].MoveTo = len(steps)
				steps[retireAt].Note += fmt.Sprintf("; with placement on, drained with phase %q's old instances once its replacements are healthy", ph.Name)
			}
			retireAt = -1
			steps = append(steps, Step{Kind: StepBatch, Phase: i, Launch: len(ids), Names: names, Targets: ids, TargetNames: names,
				Image: image, Ref: ref, Strategy: ph.Strategy, TargetsFrom: -1, Note: note})
			if ph.Bake > 0 {
				steps = append(steps, Step{Kind: StepBake, Phase: i, Duration: ph.Bake.D(), Note: fmt.Sprintf("bake %s with the checks running", ph.Bake.D())})
			}
			steps = append(steps, Step{Kind: StepCheck, Phase: i, Note: "run the checks"})
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	steps = append(steps, resumeStep())
	return steps, nil
}

// CompileRollback returns the steps that undo a change on the group as it
// is now: the previous launch template version back, protection off, and
// every new-image instance replaced by an old-image one, reusing old
// instances that are still live and not draining.
func CompileRollback(st *State, g Group) []Step {
	steps := []Step{{Kind: StepSuspend, Phase: -1, Note: "keep (or put back) the suspension of " + strings.Join(SuspendedProcesses, " and ")}}
	var oldRef *TemplateRef // the current form tells old instances by their launch reference
	if st.Template != nil {
		note := fmt.Sprintf("group back to %s (image %s)", templateString(st.Template.Previous), st.Template.PreviousImage)
		if st.Template.Terraform != "" {
			// Terraform's revert makes a new configuration or version with
			// the old image: the previous one is gone (create before destroy).
			note = fmt.Sprintf("revert through Terraform: the group on a new %s with image %s (it was on %s)", terraformNewKind(st.Template.Previous), st.Template.PreviousImage, templateString(st.Template.Previous))
		}
		if st.Template.Current {
			prev := st.Template.Previous
			oldRef = &prev
			note += "; " + st.Template.revertNote()
		}
		steps = append(steps, Step{Kind: StepRestoreImage, Phase: -1, Version: st.Template.Previous, Image: st.Template.PreviousImage, Note: note})
	}
	if len(st.Protected) > 0 {
		steps = append(steps, Step{Kind: StepUnprotect, Phase: -1, IDs: st.Protected, Note: "remove the scale-in protection the rollout added"})
	}
	draining := st.drainAsked()
	deregistered := map[string]bool{}
	for _, s := range append(slices.Clone(st.Steps), st.RollbackSteps...) {
		for id := range s.Deregistered {
			deregistered[id] = true
		}
	}
	held := map[string]bool{}
	var targets, targetNames, reregister []string
	for _, in := range g.Instances {
		if !in.Live() {
			continue
		}
		if runs(in, st.OldImage, oldRef) && !draining[in.ID] {
			held[in.Name] = true
			if deregistered[in.ID] || in.HealthStatus == "Unhealthy" {
				reregister = append(reregister, in.ID)
			}
			continue
		}
		targets = append(targets, in.ID)
		targetNames = append(targetNames, in.Name)
	}
	if len(reregister) > 0 {
		steps = append(steps, Step{Kind: StepReregister, Phase: -1, IDs: reregister,
			Note: fmt.Sprintf("put %d kept old instances back in the target groups and mark them healthy", len(reregister))})
	}
	var names []string
	for _, n := range st.OldNames {
		if !held[n] {
			names = append(names, n)
		}
	}
	if len(targets) > 0 || len(names) > 0 {
		note := fmt.Sprintf("launch %d on %s, wait until healthy, then drain and terminate %s", len(names), st.OldImage, strings.Join(targetNames, ", "))
		steps = append(steps, Step{Kind: StepBatch, Phase: -1, Launch: len(names), Names: names, Targets: targets, TargetNames: targetNames,
			Image: st.OldImage, Ref: oldRef, Strategy: LaunchBeforeTerminate, TargetsFrom: -1, Note: note})
	}
	steps = append(steps, Step{Kind: StepCheck, Phase: -1, Note: "run the checks"}, resumeStep())
	return steps
}

func resumeStep() Step {
	return Step{Kind: StepResume, Phase: -1, Note: "resume the processes the change suspended (not an operator's)"}
}

// namer hands out the group's free names after its highest numbered one:
// ws-01..ws-08 gives ws-09, ws-10, … skipping names taken. It reads the
// group once, and each name it gives costs one step plus the taken names
// it skips, so that a canary of N takes time in N, not N².
type namer struct {
	prefix string
	width  int
	n      int // the number the next name tries
	taken  map[string]bool
}

func newNamer(g Group, taken map[string]bool) *namer {
	nm := &namer{width: 2, taken: taken}
	highest := 0
	for _, in := range g.Instances {
		p, num, w, ok := splitName(in.Name)
		if !ok {
			continue
		}
		if num > highest {
			nm.prefix, nm.width, highest = p, w, num
		}
	}
	if nm.prefix == "" {
		nm.prefix = g.Name + "-"
	}
	nm.n = highest + 1
	return nm
}

// next returns the next name not taken; the caller takes it.
func (nm *namer) next() string {
	for {
		name := fmt.Sprintf("%s%0*d", nm.prefix, nm.width, nm.n)
		nm.n++
		if !nm.taken[name] {
			return name
		}
	}
}

// splitName splits "ws-09" into "ws-", 9 and its digit width 2.
func splitName(s string) (prefix string, num, width int, ok bool) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 9 {
		return "", 0, 0, false
	}
	for _, c := range s[i:] {
		num = num*10 + int(c-'0')
	}
	return s[:i], num, len(s) - i, true
}

// nameLess orders ws-2 before ws-10.
func nameLess(a, b string) bool {
	pa, na, _, oka := splitName(a)
	pb, nb, _, okb := splitName(b)
	if oka && okb && pa == pb {
		return na < nb
	}
	return a < b
}

func liveNames(g Group) []string {
	var out []string
	for _, in := range g.Instances {
		if in.Live() {
			out = append(out, in.Name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return nameLess(out[i], out[j]) })
	return out
}

func instNames(ins []Instance) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.Name
	}
	return out
}

func templateString(t TemplateRef) string {
	if t.IsLaunchConfig() {
		return "launch configuration " + t.LaunchConfig
	}
	n := t.Name
	if n == "" {
		n = t.ID
	}
	if n == "" {
		return "(none)"
	}
	return n + ":" + t.Version
}

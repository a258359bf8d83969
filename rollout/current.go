package rollout

import (
	"context"
	"fmt"
	"sort"
	"strconv"
)

// target is what the plan brings in on group g: the image new instances
// run and, for `image: current`, the launch template version or launch
// configuration they are launched from (nil for an AMI, where the new
// version does not exist yet and the image tells new from old).
func (p *Plan) target(g Group) (string, *TemplateRef, error) {
	switch {
	case p.Image.Terraform != nil:
		return p.Image.Terraform.Value, nil, nil // the image the variable sets
	case p.Image.Current:
		if g.Template.IsZero() {
			return "", nil, PlanErrors{p.errAt("image", "current: group %s has neither a launch template nor a launch configuration", g.Name)}
		}
		ref := g.Template
		return g.Image, &ref, nil
	}
	return p.Image.AMI, nil, nil
}

// runs reports whether in runs what a step or phase brings in: the
// launch reference when ref is set (`image: current`), else the image.
// An instance whose launch template version is not a number ($Latest,
// $Default: the version spec rather than the version it got) is told by
// its image.
func runs(in Instance, image string, ref *TemplateRef) bool {
	if ref == nil {
		return in.Image == image
	}
	if !in.Launch.IsLaunchConfig() && !ref.IsLaunchConfig() && in.Launch.ID == ref.ID && !numeric(in.Launch.Version) {
		return in.Image == image
	}
	return in.Launch.Same(*ref)
}

// numeric reports whether s is a launch template version number.
func numeric(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// targetString names what new instances run, for the rendered plan.
func targetString(image string, ref *TemplateRef) string {
	if ref != nil {
		return fmt.Sprintf("%s (%s)", templateString(*ref), image)
	}
	return image
}

// refKind names the kind of t: "launch configuration" or "launch
// template".
func refKind(t TemplateRef) string {
	if t.IsLaunchConfig() {
		return "launch configuration"
	}
	return "launch template"
}

// refName names t within its kind: the configuration's name, or the
// template's name (or id) and version.
func refName(t TemplateRef) string {
	if t.IsLaunchConfig() {
		return t.LaunchConfig
	}
	return templateString(t)
}

// currentChange is the change `image: current` stands for on group g:
// from what most of the old instances run (the launch template version,
// or the launch configuration, they were launched from) to the group's
// current reference. It fails when the old instances do not say what
// they were launched from.
func currentChange(p *Plan, g Group) (TemplateChange, error) {
	type count struct {
		ref    TemplateRef
		n      int
		images map[string]int
	}
	counts := map[string]*count{}
	for _, in := range g.Instances {
		if !in.Live() || runs(in, g.Image, &g.Template) {
			continue
		}
		if in.Launch.IsZero() {
			return TemplateChange{}, fmt.Errorf("current: instance %s (%s) does not say which launch template or configuration it was launched from", orDash(in.Name), in.ID)
		}
		k := templateString(in.Launch)
		c := counts[k]
		if c == nil {
			c = &count{ref: in.Launch, images: map[string]int{}}
			counts[k] = c
		}
		c.n++
		c.images[in.Image]++
	}
	if len(counts) == 0 {
		return TemplateChange{}, fmt.Errorf("current: every live instance of group %s already runs %s", g.Name, templateString(g.Template))
	}
	all := make([]*count, 0, len(counts))
	for _, c := range counts {
		all = append(all, c)
	}
	// Most instances first; ties to the name, so that plan and rollout
	// agree.
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return templateString(all[i].ref) < templateString(all[j].ref)
	})
	prev := all[0]
	img, best := "", 0
	for im, n := range prev.images {
		if n > best || (n == best && im < img) {
			img, best = im, n
		}
	}
	return TemplateChange{Previous: prev.ref, PreviousImage: img, New: g.Template, NewImage: g.Image,
		Current: true, TerraformChange: p.TerraformChange}, nil
}

// revertNote says that an outside change must be reverted as well, naming
// it: the plan's terraform_change, or what it did.
func (tc *TemplateChange) revertNote() string {
	name := tc.TerraformChange
	if name == "" {
		name = "the change that set the group's " + refKind(tc.New) + " to " + refName(tc.New)
	}
	return fmt.Sprintf("the group was put back on %s through the API: revert the Terraform change too (%s), or the next terraform apply sets %s again",
		templateString(tc.Previous), name, templateString(tc.New))
}

// LaunchRefChecker is an optional Provider capability: whether a launch
// template version or launch configuration still exists, so that
// `image: current` can refuse, before any change, a rollback target that
// is gone.
type LaunchRefChecker interface {
	LaunchRefExists(ctx context.Context, ref TemplateRef) (bool, error)
}

// checkPrevious refuses `image: current` when what the old instances run
// no longer exists: the rollback could not put the group back on it.
func checkPrevious(ctx context.Context, p Provider, plan *Plan, g Group) error {
	lc, ok := p.(LaunchRefChecker)
	if !ok || !plan.Image.Current {
		return nil
	}
	tc, err := currentChange(plan, g)
	if err != nil {
		return PlanErrors{plan.errAt("image", "%v", err)}
	}
	exists, err := lc.LaunchRefExists(ctx, tc.Previous)
	if err != nil {
		return fmt.Errorf("check %s: %w", templateString(tc.Previous), err)
	}
	if !exists {
		return PlanErrors{plan.errAt("image", "current: the old instances run %s (image %s), which no longer exists: a rollback could not put the group back on it; make it again with that image (a Terraform create_before_destroy deletes the old launch configuration: keep it until the change is done), then plan again",
			templateString(tc.Previous), tc.PreviousImage)}
	}
	return nil
}

// NewImage is the image the change brings in: the plan's AMI, or for
// `image: current` the group's image when the change started ("" before
// it started).
func (st *State) NewImage(p *Plan) string {
	if p.Image.AMI != "" {
		return p.Image.AMI
	}
	if p.Image.Terraform != nil {
		return p.Image.Terraform.Value
	}
	if st.Template != nil {
		return st.Template.NewImage
	}
	return ""
}

// newRef is the launch reference the change's new instances are told by
// (`image: current` only).
func (st *State) newRef(p *Plan) *TemplateRef {
	if p.Image.Current && st.Template != nil {
		r := st.Template.New
		return &r
	}
	return nil
}

// outsideLine is the report's and status's line about a change made
// outside wsfleet (`image: current`): after a rollback, that the
// Terraform change must be reverted too; before, that it would have to
// be. Empty for a change wsfleet made.
func (tc *TemplateChange) outsideLine(st *State) string {
	if line := tc.terraformLine(st); line != "" {
		return line
	}
	if tc == nil || !tc.Current {
		return ""
	}
	if st.Rollback || st.Status == StatusRolledBack || st.Status == StatusRollingBack || st.Status == StatusRollbackFailed {
		return "terraform: " + tc.revertNote()
	}
	name := tc.TerraformChange
	if name == "" {
		name = "the change that set the group's " + refKind(tc.New)
	}
	return fmt.Sprintf("terraform: %s was set outside wsfleet (%s); a rollback puts the group back on %s through the API, and that change must then be reverted too",
		templateString(tc.New), name, templateString(tc.Previous))
}

// launchString names a launch reference with its kind: "launch template
// gitter-ws:3" or "launch configuration gitter-ws-lc".
func launchString(t TemplateRef) string {
	if t.IsLaunchConfig() {
		return templateString(t)
	}
	return "launch template " + templateString(t)
}

// Target is the image and launch reference the plan moves group g to:
// what a phase's gates are told (PhaseEnv.Image, Ref) before the first
// change, for `wsfleet plan`'s pre-checks as for the engine's.
func (p *Plan) Target(g Group) (string, *TemplateRef, error) { return p.target(g) }

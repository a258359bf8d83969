package rollout

import (
	"context"
	"errors"
	"fmt"
)

// TerraformChange is the `image: {terraform: {...}}` form's change, made
// by package terraform: `wsfleet plan` set the variable and saved a
// checked plan; the rollout's set-image step applies exactly that plan
// and the rollback's restore-image step reverts it through Terraform.
type TerraformChange interface {
	// Apply applies the saved plan; Terraform refuses it (an error) when
	// the state moved since it was made.
	Apply(ctx context.Context) error
	// Revert sets the variable back, plans, checks that the plan is the
	// reverse change only, and applies it; a no-op when Terraform
	// already agrees.
	Revert(ctx context.Context) error
	// String names the change for the report and status.
	String() string
}

// terraformSetImage is the set-image effect of the terraform form: apply
// the saved plan, then read what the group now runs. Called again after
// a crash that followed the apply, it finds the group on image already
// (Terraform would refuse the plan, now stale) and records that.
func (e *Engine) terraformSetImage(ctx context.Context, st *State, image string) (TemplateChange, error) {
	before, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return TemplateChange{}, fmt.Errorf("terraform set-image: %w", err)
	}
	tc := TemplateChange{Previous: before.Template, PreviousImage: before.Image, Terraform: e.Terraform.String()}
	if before.Image == image {
		// applied by an earlier run of this effect: what the group ran
		// before is what it ran when the change started
		tc.Previous, tc.PreviousImage = TemplateRef{}, st.OldImage
	} else if err := e.Terraform.Apply(ctx); err != nil {
		return TemplateChange{}, fmt.Errorf("terraform set-image: %w", err)
	}
	after, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return TemplateChange{}, fmt.Errorf("terraform set-image: %w", err)
	}
	if after.Image != image {
		return TemplateChange{}, fmt.Errorf("terraform set-image: Terraform applied, but group %s is on %s with image %s, not %s: the variable does not set the group's image", st.Group, templateString(after.Template), after.Image, image)
	}
	tc.New, tc.NewImage = after.Template, after.Image
	return tc, nil
}

// terraformRestore is the restore-image effect of the terraform form:
// the change reverted through Terraform (a new launch configuration or
// template version with the old image; the one before is gone).
// The group must then run the old image: a revert that gives it
// another (the variable's file edited since) is an error, not a wait for
// an image that will not come.
func (e *Engine) terraformRestore(ctx context.Context, st *State) error {
	if err := e.Terraform.Revert(ctx); err != nil {
		return fmt.Errorf("terraform restore-image: %w", err)
	}
	g, err := e.Provider.Group(ctx, st.Group)
	if err != nil {
		return fmt.Errorf("terraform restore-image: %w", err)
	}
	if g.Image != st.Template.PreviousImage {
		return fmt.Errorf("terraform restore-image: Terraform reverted, but group %s is on %s with image %s, not %s: the variable's value before the change does not give the group its old image; put the group back by hand", st.Group, templateString(g.Template), g.Image, st.Template.PreviousImage)
	}
	return nil
}

// terraformLine is the report's and status's line naming the Terraform
// change of the terraform form; empty for the other forms.
func (tc *TemplateChange) terraformLine(st *State) string {
	if tc == nil || tc.Terraform == "" {
		return ""
	}
	if st.Status == StatusRolledBack {
		return "terraform: " + tc.Terraform + "; reverted through Terraform by the rollback"
	}
	if st.Rollback || st.Status == StatusRolledBack || st.Status == StatusRollingBack || st.Status == StatusRollbackFailed {
		return "terraform: " + tc.Terraform + "; the rollback reverts it through Terraform"
	}
	return "terraform: " + tc.Terraform + "; applied by wsfleet"
}

// ErrNoTerraform is returned when a plan in the terraform form reaches an
// engine that was given no TerraformChange: making the change through
// the API instead would leave Terraform's state behind.
var ErrNoTerraform = errors.New("terraform image form: the engine has no Terraform change (wsfleet rollout makes it from wsfleet plan's saved plan)")

// needTerraform refuses a terraform-form plan without e.Terraform.
func (e *Engine) needTerraform(planYAML []byte) error {
	p, err := ParsePlan(planYAML)
	if err != nil || p.Image.Terraform == nil || e.Terraform != nil {
		return nil // a parse error is Prepare's to report
	}
	return ErrNoTerraform
}

// terraformSetImageNote is the set-image step's line in the terraform
// form.
func terraformSetImageNote(p *Plan, g Group) string {
	t := p.Image.Terraform
	return fmt.Sprintf("terraform apply of the plan wsfleet plan saved (var.%s = %q in %s): the group moves from %s (image %s) to what Terraform makes; wsfleet reads it back",
		t.Var, t.Value, t.Dir, launchString(g.Template), g.Image)
}

// terraformRollbackLine is the plan's "on failure" line in the terraform
// form.
func terraformRollbackLine(p *Plan, g Group) string {
	t := p.Image.Terraform
	return fmt.Sprintf("on failure: roll back at once through Terraform: var.%s set back to its value before the change, the plan checked to be the reverse change only and applied (the group on a new %s with image %s), every %s instance replaced by one on %s (same drain), old instances still there reused",
		t.Var, terraformNewKind(g.Template), g.Image, t.Value, g.Image)
}

// terraformNewKind is what a Terraform revert makes for a group on t.
func terraformNewKind(t TemplateRef) string {
	if t.IsLaunchConfig() {
		return "launch configuration"
	}
	return "launch template version"
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"wsfleet/rollout"
	"wsfleet/terraform"
)

// The terraform image form (docs/terraform.md): `wsfleet plan` sets the
// variable and saves a checked Terraform plan under the state directory;
// `wsfleet rollout` (and resume, rollback) apply or revert exactly that.

// tfDir is where the saved plans and their records live.
func tfDir(f *roFlags) string { return filepath.Join(f.stateDir, "terraform") }

func tfRunner(p *rollout.Plan, log *slog.Logger, out io.Writer) *terraform.Runner {
	t := p.Image.Terraform
	return &terraform.Runner{
		Spec:   terraform.Spec{Dir: t.Dir, Var: t.Var, Value: t.Value, Bin: t.Bin, Workspace: t.Workspace, VarFile: t.VarFile},
		Output: out,
		Log:    log,
	}
}

// tfPlan runs `terraform plan` for the plan's change, refusing any change
// but the image's, and prints what Terraform would change and any drift.
// The variable's value is the image the new instances run: it must exist.
func tfPlan(ctx context.Context, p *rollout.Plan, prov rollout.ImageChecker, f *roFlags, stdout, stderr io.Writer) error {
	if ok, err := prov.ImageExists(ctx, p.Image.Terraform.Value); err != nil {
		return err
	} else if !ok {
		return rollout.PlanErrors{{Key: "image.terraform.value", Line: p.Line("image"), Msg: fmt.Sprintf("no image %q exists in the region; the variable's value is the AMI the new instances run", p.Image.Terraform.Value)}}
	}
	r := tfRunner(p, slog.New(slog.DiscardHandler), nil)
	rec, err := r.PlanChange(ctx, tfDir(f), p.Change, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "terraform: %s\n", rec.Edit)
	fmt.Fprintf(stdout, "terraform plan, saved to %s (wsfleet rollout applies exactly this plan):\n", rec.PlanFile)
	for _, c := range rec.Summary.Changes {
		fmt.Fprintf(stdout, "  %s\n", c)
	}
	for _, d := range rec.Summary.Drift {
		fmt.Fprintf(stderr, "warning: drift: %s changed outside Terraform since its last apply (%s): the live group differs from Terraform's state\n", d.Address, strings.Join(d.Attrs, ", "))
	}
	return nil
}

// tfChange is the engine's TerraformChange for a plan in the terraform
// form, from the record `wsfleet plan` left; nil for the other forms.
func tfChange(p *rollout.Plan, f *roFlags, log *slog.Logger) (rollout.TerraformChange, error) {
	if p.Image.Terraform == nil {
		return nil, nil
	}
	rec, err := terraform.LoadRecord(tfDir(f), p.Change)
	if err != nil {
		return nil, err
	}
	r := tfRunner(p, log, nil)
	if rec.Spec != r.Spec {
		return nil, fmt.Errorf("terraform: the saved plan of %s was made for %+v, the plan file now says %+v: run wsfleet plan again", p.Change, rec.Spec, r.Spec)
	}
	return &terraform.Rollout{Runner: r, Record: rec, Dir: tfDir(f)}, nil
}

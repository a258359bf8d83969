package terraform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"
)

// CheckedVersion is the Terraform release the package was checked with.
const CheckedVersion = "1.11.4"

// Spec is what the plan's `image: {terraform: {...}}` gives: the folder
// that owns the group, the variable that carries the image and its new
// value, and optionally the terraform binary, the workspace and a
// variable file.
type Spec struct {
	Dir       string `json:"dir"`
	Var       string `json:"var"`
	Value     string `json:"value"`
	Bin       string `json:"bin,omitempty"`
	Workspace string `json:"workspace,omitempty"`
	VarFile   string `json:"var_file,omitempty"`
}

// Runner runs Terraform for one Spec.
type Runner struct {
	Spec Spec
	// CLIConfig, when set, is the Terraform CLI configuration file
	// (TF_CLI_CONFIG_FILE) for every run; empty keeps the environment's.
	CLIConfig string
	// Env is added to the process environment of every run.
	Env map[string]string
	// Output receives Terraform's human-readable output; nil discards it.
	Output io.Writer
	Log    *slog.Logger
}

// Errors the runner returns for bad input, each wrapped with details.
var (
	ErrNoBinary  = errors.New("terraform binary not found")
	ErrBinary    = errors.New("terraform binary fails")
	ErrStalePlan = errors.New("saved plan is stale")
)

// Planned is a saved plan that passed the check.
type Planned struct {
	PlanFile string  `json:"plan_file"`
	Edit     VarEdit `json:"edit"`
	Summary  Summary `json:"summary"`
	// Plan is the saved plan as terraform-json reads it.
	Plan *tfjson.Plan `json:"-"`
}

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// bin resolves the terraform binary: the spec's, else PATH's.
func (r *Runner) bin() (string, error) {
	if r.Spec.Bin != "" {
		p, err := exec.LookPath(r.Spec.Bin)
		if err != nil {
			return "", fmt.Errorf("%w: %s (image.terraform.bin): %v", ErrNoBinary, r.Spec.Bin, err)
		}
		return p, nil
	}
	p, err := exec.LookPath("terraform")
	if err != nil {
		return "", fmt.Errorf("%w on PATH: install Terraform (checked with v%s) or set image.terraform.bin", ErrNoBinary, CheckedVersion)
	}
	return p, nil
}

// open checks the folder and the binary (it must answer `version`) and
// returns terraform-exec's handle on them.
func (r *Runner) open(ctx context.Context) (*tfexec.Terraform, error) {
	if err := checkDir(r.Spec.Dir); err != nil {
		return nil, err
	}
	bin, err := r.bin()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(r.Spec.Dir)
	if err != nil {
		return nil, fmt.Errorf("terraform dir %s: %w", r.Spec.Dir, err)
	}
	tf, err := tfexec.NewTerraform(dir, bin)
	if err != nil {
		return nil, fmt.Errorf("terraform %s: %w", bin, err)
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, k := range tfexec.ProhibitedEnv(env) {
		delete(env, k)
	}
	for k, v := range r.Env {
		env[k] = v
	}
	if r.CLIConfig != "" {
		env["TF_CLI_CONFIG_FILE"] = r.CLIConfig
	}
	if err := tf.SetEnv(env); err != nil {
		return nil, fmt.Errorf("terraform environment: %w", err)
	}
	if r.Output != nil {
		tf.SetStdout(r.Output)
	}
	v, _, err := tf.Version(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %s version: %v", ErrBinary, bin, err)
	}
	r.log().Debug("terraform found", "bin", bin, "version", v.String(), "dir", dir)
	if r.Spec.Workspace != "" {
		if err := tf.WorkspaceSelect(ctx, r.Spec.Workspace); err != nil {
			return nil, fmt.Errorf("terraform workspace select %s: %w", r.Spec.Workspace, err)
		}
	}
	return tf, nil
}

// planOpts are the options every plan gets: the spec's variable file,
// and no refresh for a rollback's plan (see Revert).
func (r *Runner) planOpts(out string, refresh bool) []tfexec.PlanOption {
	opts := []tfexec.PlanOption{tfexec.Lock(true), tfexec.Refresh(refresh)}
	if out != "" {
		opts = append(opts, tfexec.Out(out))
	}
	if r.Spec.VarFile != "" {
		opts = append(opts, tfexec.VarFile(r.Spec.VarFile))
	}
	return opts
}

// absPlan makes a plan file's path absolute: Terraform runs in the
// configuration's folder, where a path relative to wsfleet's working
// folder (a relative --state-dir) names another file, or none.
func absPlan(planFile string) (string, error) {
	abs, err := filepath.Abs(planFile)
	if err != nil {
		return "", fmt.Errorf("plan file %s: %w", planFile, err)
	}
	return abs, nil
}

// needsInit reports whether a failed plan asked for `terraform init`.
func needsInit(err error) bool {
	s := err.Error()
	for _, m := range []string{"terraform init", "Backend initialization required", "Module not installed", "Missing required provider", "Inconsistent dependency lock file"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// plan runs `terraform plan -out` (with `terraform init` first when the
// folder asks for it) and reads and checks the saved plan.
func (r *Runner) plan(ctx context.Context, tf *tfexec.Terraform, planFile string, refresh bool) (*tfjson.Plan, Summary, error) {
	planFile, err := absPlan(planFile)
	if err != nil {
		return nil, Summary{}, err
	}
	_, err = tf.Plan(ctx, r.planOpts(planFile, refresh)...)
	if err != nil && needsInit(err) {
		r.log().Info("terraform init", "dir", r.Spec.Dir)
		if ierr := tf.Init(ctx, tfexec.Upgrade(false)); ierr != nil {
			return nil, Summary{}, fmt.Errorf("terraform init in %s: %w", r.Spec.Dir, ierr)
		}
		_, err = tf.Plan(ctx, r.planOpts(planFile, refresh)...)
	}
	if err != nil {
		return nil, Summary{}, fmt.Errorf("terraform plan in %s: %w", r.Spec.Dir, err)
	}
	p, err := tf.ShowPlanFile(ctx, planFile)
	if err != nil {
		return nil, Summary{}, fmt.Errorf("terraform show %s: %w", planFile, err)
	}
	s, err := Check(p)
	return p, s, err
}

// Plan sets the spec's variable to its value, runs `terraform plan
// -out planFile` and checks the saved plan. Bad input (a missing folder,
// binary or variable, a failing binary) fails before anything changes; a
// plan that fails or is refused puts the variable back and removes the
// plan file, so that nothing is left changed.
func (r *Runner) Plan(ctx context.Context, planFile string) (*Planned, error) {
	value := r.Spec.Value
	return r.planEdit(ctx, planFile, &value, true, func() (VarEdit, error) {
		return SetVar(r.Spec.Dir, r.Spec.VarFile, r.Spec.Var, value)
	})
}

// planEdit makes the variable edit set, plans (refreshing the state from
// the cloud first when refresh is set), and checks the plan, and that
// the variable has value in it (when known); on any failure the edit is
// undone.
func (r *Runner) planEdit(ctx context.Context, planFile string, value *string, refresh bool, set func() (VarEdit, error)) (*Planned, error) {
	tf, err := r.open(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := findDeclaration(r.Spec.Dir, r.Spec.Var); err != nil {
		return nil, err
	}
	edit, err := set()
	if err != nil {
		return nil, fmt.Errorf("set var.%s: %w", r.Spec.Var, err)
	}
	undo := func(cause error) error {
		os.Remove(planFile)
		if rerr := edit.Revert(); rerr != nil {
			return errors.Join(cause, fmt.Errorf("put var.%s back: %w", r.Spec.Var, rerr))
		}
		return cause
	}
	r.log().Info("terraform variable set", "edit", edit.String())
	p, s, err := r.plan(ctx, tf, planFile, refresh)
	if err != nil {
		return nil, undo(err)
	}
	if got, ok := s.Variables[r.Spec.Var]; value != nil && (!ok || got != *value) {
		return nil, undo(fmt.Errorf("terraform plan: var.%s is %q in the plan, not %q: another variable file or -var overrides it", r.Spec.Var, got, *value))
	}
	return &Planned{PlanFile: planFile, Edit: edit, Summary: s, Plan: p}, nil
}

// Apply applies exactly the saved plan file. Terraform itself refuses a
// plan made before the state last changed; that comes back as
// ErrStalePlan.
func (r *Runner) Apply(ctx context.Context, planFile string) error {
	planFile, err := absPlan(planFile)
	if err != nil {
		return err
	}
	if _, err := os.Stat(planFile); err != nil {
		return fmt.Errorf("terraform apply: saved plan %s: %w (run wsfleet plan first)", planFile, err)
	}
	tf, err := r.open(ctx)
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	tf.SetStderr(&stderr)
	if err := tf.Apply(ctx, tfexec.DirOrPlan(planFile)); err != nil {
		if strings.Contains(err.Error()+stderr.String(), "Saved plan is stale") {
			return fmt.Errorf("terraform apply %s: %w: the Terraform state changed after wsfleet plan made it (someone applied since); run wsfleet plan again", planFile, ErrStalePlan)
		}
		return fmt.Errorf("terraform apply %s: %w", planFile, err)
	}
	return nil
}

// Revert plans the reverse of edit: the variable back to its old value.
// The plan must pass the same check; the caller applies it. It does not
// refresh: mid-rollout the live group differs from the configuration
// on purpose (a canary raised its capacity, the lock tag is on it), and
// a refreshed plan would put those back, terminating instances under the
// rollback; the group's own update sends only the launch configuration
// or template.
func (r *Runner) Revert(ctx context.Context, planFile string, edit VarEdit) (*Planned, error) {
	if edit.HadOld {
		old := edit.Old
		return r.planEdit(ctx, planFile, &old, false, func() (VarEdit, error) {
			return SetVar(r.Spec.Dir, r.Spec.VarFile, r.Spec.Var, old)
		})
	}
	// The file had no value: the assignment (or default) goes again, and
	// the variable takes whatever Terraform gives it otherwise.
	return r.planEdit(ctx, planFile, nil, false, func() (VarEdit, error) {
		if err := edit.Revert(); err != nil {
			return VarEdit{}, fmt.Errorf("remove %s: %w", edit, err)
		}
		back := edit
		back.Old, back.HadOld, back.New = edit.New, true, ""
		return back, nil
	})
}

// Clean runs `terraform plan` and reports whether it proposes no change:
// Terraform agrees with the fleet.
func (r *Runner) Clean(ctx context.Context) (bool, error) {
	tf, err := r.open(ctx)
	if err != nil {
		return false, err
	}
	changes, err := tf.Plan(ctx, r.planOpts("", true)...)
	if err != nil {
		return false, fmt.Errorf("terraform plan in %s: %w", r.Spec.Dir, err)
	}
	return !changes, nil
}

// GroupLaunch reads from Terraform's state the launch configuration name
// or launch template id and version of the Auto Scaling group named
// group.
func (r *Runner) GroupLaunch(ctx context.Context, group string) (lc, ltID, ltVersion string, err error) {
	tf, err := r.open(ctx)
	if err != nil {
		return "", "", "", err
	}
	st, err := tf.Show(ctx)
	if err != nil {
		return "", "", "", fmt.Errorf("terraform show: %w", err)
	}
	if st.Values == nil {
		return "", "", "", fmt.Errorf("terraform state of %s: empty", r.Spec.Dir)
	}
	var found *tfjson.StateResource
	var walk func(m *tfjson.StateModule)
	walk = func(m *tfjson.StateModule) {
		for _, res := range m.Resources {
			if res.Type == TypeGroup && res.AttributeValues["name"] == group {
				found = res
			}
		}
		for _, c := range m.ChildModules {
			walk(c)
		}
	}
	walk(st.Values.RootModule)
	if found == nil {
		return "", "", "", fmt.Errorf("terraform state of %s: no %s named %s", r.Spec.Dir, TypeGroup, group)
	}
	lc, _ = found.AttributeValues["launch_configuration"].(string)
	if lts, ok := found.AttributeValues["launch_template"].([]any); ok && len(lts) > 0 {
		if m, ok := lts[0].(map[string]any); ok {
			ltID, _ = m["id"].(string)
			ltVersion, _ = m["version"].(string)
		}
	}
	return lc, ltID, ltVersion, nil
}

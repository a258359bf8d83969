package terraform

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wsfleet/internal/tftest"
)

// dataModule writes a configuration of built-in terraform_data resources
// only (no provider to install) with variable ami, and returns its folder.
func dataModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "variable \"ami\" {\n  type    = string\n  default = \"ami-old\"\n}\n\nresource \"terraform_data\" \"image\" {\n  input = var.ami\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunnerBadInput: each mistake fails with a clear error before any
// change (the variable's file is as it was, no plan file left).
func TestRunnerBadInput(t *testing.T) {
	tf := tftest.NeedTerraform(t)
	failing := filepath.Join(t.TempDir(), "terraform")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'broken install' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec func(dir string) Spec
		path string // PATH for the run; empty keeps it
		is   error
		want string
	}{
		{name: "missing folder", spec: func(string) Spec { return Spec{Dir: "/nonexistent/wsfleet-tf", Var: "ami", Value: "ami-new"} },
			is: ErrNoDir, want: "/nonexistent/wsfleet-tf"},
		{name: "undeclared variable", spec: func(d string) Spec { return Spec{Dir: d, Var: "image", Value: "ami-new"} },
			want: `variable "image" is not declared`},
		{name: "absent binary", spec: func(d string) Spec { return Spec{Dir: d, Var: "ami", Value: "ami-new", Bin: "/nonexistent/terraform"} },
			is: ErrNoBinary, want: "/nonexistent/terraform"},
		{name: "no terraform on PATH", spec: func(d string) Spec { return Spec{Dir: d, Var: "ami", Value: "ami-new"} }, path: t.TempDir(),
			is: ErrNoBinary, want: "install Terraform"},
		{name: "failing binary", spec: func(d string) Spec { return Spec{Dir: d, Var: "ami", Value: "ami-new", Bin: failing} },
			is: ErrBinary, want: "broken install"},
		{name: "missing var file", spec: func(d string) Spec {
			return Spec{Dir: d, Var: "ami", Value: "ami-new", Bin: tf, VarFile: filepath.Join(d, "nope", "x.tfvars")}
		}, want: "must name an existing .tfvars file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := dataModule(t)
			if tt.path != "" {
				t.Setenv("PATH", tt.path)
			}
			before, _ := os.ReadFile(filepath.Join(dir, "main.tf"))
			planFile := filepath.Join(t.TempDir(), "p.tfplan")
			r := &Runner{Spec: tt.spec(dir)}
			_, err := r.Plan(context.Background(), planFile)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Plan err = %v; want one containing %q", err, tt.want)
			}
			t.Logf("%s: %v", tt.name, err)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Plan err = %v; want errors.Is %v", err, tt.is)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "main.tf"))
			if string(after) != string(before) {
				t.Errorf("main.tf changed:\n%s", after)
			}
			if _, err := os.Stat(planFile); err == nil {
				t.Errorf("a plan file was left for a failed plan")
			}
		})
	}
}

// TestApplyStalePlan: a saved plan made before the state changed is
// refused by Terraform, and Apply says so as ErrStalePlan; the fresh plan
// of the same change applies.
func TestApplyStalePlan(t *testing.T) {
	tftest.NeedTerraform(t)
	ctx := context.Background()
	dir := dataModule(t)
	rc := filepath.Join(t.TempDir(), "none.rc") // no provider installation needed
	old := filepath.Join(t.TempDir(), "old.tfplan")
	tftest.Terraform(t, dir, rc, "plan", "-out="+old)
	tftest.Terraform(t, dir, rc, "apply", "-auto-approve", "-var", "ami=ami-other")
	r := &Runner{Spec: Spec{Dir: dir, Var: "ami", Value: "ami-new"}, CLIConfig: rc}
	err := r.Apply(ctx, old)
	if !errors.Is(err, ErrStalePlan) || !strings.Contains(err.Error(), "wsfleet plan again") {
		t.Fatalf("Apply of a stale plan: %v; want ErrStalePlan", err)
	}
	if err := r.Apply(ctx, filepath.Join(dir, "missing.tfplan")); err == nil || !strings.Contains(err.Error(), "run wsfleet plan first") {
		t.Errorf("Apply of a missing plan file: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh.tfplan")
	tftest.Terraform(t, dir, rc, "plan", "-out="+fresh, "-var", "ami=ami-new")
	if err := r.Apply(ctx, fresh); err != nil {
		t.Fatalf("Apply of a fresh plan: %v", err)
	}
}

// TestPlanRefusesAndReverts: a real plan that changes a resource other
// than the launch configuration or template is refused, naming it, and
// the variable is put back.
func TestPlanRefusesAndReverts(t *testing.T) {
	tftest.NeedTerraform(t)
	dir := dataModule(t)
	rc := filepath.Join(t.TempDir(), "none.rc")
	tftest.Terraform(t, dir, rc, "apply", "-auto-approve")
	before, _ := os.ReadFile(filepath.Join(dir, "main.tf"))
	planFile := filepath.Join(t.TempDir(), "p.tfplan")
	r := &Runner{Spec: Spec{Dir: dir, Var: "ami", Value: "ami-new"}, CLIConfig: rc}
	_, err := r.Plan(context.Background(), planFile)
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Addresses()) != 1 || re.Addresses()[0] != "terraform_data.image" {
		t.Fatalf("Plan: %v; want refused naming terraform_data.image", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "main.tf"))
	if string(after) != string(before) {
		t.Errorf("main.tf not put back:\n%s", after)
	}
	if _, err := os.Stat(planFile); err == nil {
		t.Errorf("the refused plan's file was left")
	}
}

// TestRevertWithoutOldValue: an edit that added the assignment (the var
// file had none) is reverted by removing it again; the plan then has the
// variable's default and, nothing having been applied, no change.
func TestRevertWithoutOldValue(t *testing.T) {
	tftest.NeedTerraform(t)
	dir := dataModule(t)
	rc := filepath.Join(t.TempDir(), "none.rc")
	tftest.Terraform(t, dir, rc, "apply", "-auto-approve")
	vf := filepath.Join(dir, "prod.tfvars")
	orig := "# production values\n"
	if err := os.WriteFile(vf, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	edit, err := SetVar(dir, "prod.tfvars", "ami", "ami-new")
	if err != nil || edit.HadOld {
		t.Fatalf("SetVar: %+v, %v", edit, err)
	}
	r := &Runner{Spec: Spec{Dir: dir, Var: "ami", Value: "ami-new", VarFile: "prod.tfvars"}, CLIConfig: rc}
	p, err := r.Revert(context.Background(), filepath.Join(t.TempDir(), "back.tfplan"), edit)
	if err != nil {
		t.Fatalf("Revert: %v", err)
	}
	if len(p.Summary.Changes) != 0 || p.Summary.Variables["ami"] != "ami-old" {
		t.Errorf("revert plan: %+v", p.Summary)
	}
	if b, _ := os.ReadFile(vf); strings.TrimSpace(string(b)) != strings.TrimSpace(orig) {
		t.Errorf("prod.tfvars after Revert = %q; want %q", b, orig)
	}
}

// TestRelativePlanFile: a plan file named relative to wsfleet's working
// folder (a relative --state-dir) is where Terraform writes and reads it,
// although Terraform runs in the configuration's folder.
func TestRelativePlanFile(t *testing.T) {
	tftest.NeedTerraform(t)
	ctx := context.Background()
	dir := dataModule(t)
	rc := filepath.Join(t.TempDir(), "none.rc")
	t.Chdir(t.TempDir())
	if err := os.Mkdir("state", 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Spec: Spec{Dir: dir, Var: "ami", Value: "ami-new"}, CLIConfig: rc}
	_, err := r.Plan(ctx, filepath.Join("state", "p.tfplan"))
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Plan with a relative plan file: %v; want the plan made (and refused: it creates terraform_data.image)", err)
	}
	tftest.Terraform(t, dir, rc, "plan", "-out="+filepath.Join(dir, "fresh.tfplan"))
	if err := os.Rename(filepath.Join(dir, "fresh.tfplan"), filepath.Join("state", "fresh.tfplan")); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, filepath.Join("state", "fresh.tfplan")); err != nil {
		t.Fatalf("Apply of a relative plan file: %v", err)
	}
}

// TestRolloutStalePlanPutsVariableBack: a saved plan Terraform refuses as
// stale changed nothing, so the variable wsfleet plan set goes back to
// its value before (the folder agrees with what is deployed again).
func TestRolloutStalePlanPutsVariableBack(t *testing.T) {
	tftest.NeedTerraform(t)
	ctx := context.Background()
	dir := dataModule(t)
	rc := filepath.Join(t.TempDir(), "none.rc")
	tftest.Terraform(t, dir, rc, "apply", "-auto-approve")
	before, _ := os.ReadFile(filepath.Join(dir, "main.tf"))
	edit, err := SetVar(dir, "", "ami", "ami-new")
	if err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(t.TempDir(), "c.tfplan")
	tftest.Terraform(t, dir, rc, "plan", "-out="+planFile)
	tftest.Terraform(t, dir, rc, "apply", "-auto-approve", "-var", "ami=ami-other") // someone else's apply
	c := &Rollout{Runner: &Runner{Spec: Spec{Dir: dir, Var: "ami", Value: "ami-new"}, CLIConfig: rc},
		Record: &Record{Change: "c", PlanFile: planFile, Edit: edit}, Dir: t.TempDir()}
	if err := c.Apply(ctx); !errors.Is(err, ErrStalePlan) || !strings.Contains(err.Error(), "put back") {
		t.Fatalf("Apply of a stale plan: %v; want ErrStalePlan, the variable put back", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "main.tf")); string(after) != string(before) {
		t.Errorf("main.tf after a refused stale plan:\n%s\nwant\n%s", after, before)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"wsfleet/internal/tftest"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
	"wsfleet/terraform"
)

// tfFleet is examples/terraform applied to a local cloud: the seed's
// group gitter-ws of 8 simulated instances ws-01..ws-08 on ami-old, on a
// launch configuration Terraform owns.
type tfFleet struct {
	cloud    *tftest.Cloud
	rc       string // Terraform CLI config (the stand-in provider)
	dir      string // the module's copy
	stateDir string
	prov     *awsprov.Provider
}

const tfToken = "tf-e2e-admin-token"

func startTFFleet(t *testing.T, ctx context.Context) *tfFleet {
	return startTFModule(t, ctx, "")
}

// startTFModule is startTFFleet with examples/terraform/<sub>.
func startTFModule(t *testing.T, ctx context.Context, sub string) *tfFleet {
	t.Helper()
	tftest.NeedTerraform(t)
	f := &tfFleet{rc: tftest.CLIConfig(t), stateDir: t.TempDir()}
	t.Setenv("TF_CLI_CONFIG_FILE", f.rc)
	t.Setenv("WSFLEET_TF_E2E_TOKEN", tfToken)
	f.cloud = tftest.StartCloud(t, ctx)
	f.cloud.Token = tfToken
	f.dir = f.cloud.Module(t, sub)
	tftest.Terraform(t, f.dir, f.rc, "apply", "-auto-approve")
	var err error
	f.prov, err = awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: f.cloud.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	g := f.waitFleet(t, ctx, "ami-old", 8)
	var ids []string
	for _, in := range g.Instances {
		ids = append(ids, in.ID)
	}
	tftest.NameInstances(t, f.cloud.Endpoint(), ids)
	return f
}

// waitFleet waits until the group has n live instances, every one on
// image, in service and healthy, and returns it.
func (f *tfFleet) waitFleet(t *testing.T, ctx context.Context, image string, n int) rollout.Group {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		g, err := f.prov.Group(ctx, "gitter-ws")
		if err == nil {
			ok, live := 0, 0
			var s []string
			for _, in := range g.Instances {
				if !in.Live() {
					continue
				}
				live++
				s = append(s, in.ID+":"+in.Image+":"+in.Lifecycle+":"+in.Health)
				if in.Image == image && in.Lifecycle == "InService" && in.Health == "healthy" {
					ok++
				}
			}
			if ok == n && live == n {
				return g
			}
			last = strings.Join(s, " ")
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("group not %d healthy instances on %s: %s", n, image, last)
	return rollout.Group{}
}

// writePlan writes the seed's change through Terraform (as
// examples/gitter-ws-terraform.yaml, with the test's folder, cloud and
// shortened waits) with value as the new image, and extra checks.
func (f *tfFleet) writePlan(t *testing.T, change, value, checks string) string {
	t.Helper()
	plan := fmt.Sprintf(`change: %s
group: gitter-ws
image: {terraform: {dir: %s, var: ami, value: %s}}
aws: {region: us-east-1, endpoint: %s}
strategy: launch-before-terminate
warm_up: 1s
healthy_timeout: 6s
nodes: {admin_token_env: WSFLEET_TF_E2E_TOKEN}
drain: {window: 1s, max_rate: 2000, deadline: 3s}
%s
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 20s, deadline: 1m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 1m}
  - {name: second half, replace: rest, deadline: 1m}
rollback: {on_failure: auto}
`, change, f.dir, value, f.cloud.Endpoint(), checks)
	path := filepath.Join(t.TempDir(), change+".yaml")
	if err := os.WriteFile(path, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (f *tfFleet) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append(args, "--state-dir", f.stateDir), &out, &errOut)
	return code, out.String(), errOut.String()
}

// variable reads var.ami's default in the module's copy.
func (f *tfFleet) variable(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "variables.tf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "default") && strings.Contains(line, "ami-") {
			return strings.Trim(strings.TrimSpace(strings.SplitN(line, "=", 2)[1]), `"`)
		}
	}
	t.Fatal("var.ami default not found")
	return ""
}

// planned waits for the fleet on ami-old, writes the plan of change
// with value and runs `wsfleet plan` on it, which must succeed; it
// returns the group before and the plan file.
func (f *tfFleet) planned(t *testing.T, ctx context.Context, change, value string) (rollout.Group, string) {
	t.Helper()
	before := f.waitFleet(t, ctx, "ami-old", 8)
	plan := f.writePlan(t, change, value, "")
	if code, out, errOut := f.run(t, "plan", "-f", plan); code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errOut)
	}
	return before, plan
}

// reportNames asserts the change's report has a terraform line with want.
func (f *tfFleet) reportNames(t *testing.T, change, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.stateDir, change+".report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "terraform:") && strings.Contains(line, want) {
			return
		}
	}
	t.Errorf("report of %s has no terraform line with %q:\n%s", change, want, b)
}

// clean asserts `terraform plan` proposes no change (tfexec's Plan
// returns false).
func (f *tfFleet) clean(t *testing.T, ctx context.Context) {
	t.Helper()
	r := &terraform.Runner{Spec: terraform.Spec{Dir: f.dir, Var: "ami"}, CLIConfig: f.rc}
	ok, err := r.Clean(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		out, _ := tftest.Run(f.dir, f.rc, "plan")
		t.Fatalf("terraform plan proposes changes after the rollout:\n%s", out)
	}
}

// TestTerraformRollout is issue 14's Done-when for the terraform form on
// the local cloud, with Terraform v1.11.4 and the stand-in provider:
// plan shows Terraform's diff and the steps, rollout completes, and
// Terraform then agrees with the fleet; for the module on a launch
// configuration and its launch template variant.
func TestTerraformRollout(t *testing.T) {
	for _, tt := range []struct {
		name, sub string
		diff      []string
		onConfig  bool
	}{
		{name: "launch configuration", onConfig: true, diff: []string{
			"aws_autoscaling_group.ws: update in place (launch_configuration)",
			"aws_launch_configuration.ws: replace (create before destroy)",
		}},
		{name: "launch template", sub: "launch-template", diff: []string{
			"aws_autoscaling_group.ws: update in place (launch_template)",
			"aws_launch_template.ws: update in place (image_id, latest_version)",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) { testTerraformRollout(t, tt.sub, tt.diff, tt.onConfig) })
	}
}

func testTerraformRollout(t *testing.T, sub string, diff []string, onConfig bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	f := startTFModule(t, ctx, sub)
	before := f.waitFleet(t, ctx, "ami-old", 8)
	plan := f.writePlan(t, "tf-e2e", "ami-new", "")

	code, out, errOut := f.run(t, "plan", "-f", plan)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("wsfleet plan:\n%s%s", out, errOut)
	for _, want := range append(diff, `var.ami default "ami-old" -> "ami-new"`, "canary") {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	if f.variable(t) != "ami-new" {
		t.Errorf("var.ami default = %s after plan; want ami-new", f.variable(t))
	}

	code, out, errOut = f.run(t, "rollout", "-f", plan, "--time-scale", "0.01")
	if code != 0 {
		t.Fatalf("rollout: exit %d\n%s\n%s", code, out, errOut)
	}
	g := f.waitFleet(t, ctx, "ami-new", 8)
	if g.Template.IsLaunchConfig() != onConfig || g.Template.Same(before.Template) {
		t.Errorf("group on %+v after the rollout; want a new launch configuration or template version (was %+v)", g.Template, before.Template)
	}
	f.clean(t, ctx)
	code, out, _ = f.run(t, "status", "-c", "tf-e2e")
	t.Logf("wsfleet status:\n%s", out)
	if code != 0 || !strings.Contains(out, "terraform:") || !strings.Contains(out, "var.ami") {
		t.Errorf("status does not name the Terraform change (exit %d):\n%s", code, out)
	}
	f.reportNames(t, "tf-e2e", `var.ami default "ami-old" -> "ami-new"`)
	t.Logf("terraform rollout e2e in %s", time.Since(start).Round(time.Millisecond))
}

// TestTerraformPlanRefusesUnrelated: a terraform_data resource added to
// the folder makes plan refuse, naming it, before anything changes.
func TestTerraformPlanRefusesUnrelated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startTFFleet(t, ctx)
	main := filepath.Join(f.dir, "main.tf")
	b, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, append(b, []byte("\nresource \"terraform_data\" \"x\" {\n  input = \"unrelated\"\n}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := f.writePlan(t, "tf-refused", "ami-new", "")
	code, out, errOut := f.run(t, "plan", "-f", plan)
	if code == 0 || !strings.Contains(errOut, "terraform_data.x") || !strings.Contains(errOut, "refused") {
		t.Fatalf("plan with terraform_data.x: exit %d\n%s\n%s", code, out, errOut)
	}
	if v := f.variable(t); v != "ami-old" {
		t.Errorf("var.ami default = %s after a refused plan; want ami-old", v)
	}
	code, _, errOut = f.run(t, "rollout", "-f", plan, "--time-scale", "0.01")
	if code == 0 || !strings.Contains(errOut, "wsfleet plan") {
		t.Errorf("rollout after a refused plan: exit %d: %s", code, errOut)
	}
	f.waitFleet(t, ctx, "ami-old", 8)
}

// TestTerraformCanaryRollsBack: a canary that never becomes healthy
// rolls back through Terraform: the variable back, the group on a
// configuration with the old image, the old instances in service, and
// Terraform clean.
func TestTerraformCanaryRollsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := startTFFleet(t, ctx)
	before, plan := f.planned(t, ctx, "tf-bad", "ami-bad")
	code, out, errOut := f.run(t, "rollout", "-f", plan, "--time-scale", "0.01")
	if code == 0 {
		t.Fatalf("a canary that never became healthy did not fail the rollout\n%s", out)
	}
	code, status, _ := f.run(t, "status", "-c", "tf-bad")
	if !strings.Contains(status, string(rollout.StatusRolledBack)) || !strings.Contains(status, "reverted through Terraform") {
		t.Errorf("status after the rollback (exit %d):\n%s\nrollout stderr:\n%s", code, status, errOut)
	}
	if v := f.variable(t); v != "ami-old" {
		t.Errorf("var.ami default = %s after the rollback; want ami-old", v)
	}
	f.reportNames(t, "tf-bad", "reverted through Terraform")
	g := f.waitFleet(t, ctx, "ami-old", 8)
	var kept []string
	for _, in := range before.Instances {
		if got, ok := g.Instance(in.ID); ok && got.Live() {
			kept = append(kept, in.ID)
		}
	}
	if len(kept) != 8 {
		t.Errorf("old instances in service after the rollback: %d of 8 (%v)", len(kept), kept)
	}
	if g.Image != "ami-old" || !g.Template.IsLaunchConfig() {
		t.Errorf("group on %+v image %s after the rollback; want a launch configuration on ami-old", g.Template, g.Image)
	}
	f.clean(t, ctx)
}

// TestTerraformPlanBadInput: through `wsfleet plan`, a missing folder, an
// undeclared variable and an image the region lacks fail with a clear
// message before Terraform runs (the variable file unchanged).
func TestTerraformPlanBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startTFFleet(t, ctx)
	tests := []struct {
		name, edit, want string
	}{
		{name: "missing folder", edit: "dir: " + f.dir, want: "no such Terraform folder"},
		{name: "undeclared variable", edit: "var: ami,", want: `variable "image" is not declared`},
		{name: "missing image", edit: "value: ami-new}", want: `no image "ami-nope" exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := f.writePlan(t, "tf-bad-input", "ami-new", "")
			b, _ := os.ReadFile(path)
			repl := map[string]string{
				"dir: " + f.dir:   "dir: " + filepath.Join(f.dir, "nope"),
				"var: ami,":       "var: image,",
				"value: ami-new}": "value: ami-nope}",
			}[tt.edit]
			if err := os.WriteFile(path, []byte(strings.Replace(string(b), tt.edit, repl, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := f.run(t, "plan", "-f", path)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d; stderr %q, want %q\n%s", code, errOut, tt.want, out)
			}
			if v := f.variable(t); v != "ami-old" {
				t.Errorf("var.ami default = %s; want ami-old", v)
			}
		})
	}
}

// TestTerraformStalePlan: someone applies in the folder between `wsfleet
// plan` and `wsfleet rollout`: Terraform refuses the saved plan, the
// rollout stops saying so, the variable is put back, and no instance
// was replaced.
func TestTerraformStalePlan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startTFFleet(t, ctx)
	before, plan := f.planned(t, ctx, "tf-stale", "ami-new")
	tftest.Terraform(t, f.dir, f.rc, "apply", "-auto-approve", "-var", "ami=ami-old", "-var", "instance_type=c5.xlarge")
	code, out, errOut := f.run(t, "rollout", "-f", plan, "--time-scale", "0.01")
	if code == 0 || !strings.Contains(out+errOut, "saved plan is stale") || !strings.Contains(out+errOut, "run wsfleet plan again") {
		t.Fatalf("rollout of a stale plan: exit %d\n%s\n%s", code, out, errOut)
	}
	if v := f.variable(t); v != "ami-old" {
		t.Errorf("var.ami default = %s after Terraform refused the stale plan; want ami-old (put back)", v)
	}
	g := f.waitFleet(t, ctx, "ami-old", 8)
	for _, in := range before.Instances {
		if got, ok := g.Instance(in.ID); !ok || !got.Live() {
			t.Errorf("instance %s replaced after a refused apply", in.ID)
		}
	}
}

// TestTerraformPlanDrift: the live group changed outside Terraform. A
// drifted desired capacity (which Terraform's plan would put back) makes
// `plan` refuse, naming the drift; a group moved to another launch
// configuration by hand (which the image change replaces anyway) is
// planned, with a warning naming the drifted attribute.
func TestTerraformPlanDrift(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := startTFFleet(t, ctx)
	asg := f.cloud.ASG()
	if _, err := asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("gitter-ws"), DesiredCapacity: aws.Int32(9)}); err != nil {
		t.Fatal(err)
	}
	plan := f.writePlan(t, "tf-drift", "ami-new", "")
	code, out, errOut := f.run(t, "plan", "-f", plan)
	if code == 0 || !strings.Contains(errOut, "drift: aws_autoscaling_group.ws changed outside Terraform since its last apply (desired_capacity)") {
		t.Fatalf("plan with a drifted desired capacity: exit %d\n%s\n%s", code, out, errOut)
	}
	if v := f.variable(t); v != "ami-old" {
		t.Errorf("var.ami default = %s after a refused plan; want ami-old", v)
	}
	if _, err := asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("gitter-ws"), DesiredCapacity: aws.Int32(8)}); err != nil {
		t.Fatal(err)
	}
	g := f.waitFleet(t, ctx, "ami-old", 8)
	var ids []string
	for _, in := range g.Instances {
		if in.Live() {
			ids = append(ids, in.ID)
		}
	}
	tftest.NameInstances(t, f.cloud.Endpoint(), ids) // the scale-in took one of ws-01..ws-08

	if _, err := asg.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{
		LaunchConfigurationName: aws.String("gitter-ws-by-hand"), ImageId: aws.String("ami-old"), InstanceType: aws.String("c5.large")}); err != nil {
		t.Fatal(err)
	}
	if _, err := asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("gitter-ws"), LaunchConfigurationName: aws.String("gitter-ws-by-hand")}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = f.run(t, "plan", "-f", plan)
	want := "warning: drift: aws_autoscaling_group.ws changed outside Terraform since its last apply (launch_configuration): the live group differs from Terraform's state"
	if code != 0 || !strings.Contains(errOut, want) {
		t.Fatalf("plan with the group on a launch configuration set by hand: exit %d; want 0 and %q\n%s\n%s", code, want, out, errOut)
	}
}

// TestTerraformPlanAgainOtherValue: `wsfleet plan` run again for the same
// change with another value (the first one was a typo) keeps, as the
// value a rollback sets back, the one before the first plan: the value
// the first plan set was never applied, and a rollback to it would move
// the group to an image it never ran.
func TestTerraformPlanAgainOtherValue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startTFFleet(t, ctx)
	f.planned(t, ctx, "tf-twice", "ami-bad")
	plan := f.writePlan(t, "tf-twice", "ami-new", "")
	if code, out, errOut := f.run(t, "plan", "-f", plan); code != 0 {
		t.Fatalf("plan again: exit %d\n%s\n%s", code, out, errOut)
	}
	rec, err := terraform.LoadRecord(filepath.Join(f.stateDir, "terraform"), "tf-twice")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Edit.Old != "ami-old" || !rec.Edit.HadOld || rec.Edit.New != "ami-new" {
		t.Errorf("record's edit after planning again: %+v; want ami-old -> ami-new", rec.Edit)
	}
}

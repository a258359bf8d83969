package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"wsfleet/internal/tftest"
	"wsfleet/terraform"
)

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

package terraform

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"wsfleet/internal/tftest"
)

// planFixture is a saved plan's JSON (`terraform show -json`) kept under
// testdata/plans, made by TestMakePlanFixtures with the real Terraform.
const plansDir = "testdata/plans"

// TestMakePlanFixtures regenerates testdata/plans/*.json with the real
// Terraform, the stand-in provider and a local cloud, when
// WSFLEET_TF_FIXTURES=1 (it is not part of the suite: the fixtures are
// committed, and TestCheckFixtures reads them).
//
// The provider addresses' host name is left out of the files
// (provider_name, full_name): the check does not read it.
func TestMakePlanFixtures(t *testing.T) {
	if os.Getenv("WSFLEET_TF_FIXTURES") != "1" {
		t.Skip("set WSFLEET_TF_FIXTURES=1 to regenerate testdata/plans with the real Terraform")
	}
	tftest.NeedTerraform(t)
	ctx := context.Background()
	rc := tftest.CLIConfig(t)
	save := func(dir, name string, args ...string) {
		t.Helper()
		plan := filepath.Join(dir, "fixture.tfplan")
		tftest.Terraform(t, dir, rc, append([]string{"plan", "-out=" + plan}, args...)...)
		out := tftest.Terraform(t, dir, rc, "show", "-json", plan)
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := json.MarshalIndent(scrub(v), "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(plansDir, name+".json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit := func(path, old, new string) (undo func()) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s: %q not found", path, old)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return func() { os.WriteFile(path, b, 0o644) }
	}
	setDesired := func(asg *autoscaling.Client, n int32) {
		if _, err := asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("gitter-ws"), DesiredCapacity: aws.Int32(n)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []struct{ prefix, sub string }{{"lt", "launch-template"}, {"lc", ""}} {
		if os.Getenv("WSFLEET_TF_FIXTURES_ONLY") != "" && os.Getenv("WSFLEET_TF_FIXTURES_ONLY") != v.prefix {
			continue
		}
		cloud := tftest.StartCloud(t, ctx) // a cloud each: the group has one name
		asg := cloud.ASG()
		dir := cloud.Module(t, v.sub)
		tftest.Terraform(t, dir, rc, "apply", "-auto-approve")
		save(dir, v.prefix+"-noop")
		save(dir, v.prefix+"-image", "-var", "ami=ami-new")
		undo := edit(filepath.Join(dir, "main.tf"), "resource \"aws_autoscaling_group\"", "resource \"terraform_data\" \"x\" {\n  input = \"unrelated\"\n}\n\nresource \"aws_autoscaling_group\"")
		save(dir, v.prefix+"-terraform-data", "-var", "ami=ami-new")
		undo()
		undo = edit(filepath.Join(dir, "main.tf"), "value               = \"gitter-ws\"", "value               = \"gitter-ws-2\"")
		save(dir, v.prefix+"-tag", "-var", "ami=ami-new")
		undo()
		setDesired(asg, 9)
		save(dir, v.prefix+"-drift", "-var", "ami=ami-new")
		setDesired(asg, 8)
		if v.prefix == "lc" {
			undo = edit(filepath.Join(dir, "main.tf"), "create_before_destroy = true", "create_before_destroy = false")
			save(dir, v.prefix+"-no-cbd", "-var", "ami=ami-new")
			undo()
		}
	}
}

// scrub drops the provider addresses (with their registry host name)
// from a plan's JSON.
func scrub(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k := range x {
			if k == "provider_name" || k == "full_name" {
				delete(x, k)
				continue
			}
			x[k] = scrub(x[k])
		}
	case []any:
		for i := range x {
			x[i] = scrub(x[i])
		}
	}
	return v
}

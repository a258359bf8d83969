package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestPlanImageForms parses the three forms of the plan's image key and
// the mistakes in each, each error naming the key.
func TestPlanImageForms(t *testing.T) {
	base := "change: c\ngroup: g\nphases:\n  - {name: a, replace: rest}\n"
	cases := []struct {
		name  string
		image string
		want  Image
		err   []string
	}{
		{"ami", "image: ami-0abc", Image{AMI: "ami-0abc"}, nil},
		{"current", "image: current", Image{Current: true}, nil},
		{"terraform", "image: {terraform: {dir: infra/ws, var: ami, value: ami-0new, var_file: prod.tfvars, workspace: prod, bin: /usr/local/bin/terraform}}",
			Image{Terraform: &TerraformImage{Dir: "infra/ws", Var: "ami", Value: "ami-0new", VarFile: "prod.tfvars", Workspace: "prod", Bin: "/usr/local/bin/terraform"}}, nil},
		{"terraform block", "image:\n  terraform:\n    dir: infra/ws\n    var: ami\n    value: ami-0new", Image{Terraform: &TerraformImage{Dir: "infra/ws", Var: "ami", Value: "ami-0new"}}, nil},
		{"missing", "", Image{}, []string{"image: missing"}},
		{"terraform unknown key", "image: {terraform: {dir: d, var: v, value: x, varfile: f}}", Image{}, []string{"image: terraform.varfile: unknown key", `did you mean "var_file"`}},
		{"terraform missing keys", "image: {terraform: {dir: d}}", Image{}, []string{"terraform.var: missing", "terraform.value: missing"}},
		{"terraform not a mapping", "image: {terraform: x}", Image{}, []string{"image: terraform: want a mapping"}},
		{"other mapping", "image: {packer: x}", Image{}, []string{"mapping with keys packer", "{terraform:"}},
		{"list", "image: [a, b]", Image{}, []string{"image: want an AMI id"}},
		{"terraform number", "image: {terraform: {dir: d, var: v, value: [1]}}", Image{}, []string{"terraform.value: want a string"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePlan([]byte(base + tc.image + "\n"))
			if tc.err != nil {
				if err == nil || !errors.Is(err, ErrInvalidPlan) {
					t.Fatalf("err %v, want a plan error with %q", err, tc.err)
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(p.Image)
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Fatalf("image %s, want %s", got, want)
			}
			var back Image
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if again, _ := json.Marshal(back); string(again) != string(got) {
				t.Errorf("JSON round trip %s -> %s", got, again)
			}
		})
	}
}

// TestTerraformFormCompiles: the terraform form compiles to the same
// steps as an AMI, the variable's value being the image new instances
// run; an engine given no Terraform change refuses it before any change.
func TestTerraformFormCompiles(t *testing.T) {
	yaml := []byte("change: c\ngroup: g\nimage: {terraform: {dir: d, var: v, value: ami-1}}\nphases:\n  - {name: a, replace: rest}\n")
	p, err := ParsePlan(yaml)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Compile(p, Group{Name: "g", Image: "ami-0", Instances: []Instance{{ID: "i-1", Name: "ws-01", Image: "ami-0", Lifecycle: "InService"}}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if len(steps) < 2 || steps[1].Kind != StepSetImage || steps[1].Image != "ami-1" {
		t.Fatalf("steps = %+v; want set-image to ami-1 second", steps)
	}
	e := &Engine{}
	if _, err := e.Start(context.Background(), yaml); !errors.Is(err, ErrNoTerraform) {
		t.Fatalf("Start without Terraform: %v; want ErrNoTerraform", err)
	}
}

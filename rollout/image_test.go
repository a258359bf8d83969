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

// TestCurrentForm compiles `image: current` against a group on a launch
// configuration: the old instances are those launched from another
// configuration, whatever their image; the plan names what the rollback
// goes back to and the Terraform change to revert; and the bad cases are
// refused before anything changes.
func TestCurrentForm(t *testing.T) {
	lc := func(n string) TemplateRef { return TemplateRef{LaunchConfig: n} }
	inst := func(id, name, image string, from TemplateRef) Instance {
		return Instance{ID: id, Name: name, Image: image, Lifecycle: "InService", Launch: from}
	}
	plan := func(extra string) *Plan {
		p, err := ParsePlan([]byte("change: c1\ngroup: g\nimage: current\n" + extra + "phases:\n  - {name: a, replace: rest}\nrollback: {on_failure: auto}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	g := Group{Name: "g", Desired: 3, Max: 6, Template: lc("tf2"), Image: "ami-2", Instances: []Instance{
		inst("i-1", "ws-01", "ami-1", lc("tf1")),
		inst("i-2", "ws-02", "ami-2", lc("tf1b")), // the same image as the target, another configuration: old
		inst("i-3", "ws-03", "ami-1", lc("tf1")),
		inst("i-4", "ws-04", "ami-2", lc("tf2")), // already current
	}}
	g.Desired = 4
	p := plan("terraform_change: MR 137\n")
	steps, err := Compile(p, g)
	if err != nil {
		t.Fatal(err)
	}
	if b := steps[2]; b.Kind != StepBatch || strings.Join(b.TargetNames, ",") != "ws-01,ws-02,ws-03" || b.Ref == nil || *b.Ref != lc("tf2") {
		t.Errorf("batch %+v, want ws-01..03 replaced from tf2", b)
	}
	tc, err := currentChange(p, g)
	if err != nil || tc.Previous != lc("tf1") || tc.PreviousImage != "ami-1" || tc.New != lc("tf2") || tc.NewImage != "ami-2" || !tc.Current {
		t.Errorf("currentChange %+v %v: want tf1 (most old instances) -> tf2", tc, err)
	}
	var out strings.Builder
	RenderPlan(&out, p, g, steps)
	for _, want := range []string{
		"now on launch configuration tf2 (image ami-2); image current",
		"3 old instances to cycle, most launched from launch configuration tf1 (image ami-1)",
		"on failure: roll back at once: launch configuration back to tf1, every tf2 instance replaced by one on ami-1",
		"revert the Terraform change too (MR 137)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	st := &State{Status: StatusRolledBack, Template: &TemplateChange{Previous: lc("tf1"), New: lc("tf2"), Current: true}}
	if line := st.Template.outsideLine(st); !strings.Contains(line, "revert the Terraform change too (the change that set the group's launch configuration to tf2)") {
		t.Errorf("without terraform_change: %q", line)
	}

	for _, tc := range []struct {
		name string
		g    Group
		want string
	}{
		{"every instance current", Group{Name: "g", Template: lc("tf2"), Image: "ami-2", Instances: []Instance{inst("i-4", "ws-04", "ami-2", lc("tf2"))}},
			"every live instance of group g already runs its current launch configuration tf2; nothing to do"},
		{"instances that do not say", Group{Name: "g", Template: lc("tf2"), Image: "ami-2", Instances: []Instance{inst("i-1", "ws-01", "ami-1", TemplateRef{})}},
			"instance ws-01 (i-1) does not say which launch template or configuration it was launched from"},
		{"group on nothing", Group{Name: "g", Instances: []Instance{inst("i-1", "ws-01", "ami-1", lc("x"))}},
			"group g has neither a launch template nor a launch configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(plan(""), tc.g); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("compile: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRunsByLaunchReference: image: current tells instances by their
// launch configuration or template version, and by image only when an
// instance's version is a spec ($Latest) rather than a number.
func TestRunsByLaunchReference(t *testing.T) {
	lt := func(v string) TemplateRef { return TemplateRef{ID: "lt-1", Version: v} }
	lc := TemplateRef{LaunchConfig: "tf2"}
	for _, tc := range []struct {
		name  string
		in    Instance
		image string
		ref   *TemplateRef
		want  bool
	}{
		{"ami form: by image", Instance{Image: "ami-2", Launch: lt("1")}, "ami-2", nil, true},
		{"same configuration", Instance{Image: "ami-1", Launch: lc}, "ami-2", &lc, true},
		{"other configuration, same image", Instance{Image: "ami-2", Launch: TemplateRef{LaunchConfig: "tf1"}}, "ami-2", &lc, false},
		{"same version", Instance{Image: "ami-2", Launch: lt("2")}, "ami-2", &TemplateRef{ID: "lt-1", Version: "2"}, true},
		{"other version, same image", Instance{Image: "ami-2", Launch: lt("1")}, "ami-2", &TemplateRef{ID: "lt-1", Version: "2"}, false},
		{"version spec: by image", Instance{Image: "ami-2", Launch: lt("$Latest")}, "ami-2", &TemplateRef{ID: "lt-1", Version: "2"}, true},
		{"template instance, configuration group", Instance{Image: "ami-2", Launch: lt("2")}, "ami-2", &lc, false},
	} {
		if got := runs(tc.in, tc.image, tc.ref); got != tc.want {
			t.Errorf("%s: runs = %v, want %v", tc.name, got, tc.want)
		}
	}
}

package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Image is the plan's `image` key: what the change brings in. It takes
// one of three forms:
//
//   - `image: ami-…` (AMI): wsfleet makes the new launch template version,
//     or for a group on a launch configuration a copy of it with the new
//     image, and points the group at it.
//   - `image: current` (Current): the group already runs what it should
//     (a `terraform apply` made elsewhere set its launch template version
//     or launch configuration); every instance not launched from it is
//     cycled.
//   - `image: {terraform: {dir, var, value, …}}` (Terraform): wsfleet
//     makes the change through Terraform.
type Image struct {
	AMI       string
	Current   bool
	Terraform *TerraformImage
}

// TerraformImage is the `{terraform: {...}}` form of the plan's image:
// the Terraform folder that owns the group, and the variable to set.
type TerraformImage struct {
	Dir       string `yaml:"dir" json:"dir"`
	Var       string `yaml:"var" json:"var"`
	Value     string `yaml:"value" json:"value"`
	Bin       string `yaml:"bin" json:"bin,omitempty"`
	Workspace string `yaml:"workspace" json:"workspace,omitempty"`
	VarFile   string `yaml:"var_file" json:"var_file,omitempty"`
}

// imageCurrent is the `image: current` keyword.
const imageCurrent = "current"

// terraformKeys are the keys of the terraform form's mapping.
var terraformKeys = []string{"bin", "dir", "value", "var", "var_file", "workspace"}

// UnmarshalYAML accepts an AMI id, "current", or a {terraform: {...}}
// mapping whose keys are checked here (unknown or non-string values are
// errors naming the key).
func (im *Image) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		s = strings.TrimSpace(s)
		switch {
		case s == imageCurrent:
			*im = Image{Current: true}
		default:
			*im = Image{AMI: s}
		}
		return nil
	}
	var m map[string]any
	if err := unmarshal(&m); err != nil {
		return errors.New("want an AMI id (ami-…), current, or {terraform: {dir: …, var: …, value: …}}")
	}
	tf, ok := m["terraform"]
	if !ok || len(m) != 1 {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Errorf("mapping with keys %s; the only mapping form is {terraform: {dir: …, var: …, value: …}}", strings.Join(keys, ", "))
	}
	tm, ok := tf.(map[string]any)
	if !ok {
		return errors.New("terraform: want a mapping with dir, var and value (and optionally bin, workspace, var_file)")
	}
	var t TerraformImage
	fields := map[string]*string{"dir": &t.Dir, "var": &t.Var, "value": &t.Value, "bin": &t.Bin, "workspace": &t.Workspace, "var_file": &t.VarFile}
	keys := make([]string, 0, len(tm))
	for k := range tm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []string
	for _, k := range keys {
		dst, ok := fields[k]
		if !ok {
			hint := "valid keys: " + strings.Join(terraformKeys, ", ")
			if c := closest(k, terraformKeys); c != "" {
				hint = fmt.Sprintf("did you mean %q? %s", c, hint)
			}
			errs = append(errs, fmt.Sprintf("terraform.%s: unknown key; %s", k, hint))
			continue
		}
		switch v := tm[k].(type) {
		case string:
			*dst = strings.TrimSpace(v)
		case nil:
		default:
			errs = append(errs, fmt.Sprintf("terraform.%s: want a string, got %v", k, v))
		}
	}
	for _, k := range []string{"dir", "var", "value"} {
		if *fields[k] == "" && !slices.ContainsFunc(errs, func(e string) bool { return strings.HasPrefix(e, "terraform."+k+":") }) {
			errs = append(errs, fmt.Sprintf("terraform.%s: missing", k))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	*im = Image{Terraform: &t}
	return nil
}

// IsZero reports whether no image was given.
func (im Image) IsZero() bool { return im.AMI == "" && !im.Current && im.Terraform == nil }

// String renders the image as the plan writes it (the terraform form
// shortened to its folder and variable).
func (im Image) String() string {
	switch {
	case im.Current:
		return imageCurrent
	case im.Terraform != nil:
		return fmt.Sprintf("terraform %s: %s = %q", im.Terraform.Dir, im.Terraform.Var, im.Terraform.Value)
	}
	return im.AMI
}

// MarshalJSON writes the AMI and current forms as the string the plan
// gives, and the terraform form as {"terraform": {...}}.
func (im Image) MarshalJSON() ([]byte, error) {
	if im.Terraform != nil {
		return json.Marshal(map[string]*TerraformImage{"terraform": im.Terraform})
	}
	return json.Marshal(im.String())
}

// UnmarshalJSON reads what MarshalJSON writes.
func (im *Image) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		if s == imageCurrent {
			*im = Image{Current: true}
		} else {
			*im = Image{AMI: s}
		}
		return nil
	}
	var m struct {
		Terraform *TerraformImage `json:"terraform"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if m.Terraform == nil {
		return errors.New("image: want a string or {\"terraform\": {...}}")
	}
	*im = Image{Terraform: m.Terraform}
	return nil
}

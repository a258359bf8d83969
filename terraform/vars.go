// Package terraform runs a fleet change through the Terraform
// configuration that owns the group: it sets one input variable (the
// image) with hclwrite, keeping the file's comments and layout, runs
// `terraform plan -out` through terraform-exec, reads the saved plan with
// terraform-json, refuses a plan that changes anything but the group's
// launch configuration or template and the group's reference to it, and
// applies exactly that saved plan.
package terraform

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// VarEdit is one variable's value set in one file: what SetVar did, and
// what Revert undoes.
type VarEdit struct {
	Dir  string `json:"dir"`
	File string `json:"file"` // the file changed, relative to Dir
	Name string `json:"name"`
	// InDefault is true when the edit is the variable block's default,
	// false when it is an assignment in a .tfvars file.
	InDefault bool `json:"in_default"`
	// Old is the value before; HadOld is false when the file had none
	// (Revert then removes the assignment or default again).
	Old    string `json:"old"`
	HadOld bool   `json:"had_old"`
	New    string `json:"new"`
}

// String names the edit for logs, the report and status.
func (e VarEdit) String() string {
	old := e.Old
	if !e.HadOld {
		old = "(unset)"
	}
	where := "tfvars"
	if e.InDefault {
		where = "default"
	}
	return fmt.Sprintf("%s: var.%s %s %q -> %q", filepath.Join(e.Dir, e.File), e.Name, where, old, e.New)
}

// SetVar sets the input variable name to value for the configuration in
// dir. With varFile (relative to dir, or absolute) the assignment goes in
// that .tfvars file, which must exist; without it, in the .tfvars file
// Terraform loads by itself that already assigns the variable
// (terraform.tfvars, then *.auto.tfvars), else in the `default` of the
// variable's block. Everything else in the file stays as it was. The
// variable must be declared in dir's .tf files.
func SetVar(dir, varFile, name, value string) (VarEdit, error) {
	e := VarEdit{Dir: dir, Name: name, New: value}
	if err := checkDir(dir); err != nil {
		return e, err
	}
	declFile, err := findDeclaration(dir, name)
	if err != nil {
		return e, err
	}
	if varFile == "" {
		varFile, err = autoVarFile(dir, name)
		if err != nil {
			return e, err
		}
	}
	if varFile == "" {
		e.File, e.InDefault = declFile, true
		return e, editFile(dir, declFile, func(f *hclwrite.File) error {
			b := variableBlock(f, name)
			if b == nil {
				return fmt.Errorf("variable %q: block not found in %s", name, declFile)
			}
			old, had, err := literalString(b.Body(), "default")
			if err != nil {
				return fmt.Errorf("variable %q default: %w", name, err)
			}
			e.Old, e.HadOld = old, had
			b.Body().SetAttributeValue("default", cty.StringVal(value))
			return nil
		})
	}
	e.File = varFile
	if strings.HasSuffix(varFile, ".json") {
		return e, fmt.Errorf("var file %s: JSON variable files are not edited; use a .tfvars file", varFile)
	}
	vf := varFile
	if !filepath.IsAbs(vf) {
		vf = filepath.Join(dir, vf)
	}
	if _, err := os.Stat(vf); err != nil {
		return e, fmt.Errorf("var file %s: %w (image.terraform.var_file must name an existing .tfvars file)", varFile, err)
	}
	return e, editFile(dir, varFile, func(f *hclwrite.File) error {
		old, had, err := literalString(f.Body(), name)
		if err != nil {
			return fmt.Errorf("%s: variable %q: %w", varFile, name, err)
		}
		e.Old, e.HadOld = old, had
		if !had && endsWithComment(f.Body()) {
			// a blank line first: a comment right above the new line
			// would become its own, and go with it on Revert
			f.Body().AppendNewline()
		}
		f.Body().SetAttributeValue(name, cty.StringVal(value))
		return nil
	})
}

// Revert puts back the value the edit replaced (or removes the
// assignment or default when there was none), leaving the rest of the
// file as it is now.
func (e VarEdit) Revert() error {
	return editFile(e.Dir, e.File, func(f *hclwrite.File) error {
		body, attr := f.Body(), e.Name
		if e.InDefault {
			b := variableBlock(f, e.Name)
			if b == nil {
				return fmt.Errorf("variable %q: block not found in %s", e.Name, e.File)
			}
			body, attr = b.Body(), "default"
		}
		if e.HadOld {
			body.SetAttributeValue(attr, cty.StringVal(e.Old))
		} else {
			body.RemoveAttribute(attr)
		}
		return nil
	})
}

// ErrNoDir is returned when the Terraform folder does not exist.
var ErrNoDir = errors.New("no such Terraform folder")

func checkDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("terraform dir: empty; give image.terraform.dir")
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("terraform dir %s: %w", dir, ErrNoDir)
	}
	return nil
}

// findDeclaration returns the .tf file of dir that declares variable
// name, or an error naming the variables that are declared.
func findDeclaration(dir, name string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return "", fmt.Errorf("list %s: %w", dir, err)
	}
	if len(files) == 0 {
		return "", fmt.Errorf("terraform dir %s: no .tf files", dir)
	}
	sort.Strings(files)
	var declared []string
	for _, path := range files {
		f, err := parseFile(path)
		if err != nil {
			return "", err
		}
		for _, b := range f.Body().Blocks() {
			if b.Type() != "variable" || len(b.Labels()) != 1 {
				continue
			}
			if b.Labels()[0] == name {
				return filepath.Base(path), nil
			}
			declared = append(declared, b.Labels()[0])
		}
	}
	return "", fmt.Errorf("variable %q is not declared in %s (declared: %s)", name, dir, strings.Join(declared, ", "))
}

// autoVarFile returns the variable file Terraform loads by itself that
// assigns name and wins (terraform.tfvars, then *.auto.tfvars in lexical
// order, the last one winning), or "" when none does.
func autoVarFile(dir, name string) (string, error) {
	candidates := []string{}
	if _, err := os.Stat(filepath.Join(dir, "terraform.tfvars")); err == nil {
		candidates = append(candidates, "terraform.tfvars")
	}
	auto, err := filepath.Glob(filepath.Join(dir, "*.auto.tfvars"))
	if err != nil {
		return "", fmt.Errorf("list %s: %w", dir, err)
	}
	sort.Strings(auto)
	for _, a := range auto {
		candidates = append(candidates, filepath.Base(a))
	}
	for _, j := range []string{"terraform.tfvars.json"} {
		if _, err := os.Stat(filepath.Join(dir, j)); err == nil {
			return "", fmt.Errorf("%s: JSON variable files are not edited; use terraform.tfvars", j)
		}
	}
	winner := ""
	for _, c := range candidates {
		f, err := parseFile(filepath.Join(dir, c))
		if err != nil {
			return "", err
		}
		if f.Body().GetAttribute(name) != nil {
			winner = c
		}
	}
	return winner, nil
}

func parseFile(path string) (*hclwrite.File, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	f, diags := hclwrite.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse %s: %w", path, diags)
	}
	return f, nil
}

// editFile applies edit to dir/name (an empty file when it does not
// exist yet) and writes it back in place, keeping its mode; a link is
// followed, so that the file it points at changes and the link stays.
func editFile(dir, name string, edit func(*hclwrite.File) error) error {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, name)
	}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	mode := os.FileMode(0o644)
	var f *hclwrite.File
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
		if f, err = parseFile(path); err != nil {
			return err
		}
	} else if errors.Is(err, os.ErrNotExist) {
		f = hclwrite.NewEmptyFile()
	} else {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if err := edit(f); err != nil {
		return err
	}
	tmp := path + ".wsfleet-tmp"
	if err := os.WriteFile(tmp, f.Bytes(), mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// endsWithComment reports whether the last thing in body is a comment.
func endsWithComment(body *hclwrite.Body) bool {
	toks := body.BuildTokens(nil)
	for i := len(toks) - 1; i >= 0; i-- {
		switch toks[i].Type {
		case hclsyntax.TokenNewline:
			continue
		case hclsyntax.TokenComment:
			return true
		}
		return false
	}
	return false
}

func variableBlock(f *hclwrite.File, name string) *hclwrite.Block {
	return f.Body().FirstMatchingBlock("variable", []string{name})
}

// literalString reads attribute name of body as a string literal: the
// value, whether it was there, and an error when it is an expression
// wsfleet cannot replace safely (a reference, a function call).
func literalString(body *hclwrite.Body, name string) (string, bool, error) {
	a := body.GetAttribute(name)
	if a == nil {
		return "", false, nil
	}
	src := a.Expr().BuildTokens(nil).Bytes()
	expr, diags := hclsyntax.ParseExpression(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return "", true, fmt.Errorf("parse value: %w", diags)
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return "", true, fmt.Errorf("value %s is not a string literal", strings.TrimSpace(string(src)))
	}
	return v.AsString(), true, nil
}

package terraform

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyCase copies testdata/vars/<name> (without want/) to a temporary
// folder and returns it.
func copyCase(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("testdata", "vars", name)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// readDir returns every file of dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestSetVar edits each fixture folder and compares every file with
// want/: only the value changes, comments and layout stay. Revert then
// gives back the files byte for byte.
func TestSetVar(t *testing.T) {
	const value = "ami-0123456789abcdef0"
	tests := []struct {
		name, varFile string
		file          string
		inDefault     bool
		old           string
		hadOld        bool
	}{
		{name: "default", file: "variables.tf", inDefault: true, old: "ami-old", hadOld: true},
		{name: "tfvars", varFile: "prod.tfvars", file: "prod.tfvars", old: "ami-old", hadOld: true},
		{name: "default-added", file: "main.tf", inDefault: true},
		{name: "auto-tfvars", file: "prod.auto.tfvars", old: "ami-old", hadOld: true},
		{name: "var-file", varFile: "prod.tfvars", file: "prod.tfvars"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyCase(t, tt.name)
			before := readDir(t, dir)
			e, err := SetVar(dir, tt.varFile, "ami", value)
			if err != nil {
				t.Fatal(err)
			}
			if e.File != tt.file || e.InDefault != tt.inDefault || e.Old != tt.old || e.HadOld != tt.hadOld || e.New != value {
				t.Errorf("edit = %+v; want file %s, in default %v, old %q (had %v)", e, tt.file, tt.inDefault, tt.old, tt.hadOld)
			}
			want := readDir(t, filepath.Join("testdata", "vars", tt.name, "want"))
			got := readDir(t, dir)
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s after the edit:\n%s\nwant:\n%s", name, got[name], w)
				}
			}
			if err := e.Revert(); err != nil {
				t.Fatal(err)
			}
			after := readDir(t, dir)
			for name, b := range before {
				if after[name] != b {
					t.Errorf("%s after Revert:\n%s\nwant the original:\n%s", name, after[name], b)
				}
			}
		})
	}
}

// TestSetVarThroughLink: a variable file that is a link is edited where
// it points, and the link stays a link.
func TestSetVarThroughLink(t *testing.T) {
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared.tf")
	if err := os.WriteFile(shared, []byte("variable \"ami\" {\n  default = \"ami-old\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "mod")
	if err := os.Mkdir(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../shared.tf", filepath.Join(mod, "variables.tf")); err != nil {
		t.Fatal(err)
	}
	if _, err := SetVar(mod, "", "ami", "ami-new"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(filepath.Join(mod, "variables.tf")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("variables.tf is no longer a link: %v", err)
	}
	if b, _ := os.ReadFile(shared); !strings.Contains(string(b), `"ami-new"`) {
		t.Errorf("shared.tf = %s", b)
	}
}

// TestSetVarErrors: bad input fails with a clear error and changes
// nothing.
func TestSetVarErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		dir     string // overrides the temporary folder
		varFile string
		want    string
		is      error
	}{
		{name: "missing folder", dir: "/nonexistent/wsfleet-tf", want: "no such Terraform folder", is: ErrNoDir},
		{name: "no .tf files", files: map[string]string{"README": "x"}, want: "no .tf files"},
		{name: "undeclared", files: map[string]string{"v.tf": "variable \"image\" {}\n"}, want: `variable "ami" is not declared`},
		{name: "default is an expression", files: map[string]string{"v.tf": "variable \"ami\" {\n  default = lower(\"AMI-X\")\n}\n"}, want: "not a string literal"},
		{name: "tfvars is a reference", files: map[string]string{"v.tf": "variable \"ami\" {}\n", "x.tfvars": "ami = local.x\n"}, varFile: "x.tfvars", want: "not a string literal"},
		{name: "missing var file", files: map[string]string{"v.tf": "variable \"ami\" {}\n"}, varFile: "prod.tfvars", want: "must name an existing .tfvars file"},
		{name: "json tfvars", files: map[string]string{"v.tf": "variable \"ami\" {}\n", "terraform.tfvars.json": "{}"}, want: "JSON variable files are not edited"},
		{name: "syntax error", files: map[string]string{"v.tf": "variable \"ami\" {\n"}, want: "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir == "" {
				dir = t.TempDir()
				for n, c := range tt.files {
					if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			_, err := SetVar(dir, tt.varFile, "ami", "ami-new")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want one containing %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v; want errors.Is %v", err, tt.is)
			}
			if tt.dir == "" {
				got := readDir(t, dir)
				for n, c := range tt.files {
					if got[n] != c {
						t.Errorf("%s changed to %q", n, got[n])
					}
				}
			}
		})
	}
}

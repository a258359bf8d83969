// Package scripts holds no code: its test checks that scripts/fuzz.sh,
// which `make fuzz` runs, finds every fuzz target in the module.
package scripts

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFuzzScriptFindsEveryTarget lists the fuzz targets as the Go parser
// sees them, every func FuzzXxx(*testing.F) in a _test.go file of the
// module, and fails if `fuzz.sh -l` lists other ones: a target the script
// misses would never be fuzzed.
func TestFuzzScriptFindsEveryTarget(t *testing.T) {
	out, err := exec.Command("bash", "fuzz.sh", "-l").Output()
	if err != nil {
		t.Fatalf("fuzz.sh -l: %v", err)
	}
	listed := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := parsedTargets(t, "..")
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("the parser found no fuzz target: the walk is broken")
	}
	if !slices.Equal(listed, want) {
		t.Errorf("fuzz.sh -l lists\n  %s\nthe code has\n  %s", strings.Join(listed, "\n  "), strings.Join(want, "\n  "))
	}
}

// parsedTargets returns "./pkg Name" for every fuzz target under root,
// skipping what the go command skips (testdata, vendor, and directories
// whose name starts with . or _) and node_modules.
func parsedTargets(t *testing.T, root string) []string {
	t.Helper()
	var targets []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || name == "node_modules" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && isFuzzTarget(fn) {
				targets = append(targets, pkgPath(rel)+" "+fn.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

// pkgPath is the go command's spelling of the package in directory rel.
func pkgPath(rel string) string {
	if rel == "." {
		return "."
	}
	return "./" + filepath.ToSlash(rel)
}

// isFuzzTarget reports whether fn is what go test fuzzes: a function
// FuzzXxx, not a method, taking one *testing.F.
func isFuzzTarget(fn *ast.FuncDecl) bool {
	if fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Fuzz") || len(fn.Type.Params.List) != 1 {
		return false
	}
	star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "F"
}

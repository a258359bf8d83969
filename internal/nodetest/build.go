package nodetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Suite is what the nodes and scripts of one test binary share: the
// wsfleet binary it builds, and the admin token and flags of every node it
// starts.
type Suite struct {
	// Name names the suite in messages, and its build directory.
	Name string
	// AdminToken is every node's --admin-token (and Faye's --token), and
	// what scripts get as WSFLEET_ADMIN.
	AdminToken string
	// Flags follow `serve --listen addr --admin-token token` and
	// drainFlags on every node's command line, before the flags of one
	// Start.
	Flags []string

	once sync.Once
	dir  string // the build's directory, removed by Main
	bin  string
	err  error
}

// drainFlags make every node drain at once on SIGTERM, so that stopping
// one (Node.Stop, the test's cleanup) takes no drain window; a suite's
// Flags or a Start's flags may override them.
var drainFlags = []string{"--drain-window", "0s", "--drain-deadline", "5s"}

// Main is the body of a suite's TestMain: it runs the tests, removes the
// wsfleet binary if one of them had it built, and exits with the tests'
// code.
func (s *Suite) Main(m *testing.M) {
	code := m.Run()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	os.Exit(code)
}

// Binary returns the path of wsfleet/cmd/wsfleet built for this test
// binary, building it on the first call: every test starts nodes from the
// one build, and a run that starts none (-short, -run, a fuzz worker)
// builds nothing. It fails the test if the build fails. Main removes it.
func (s *Suite) Binary(t testing.TB) string {
	t.Helper()
	s.once.Do(func() { s.dir, s.bin, s.err = build(s.Name) })
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.bin
}

// build is the one place the repository's Go code builds the wsfleet
// command: into a new temporary directory, whose path it returns with the
// binary's.
func build(name string) (dir, bin string, err error) {
	dir, err = os.MkdirTemp("", "wsfleet-"+name+"-")
	if err != nil {
		return "", "", fmt.Errorf("build wsfleet: %w", err)
	}
	bin = filepath.Join(dir, "wsfleet")
	if out, err := exec.Command("go", "build", "-o", bin, "wsfleet/cmd/wsfleet").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("build wsfleet: %w\n%s", err, out)
	}
	return dir, bin, nil
}

// repoRoot is the repository's top directory, found from this file's path
// (tests run from their package's directory, whichever it is).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

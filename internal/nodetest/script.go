package nodetest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NeedNode fails the test when Node.js or one of the dependencies in the
// suite directory's package.json is missing from its node_modules: `make
// test` installs them, so their absence is a broken setup, not a reason to
// pass. With -short it skips the test instead.
func (s *Suite) NeedNode(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skipf("the %s suite runs node clients; skipped with -short", s.Name)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed (Node.js 20 is required for the %s suite)", s.Name)
	}
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatalf("the %s suite's package.json: %v", s.Name, err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatalf("the %s suite's package.json: %v", s.Name, err)
	}
	for dep := range pkg.Dependencies {
		if _, err := os.Stat(filepath.Join("node_modules", dep, "package.json")); err != nil {
			t.Fatalf("node_modules/%s missing: run scripts/test-deps.sh (npm ci in %s/)", dep, s.Name)
		}
	}
}

// RunScript runs `node args...` against n (WSFLEET_URL is its URL,
// WSFLEET_ADMIN its admin token; env adds variables) for at most 90s and
// fails the test, with the script's output and the node's log, if the
// script exits non-zero. A script that prints the line RESTART has n
// stopped and started again and is answered "restarted" on its stdin:
// that is how the restart scenarios ask for a node restart at the moment
// they choose.
func RunScript(t testing.TB, n *Node, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	var stderr SyncBuffer
	stdin, stdout := startNode(t, cmd, append([]string{"WSFLEET_URL=" + n.URL(), "WSFLEET_ADMIN=" + n.token}, env...), &stderr)
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if line == "RESTART" {
			n.Stop()
			n.Start()
			io.WriteString(stdin, "restarted\n")
		}
	}
	err := cmd.Wait()
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s", strings.Join(args, " "), err, out.String(), stderr.String(), n.Log())
	}
}

// Listener is a Node.js process holding some clients subscribed to one
// channel (the suites' listen scripts). It speaks a line protocol: it
// prints "ready" once every client is subscribed, answers "report" with
// one JSON line {"clients":[ClientRecord...]}, and ends on "exit".
type Listener struct {
	in    io.WriteCloser
	lines chan string
}

// ClientRecord is what one client received: the n of every message in
// arrival order, its handshakes and the longest pause between messages.
type ClientRecord struct {
	Kind       string `json:"kind"`
	Got        []int  `json:"got"`
	Handshakes int    `json:"handshakes"`
	MaxGapMs   int    `json:"maxGapMs"`
}

// StartListener runs `node args...` (env adds variables) and waits up to
// 30s for its "ready"; label names it in failures. The test's cleanup
// asks it to exit and kills it after 5s.
func StartListener(t testing.TB, label string, env []string, args ...string) *Listener {
	t.Helper()
	cmd := exec.Command("node", args...)
	in, out := startNode(t, cmd, env, os.Stderr)
	l := &Listener{in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
		for sc.Scan() {
			l.lines <- sc.Text()
		}
		close(l.lines)
	}()
	t.Cleanup(func() {
		io.WriteString(in, "exit\n")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	select {
	case line := <-l.lines:
		if line != "ready" {
			t.Fatalf("%s listener: %s", label, line)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s listener not ready", label)
	}
	return l
}

// Report asks the listener for its clients' records, waiting up to 10s.
func (l *Listener) Report(t testing.TB) []ClientRecord {
	t.Helper()
	io.WriteString(l.in, "report\n")
	select {
	case line, ok := <-l.lines:
		if !ok {
			t.Fatal("listener exited")
		}
		var r struct {
			Clients []ClientRecord `json:"clients"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("listener report %q: %v", line, err)
		}
		return r.Clients
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not report")
	}
	return nil
}

// startNode starts cmd, a node script, with env added to this process's
// environment and its stderr to stderr, and returns its stdin and stdout.
func startNode(t testing.TB, cmd *exec.Cmd, env []string, stderr io.Writer) (io.WriteCloser, io.ReadCloser) {
	t.Helper()
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return stdin, stdout
}

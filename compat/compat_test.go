// Package compat runs real, unmodified faye and halley clients (from
// package-lock.json, installed by scripts/test-deps.sh) under Node.js
// against a `wsfleet serve` process, over websocket and long-polling.
package compat

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"wsfleet/server"
)

const adminToken = "compat-admin"

var wsfleetBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsfleet-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wsfleetBin = filepath.Join(dir, "wsfleet")
	out, err := exec.Command("go", "build", "-o", wsfleetBin, "wsfleet/cmd/wsfleet").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build wsfleet: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needNode fails the test when the JavaScript clients are not installed:
// `make test` installs them, so their absence is a broken setup, not a
// reason to pass.
func needNode(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("compat suite runs node clients; skipped with -short")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed (Node.js 20 is required for the compat suite)")
	}
	for _, p := range []string{"node_modules/faye/package.json", "node_modules/halley/package.json"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run scripts/test-deps.sh (npm ci in compat/)", p)
		}
	}
}

// wsnode is a `wsfleet serve` process.
type wsnode struct {
	t    *testing.T
	addr string
	args []string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// freeAddr picks a free port below Linux's ephemeral range (32768+), so
// that no outgoing connection takes it between this check and a restart of
// the server on it.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 20000-32000")
	return ""
}

func startServe(t *testing.T, extra ...string) *wsnode {
	t.Helper()
	n := &wsnode{t: t, addr: freeAddr(t), log: &syncBuffer{}}
	n.args = append([]string{"serve", "--listen", n.addr, "--admin-token", adminToken, "--node-id", "compat",
		"--timeout", "5s", "--drain-window", "0s", "--drain-deadline", "5s"}, extra...)
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *wsnode) start() {
	n.t.Helper()
	n.cmd = exec.Command(wsfleetBin, n.args...)
	n.cmd.Stdout = n.log
	n.cmd.Stderr = n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + n.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("wsfleet serve not ready on %s:\n%s", n.addr, n.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM (a drain with a zero window) and waits for the exit.
func (n *wsnode) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			n.t.Errorf("wsfleet serve exited with %v\n%s", err, n.log.String())
		}
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-done
		n.t.Errorf("wsfleet serve did not stop on SIGTERM\n%s", n.log.String())
	}
	n.cmd = nil
}

// runScenario runs scenario.js and handles its RESTART request.
func runScenario(t *testing.T, n *wsnode, scenario, client, transport string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "scenario.js", scenario, client, transport)
	cmd.Env = append(os.Environ(), append([]string{"WSFLEET_URL=http://" + n.addr, "WSFLEET_ADMIN=" + adminToken}, env...)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if line == "RESTART" {
			n.stop()
			n.start()
			io.WriteString(stdin, "restarted\n")
		}
	}
	err := cmd.Wait()
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatalf("scenario %s %s %s: %v\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s", scenario, client, transport, err, out.String(), stderr.String(), n.log.String())
	}
}

var combos = []struct{ client, transport string }{
	{"faye", "websocket"}, {"faye", "long-polling"}, {"halley", "websocket"}, {"halley", "long-polling"},
}

func TestBasic(t *testing.T) {
	needNode(t)
	for _, c := range combos {
		t.Run(c.client+"/"+c.transport, func(t *testing.T) {
			n := startServe(t)
			runScenario(t, n, "basic", c.client, c.transport)
		})
	}
}

func TestAuth(t *testing.T) {
	needNode(t)
	secret := "compat-secret"
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("# users read their own channels\nsubscribe /user/{sub}/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good, err := server.MintToken([]byte(secret), "alice", time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := server.MintToken([]byte("not-the-secret"), "alice", time.Hour, nil, time.Now())
	for _, c := range combos {
		t.Run(c.client+"/"+c.transport, func(t *testing.T) {
			n := startServe(t, "--auth-secret", secret, "--rules", rules)
			runScenario(t, n, "auth", c.client, c.transport, "TOKEN_GOOD="+good, "TOKEN_BAD="+bad)
		})
	}
}

func TestRestart(t *testing.T) {
	needNode(t)
	for _, c := range combos {
		t.Run(c.client+"/"+c.transport, func(t *testing.T) {
			n := startServe(t)
			runScenario(t, n, "restart", c.client, c.transport)
		})
	}
}

// syncBuffer is a goroutine-safe log buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Package interop proves the ws node against Bayeux peers that the compat
// suite does not use: the CometD JavaScript client (an independent,
// spec-faithful implementation) run under Node.js over websocket,
// long-polling and callback-polling; Faye's browser build over the
// transports a page on another origin uses (cross-origin-long-polling and
// callback-polling); and raw protocol probes (probe_test.go) that check
// what the Bayeux 1.0 specification requires. The JavaScript clients come
// from package-lock.json, installed by scripts/test-deps.sh. Every test runs a real
// `wsfleet serve` process on a loopback port.
package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
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

const adminToken = "interop-admin"

var wsfleetBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsfleet-interop-")
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

// needNode fails the test when the CometD client is not installed: `make
// test` installs it, so its absence is a broken setup, not a reason to
// pass.
func needNode(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("interop runs the CometD client under node; skipped with -short")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed (Node.js 20 is required for the interop suite)")
	}
	for _, p := range []string{"node_modules/cometd/package.json", "node_modules/cometd-nodejs-client/package.json"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run scripts/test-deps.sh (npm ci in interop/)", p)
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

func (n *wsnode) url() string { return "http://" + n.addr }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs a node that holds a /meta/connect for 4s (so that the
// advice scenario sees holds without waiting long) and drains at once on
// SIGTERM.
func startServe(t *testing.T, extra ...string) *wsnode {
	t.Helper()
	n := &wsnode{t: t, addr: freeAddr(t), log: &syncBuffer{}}
	n.args = append([]string{"serve", "--listen", n.addr, "--admin-token", adminToken, "--node-id", "interop",
		"--timeout", "4s", "--drain-window", "0s", "--drain-deadline", "5s"}, extra...)
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
		resp, err := http.Get(n.url() + "/readyz")
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

// runScenario runs scenario.mjs and handles its RESTART request.
func runScenario(t *testing.T, n *wsnode, scenario, transport string, env ...string) {
	t.Helper()
	runNode(t, n, []string{"scenario.mjs", scenario, transport}, env...)
}

// runNode runs a node script and handles its RESTART request.
func runNode(t *testing.T, n *wsnode, args []string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Env = append(os.Environ(), append([]string{"WSFLEET_URL=" + n.url(), "WSFLEET_ADMIN=" + adminToken}, env...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
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
	err = cmd.Wait()
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s", strings.Join(args, " "), err, out.String(), stderr.String(), n.log.String())
	}
}

// transports are CometD's three: its JSONP transport (callback-polling)
// is what old browsers and script-tag embeds use.
var transports = []string{"websocket", "long-polling", "callback-polling"}

// TestCometD runs the scenarios that need an anonymous node, one node per
// transport, one after the other on it.
func TestCometD(t *testing.T) {
	needNode(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			n := startServe(t)
			for _, sc := range []string{"basic", "batch", "advice"} {
				t.Run(sc, func(t *testing.T) { runScenario(t, n, sc, tr) })
			}
		})
	}
}

func TestCometDAuth(t *testing.T) {
	needNode(t)
	secret := "interop-secret"
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("# users read their own channels\nsubscribe /user/{sub}/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good, err := server.MintToken([]byte(secret), "alice", time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad, err := server.MintToken([]byte("not-the-secret"), "alice", time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			n := startServe(t, "--auth-secret", secret, "--rules", rules)
			runScenario(t, n, "auth", tr, "TOKEN_GOOD="+good, "TOKEN_BAD="+bad)
		})
	}
}

func TestCometDRestart(t *testing.T) {
	needNode(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			n := startServe(t)
			runScenario(t, n, "restart", tr)
		})
	}
}

// TestFayeBrowser runs Faye's browser build over its HTTP transports: as a
// page the node serves (long-polling) and as a page on another origin
// (cross-origin-long-polling, callback-polling).
func TestFayeBrowser(t *testing.T) {
	needNode(t)
	if _, err := os.Stat("node_modules/faye/client/faye-browser.js"); err != nil {
		t.Fatal("faye's browser build missing: run scripts/test-deps.sh (npm ci in interop/)")
	}
	n := startServe(t)
	for _, tr := range []string{"long-polling", "cross-origin-long-polling", "callback-polling"} {
		t.Run(tr, func(t *testing.T) { runNode(t, n, []string{"browser-faye.mjs", tr}) })
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

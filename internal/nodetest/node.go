// Package nodetest is the one harness of the suites that test the node
// from outside, as a separate process, the way clients and load balancers
// meet it (client, probe, compat, interop, localcloud, bench): it builds
// the wsfleet binary once per test binary (the only place tests build it),
// runs `wsfleet serve` processes, and Faye's own Node.js server as the
// reference peer, on free loopback ports and waits until they are ready,
// keeps their log for failure messages, fronts several nodes with a
// round-robin proxy that skips those whose /readyz fails, and runs the
// Node.js scripts that drive real JavaScript clients.
//
// It is an ordinary package, not a _test.go file, because Go shares no test
// code between packages; it lives under internal/ so that nothing outside
// this module depends on it. It imports testing, so only tests import it.
package nodetest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Suite is what the nodes and scripts of one test binary share: the
// wsfleet binary it builds, the JavaScript modules its scripts need, and
// the admin token and flags of every node it starts.
type Suite struct {
	// Name names the suite in messages, and its build directory.
	Name string
	// Modules are the files, relative to the suite's directory, whose
	// absence means `npm ci` has not run there.
	Modules []string
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

// FreeAddr picks a free loopback port below Linux's ephemeral range
// (32768+), so that no outgoing connection takes it between this check and
// a restart of a node on it (the restart scenarios stop a node and start it
// again on the same address).
func FreeAddr(t testing.TB) string {
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

// FreePort is FreeAddr's port, for what takes a port number.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Node is a server process a suite started: `wsfleet serve`, or Faye's
// server (StartFaye). Its methods are not safe for concurrent use.
type Node struct {
	// Addr is the host:port the node listens on, the same across restarts.
	Addr string

	t     testing.TB
	name  string   // names the process in failures
	argv  []string // its command line, the same across restarts
	env   []string // added to this process's environment
	ready string   // the path that answers 200 once it is ready
	token string
	log   SyncBuffer
	p     *proc // nil while the node is stopped
}

// proc is one run of a node's process; err is cmd.Wait's result once done
// is closed. One goroutine waits for every run, so that Stop, Kill and
// WaitExit can each wait for the exit without calling Wait twice.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs `wsfleet serve` on a free loopback port with drainFlags, the
// suite's flags and then extra (later flags win, so extra may override
// the suite's), and waits until it is ready; the test's cleanup stops it
// (see Node.Stop).
func (s *Suite) Start(t testing.TB, extra ...string) *Node {
	t.Helper()
	addr := FreeAddr(t)
	argv := append([]string{s.Binary(t), "serve", "--listen", addr, "--admin-token", s.AdminToken}, drainFlags...)
	argv = append(append(argv, s.Flags...), extra...)
	return s.start(t, &Node{Addr: addr, name: "wsfleet serve", argv: argv, ready: "/readyz"})
}

// StartFaye runs Faye's own Node.js server (bench/faye-server.js, which
// mounts Bayeux at /bayeux and takes POST /publish with the suite's admin
// token), the reference peer, on a free loopback port with extra, the
// script's flags (--timeout seconds), and waits for its /healthz; the
// test's cleanup stops it. Faye comes from $WSFLEET_FAYE_NODE_PATH, else
// compat/node_modules. Without node or faye it skips the test: the suites
// that compare with Faye run without it.
func (s *Suite) StartFaye(t testing.TB, extra ...string) *Node {
	t.Helper()
	root := repoRoot()
	modules := os.Getenv("WSFLEET_FAYE_NODE_PATH")
	if modules == "" {
		modules = filepath.Join(root, "compat", "node_modules")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: Faye's server cannot run")
	}
	if _, err := os.Stat(filepath.Join(modules, "faye", "package.json")); err != nil {
		t.Skipf("faye is not in %s: run scripts/test-deps.sh, or set WSFLEET_FAYE_NODE_PATH", modules)
	}
	addr := FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	argv := append([]string{"node", filepath.Join(root, "bench", "faye-server.js"),
		"--host", host, "--port", port, "--token", s.AdminToken}, extra...)
	return s.start(t, &Node{Addr: addr, name: "faye-server.js", argv: argv, env: []string{"NODE_PATH=" + modules}, ready: "/healthz"})
}

// start starts n for t with the suite's token and has the test's cleanup
// stop it.
func (s *Suite) start(t testing.TB, n *Node) *Node {
	t.Helper()
	n.t, n.token = t, s.AdminToken
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// StartCluster starts count nodes, ws-01, ws-02 and so on, that share
// the embedded NATS server of the first (on a free loopback port), each
// with the suite's flags and then extra.
func (s *Suite) StartCluster(t testing.TB, count int, extra ...string) []*Node {
	t.Helper()
	natsAddr := FreeAddr(t)
	nodes := make([]*Node, count)
	for i := range nodes {
		broker := []string{"--nats", "nats://" + natsAddr}
		if i == 0 {
			broker = []string{"--embedded-nats", natsAddr}
		}
		nodes[i] = s.Start(t, append(append([]string{"--node-id", fmt.Sprintf("ws-%02d", i+1)}, broker...), extra...)...)
	}
	return nodes
}

// URL is the node's base URL.
func (n *Node) URL() string { return "http://" + n.Addr }

// Bayeux is the node's Bayeux endpoint.
func (n *Node) Bayeux() string { return n.URL() + "/bayeux" }

// Log is everything the node's processes have written to stdout and
// stderr, for failure messages.
func (n *Node) Log() string { return n.log.String() }

// Start (re)starts the stopped node with its command line and waits up to
// 10s for its ready path to answer 200; it fails the test if the node is
// not ready by then or exits first.
func (n *Node) Start() {
	n.t.Helper()
	p := &proc{cmd: exec.Command(n.argv[0], n.argv[1:]...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), n.env...)
	p.cmd.Stdout = &n.log
	p.cmd.Stderr = &n.log
	if err := p.cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	n.p = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(n.URL() + n.ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			n.p = nil
			n.t.Fatalf("%s on %s exited before it was ready: %v\n%s", n.name, n.Addr, p.err, n.Log())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not ready on %s:\n%s", n.name, n.Addr, n.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM (a drain, with whatever window the node's flags set)
// and waits up to 15s for the exit; it reports an exit status other than
// 0, or a node that ignores SIGTERM (it is killed then), as a test error.
// Stopping a stopped node does nothing.
func (n *Node) Stop() {
	n.t.Helper()
	p := n.p
	if p == nil {
		return
	}
	n.p = nil
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			n.t.Errorf("%s exited with %v\n%s", n.name, p.err, n.Log())
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		n.t.Errorf("%s did not stop on SIGTERM\n%s", n.name, n.Log())
	}
}

// Kill ends the node with SIGKILL, as a crash does, and waits for the exit.
func (n *Node) Kill() {
	p := n.p
	if p == nil {
		return
	}
	n.p = nil
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// WaitExit waits up to within for the node to exit by itself (a drained
// node does) and returns its exit error. When it is still running then,
// exited is false and the node is left to the test's cleanup.
func (n *Node) WaitExit(within time.Duration) (exited bool, err error) {
	p := n.p
	if p == nil {
		return true, nil
	}
	select {
	case <-p.done:
		n.p = nil
		return true, p.err
	case <-time.After(within):
		return false, nil
	}
}

// SyncBuffer is a goroutine-safe log buffer: a process's stdout and
// stderr are copied into it by os/exec's goroutines while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

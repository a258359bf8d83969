// Package nodetest is the harness of the suites that test the node from
// outside, as a separate process, the way clients and load balancers meet
// it (compat and interop): it builds the wsfleet binary once per test
// binary, runs `wsfleet serve` processes on free loopback ports and waits
// for their /readyz, keeps their log for failure messages, fronts several
// nodes with a round-robin proxy that skips those whose /readyz fails, and
// runs the Node.js scripts that drive real JavaScript clients.
//
// It is an ordinary package, not a _test.go file, because Go shares no test
// code between packages; it lives under internal/ so that nothing outside
// this module depends on it.
package nodetest

import (
	"fmt"
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
)

// Suite is what the nodes and scripts of one test binary share: the
// wsfleet binary Main builds, the JavaScript modules its scripts need, and
// the admin token and flags of every node it starts.
type Suite struct {
	// Name names the suite in messages, and its directory.
	Name string
	// Modules are the files, relative to the suite's directory, whose
	// absence means `npm ci` has not run there.
	Modules []string
	// AdminToken is every node's --admin-token, and what scripts get as
	// WSFLEET_ADMIN.
	AdminToken string
	// Flags follow `serve --listen addr --admin-token token` on every
	// node's command line, before the flags of one Start.
	Flags []string

	bin string
}

// Main is the body of a suite's TestMain: it builds wsfleet/cmd/wsfleet
// once into a temporary directory (every test of the binary starts nodes
// from it, so none pays for a build), runs the tests, removes the build
// and exits with the tests' code.
func (s *Suite) Main(m *testing.M) {
	os.Exit(s.run(m))
}

func (s *Suite) run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wsfleet-"+s.Name+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	s.bin = filepath.Join(dir, "wsfleet")
	out, err := exec.Command("go", "build", "-o", s.bin, "wsfleet/cmd/wsfleet").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build wsfleet: %v\n%s", err, out)
		return 1
	}
	return m.Run()
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

// Node is a `wsfleet serve` process; its methods are not safe for
// concurrent use.
type Node struct {
	// Addr is the host:port the node listens on, the same across restarts.
	Addr string

	t     testing.TB
	bin   string
	token string
	args  []string
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

// Start runs `wsfleet serve` on a free loopback port with the suite's
// flags and then extra (later flags win, so extra may override the
// suite's), and waits until it is ready; the test's cleanup stops it (see
// Node.Stop).
func (s *Suite) Start(t testing.TB, extra ...string) *Node {
	t.Helper()
	addr := FreeAddr(t)
	args := append([]string{"serve", "--listen", addr, "--admin-token", s.AdminToken}, s.Flags...)
	n := &Node{Addr: addr, t: t, bin: s.bin, token: s.AdminToken, args: append(args, extra...)}
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

// PID is the process id of the node's running process, 0 when stopped:
// for reading its memory from /proc.
func (n *Node) PID() int {
	if n.p == nil {
		return 0
	}
	return n.p.cmd.Process.Pid
}

// Log is everything the node's processes have written to stdout and
// stderr, for failure messages.
func (n *Node) Log() string { return n.log.String() }

// Start (re)starts the stopped node with its flags and waits up to 10s for
// its /readyz to answer 200; it fails the test if the node is not ready by
// then or exits first.
func (n *Node) Start() {
	n.t.Helper()
	if n.bin == "" {
		n.t.Fatal("nodetest: no wsfleet binary: call Suite.Main from TestMain")
	}
	p := &proc{cmd: exec.Command(n.bin, n.args...), done: make(chan struct{})}
	p.cmd.Stdout = &n.log
	p.cmd.Stderr = &n.log
	if err := p.cmd.Start(); err != nil {
		n.t.Fatalf("start wsfleet serve: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	n.p = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(n.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			n.p = nil
			n.t.Fatalf("wsfleet serve on %s exited before it was ready: %v\n%s", n.Addr, p.err, n.Log())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("wsfleet serve not ready on %s:\n%s", n.Addr, n.Log())
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
			n.t.Errorf("wsfleet serve exited with %v\n%s", p.err, n.Log())
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		n.t.Errorf("wsfleet serve did not stop on SIGTERM\n%s", n.Log())
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

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
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

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

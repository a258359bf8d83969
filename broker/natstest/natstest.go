// Package natstest runs real nats-server processes for tests: one server
// or a JetStream cluster on loopback, of the oldest supported version
// (Debian's package) or of the version go.mod pins (built by
// scripts/build-nats-server.sh), with a kill and a restart for fault
// tests. It imports testing, so only tests import it.
package natstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// OldestBinary is where Debian's nats-server package (2.9.10 in Debian
// 12, the oldest version the broker supports and tests) puts the server.
const OldestBinary = "/usr/sbin/nats-server"

// Oldest returns the path of the oldest supported nats-server, failing t
// with what to install when it is missing.
func Oldest(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WSFLEET_NATS_OLDEST"); p != "" {
		return p
	}
	if _, err := os.Stat(OldestBinary); err != nil {
		t.Fatalf("%s missing: run scripts/test-deps.sh (it installs Debian's nats-server package)", OldestBinary)
	}
	return OldestBinary
}

var (
	newestOnce sync.Once
	newestPath string
	newestErr  error
)

// Newest returns the path of the nats-server built from the module go.mod
// pins, building it (once, cached under .cache/) with
// scripts/build-nats-server.sh.
func Newest(t testing.TB) string {
	t.Helper()
	newestOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			newestErr = err
			return
		}
		var out, errb bytes.Buffer
		cmd := exec.Command(filepath.Join(root, "scripts", "build-nats-server.sh"))
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			newestErr = fmt.Errorf("scripts/build-nats-server.sh: %w\n%s", err, errb.String())
			return
		}
		newestPath = strings.TrimSpace(out.String())
	})
	if newestErr != nil {
		t.Fatalf("nats-server from go.mod's module (run scripts/test-deps.sh): %v", newestErr)
	}
	return newestPath
}

// repoRoot is the directory of the module's go.mod, as the go command
// reports it.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// Server is one nats-server process with JetStream; it keeps its ports and
// store across restarts.
type Server struct {
	Name string
	Addr string // client host:port

	t     testing.TB
	bin   string
	conf  string
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	log   bytes.Buffer
	logMu sync.Mutex
}

// URL is the server's nats:// URL.
func (s *Server) URL() string { return "nats://" + s.Addr }

// Log is what the server's runs wrote, for failure messages.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

type logWriter struct{ s *Server }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.logMu.Lock()
	defer w.s.logMu.Unlock()
	return w.s.log.Write(p)
}

// Start runs the stopped server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, "-c", s.conf)
	cmd.Stdout, cmd.Stderr = logWriter{s}, logWriter{s}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			s.t.Fatalf("nats-server %s exited at start:\n%s", s.Name, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server %s not listening on %s:\n%s", s.Name, s.Addr, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends the server with SIGKILL, as a crash does, and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop ends the server with SIGTERM (it shuts down cleanly) and waits.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Running reports whether the server's process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Cluster is a set of servers; with more than one they form a JetStream
// cluster.
type Cluster struct {
	Servers []*Server
}

// URLs is the comma-separated client URLs of every server.
func (c *Cluster) URLs() string {
	var u []string
	for _, s := range c.Servers {
		u = append(u, s.URL())
	}
	return strings.Join(u, ",")
}

// Start runs n servers of bin (n = 1: a lone server; n > 1: a JetStream
// cluster on loopback) and waits until JetStream answers through every
// server; the test's cleanup stops them.
func Start(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{}
	clientPorts, routePorts := freeAddrs(t, n), freeAddrs(t, n)
	var routes []string
	for _, r := range routePorts {
		routes = append(routes, "nats-route://"+r)
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		store := filepath.Join(dir, name)
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\njetstream {\n  store_dir: %q\n}\n", name, clientPorts[i], store)
		if n > 1 {
			conf += fmt.Sprintf("cluster {\n  name: wsfleet-test\n  listen: %q\n  routes: [%s]\n}\n", routePorts[i],
				`"`+strings.Join(routes, `", "`)+`"`)
		}
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Servers = append(c.Servers, &Server{Name: name, Addr: clientPorts[i], t: t, bin: bin, conf: path})
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			s.Stop()
		}
		if t.Failed() {
			for _, s := range c.Servers {
				t.Logf("nats-server %s log (tail):\n%s", s.Name, tail(s.Log(), 3000))
			}
		}
	})
	for _, s := range c.Servers {
		s.Start()
	}
	c.WaitJetStream(t, 60*time.Second)
	return c
}

// WaitJetStream waits until every running server answers JetStream's
// account info (in a cluster: a meta leader is elected).
func (c *Cluster) WaitJetStream(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		for {
			err := jsAnswers(s.URL())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("JetStream does not answer through %s: %v", s.Name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func jsAnswers(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// StreamLeader returns the server leading stream (nil when none is known).
func (c *Cluster) StreamLeader(t testing.TB, stream string) *Server {
	t.Helper()
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		nc, err := nats.Connect(s.URL(), nats.Timeout(2*time.Second), nats.NoReconnect())
		if err != nil {
			continue
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := js.Stream(ctx, stream)
		cancel()
		nc.Close()
		if err != nil || st.CachedInfo().Cluster == nil {
			continue
		}
		for _, srv := range c.Servers {
			if srv.Name == st.CachedInfo().Cluster.Leader {
				return srv
			}
		}
	}
	return nil
}

func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

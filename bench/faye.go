// Package bench is wsfleet's benchmark against Faye's own Node.js server
// and Centrifugo, with a bare writer as the limit of CPU per delivery: it
// starts each as a pinned child process, drives it from one load generator
// in this process, and writes the results. Tests that need a
// server process use internal/nodetest, not this package.
package bench

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// errNoFaye is returned when node or the faye package cannot be found;
// the benchmark's tests skip on it.
var errNoFaye = errors.New("bench: node or faye not found (run scripts/test-deps.sh, or set WSFLEET_FAYE_NODE_PATH)")

// repoRoot returns the directory holding go.mod, searching up from the
// working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// fayeNodePath returns the node_modules directory that holds faye:
// $WSFLEET_FAYE_NODE_PATH, else compat/node_modules in the repository.
func fayeNodePath() (string, error) {
	candidates := []string{os.Getenv("WSFLEET_FAYE_NODE_PATH")}
	if root, err := repoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "compat", "node_modules"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c, "faye", "package.json")); err == nil {
			return c, nil
		}
	}
	return "", errNoFaye
}

// process is a server started as a child process.
type process struct {
	// Addr is host:port it listens on.
	Addr string
	Cmd  *exec.Cmd
	done chan struct{}
	// cleanup, when set, removes what the process was started with (a
	// configuration file) once it has exited.
	cleanup func()
}

// pid returns the process id.
func (p *process) pid() int { return p.Cmd.Process.Pid }

// stop terminates the process (SIGINT, then SIGKILL after 3s) and waits.
func (p *process) stop() {
	if p == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	if p.cleanup != nil {
		p.cleanup()
	}
}

// kill kills the process at once, as a crashed instance dies.
func (p *process) kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
	if p.cleanup != nil {
		p.cleanup()
	}
}

// fayeServerJS is bench/faye-server.js, carried in the binary so that
// `wsfleet bench` runs from any directory.
//
//go:embed faye-server.js
var fayeServerJS []byte

var (
	scriptOnce sync.Once
	scriptPath string
	scriptErr  error
)

// fayeScript writes the embedded script to a temporary file once per
// process and returns its path.
func fayeScript() (string, error) {
	scriptOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wsfleet-faye")
		if err != nil {
			scriptErr = fmt.Errorf("bench: %w", err)
			return
		}
		scriptPath = filepath.Join(dir, "faye-server.js")
		scriptErr = os.WriteFile(scriptPath, fayeServerJS, 0o644)
	})
	return scriptPath, scriptErr
}

// fayeOptions configure startFaye.
type fayeOptions struct {
	Host       string // default 127.0.0.1
	Port       int    // 0 picks a free port
	AdminToken string
	// CPU, when >= 0, pins the server to that core with taskset.
	CPU int
	// Timeout is Faye's connect timeout in seconds (advice.timeout).
	Timeout int
	Stderr  io.Writer
}

// startFaye starts bench/faye-server.js and waits until it listens.
func startFaye(ctx context.Context, o fayeOptions) (*process, error) {
	nodePath, err := fayeNodePath()
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errNoFaye
	}
	script, err := fayeScript()
	if err != nil {
		return nil, err
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Timeout <= 0 {
		o.Timeout = 45
	}
	args := []string{script,
		"--host", o.Host, "--port", fmt.Sprint(o.Port), "--timeout", fmt.Sprint(o.Timeout)}
	if o.AdminToken != "" {
		args = append(args, "--token", o.AdminToken)
	}
	return startListening(ctx, pinned(o.CPU, node, args), []string{"NODE_PATH=" + nodePath}, o.Stderr, false, parseFayeListening)
}

func parseFayeListening(line string) (string, bool) {
	var v struct {
		Listening string `json:"listening"`
	}
	if json.Unmarshal([]byte(line), &v) == nil && v.Listening != "" {
		return v.Listening, true
	}
	return "", false
}

// pinned prefixes a command with taskset when cpu >= 0.
func pinned(cpu int, name string, args []string) []string {
	if cpu < 0 {
		return append([]string{name}, args...)
	}
	return append([]string{"taskset", "-c", fmt.Sprint(cpu), name}, args...)
}

// startListening starts argv and reads its stdout (or its stderr, where
// wsfleet logs) until parse finds the listening address in a line; the rest
// of that stream goes to stderr.
func startListening(ctx context.Context, argv, env []string, stderr io.Writer, fromStderr bool, parse func(string) (string, bool)) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	if stderr == nil {
		stderr = io.Discard
	}
	var out io.ReadCloser
	var err error
	if fromStderr {
		out, err = cmd.StderrPipe()
	} else {
		cmd.Stderr = stderr
		out, err = cmd.StdoutPipe()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{Cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			if !found {
				if a, ok := parse(strings.TrimSpace(sc.Text())); ok {
					found = true
					addr <- a
				}
			}
			if fromStderr {
				fmt.Fprintln(stderr, sc.Text())
			}
		}
		_, _ = io.Copy(stderr, out)
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case a := <-addr:
		p.Addr = a
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("start %s: exited before listening", argv[0])
	case <-time.After(15 * time.Second):
		p.kill()
		return nil, fmt.Errorf("start %s: not listening after 15s", argv[0])
	case <-ctx.Done():
		p.kill()
		return nil, fmt.Errorf("start %s: %w", argv[0], ctx.Err())
	}
}

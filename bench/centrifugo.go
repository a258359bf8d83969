package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CentrifugoVersion is the Centrifugo release the benchmark builds and
// runs (scripts/build-centrifugo.sh builds the same by default).
const CentrifugoVersion = "v6.9.1"

// errNoCentrifugo is returned when the Centrifugo binary is not built and
// cannot be built here; the benchmark then skips Centrifugo and says so.
var errNoCentrifugo = errors.New("bench: centrifugo not built (run scripts/build-centrifugo.sh, or set WSFLEET_CENTRIFUGO to a centrifugo " + CentrifugoVersion + " binary)")

// centrifugoBinary returns $WSFLEET_CENTRIFUGO, else the binary
// scripts/build-centrifugo.sh leaves in the repository's .cache/.
func centrifugoBinary() (string, error) {
	if p := os.Getenv("WSFLEET_CENTRIFUGO"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %w", errNoCentrifugo, err)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoCentrifugo, err)
	}
	p := filepath.Join(root, ".cache", "centrifugo", CentrifugoVersion, "centrifugo")
	if _, err := os.Stat(p); err != nil {
		return "", errNoCentrifugo
	}
	return p, nil
}

// buildCentrifugo runs scripts/build-centrifugo.sh (cached: quick when
// the binary is there) and returns the binary's path. Its output goes to
// log.
func buildCentrifugo(ctx context.Context, log io.Writer) (string, error) {
	if p, err := centrifugoBinary(); err == nil {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoCentrifugo, err)
	}
	script := filepath.Join(root, "scripts", "build-centrifugo.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("%w: %w", errNoCentrifugo, err)
	}
	cmd := exec.CommandContext(ctx, script)
	cmd.Env = append(os.Environ(), "CENTRIFUGO_VERSION="+CentrifugoVersion)
	cmd.Stderr = log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: build-centrifugo.sh: %w", errNoCentrifugo, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// centrifugoOptions configure startCentrifugo.
type centrifugoOptions struct {
	Binary string
	// APIKey is the server API's key (the bench's admin token).
	APIKey string
	// CPU, when >= 0, pins the server to that core with taskset.
	CPU    int
	Stderr io.Writer
}

// centrifugoConfig is the configuration the benchmark runs Centrifugo
// with: on loopback only, anonymous clients may connect without a token
// and subscribe to any channel without a namespace (the generator's
// channels), no history, presence, join/leave or recovery (none is set:
// they are off by default), the websocket transport with its JSON
// protocol, the HTTP server API with a key, and no usage statistics sent
// out (the machine reaches loopback only).
func centrifugoConfig(port int, apiKey string) ([]byte, error) {
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{
			"allow_anonymous_connect_without_token": true,
		},
		"channel": map[string]any{
			"without_namespace": map[string]any{
				"allow_subscribe_for_client":    true,
				"allow_subscribe_for_anonymous": true,
			},
		},
		"http_api":    map[string]any{"key": apiKey},
		"usage_stats": map[string]any{"disabled": true},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("centrifugo config: %w", err)
	}
	return b, nil
}

// startCentrifugo writes a configuration for a free loopback port, starts
// Centrifugo with it and waits until the port accepts connections.
func startCentrifugo(ctx context.Context, o centrifugoOptions) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, err := centrifugoConfig(port, o.APIKey)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wsfleet-centrifugo")
	if err != nil {
		return nil, fmt.Errorf("centrifugo: %w", err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("centrifugo: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := startDialable(ctx, pinned(o.CPU, o.Binary, []string{"--config", path}), o.Stderr, addr)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.cleanup = func() { os.RemoveAll(dir) }
	return p, nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	return port, nil
}

// startDialable starts argv (its output to stderr) and waits until addr
// accepts a TCP connection.
func startDialable(ctx context.Context, argv []string, stderr io.Writer, addr string) (*process, error) {
	if stderr == nil {
		stderr = io.Discard
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{Cmd: cmd, Addr: addr, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("start %s: exited before listening on %s", argv[0], addr)
		case <-ctx.Done():
			p.kill()
			return nil, fmt.Errorf("start %s: %w", argv[0], ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("start %s: not listening on %s after 15s", argv[0], addr)
		}
	}
}

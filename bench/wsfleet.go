package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// wsfleetOptions configure startWsfleet.
type wsfleetOptions struct {
	Binary     string // path of the wsfleet command
	Host       string // default 127.0.0.1
	Port       int    // 0 picks a free port
	AdminToken string
	// CPU, when >= 0, pins the server to that core with taskset.
	CPU int
	// Args are extra `wsfleet serve` flags.
	Args   []string
	Stderr io.Writer
}

// startWsfleet starts `wsfleet serve` and waits until it listens.
func startWsfleet(ctx context.Context, o wsfleetOptions) (*process, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	args := []string{"serve", "--listen", fmt.Sprintf("%s:%d", o.Host, o.Port), "--log-level", "info"}
	args = append(args, o.Args...)
	// The token goes through the environment, not the process list.
	env := []string{"WSFLEET_ADMIN_TOKEN=" + o.AdminToken}
	return startListening(ctx, pinned(o.CPU, o.Binary, args), env, o.Stderr, true, parseWsfleetListening)
}

// parseWsfleetListening finds addr= in serve's "listening" log line.
func parseWsfleetListening(line string) (string, bool) {
	if !strings.Contains(line, "msg=listening") {
		return "", false
	}
	for _, f := range strings.Fields(line) {
		if a, ok := strings.CutPrefix(f, "addr="); ok {
			return a, true
		}
	}
	return "", false
}

package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestInterestScaling is `make bench-interest`: the interest-based delivery
// benchmark (docs/broker.md keeps its last table). It needs
// WSFLEET_BENCH_INTEREST=1, the wsfleet binary (WSFLEET_BIN, default
// bin/wsfleet) and nats-server (WSFLEET_NATS_SERVER, default the one
// scripts/build-nats-server.sh builds). WSFLEET_BENCH_WINDOW shortens the
// measured window (a Go duration), WSFLEET_BENCH_NODES picks the fleet
// sizes (comma-separated, default 2,8,32).
func TestInterestScaling(t *testing.T) {
	if os.Getenv("WSFLEET_BENCH_INTEREST") == "" {
		t.Skip("a benchmark of several minutes: make bench-interest")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := os.Getenv("WSFLEET_BIN")
	if bin == "" {
		bin = filepath.Join(root, "bin", "wsfleet")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("wsfleet binary: %v (run make build, or set WSFLEET_BIN)", err)
	}
	ns := os.Getenv("WSFLEET_NATS_SERVER")
	if ns == "" {
		out, err := exec.Command(filepath.Join(root, "scripts", "build-nats-server.sh")).Output()
		if err != nil {
			t.Fatalf("scripts/build-nats-server.sh: %v", err)
		}
		ns = strings.TrimSpace(string(out))
	}
	o := InterestOptions{Binary: bin, NATSServer: ns, Progress: testWriter{t}}
	if w := os.Getenv("WSFLEET_BENCH_WINDOW"); w != "" {
		if o.Window, err = time.ParseDuration(w); err != nil {
			t.Fatalf("WSFLEET_BENCH_WINDOW: %v", err)
		}
	}
	for _, f := range strings.Split(os.Getenv("WSFLEET_BENCH_NODES"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				t.Fatalf("WSFLEET_BENCH_NODES: bad fleet size %q", f)
			}
			o.Nodes = append(o.Nodes, n)
		}
	}
	rows, err := RunInterest(context.Background(), o)
	var sb strings.Builder
	WriteInterestTable(&sb, rows)
	t.Log("\n" + sb.String())
	if err != nil {
		t.Fatal(err)
	}
}

// testWriter writes progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

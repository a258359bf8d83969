package probe_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/bench"
	"wsfleet/internal/nodetest"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// wsfleetBinary builds the wsfleet command once per test run.
func wsfleetBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wsfleet-probe-test")
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binary, buildErr = bench.BuildWsfleet(ctx, dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(strings.TrimSuffix(binary, "/wsfleet"))
	}
	os.Exit(code)
}

// extraPeers lists the servers besides Faye that the end-to-end tests run
// against: a real `wsfleet serve` process on the memory broker.
func extraPeers() []peer {
	return []peer{{name: "wsfleet", start: func(t *testing.T, port int, noHistory bool) (server, int) {
		bin := wsfleetBinary(t)
		args := []string{"--timeout", "5s"}
		if noHistory {
			args = append(args, "--history-max-msgs", "1")
		}
		var logs nodetest.SyncBuffer
		p, err := bench.StartWsfleet(context.Background(), bench.WsfleetOptions{
			Binary: bin, Port: port, AdminToken: adminToken, CPU: -1,
			Args: args, Stderr: &logs,
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, logs.String())
		}
		t.Cleanup(p.Stop)
		port, _ = strconv.Atoi(p.Addr[strings.LastIndexByte(p.Addr, ':')+1:])
		return p, port
	}}}
}

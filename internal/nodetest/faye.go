package nodetest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

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

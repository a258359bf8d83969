// Package compat runs real, unmodified faye and halley clients (from
// package-lock.json, installed by scripts/test-deps.sh) under Node.js
// against a `wsfleet serve` process, over websocket and long-polling.
package compat

import (
	"os"
	"path/filepath"
	"testing"

	"wsfleet/internal/nodetest"
)

const adminToken = "compat-admin"

// suite's nodes hold a /meta/connect for 5s.
var suite = &nodetest.Suite{Name: "compat", AdminToken: adminToken, Flags: []string{"--node-id", "compat", "--timeout", "5s"}}

func TestMain(m *testing.M) { suite.Main(m) }

var combos = []struct{ client, transport string }{
	{"faye", "websocket"}, {"faye", "long-polling"}, {"halley", "websocket"}, {"halley", "long-polling"},
}

// runCombos runs scenario for every client and transport, each on a node
// of its own started with flags.
func runCombos(t *testing.T, scenario string, flags []string, env ...string) {
	t.Helper()
	for _, c := range combos {
		t.Run(c.client+"/"+c.transport, func(t *testing.T) {
			n := suite.Start(t, flags...)
			nodetest.RunScript(t, n, env, "scenario.js", scenario, c.client, c.transport)
		})
	}
}

func TestBasic(t *testing.T) {
	suite.NeedNode(t)
	runCombos(t, "basic", nil)
}

func TestAuth(t *testing.T) {
	suite.NeedNode(t)
	secret := "compat-secret"
	rules, good, bad := nodetest.Auth(t, secret)
	runCombos(t, "auth", []string{"--auth-secret", secret, "--rules", rules}, "TOKEN_GOOD="+good, "TOKEN_BAD="+bad)
}

func TestRestart(t *testing.T) {
	suite.NeedNode(t)
	runCombos(t, "restart", nil)
}

// TestTokenExpiry: faye and halley, whose ext mints a fresh 2 s token at
// every handshake, carry on past their tokens' expiry: the node ends the
// expired session (401 with advice to handshake) and the client
// handshakes again and resubscribes.
func TestTokenExpiry(t *testing.T) {
	suite.NeedNode(t)
	secret := "compat-expiry-secret"
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("both /user/{sub}/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCombos(t, "expiry", []string{"--auth-secret", secret, "--rules", rules}, "TOKEN_SECRET="+secret, "TOKEN_TTL=2")
}

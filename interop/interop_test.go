// Package interop proves the ws node against Bayeux peers that the compat
// suite does not use: the CometD JavaScript client (an independent,
// spec-faithful implementation) run under Node.js over websocket,
// long-polling and callback-polling; Faye's browser build over the
// transports a page on another origin uses (cross-origin-long-polling and
// callback-polling); and raw protocol probes (probe_test.go) that check
// what the Bayeux 1.0 specification requires. The JavaScript clients come
// from package-lock.json, installed by scripts/test-deps.sh. Every test runs a real
// `wsfleet serve` process on a loopback port.
package interop

import (
	"os"
	"testing"

	"wsfleet/internal/nodetest"
)

const adminToken = "interop-admin"

// suite's nodes hold a /meta/connect for 4s (so that the advice scenario
// sees holds without waiting long).
var suite = &nodetest.Suite{Name: "interop", AdminToken: adminToken, Flags: []string{"--node-id", "interop", "--timeout", "4s"}}

func TestMain(m *testing.M) { suite.Main(m) }

// runScenario runs scenario.mjs and handles its RESTART request.
func runScenario(t *testing.T, n *nodetest.Node, scenario, transport string, env ...string) {
	t.Helper()
	nodetest.RunScript(t, n, env, "scenario.mjs", scenario, transport)
}

// transports are CometD's three: its JSONP transport (callback-polling)
// is what old browsers and script-tag embeds use.
var transports = []string{"websocket", "long-polling", "callback-polling"}

// TestCometD runs the scenarios that need an anonymous node, one node per
// transport, one after the other on it.
func TestCometD(t *testing.T) {
	suite.NeedNode(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			n := suite.Start(t)
			for _, sc := range []string{"basic", "batch", "advice"} {
				t.Run(sc, func(t *testing.T) { runScenario(t, n, sc, tr) })
			}
		})
	}
}

func TestCometDAuth(t *testing.T) {
	suite.NeedNode(t)
	secret := "interop-secret"
	rules, good, bad := nodetest.Auth(t, secret)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			n := suite.Start(t, "--auth-secret", secret, "--rules", rules)
			runScenario(t, n, "auth", tr, "TOKEN_GOOD="+good, "TOKEN_BAD="+bad)
		})
	}
}

func TestCometDRestart(t *testing.T) {
	suite.NeedNode(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			n := suite.Start(t)
			runScenario(t, n, "restart", tr)
		})
	}
}

// TestFayeBrowser runs Faye's browser build over its HTTP transports: as a
// page the node serves (long-polling) and as a page on another origin
// (cross-origin-long-polling, callback-polling).
func TestFayeBrowser(t *testing.T) {
	suite.NeedNode(t)
	if _, err := os.Stat("node_modules/faye/client/faye-browser.js"); err != nil {
		t.Fatal("faye's browser build missing: run scripts/test-deps.sh (npm ci in interop/)")
	}
	n := suite.Start(t)
	for _, tr := range []string{"long-polling", "cross-origin-long-polling", "callback-polling"} {
		t.Run(tr, func(t *testing.T) { nodetest.RunScript(t, n, nil, "browser-faye.mjs", tr) })
	}
}

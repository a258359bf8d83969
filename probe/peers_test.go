package probe_test

import (
	"testing"

	"wsfleet/internal/nodetest"
)

// suite starts the servers the end-to-end tests run the probe against;
// its wsfleet nodes hold a /meta/connect for 5s.
var suite = &nodetest.Suite{Name: "probe", AdminToken: adminToken, Flags: []string{"--timeout", "5s"}}

func TestMain(m *testing.M) { suite.Main(m) }

// extraPeers lists the servers besides Faye that the end-to-end tests run
// against: a real `wsfleet serve` process on the memory broker.
func extraPeers() []peer {
	return []peer{{name: "wsfleet", start: func(t *testing.T, noHistory bool) *nodetest.Node {
		if noHistory {
			return suite.Start(t, "--history-max-msgs", "1")
		}
		return suite.Start(t)
	}}}
}

package interop

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
	"wsfleet/nodeapi"
)

// wsConnections reads a node's open websocket count from its metrics.
func wsConnections(t *testing.T, n *nodetest.Node) float64 {
	t.Helper()
	v, err := nodetest.Metric(http.DefaultClient, n.URL(), `wsfleet_connections{transport="websocket"}`)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCometDClusterDrain is issue 4's promise put to CometD: two nodes
// sharing an embedded NATS behind a round-robin proxy without stickiness,
// CometD clients on all three of its transports, one node drained while
// messages flow; every client must receive every message once, in order.
func TestCometDClusterDrain(t *testing.T) {
	suite.NeedNode(t)
	for _, mode := range []string{"drain", "kill"} {
		t.Run(mode, func(t *testing.T) { runCluster(t, mode) })
	}
}

// runCluster drains (or kill -9s) ws-02 a quarter into the messages. The
// kill shows the loss a drain exists to prevent, which proves the test
// can see loss.
func runCluster(t *testing.T, mode string) {
	nodes := suite.StartCluster(t, 2, "--drain-window", "2s", "--drain-max-rate", "100", "--drain-deadline", "20s")
	n1, n2 := nodes[0], nodes[1]
	proxy := nodetest.NewProxy(t, n1.Addr, n2.Addr)

	feed := func(transport string, count int) *nodetest.Listener {
		return nodetest.StartListener(t, "cometd/"+transport, []string{"WSFLEET_URL=" + proxy.URL},
			"listen.mjs", transport, fmt.Sprint(count), "/cluster/feed")
	}
	listeners := []*nodetest.Listener{
		feed("websocket", 3),
		feed("long-polling", 2),
		feed("callback-polling", 2),
	}
	// the websocket clients dial first, alternately to each node
	if ws := wsConnections(t, n2); ws == 0 {
		t.Fatal("no websocket client on ws-02: the test could not see a drain or a kill")
	}
	t.Logf("connections: ws-01 %s, ws-02 %s", n1.Connections(), n2.Connections())

	const total = 200
	nodetest.Feed(t, proxy.URL, adminToken, "/cluster/feed", total, func(i int) {
		if i == 50 && mode == "drain" {
			if err := n2.Drain(nodeapi.DrainRequest{Window: nodeapi.Dur(2 * time.Second), MaxRate: 100, Deadline: nodeapi.Dur(20 * time.Second)}); err != nil {
				t.Fatal(err)
			}
		}
		if i == 50 && mode == "kill" {
			n2.Kill()
		}
	})
	nodetest.CheckDelivery(t, func() []nodetest.ClientRecord {
		var recs []nodetest.ClientRecord
		for _, l := range listeners {
			recs = append(recs, l.Report(t)...)
		}
		return recs
	}, total, mode == "kill")
}

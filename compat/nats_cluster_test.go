package compat

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"wsfleet/broker/natstest"
	"wsfleet/internal/nodetest"
	"wsfleet/nodeapi"
)

// TestNATSClusterFailover is issue 18's three-NATS test: three nats-server
// processes (the version go.mod pins, built by scripts/test-deps.sh) in a
// JetStream cluster, two `wsfleet serve` nodes given the list (the stream
// and the session bucket get three replicas), faye and halley clients on
// both transports and Go clients behind a proxy that skips nodes that are
// not ready, publishes through both nodes; the NATS server leading the
// stream is killed (SIGKILL) mid-traffic and restarted. No message is
// lost, no publish fails, and both nodes are ready again by themselves.
func TestNATSClusterFailover(t *testing.T) {
	suite.NeedNode(t)
	c := natstest.Start(t, natstest.Newest(t), 3)
	// The nodes' default --timeout (30 s), not the suite's 5 s: a long-poll
	// whose answer waits out a leader election (4 to 9 s after a crash)
	// must still reach the client, and halley gives up 0.5 s after the
	// timeout, 1.5 s after a 5 s timeout's hold.
	nodes, proxyURL := natsNodes(t, c.URLs(), "--timeout", "30s")
	report := feedClients(t, proxyURL)

	const total = 300
	var leader *natstest.Server
	nodetest.Feed(t, proxyURL, adminToken, "/cluster/feed", total, func(i int) {
		switch i {
		case 60:
			if leader = c.StreamLeader(t, "WSFLEET"); leader == nil {
				t.Fatal("no stream leader")
			}
			t.Logf("killing NATS %s, the stream's leader", leader.Name)
			leader.Kill()
		case 200:
			leader.Start()
		}
	})
	nodetest.CheckDelivery(t, report, total, false)
	for i, n := range nodes {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(n.URL() + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("ws-0%d not ready 30s after NATS %s came back", i+1, leader.Name)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// TestDrainOnOldestNATS is issue 18's first "Done when": a drain on the
// oldest supported nats-server (Debian 12's 2.9.10, installed by
// scripts/test-deps.sh) loses nothing. Before, every replay failed there
// ("multiple consumer filter subjects not supported by nats-server"), the
// adopting node took each session over without it, and the drain lost
// what was published meanwhile.
func TestDrainOnOldestNATS(t *testing.T) {
	suite.NeedNode(t)
	c := natstest.Start(t, natstest.Oldest(t), 1)
	nodes, proxyURL := natsNodes(t, c.URLs(), "--drain-window", "2s", "--drain-max-rate", "100", "--drain-deadline", "20s")
	report := feedClients(t, proxyURL)
	if st, err := nodes[1].Status(); err != nil || st.Connections == 0 {
		t.Fatalf("no client on ws-02 (%v): the test could not see a drain", err)
	}
	const total = 200
	nodetest.Feed(t, proxyURL, adminToken, "/cluster/feed", total, func(i int) {
		if i == 40 {
			if err := nodes[1].Drain(nodeapi.DrainRequest{Window: nodeapi.Dur(2 * time.Second), MaxRate: 100, Deadline: nodeapi.Dur(20 * time.Second)}); err != nil {
				t.Fatal(err)
			}
		}
	})
	nodetest.CheckDelivery(t, report, total, false)
}

// natsNodes starts two `wsfleet serve` nodes on the NATS servers at urls
// with extra flags, and a proxy in front of them that skips nodes that are
// not ready; their logs go to the test's output when it fails.
func natsNodes(t *testing.T, urls string, extra ...string) (nodes []*nodetest.Node, proxyURL string) {
	t.Helper()
	for i := range 2 {
		nodes = append(nodes, suite.Start(t, append([]string{"--node-id", fmt.Sprintf("ws-%02d", i+1), "--nats", urls}, extra...)...))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("ws-0%d log:\n%s", i+1, n.Log())
			}
		}
	})
	return nodes, nodetest.NewProxy(t, nodes[0].Addr, nodes[1].Addr).URL
}

// feedClients subscribes faye and halley clients, two of each on each
// transport, and two Go clients to /cluster/feed through proxyURL, and
// returns what CheckDelivery asks for their records.
func feedClients(t *testing.T, proxyURL string) func() []nodetest.ClientRecord {
	t.Helper()
	var listeners []*nodetest.Listener
	for _, kind := range []string{"faye", "halley"} {
		for _, transport := range []string{"websocket", "long-polling"} {
			listeners = append(listeners, nodetest.StartListener(t, kind+"/"+transport,
				[]string{"WSFLEET_URL=" + proxyURL}, "listen.js", kind, transport, "2", "/cluster/feed"))
		}
	}
	gos := startGoClients(t, proxyURL, 2)
	return func() []nodetest.ClientRecord {
		var all []nodetest.ClientRecord
		for _, l := range listeners {
			all = append(all, l.Report(t)...)
		}
		return append(all, gos.report()...)
	}
}

package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"wsfleet/client"
	"wsfleet/internal/nodetest"
	"wsfleet/nodeapi"
)

// This file is issue 4's cluster test: three `wsfleet serve` processes (one
// hosting the embedded NATS), a round-robin proxy in front of them that
// skips nodes that are not ready, and faye, halley and Go clients; one node
// is drained (or killed) while messages flow.

// goListener holds Go clients and records what they receive.
type goListener struct {
	mu      sync.Mutex
	recs    []*nodetest.ClientRecord
	clients []*client.Client
}

func startGoClients(t *testing.T, proxyURL string, count int) *goListener {
	t.Helper()
	g := &goListener{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range count {
		rec := &nodetest.ClientRecord{Kind: "go/websocket"}
		var last time.Time
		c, err := client.Dial(ctx, client.Config{URL: proxyURL + "/bayeux", RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		err = c.Subscribe(ctx, "/cluster/feed", func(d client.Delivery) {
			var v struct{ N int }
			json.Unmarshal(d.Data, &v)
			g.mu.Lock()
			if now := time.Now(); !last.IsZero() && int(now.Sub(last).Milliseconds()) > rec.MaxGapMs {
				rec.MaxGapMs = int(now.Sub(last).Milliseconds())
			}
			last = time.Now()
			rec.Got = append(rec.Got, v.N)
			g.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		g.recs = append(g.recs, rec)
		g.clients = append(g.clients, c)
	}
	return g
}

func (g *goListener) report() []nodetest.ClientRecord {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []nodetest.ClientRecord
	for i, r := range g.recs {
		cp := *r
		cp.Got = append([]int(nil), r.Got...)
		cp.Handshakes = int(g.clients[i].Stats().Handshakes)
		out = append(out, cp)
	}
	return out
}

func TestCluster(t *testing.T) {
	suite.NeedNode(t)
	for _, mode := range []string{"drain", "kill"} {
		t.Run(mode, func(t *testing.T) { runCluster(t, mode) })
	}
}

func runCluster(t *testing.T, mode string) {
	nodes := suite.StartCluster(t, 3, "--timeout", "5s", "--drain-window", "2s", "--drain-max-rate", "100", "--drain-deadline", "20s")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	t.Cleanup(func() {
		// a delivery failure names clients, not nodes: the node logs say
		// which node answered what
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("ws-0%d log:\n%s", i+1, n.Log())
			}
		}
	})
	proxy := nodetest.NewProxy(t, n1.Addr, n2.Addr, n3.Addr)

	feed := func(kind, transport string, count int) *nodetest.Listener {
		return nodetest.StartListener(t, kind+"/"+transport, []string{"WSFLEET_URL=" + proxy.URL},
			"listen.js", kind, transport, fmt.Sprint(count), "/cluster/feed")
	}
	listeners := []*nodetest.Listener{
		feed("faye", "websocket", 3),
		feed("halley", "websocket", 3),
		feed("faye", "long-polling", 2),
		feed("halley", "long-polling", 2),
	}
	gos := startGoClients(t, proxy.URL, 3)

	st2, err := n2.Status()
	if err != nil {
		t.Fatal(err)
	}
	on2 := st2.Connections
	if on2 == 0 {
		t.Fatalf("no client on ws-02: the test could not see a drain")
	}
	t.Logf("connections: ws-01 %s, ws-02 %d, ws-03 %s", n1.Connections(), on2, n3.Connections())

	const total = 300
	nodetest.Feed(t, proxy.URL, adminToken, "/cluster/feed", total, func(i int) {
		switch {
		case i == 60 && mode == "drain":
			if err := n2.Drain(nodeapi.DrainRequest{Window: nodeapi.Dur(2 * time.Second), MaxRate: 100, Deadline: nodeapi.Dur(20 * time.Second)}); err != nil {
				t.Fatal(err)
			}
		case i == 60 && mode == "kill":
			n2.Kill()
		}
	})
	nodetest.CheckDelivery(t, func() []nodetest.ClientRecord {
		var all []nodetest.ClientRecord
		for _, l := range listeners {
			all = append(all, l.Report(t)...)
		}
		return append(all, gos.report()...)
	}, total, mode == "kill")
	if mode == "drain" {
		// a drained node exits by itself, with status 0
		if exited, err := n2.WaitExit(20 * time.Second); !exited {
			t.Errorf("ws-02 still runs after its drain")
		} else if err != nil {
			t.Errorf("ws-02 exited with %v", err)
		}
	}
}

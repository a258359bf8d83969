package compat

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
	"wsfleet/nodeapi"
)

// TestClusterShed is issue 16's node-side cluster test: two `wsfleet serve`
// nodes on NATS behind the round-robin proxy that skips nodes whose
// /readyz fails. Websocket clients of one library (faye, then halley)
// connect while only ws-01 is ready (ws-02 cordoned); then ws-02 is
// uncordoned and ws-01 cordoned, and ws-01 sheds some of its clients
// (POST /admin/shed) while messages flow. The shed clients reconnect
// through the proxy, which now sends them to ws-02; every client, moved
// or not, receives every message once, in order, without a second
// handshake; ws-01's shed counter and ws-02's received counter both say
// how many moved.
//
// Websocket only: with shared sessions (NATS) a long-polling client is
// held by no node between its polls, so cordoning ws-01 alone moves it.
func TestClusterShed(t *testing.T) {
	suite.NeedNode(t)
	for _, kind := range []string{"faye", "halley"} {
		t.Run(kind, func(t *testing.T) { runClusterShed(t, kind) })
	}
}

func runClusterShed(t *testing.T, kind string) {
	const clients, shed, total = 4, 2, 150
	nodes := suite.StartCluster(t, 2)
	a, b := nodes[0], nodes[1]
	t.Cleanup(func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("ws-0%d log:\n%s", i+1, n.Log())
			}
		}
	})
	ctx := context.Background()
	api := &nodeapi.Client{Token: adminToken}
	proxy := nodetest.NewProxy(t, a.Addr, b.Addr)
	// the proxy polls /readyz every 100 ms
	settle := func() { time.Sleep(400 * time.Millisecond) }

	if err := api.Cordon(ctx, b.URL(), true); err != nil {
		t.Fatal(err)
	}
	settle()
	l := nodetest.StartListener(t, kind+"/websocket", []string{"WSFLEET_URL=" + proxy.URL},
		"listen.js", kind, "websocket", fmt.Sprint(clients), "/cluster/feed")
	stA, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if stB, err := b.Status(); err != nil || stA.Connections != clients || stB.Connections != 0 || !stB.Cordoned {
		t.Fatalf("before the shed: ws-01 %+v; ws-02 %+v, %v; want every client on ws-01", stA, stB, err)
	}

	if err := api.Cordon(ctx, b.URL(), false); err != nil {
		t.Fatal(err)
	}
	if err := api.Cordon(ctx, a.URL(), true); err != nil {
		t.Fatal(err)
	}
	settle()
	nodetest.Feed(t, proxy.URL, adminToken, "/cluster/feed", total, func(i int) {
		if i != 40 {
			return
		}
		res, err := api.Shed(ctx, a.URL(), nodeapi.ShedRequest{ID: "compat-" + kind, Count: shed, Window: nodeapi.Dur(time.Second), MaxRate: 20})
		if err != nil || res.Releasing != shed {
			t.Fatalf("shed: %+v, %v", res, err)
		}
	})
	recs := func() []nodetest.ClientRecord { return l.Report(t) }
	nodetest.CheckDelivery(t, recs, total, false)
	for i, r := range recs() {
		if r.Handshakes != 1 {
			t.Errorf("client %d %s handshook %d times: its session was not handed over", i, r.Kind, r.Handshakes)
		}
	}

	stA, err = a.Status()
	if err != nil {
		t.Fatal(err)
	}
	stB, err := b.Status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the shed: ws-01 %d connections, shed %+v; ws-02 %d connections, received %d", stA.Connections, stA.Shed, stB.Connections, stB.Received)
	if stA.Shed != (nodeapi.ShedStatus{Requested: shed, Released: shed}) || stA.Connections != clients-shed || stA.State != nodeapi.StateReady || !stA.Cordoned {
		t.Errorf("ws-01 after the shed: %+v", stA)
	}
	if stB.Received != shed || stB.Connections != shed {
		t.Errorf("ws-02 after the shed: %+v", stB)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, m := range []struct {
		n      *nodetest.Node
		series string
		want   float64
	}{
		{a, "wsfleet_clients_shed_total", shed},
		{b, "wsfleet_sessions_received_total", shed},
		{a, "wsfleet_sessions_received_total", 0},
		{b, "wsfleet_clients_shed_total", 0},
		{a, "wsfleet_node_cordoned", 1},
		{b, "wsfleet_node_cordoned", 0},
	} {
		if got, err := nodetest.Metric(hc, m.n.URL(), m.series); err != nil || got != m.want {
			t.Errorf("%s of %s: %v, %v; want %v", m.series, m.n.Addr, got, err, m.want)
		}
	}
}

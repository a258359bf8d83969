package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"wsfleet/broker"
	"wsfleet/broker/natstest"
)

// TestNATSOutage runs a node on a real NATS (embedded nats-server with
// JetStream), stops NATS under it and brings it back: the node reports
// not-ready and the broker down while it is away, keeps its client, and
// delivers again once NATS is back.
func TestNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server twice")
	}
	addr := ""
	for range 100 {
		a := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if ln, err := net.Listen("tcp", a); err == nil {
			ln.Close()
			addr = a
			break
		}
	}
	store := t.TempDir()
	start := func() *broker.Embedded {
		e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: addr, StoreDir: store})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	br, err := broker.NewNATS(ctx, broker.NATSOptions{URLs: "nats://" + addr, MemoryStorage: true,
		ReconnectWait: 50 * time.Millisecond, ReconnectMaxWait: 200 * time.Millisecond,
		PublishTimeout: 2 * time.Second}) // reported and failing after 2s, not a leader election's 15s
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	n := startNode(t, func(c *Config) { c.Broker = br; c.SharedSessions = true })
	ready := func() int { return readyz(t, n) }
	waitFor := func(what string, cond func() bool) { t.Helper(); waitWithin(t, what, 15*time.Second, cond) }
	p := dialWS(t, n)
	p.handshake(nil)
	p.subscribe("/f", nil)
	n.publish(`{"channel":"/f","data":1}`)
	p.next(isData)
	if ready() != 200 || scrape(t, n, "wsfleet_broker_up") != 1 {
		t.Fatal("node not ready on a working NATS")
	}

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := e.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	waitFor("not ready", func() bool { return ready() == 503 })
	if scrape(t, n, "wsfleet_broker_up") != 0 {
		t.Fatal("broker reported up while NATS is away")
	}
	if code, _ := n.publish(`{"channel":"/f","data":"lost"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("publish without NATS: %d, want 503", code)
	}
	if scrape(t, n, "wsfleet_broker_errors_total") == 0 {
		t.Fatal("failed publish not counted")
	}
	if st := n.srv.Status(); st.Connections != 1 || st.Sessions != 1 {
		t.Fatalf("node dropped its client while NATS was away: %+v", st)
	}

	e = start()
	defer e.Shutdown(context.Background())
	waitFor("ready again", func() bool { return ready() == 200 })
	waitFor("publish again", func() bool {
		code, _ := n.publish(`{"channel":"/f","data":2}`)
		return code == 200
	})
	if m := p.next(isData); m["data"] != float64(2) {
		t.Fatalf("after NATS came back: %v", m)
	}
}

// TestNATSStreamLostWhileConnected: a node connected to a live NATS server
// whose stream has lost its quorum (two of three servers of the cluster
// down) cannot publish; it reports not-ready although its connection is
// up (before issue 18 /readyz kept answering 200 and every publish 503),
// and ready again by itself once the servers are back.
func TestNATSStreamLostWhileConnected(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-server processes")
	}
	c := natstest.Start(t, natstest.Newest(t), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	br, err := broker.NewNATS(ctx, broker.NATSOptions{URLs: c.Servers[0].URL(), Name: "quorum",
		ReconnectWait: 50 * time.Millisecond, ReconnectMaxWait: 200 * time.Millisecond,
		PublishTimeout: 2 * time.Second, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if br.Replicas() != 3 {
		t.Fatalf("replicas %d, want 3", br.Replicas())
	}
	n := startNode(t, func(c *Config) { c.Broker = br; c.SharedSessions = true })
	ready := func() int { return readyz(t, n) }
	// a leader without its quorum steps down after 10 s; a loaded machine
	// stretches that
	waitFor := func(what string, cond func() bool) { t.Helper(); waitWithin(t, what, 90*time.Second, cond) }
	if code, _ := n.publish(`{"channel":"/q","data":1}`); code != 200 || ready() != 200 {
		t.Fatalf("publish %d / readyz %d on a working cluster", code, ready())
	}
	c.Servers[1].Kill()
	c.Servers[2].Kill()
	waitFor("not ready", func() bool { return ready() == 503 })
	if br.ConnectedURL() == "" {
		t.Fatal("the client lost its connection: the test must see readiness beyond it")
	}
	if code, _ := n.publish(`{"channel":"/q","data":2}`); code != http.StatusServiceUnavailable {
		t.Fatalf("publish without a quorum: %d, want 503", code)
	}
	c.Servers[1].Start()
	c.Servers[2].Start()
	waitFor("ready again", func() bool { return ready() == 200 })
	waitFor("publish again", func() bool {
		code, _ := n.publish(`{"channel":"/q","data":3}`)
		return code == 200
	})
}

// readyz is the node's /readyz status code.
func readyz(t *testing.T, n *node) int {
	t.Helper()
	resp, err := http.Get(n.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitWithin polls cond every 50ms and fails t when it is still false
// after within.
func waitWithin(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

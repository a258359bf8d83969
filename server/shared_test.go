package server

import (
	"fmt"
	"testing"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// sharedNodes returns n nodes sharing one memory broker with shared
// sessions, as a NATS cluster runs them.
func sharedNodes(t *testing.T, n int) []*node {
	br := broker.NewMemory(broker.MemoryOptions{})
	var out []*node
	for i := range n {
		out = append(out, startNode(t, func(c *Config) {
			c.NodeID = fmt.Sprintf("n%d", i)
			c.Broker = br
			c.SharedSessions = true
		}))
	}
	return out
}

// TestLongPollingWithoutStickiness sends every request of a long-polling
// client to the next node, as a round-robin load balancer does.
func TestLongPollingWithoutStickiness(t *testing.T) {
	nodes := sharedNodes(t, 3)
	next := 0
	p := &lpPeer{t: t}
	rr := func() { p.n = nodes[next%len(nodes)]; next++ }
	rr()
	if h := p.handshake(nil); h["successful"] != true {
		t.Fatalf("handshake %v", h)
	}
	rr()
	if _, rs := p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/h"}); rs[0]["successful"] != true {
		t.Fatalf("subscribe on another node: %v", rs)
	}
	const total = 40
	done := publishing(t, nodes[0], total, 10*time.Millisecond)
	var got []msg
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < total && time.Now().Before(deadline) {
		rr()
		reply, data := p.connect()
		if reply["successful"] != true {
			t.Fatalf("connect on %s: %v", p.n.srv.cfg.NodeID, reply)
		}
		got = append(got, data...)
	}
	<-done
	checkExactlyOnce(t, got, total)
	// a subscription made on one node is honoured by a connect held on
	// another
	rr()
	if _, rs := p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/other"}); rs[0]["successful"] != true {
		t.Fatalf("second subscribe: %v", rs)
	}
	nodes[1].publish(`{"channel":"/other","data":"x"}`)
	rr()
	if _, data := p.connect(); len(data) != 1 || data[0]["data"] != "x" {
		t.Fatalf("connect after a subscribe elsewhere: %v", data)
	}
}

// TestFayeStyleUpgradeToAnotherNode handshakes over HTTP on one node and
// opens the websocket on another, as faye does behind a load balancer.
func TestFayeStyleUpgradeToAnotherNode(t *testing.T) {
	nodes := sharedNodes(t, 2)
	lp := &lpPeer{t: t, n: nodes[0]}
	lp.handshake(nil)
	p := dialWS(t, nodes[1])
	p.clientID = lp.clientID
	p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	if r := p.subscribe("/u", nil); r["successful"] != true {
		t.Fatalf("subscribe over the websocket: %v", r)
	}
	nodes[0].publish(`{"channel":"/u","data":1}`)
	if m := p.next(isData); m["data"] != float64(1) {
		t.Fatalf("got %v", m)
	}
	// the websocket drops; the client comes back on the other node and
	// misses nothing
	p.c.CloseNow()
	<-p.closed
	time.Sleep(50 * time.Millisecond)
	nodes[0].publish(`{"channel":"/u","data":2}`)
	q := dialWS(t, nodes[0])
	q.clientID = lp.clientID
	q.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	nodes[1].publish(`{"channel":"/u","data":3}`)
	got := q.dataN(2)
	if got[0]["data"] != float64(2) || got[1]["data"] != float64(3) {
		t.Fatalf("after reconnecting elsewhere: %v", got)
	}
	q.noData(100 * time.Millisecond)
}

// TestReplaySinceBeforeFirstConnect is the Go client after its node died:
// a new handshake, a subscribe with ext.since, then the first connect, each
// possibly on another node.
func TestReplaySinceBeforeFirstConnect(t *testing.T) {
	nodes := sharedNodes(t, 2)
	var seqs []uint64
	for i := range 4 {
		_, res := nodes[0].publish(fmt.Sprintf(`{"channel":"/s","data":%d}`, i))
		seqs = append(seqs, res[0].Seq)
	}
	for _, tr := range []string{"websocket", "long-polling"} {
		t.Run(tr, func(t *testing.T) {
			var got []msg
			if tr == "websocket" {
				p := dialWS(t, nodes[1])
				p.send(msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})
				p.clientID = p.next(onChannel(bayeux.ChannelHandshake))["clientId"].(string)
				if r := p.subscribe("/s", msg{"since": seqs[1]}); r["successful"] != true {
					t.Fatalf("subscribe %v", r)
				}
				p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
				got = p.dataN(2)
				p.noData(100 * time.Millisecond)
			} else {
				p := &lpPeer{t: t, n: nodes[0]}
				p.handshake(nil)
				p.n = nodes[1]
				p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/s", "ext": msg{"since": seqs[1]}})
				p.n = nodes[0]
				_, got = p.connect()
			}
			if len(got) != 2 || got[0]["data"] != float64(2) || got[1]["data"] != float64(3) {
				t.Fatalf("replayed %v, want data 2 and 3", got)
			}
		})
	}
}

// TestLostLongPollAnswerIsResent: a client that gave up on a connect's
// answer sends the same connect again (faye and halley resend the same
// message, id included); whichever node gets it answers with what the lost
// answer held. A connect with a new id means the answer arrived.
func TestLostLongPollAnswerIsResent(t *testing.T) {
	nodes := sharedNodes(t, 2)
	p := &lpPeer{t: t, n: nodes[0]}
	p.handshake(nil)
	p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/l"})
	nodes[0].publish(`[{"channel":"/l","data":1},{"channel":"/l","data":2}]`)
	connect := func(n *node, id string) []msg {
		p.n = n
		_, rs := p.post(msg{"channel": bayeux.ChannelConnect, "connectionType": "long-polling", "id": id})
		var data []msg
		for _, m := range rs {
			if isData(m) {
				data = append(data, m)
			}
		}
		return data
	}
	if got := connect(nodes[0], "c1"); len(got) != 2 {
		t.Fatalf("first answer %v", got)
	}
	// the answer is "lost": the client repeats c1, here on the other node
	if got := connect(nodes[1], "c1"); len(got) != 2 || got[0]["data"] != float64(1) {
		t.Fatalf("repeated connect got %v, want the lost answer again", got)
	}
	nodes[1].publish(`{"channel":"/l","data":3}`)
	if got := connect(nodes[0], "c2"); len(got) != 1 || got[0]["data"] != float64(3) {
		t.Fatalf("next connect got %v, want only the new message", got)
	}
}

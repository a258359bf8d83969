package broker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"wsfleet/broker"
	"wsfleet/broker/brokertest"
	"wsfleet/broker/natstest"
)

// clusterOptions are the broker settings of the cluster tests: the
// replica count picked from the three servers the client knows, and the
// default publish deadline (longer than a leader election).
func clusterOptions(c *natstest.Cluster, name string) broker.NATSOptions {
	return broker.NATSOptions{URLs: c.URLs(), Name: name, ReconnectWait: 50 * time.Millisecond,
		ReconnectMaxWait: 500 * time.Millisecond, ProbeInterval: 500 * time.Millisecond}
}

// TestNATSClusterFailover runs two nodes on a three-server JetStream
// cluster, publishes through both while the stream's leader is killed
// (SIGKILL) and restarted: every publish succeeds, both nodes get every
// message once and in order, and both report healthy again by themselves.
func TestNATSClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-server processes")
	}
	c := natstest.Start(t, natstest.Newest(t), 3)
	var nodes []*broker.NATS
	for i := range 2 {
		o := clusterOptions(c, fmt.Sprint("node", i))
		o.URLs = c.Servers[i].URL() // one server given: the others are discovered
		nodes = append(nodes, newNATS(t, o.URLs, o))
	}
	if r := nodes[0].Replicas(); r != 3 {
		t.Fatalf("replicas picked on a three-server cluster = %d, want 3", r)
	}
	type got struct {
		mu   sync.Mutex
		seqs []uint64
	}
	recv := make([]*got, len(nodes))
	for i, n := range nodes {
		g := &got{}
		recv[i] = g
		stop, err := n.Subscribe(context.Background(), func(m broker.Message) {
			g.mu.Lock()
			g.seqs = append(g.seqs, m.Seq)
			g.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	leader := c.StreamLeader(t, "WSFLEET")
	if leader == nil {
		t.Fatal("no stream leader")
	}
	var (
		published sync.Map
		failures  atomic.Int64
		wg        sync.WaitGroup
		stopPub   atomic.Bool
	)
	for i, n := range nodes {
		wg.Go(func() {
			for k := 0; !stopPub.Load(); k++ {
				seq, err := n.Publish(context.Background(), fmt.Sprintf("/feed/%d", i), []byte(fmt.Sprint(k)))
				if err != nil {
					failures.Add(1)
					t.Errorf("node%d publish %d: %v", i, k, err)
					continue
				}
				if _, dup := published.LoadOrStore(seq, true); dup {
					t.Errorf("sequence %d given to two publishes", seq)
				}
				time.Sleep(time.Duration(5+rand.IntN(10)) * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	t.Logf("killing the stream leader %s", leader.Name)
	leader.Kill()
	time.Sleep(3 * time.Second)
	leader.Start()
	time.Sleep(2 * time.Second)
	stopPub.Store(true)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d publishes failed", n)
	}
	var want []uint64
	published.Range(func(k, _ any) bool { want = append(want, k.(uint64)); return true })
	if len(want) < 50 {
		t.Fatalf("only %d publishes: the test saw no traffic", len(want))
	}
	top := uint64(0)
	for _, s := range want {
		top = max(top, s)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, g := range recv {
		for {
			g.mu.Lock()
			n := len(g.seqs)
			last := uint64(0)
			if n > 0 {
				last = g.seqs[n-1]
			}
			g.mu.Unlock()
			if last >= top || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		g.mu.Lock()
		seen := map[uint64]bool{}
		prev := uint64(0)
		for _, s := range g.seqs {
			if s <= prev {
				t.Errorf("node%d: %d after %d", i, s, prev)
			}
			prev = s
			seen[s] = true
		}
		lost := 0
		for _, s := range want {
			if !seen[s] {
				lost++
			}
		}
		g.mu.Unlock()
		if lost > 0 {
			t.Errorf("node%d lost %d of %d messages", i, lost, len(want))
		}
	}
	for i, n := range nodes {
		deadline := time.Now().Add(20 * time.Second)
		for n.Healthy() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("node%d not healthy again: %v", i, n.Healthy())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d messages, leader %s killed and restarted, none lost", len(want), leader.Name)
}

// TestNATSClusterConformance runs the conformance suite on a three-server
// JetStream cluster (replicas 3), with one server killed (SIGKILL) a few
// milliseconds into each case, while the case runs, and restarted when it
// ends. The server killed is one the case's first node is not connected
// to (so that the case's "fresh broker is healthy" holds), often the
// stream's leader or the meta leader: the case runs through an election.
//
// It takes a minute or more (most cases wait out a leader election), so it
// runs with WSFLEET_NATS_CLUSTER=1: `make test-nats-cluster`.
func TestNATSClusterConformance(t *testing.T) {
	if os.Getenv("WSFLEET_NATS_CLUSTER") == "" {
		t.Skip("a minute or more: set WSFLEET_NATS_CLUSTER=1 (make test-nats-cluster)")
	}
	c := natstest.Start(t, natstest.Newest(t), 3)
	var (
		mu    sync.Mutex
		names = map[*testing.T]string{}
		n     int
	)
	brokertest.Run(t, func(t *testing.T, o brokertest.Options) broker.Broker {
		mu.Lock()
		id, ok := names[t]
		if !ok {
			n++
			id = fmt.Sprint("k", n)
			names[t] = id
		}
		mu.Unlock()
		opts := clusterOptions(c, id)
		opts.Stream, opts.SubjectPrefix, opts.SessionBucket = "K"+id, id, id+"_sessions"
		opts.HistoryMsgs = int64(o.HistoryMsgs)
		if ok {
			return newNATS(t, opts.URLs, opts)
		}
		// the first node of the case: restart what was killed after its
		// brokers are closed (cleanups run last registered first)
		var victim *natstest.Server
		killed := make(chan struct{})
		t.Cleanup(func() {
			<-killed
			victim.Start()
			c.WaitJetStream(t, 60*time.Second)
		})
		b := newNATS(t, opts.URLs, opts)
		for _, s := range c.Servers[n%3:] {
			if s.URL() != b.ConnectedURL() {
				victim = s
				break
			}
		}
		if victim == nil {
			victim = c.Servers[(n+1)%3]
			if victim.URL() == b.ConnectedURL() {
				victim = c.Servers[(n+2)%3]
			}
		}
		go func() {
			defer close(killed)
			time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
			victim.Kill()
		}()
		return b
	})
}

// TestEmbeddedCluster runs the in-process three-server cluster that the
// demo and `wsfleet cloud --nats-cluster 3` use: a broker given its URLs
// takes three replicas and keeps publishing while a server is shut down
// and started again on its store.
func TestEmbeddedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-servers")
	}
	c, err := broker.StartEmbeddedCluster(3, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(context.Background()) })
	b := newNATS(t, c.URLs(), broker.NATSOptions{Name: "emb", ReconnectWait: 50 * time.Millisecond, ReconnectMaxWait: 500 * time.Millisecond})
	if r := b.Replicas(); r != 3 {
		t.Fatalf("replicas = %d, want 3", r)
	}
	ctx := context.Background()
	// a second node starting later must leave the bucket's reads with
	// its leader (direct gets off), as the first made them
	newNATS(t, c.URLs(), broker.NATSOptions{Name: "emb2"})
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, name := range []string{"KV_wsfleet_sessions", "WSFLEET"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := st.CachedInfo().Config; cfg.AllowDirect || cfg.Replicas != 3 {
			t.Fatalf("%s: direct gets %v, replicas %d; want off and 3", name, cfg.AllowDirect, cfg.Replicas)
		}
	}
	publish := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := b.Publish(ctx, "/emb", []byte(fmt.Sprint(i))); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	publish(10)
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	publish(10)
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	publish(10)
	if got, err := b.History(ctx, []string{"/emb"}, 0); err != nil || len(got) != 30 {
		t.Fatalf("history: %d messages, %v; want 30", len(got), err)
	}
}

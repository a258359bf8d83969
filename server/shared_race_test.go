package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// hookStore is a node's view of the shared session store that runs a hook
// before the first write the node makes after arm: another node's request
// then lands between this node's read of a record and its write, the
// interleaving that a client spreading requests over nodes meets by
// chance.
type hookStore struct {
	broker.SessionStore
	mu   sync.Mutex
	hook func()
	load func() // runs before the first read after armLoad
}

// armLoad sets f to run before the node's next read of a record: another
// event then lands between the node's look-up of its own copy and its
// read of the store.
func (h *hookStore) armLoad(f func()) {
	h.mu.Lock()
	h.load = f
	h.mu.Unlock()
}

func (h *hookStore) LoadRev(ctx context.Context, id string) (broker.Session, uint64, error) {
	h.run(&h.load)
	return h.SessionStore.LoadRev(ctx, id)
}

func (h *hookStore) arm(f func()) {
	h.mu.Lock()
	h.hook = f
	h.mu.Unlock()
}

func (h *hookStore) fire() { h.run(&h.hook) }

// run runs and disarms the hook *f.
func (h *hookStore) run(f *func()) {
	h.mu.Lock()
	g := *f
	*f = nil
	h.mu.Unlock()
	if g != nil {
		g()
	}
}

func (h *hookStore) Save(ctx context.Context, s broker.Session) error {
	h.fire()
	return h.SessionStore.Save(ctx, s)
}

func (h *hookStore) Update(ctx context.Context, s broker.Session, rev uint64) (uint64, error) {
	h.fire()
	return h.SessionStore.Update(ctx, s, rev)
}

// hookBroker is a broker whose session store is a hookStore.
type hookBroker struct {
	broker.Broker
	store *hookStore
}

func (b *hookBroker) Sessions() broker.SessionStore { return b.store }

// hookedNodes returns two shared-session nodes on one memory broker; the
// second one's writes to the session store can be hooked.
func hookedNodes(t *testing.T) (a, b *node, hooks *hookStore, store broker.SessionStore) {
	br := broker.NewMemory(broker.MemoryOptions{})
	hooks = &hookStore{SessionStore: br.Sessions()}
	for i, bk := range []broker.Broker{br, &hookBroker{Broker: br, store: hooks}} {
		n := startNode(t, func(c *Config) {
			c.NodeID = fmt.Sprintf("n%d", i)
			c.Broker = bk
			c.SharedSessions = true
		})
		if i == 0 {
			a = n
		} else {
			b = n
		}
	}
	return a, b, hooks, br.Sessions()
}

// TestSubscribeDuringPollOnAnotherNodeIsKept is the CometD callback-polling
// failure: node B answers the client's long-poll and gives the session
// back to the store; node A takes the client's subscribe meanwhile and
// stores it between B's read of the record and B's write. B's write must
// not drop the subscription the client was told succeeded.
func TestSubscribeDuringPollOnAnotherNodeIsKept(t *testing.T) {
	a, b, hooks, store := hookedNodes(t)
	p := subscribedToX(t, a) // B's connect answers at once
	other := &lpPeer{t: t, n: a, clientID: p.clientID}
	var sub []msg
	hooks.arm(func() {
		_, sub = other.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/y"})
	})
	p.n = b
	if reply, data := p.connect(); reply["successful"] != true || len(data) != 1 || data[0]["data"] != float64(1) {
		t.Fatalf("connect on B: %v %v", reply, data)
	}
	if len(sub) != 1 || sub[0]["successful"] != true {
		t.Fatalf("subscribe /y on A during B's poll: %v", sub)
	}
	p.n = a
	wantBothKept(t, p, store)
}

// TestPollProgressDuringSubscribeOnAnotherNodeIsKept is the symmetric
// case: node B takes a subscribe for a session it does not hold live and
// reads the record; node A answers the client's long-poll and stores how
// far the client got before B writes. B's write must keep A's progress,
// or the next connect gives the client its messages again.
func TestPollProgressDuringSubscribeOnAnotherNodeIsKept(t *testing.T) {
	a, b, hooks, store := hookedNodes(t)
	p := subscribedToX(t, a)
	poller := &lpPeer{t: t, n: a, clientID: p.clientID}
	var first []msg
	hooks.arm(func() { _, first = poller.connect() })
	p.n = b
	if _, rs := p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/y"}); rs[0]["successful"] != true {
		t.Fatalf("subscribe /y on B: %v", rs)
	}
	if len(first) != 1 || first[0]["data"] != float64(1) {
		t.Fatalf("connect on A during B's subscribe: %v", first)
	}
	wantBothKept(t, p, store)
}

// subscribedToX handshakes a long-polling client on n, subscribes it to
// /x and publishes one message there, which its next connect gets at once.
func subscribedToX(t *testing.T, n *node) *lpPeer {
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	if _, rs := p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/x"}); rs[0]["successful"] != true {
		t.Fatalf("subscribe /x: %v", rs)
	}
	n.publish(`{"channel":"/x","data":1}`)
	return p
}

// wantBothKept checks that the record has both subscriptions and that p's
// next connect gets a message on /y and nothing it was given before.
func wantBothKept(t *testing.T, p *lpPeer, store broker.SessionStore) {
	t.Helper()
	rec, err := store.Load(context.Background(), p.clientID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rec.Subscriptions)
	if !slices.Equal(rec.Subscriptions, []string{"/x", "/y"}) {
		t.Fatalf("stored subscriptions %v, want [/x /y]", rec.Subscriptions)
	}
	p.n.publish(`{"channel":"/y","data":2}`)
	if _, data := p.connect(); len(data) != 1 || data[0]["data"] != float64(2) {
		t.Fatalf("next connect on %s: %v, want only the /y message", p.n.srv.cfg.NodeID, data)
	}
}

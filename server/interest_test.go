package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// TestNATSInterestReplayDuringSwitches is interest-based delivery seen by a
// client: node A reads from NATS only what its sessions subscribe to, and
// a client on A subscribes to one channel after another, each with a
// replay (ext.since), while node B publishes on eight channels every
// millisecond, so that every subscribe meets a consumer switch. The client
// gets every message of each channel after its since exactly once (the
// replay from History and the live path, merged by sequence), and A takes
// from NATS far less than the whole stream.
func TestNATSInterestReplayDuringSwitches(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an embedded nats-server")
	}
	e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	newBroker := func(name string) *broker.NATS {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		b, err := broker.NewNATS(ctx, broker.NATSOptions{URLs: e.ClientURL(), Name: name, MemoryStorage: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	a := startNode(t, func(c *Config) { c.NodeID, c.Broker = "a", newBroker("a") })
	b := startNode(t, func(c *Config) { c.NodeID, c.Broker = "b", newBroker("b") })

	type pub struct {
		seq uint64
		ch  string
	}
	var (
		mu   sync.Mutex
		pubs []pub
		last uint64
	)
	publishOn := func(ch string, n int) {
		code, res := b.publish(fmt.Sprintf(`{"channel":%q,"data":{"n":%d}}`, ch, n))
		if code != 200 || len(res) != 1 || !res[0].Successful {
			t.Errorf("publish on %s: %d %+v", ch, code, res)
			return
		}
		mu.Lock()
		pubs = append(pubs, pub{res[0].Seq, ch})
		last = max(last, res[0].Seq)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			publishOn(fmt.Sprintf("/r/%d", i%8), i)
			time.Sleep(time.Millisecond)
		}
	})

	p := dialWS(t, a)
	p.handshake(nil)
	since := map[string]uint64{}
	got, delivered := map[uint64]bool{}, map[uint64]string{}
	// take returns the next message matching pred, recording every data
	// message on the way
	take := func(pred func(msg) bool) msg {
		t.Helper()
		for {
			select {
			case m := <-p.in:
				if isData(m) {
					seq := seqOf(m)
					if got[seq] {
						t.Fatalf("seq %d on %v delivered twice", seq, m["channel"])
					}
					got[seq], delivered[seq] = true, fmt.Sprint(m["channel"])
				}
				if pred(m) {
					return m
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no message within 5s")
				return nil
			}
		}
	}
	for k := range 4 {
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		s := last - min(last, 5) // a few messages back: some replayed, the rest live
		mu.Unlock()
		ch := fmt.Sprintf("/r/%d", k)
		since[ch] = s
		p.send(msg{"channel": bayeux.ChannelSubscribe, "subscription": ch, "ext": msg{"since": s}})
		if r := take(onChannel(bayeux.ChannelSubscribe)); r["successful"] != true || fmt.Sprint(r["ext"]) != "map[replay:ok]" {
			t.Fatalf("subscribe %s: %v", ch, r)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	for k := range 4 {
		publishOn(fmt.Sprintf("/r/%d", k), -1)
	}
	if t.Failed() {
		return
	}
	want := map[uint64]string{}
	for _, m := range pubs {
		if s, ok := since[m.ch]; ok && m.seq > s {
			want[m.seq] = m.ch
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			var missing []string
			for seq, ch := range want {
				if !got[seq] {
					missing = append(missing, fmt.Sprint(seq, ch))
				}
			}
			t.Logf("since %v; not delivered: %v", since, missing)
		}
	})
	for len(got) < len(want) {
		take(isData)
	}
	for seq, ch := range delivered {
		if want[seq] != ch {
			t.Fatalf("seq %d on %s delivered, not wanted (since %v)", seq, ch, since)
		}
	}
	p.noData(200 * time.Millisecond)
	received := scrape(t, a, "wsfleet_broker_received_total")
	if total := float64(len(pubs)); received >= 0.75*total {
		t.Errorf("node a took %.0f of the %.0f messages from NATS; its client reads half of the channels", received, total)
	}
	t.Logf("%d published, %d delivered to the client, node a received %.0f from NATS", len(pubs), len(got), received)
}

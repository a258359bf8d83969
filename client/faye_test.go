package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/client"
	"wsfleet/internal/nodetest"
)

// startFaye starts Faye's own server, the reference peer, holding a
// /meta/connect for 2s, or skips when node and faye are not installed.
func startFaye(t *testing.T) *nodetest.Node { return suite.StartFaye(t, "--timeout", "2") }

// inbox collects deliveries.
type inbox struct {
	mu   sync.Mutex
	got  []client.Delivery
	more chan struct{}
}

func newInbox() *inbox { return &inbox{more: make(chan struct{}, 1)} }

func (b *inbox) add(d client.Delivery) {
	b.mu.Lock()
	b.got = append(b.got, d)
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

// waitN waits until n deliveries arrived and returns them.
func (b *inbox) waitN(t *testing.T, n int, within time.Duration) []client.Delivery {
	t.Helper()
	deadline := time.After(within)
	for {
		b.mu.Lock()
		if len(b.got) >= n {
			out := append([]client.Delivery(nil), b.got...)
			b.mu.Unlock()
			return out
		}
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-deadline:
			b.mu.Lock()
			defer b.mu.Unlock()
			var data []string
			for _, d := range b.got {
				data = append(data, string(d.Data))
			}
			t.Fatalf("got %d deliveries, want %d: %s", len(b.got), n, strings.Join(data, " "))
		}
	}
}

func TestAgainstFaye(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node")
	}
	for _, transport := range []string{client.WebSocket, client.LongPolling} {
		t.Run(transport, func(t *testing.T) {
			faye := startFaye(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := client.Config{URL: faye.Bayeux(), Transport: transport}
			sub, err := client.Dial(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			pub, err := client.Dial(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()

			box, wild := newInbox(), newInbox()
			if err := sub.Subscribe(ctx, "/chat/room1", box.add); err != nil {
				t.Fatal(err)
			}
			if err := sub.Subscribe(ctx, "/chat/*", wild.add); err != nil {
				t.Fatal(err)
			}
			if err := sub.Subscribe(ctx, "/chat/room1", box.add); err == nil {
				t.Fatal("second subscribe to the same pattern succeeded")
			}
			for i := range 5 {
				if err := pub.Publish(ctx, "/chat/room1", map[string]int{"n": i}); err != nil {
					t.Fatal(err)
				}
			}
			got := box.waitN(t, 5, 10*time.Second)
			for i, d := range got {
				var v struct{ N int }
				if err := json.Unmarshal(d.Data, &v); err != nil || v.N != i || d.Channel != "/chat/room1" {
					t.Fatalf("delivery %d = %s on %s, want n=%d", i, d.Data, d.Channel, i)
				}
			}
			wild.waitN(t, 5, 10*time.Second)

			if err := sub.Unsubscribe(ctx, "/chat/room1"); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(ctx, "/chat/room1", map[string]int{"n": 99}); err != nil {
				t.Fatal(err)
			}
			wild.waitN(t, 6, 10*time.Second)
			box.mu.Lock()
			n := len(box.got)
			box.mu.Unlock()
			if n != 5 {
				t.Fatalf("unsubscribed handler got %d deliveries, want 5", n)
			}
			if err := pub.Publish(ctx, "/bad channel", 1); err == nil {
				t.Fatal("publish on an invalid channel succeeded")
			}
			if err := sub.Disconnect(ctx); err != nil {
				t.Fatal(err)
			}
			if err := sub.Publish(ctx, "/chat/room1", 1); !errors.Is(err, client.ErrClosed) {
				t.Fatalf("publish after disconnect: %v, want ErrClosed", err)
			}
		})
	}
}

// TestFayeRestart kills Faye under a subscribed client and starts it again
// on the same port: the new server does not know the clientId, so the
// client must re-handshake and resubscribe by itself, and say so.
func TestFayeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node")
	}
	for _, transport := range []string{client.WebSocket, client.LongPolling} {
		t.Run(transport, func(t *testing.T) {
			faye := startFaye(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sub, states, box := dialSubscriber(ctx, t, client.Config{URL: faye.Bayeux(), Transport: transport})
			firstID := sub.ID()
			faye.Kill()
			if s := <-states; s.Up {
				t.Fatalf("state after kill = %+v, want down", s)
			}
			faye.Start() // again, on the same port
			s := <-states
			if !s.Up || !s.Rehandshake {
				t.Fatalf("state after restart = %+v, want up through a new handshake", s)
			}
			if sub.ID() == firstID {
				t.Fatal("clientId unchanged after a new server")
			}
			pub, err := client.Dial(ctx, client.Config{URL: faye.Bayeux(), Transport: transport})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			if err := pub.Publish(ctx, "/room", "after"); err != nil {
				t.Fatal(err)
			}
			box.waitN(t, 1, 10*time.Second)
			if st := sub.Stats(); st.Reconnects != 1 || st.Handshakes != 2 {
				t.Fatalf("stats = %+v, want 1 reconnect and 2 handshakes", st)
			}
		})
	}
}

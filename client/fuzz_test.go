package client

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"wsfleet/bayeux"
)

// FuzzReceive feeds the client's dispatcher whatever a server could send
// in a frame or a long-polling response. It must not panic, and it must
// hand each sequence number to the application at most once.
func FuzzReceive(f *testing.F) {
	f.Add([]byte(`[{"channel":"/a","data":1,"ext":{"seq":1}},{"channel":"/a","data":2,"ext":{"seq":1}}]`))
	f.Add([]byte(`[{"channel":"/meta/connect","successful":true,"id":"1"}]`))
	f.Add([]byte(`{"channel":"/a/b","data":{"x":"y"},"ext":{"seq":18446744073709551615}}`))
	f.Add([]byte(`[{"channel":"/a","data":null,"ext":"seq"}]`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		msgs, err := bayeux.DecodeMessages(frame)
		if err != nil {
			return
		}
		c := &Client{
			log: slog.New(slog.DiscardHandler), now: time.Now,
			subs: map[string]*subscription{}, pending: map[string]chan bayeux.Message{},
		}
		seen := map[uint64]bool{}
		c.subs["/**"] = &subscription{pattern: "/**", acked: true, handler: func(d Delivery) {
			if d.Seq > 0 && seen[d.Seq] {
				t.Fatalf("seq %d delivered twice", d.Seq)
			}
			seen[d.Seq] = true
			if !json.Valid(d.Data) {
				t.Fatalf("delivered invalid JSON %q", d.Data)
			}
		}}
		c.receive(msgs)
		c.receive(msgs) // a full redelivery must be dropped
	})
}

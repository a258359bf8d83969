package broker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"wsfleet/broker"
	"wsfleet/broker/brokertest"
	"wsfleet/broker/natstest"
)

// TestNATSServerVersions runs the conformance suite and a multi-pattern
// replay against the oldest supported nats-server (Debian's 2.9.10, whose
// consumers take one filter subject) and the newest (the version go.mod
// pins, built from its module). On 2.9.10 a replay of a session on
// several channels used to fail ("multiple consumer filter subjects not
// supported") and the node took the session over without it.
func TestNATSServerVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server processes")
	}
	for _, v := range []struct {
		name string
		bin  func(testing.TB) string
	}{{"oldest", natstest.Oldest}, {"newest", natstest.Newest}} {
		t.Run(v.name, func(t *testing.T) {
			bin := v.bin(t)
			c := natstest.Start(t, bin, 1)
			var n atomic.Int64
			// one stream, prefix and bucket per broker test: one server
			// serves them all
			names := map[*testing.T]string{}
			brokertest.Run(t, func(t *testing.T, o brokertest.Options) broker.Broker {
				id, ok := names[t]
				if !ok {
					id = fmt.Sprint("t", n.Add(1))
					names[t] = id
				}
				return newNATS(t, c.URLs(), broker.NATSOptions{Name: id, Stream: strings.ToUpper(id), SubjectPrefix: id,
					SessionBucket: id + "_sessions", HistoryMsgs: int64(o.HistoryMsgs)})
			})
			t.Run("ReplayOfSeveralChannels", func(t *testing.T) {
				b := newNATS(t, c.URLs(), broker.NATSOptions{Stream: "MULTI", SubjectPrefix: "multi", SessionBucket: "multi_sessions"})
				ctx := context.Background()
				var want []uint64
				for i, ch := range []string{"/a/1", "/b", "/c/x/y", "/a/2", "/d", "/b", "/c/z"} {
					seq, err := b.Publish(ctx, ch, []byte(fmt.Sprint(i)))
					if err != nil {
						t.Fatal(err)
					}
					if ch != "/d" {
						want = append(want, seq)
					}
				}
				got, err := b.History(ctx, []string{"/a/*", "/b", "/c/**"}, 0)
				if err != nil {
					t.Fatalf("History of three patterns: %v", err)
				}
				var seqs []uint64
				for _, m := range got {
					seqs = append(seqs, m.Seq)
				}
				if !slices.Equal(seqs, want) {
					t.Fatalf("History = %v, want %v in sequence order", seqs, want)
				}
			})
		})
	}
}

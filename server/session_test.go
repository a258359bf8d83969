package server

import (
	"slices"
	"testing"
	"time"
	"unsafe"
)

// TestResendLostAnswer covers what a long-polling connect gets again of
// the previous answer, which may have died with its connection.
func TestResendLostAnswer(t *testing.T) {
	answer := []outMsg{{seq: 11, b: []byte(`{"a":11}`)}, {seq: 12, b: []byte(`{"a":12}`)}, {seq: 13, b: []byte(`{"a":13}`)}}
	queued := []outMsg{{seq: 14, b: []byte(`{"a":14}`)}}
	for _, tc := range []struct {
		name      string
		pollID    string
		answer    []outMsg
		connectID string
		since     uint64
		hasSince  bool
		want      []uint64 // queue after, by seq
	}{
		{"nothing answered", "", nil, "7", 0, false, []uint64{14}},
		{"the same connect again: all of it", "6", answer, "6", 0, false, []uint64{11, 12, 13, 14}},
		{"a new connect: acknowledged", "6", answer, "7", 0, false, []uint64{14}},
		{"a new connect from a client that got 11", "6", answer, "7", 11, true, []uint64{12, 13, 14}},
		{"a new connect from a client that got all", "6", answer, "7", 13, true, []uint64{14}},
		{"a new connect from a client that got none", "6", answer, "7", 10, true, []uint64{11, 12, 13, 14}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := &session{rare: &sessionRare{pollID: tc.pollID, lastAnswer: slices.Clone(tc.answer)}, queue: slices.Clone(queued)}
			ss.resendLostAnswerLocked(tc.connectID, tc.since, tc.hasSince)
			var got []uint64
			for _, m := range ss.queue {
				got = append(got, m.seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("queue %v, want %v", got, tc.want)
			}
			if ss.rare.pollID != "" || ss.rare.lastAnswer != nil {
				t.Errorf("answer kept after a connect: pollID %q, %d messages", ss.rare.pollID, len(ss.rare.lastAnswer))
			}
		})
	}
}

// TestIdleWebsocketSessionIsCompact checks what an idle websocket session
// of an anonymous client keeps: none of the out-of-line state (the
// identity, sessionRare) and no message in fragments, and its held connect
// reply is the template shared with the other idle sessions, as is its
// subscription's channel name. Each of these was per session before,
// about 400 bytes of an idle session's cost.
func TestIdleWebsocketSessionIsCompact(t *testing.T) {
	nd := startNode(t, nil)
	const n = 3
	for range n {
		p := dialWS(t, nd)
		p.handshake(nil)
		if r := p.subscribe("/idle/a", nil); r["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
	}
	waitFor(t, func() bool { return heldConnects(nd.srv) == n }, "the connects are not all held")
	nd.srv.mu.RLock()
	defer nd.srv.mu.RUnlock()
	var tmpl, name *byte
	for id, ss := range nd.srv.sessions {
		ss.mu.Lock()
		ident, rare, held, wc, subs := ss.ident, ss.rare, ss.held, ss.ws, ss.subs
		ss.mu.Unlock()
		if len(subs) != 1 || subs[0] != "/idle/a" {
			t.Fatalf("session %s: subscriptions %q", id, subs)
		}
		if name != nil && unsafe.StringData(subs[0]) != name {
			t.Errorf("session %s: its channel name is a copy of its own", id)
		}
		name = unsafe.StringData(subs[0])
		if ident != nil || rare != nil {
			t.Errorf("session %s: identity %v, rare state %+v: want neither", id, ident, rare)
		}
		if wc == nil || wc.frag != nil {
			t.Fatalf("session %s: socket %v", id, wc)
		}
		if held.at == 0 {
			t.Fatalf("session %s: the held reply %q is a copy of its own", id, held.reply)
		}
		if tmpl != nil && &held.reply[0] != tmpl {
			t.Errorf("session %s: its held reply's template is not the others'", id)
		}
		tmpl = &held.reply[0]
	}
}

// TestReplayLeavesNoRareState checks that the end of a replay lets the
// session's rare state go when nothing else in it is set (a session taken
// over from another node comes with a replay: it must end as small as a
// new one), and keeps it when something is.
func TestReplayLeavesNoRareState(t *testing.T) {
	cases := []struct {
		name string
		rare sessionRare
		keep bool
	}{
		{"replay only", sessionRare{replaying: 1}, false},
		{"cursor moved, no poll", sessionRare{replaying: 1, acked: 7}, false},
		{"two replays, one done", sessionRare{replaying: 2}, true},
		{"long-polling answer kept", sessionRare{replaying: 1, pollID: "5", acked: 7}, true},
		{"connect count", sessionRare{replaying: 1, connects: 2, connectsFrom: time.Unix(5, 0)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rare := c.rare
			ss := &session{srv: &Server{cfg: Config{QueueLimit: 10}}, rare: &rare}
			if ss.mergeReplay([]outMsg{{seq: 3, b: []byte(`{}`)}}) {
				t.Fatal("overflow")
			}
			if kept := ss.rare != nil; kept != c.keep {
				t.Fatalf("rare state kept %v, want %v (%+v)", kept, c.keep, ss.rare)
			}
		})
	}
}

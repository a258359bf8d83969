package server

import (
	"slices"
	"testing"
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
			ss := &session{pollID: tc.pollID, lastAnswer: slices.Clone(tc.answer), queue: slices.Clone(queued)}
			ss.resendLostAnswerLocked(tc.connectID, tc.since, tc.hasSince)
			var got []uint64
			for _, m := range ss.queue {
				got = append(got, m.seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("queue %v, want %v", got, tc.want)
			}
			if ss.pollID != "" || ss.lastAnswer != nil {
				t.Errorf("answer kept after a connect: pollID %q, %d messages", ss.pollID, len(ss.lastAnswer))
			}
		})
	}
}

package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"wsfleet/probe"
)

// TestTailGaps puts gaps next to the change: the node a client left and
// reached (a replacement carries its old node's name, so each name says
// which), the cause, the phase and the engine's wait when the gap began,
// and how long the client took to reach its new node.
func TestTailGaps(t *testing.T) {
	start := time.Unix(5000, 0)
	changeStart := 10 * sec
	steps := []phaseStep{
		{At: 10 * sec, Phase: "canary", Waiting: "canary share: the canary takes its share (3 of 9 clients)"},
		{At: 12 * sec, Phase: "canary", Waiting: "baking until 10:42:07"},
		{At: 20 * sec, Phase: "first half", Waiting: "draining ws-01, ws-02"},
		{At: 30 * sec, Phase: "second half", Waiting: "draining ws-03, ws-04"},
		{At: 40 * sec, Phase: "succeeded", Waiting: "balance: waiting for the released clients to land"},
	}
	nodes := newGapNodes(
		map[int][]hop{
			1: {{0, "i-o1"}, {11 * sec, "i-c"}, {31 * sec, "i-n3"}},
			2: {{0, "i-o1"}, {21 * sec, "i-n1"}},
			3: {{0, "i-n1"}, {41 * sec, "i-n2"}},
			4: {{0, "i-o1"}, {22 * sec, "i-o1"}},
			5: {{0, "i-o2"}},
		},
		map[int][]hop{2: {{20*sec + 500*time.Millisecond, "i-o3"}, {21 * sec, "i-n1"}}},
		[]knownInstance{
			{ID: "i-o1", Name: "ws-01", Image: oldImage}, {ID: "i-o2", Name: "ws-02", Image: oldImage}, {ID: "i-o3", Name: "ws-03", Image: oldImage},
			{ID: "i-c", Name: "-", Image: newImage}, {ID: "i-n1", Name: "-", Image: newImage}, {ID: "i-n2", Name: "", Image: newImage},
			{ID: "i-n3", Name: "ws-03", Image: newImage},
		},
		map[string]string{"i-c": "canary", "i-n1": "ws-01", "i-n2": "ws-02", "i-n3": "wrong: the group's tag wins"},
		map[string]bool{"i-c": true},
	)
	gap := func(client int, down, length time.Duration, reconnect int) probe.Gap {
		return probe.Gap{Client: client, Down: start.Add(down), Up: start.Add(down + length), Len: length, Reconnect: reconnect}
	}
	tests := []struct {
		name  string
		gap   probe.Gap
		nodes *gapNodes
		want  TailGap
	}{
		{"canary share", gap(1, 10*sec+800*time.Millisecond, 300*time.Millisecond, 1), nodes, TailGap{
			Client: 1, At: 10*sec + 800*time.Millisecond, InChange: 800 * time.Millisecond, Len: 300 * time.Millisecond, Reconnect: 1, Moves: 1,
			From: "ws-01 (old)", To: "canary (canary)", Tries: 0, Reached: 200 * time.Millisecond, Phase: "canary",
			Waiting: "canary share: the canary takes its share (3 of 9 clients)", Cause: "canary share"}},
		{"canary retired", gap(1, 30*sec+900*time.Millisecond, 400*time.Millisecond, 2), nodes, TailGap{
			Client: 1, At: 30*sec + 900*time.Millisecond, InChange: 20*sec + 900*time.Millisecond, Len: 400 * time.Millisecond, Reconnect: 2, Moves: 2,
			From: "canary (canary)", To: "ws-03 (new)", Reached: 100 * time.Millisecond, Phase: "second half", Waiting: "draining ws-03, ws-04", Cause: "canary retired"}},
		{"a drain, after a refused try", gap(2, 20*sec+300*time.Millisecond, 900*time.Millisecond, 1), nodes, TailGap{
			Client: 2, At: 20*sec + 300*time.Millisecond, InChange: 10*sec + 300*time.Millisecond, Len: 900 * time.Millisecond, Reconnect: 1, Moves: 1,
			From: "ws-01 (old)", To: "ws-01 (new)", Tries: 2, Reached: 700 * time.Millisecond, Phase: "first half", Waiting: "draining ws-01, ws-02", Cause: "drain first half"}},
		{"a new node's shed", gap(3, 40*sec+900*time.Millisecond, 200*time.Millisecond, 1), nodes, TailGap{
			Client: 3, At: 40*sec + 900*time.Millisecond, InChange: 30*sec + 900*time.Millisecond, Len: 200 * time.Millisecond, Reconnect: 1, Moves: 1,
			From: "ws-01 (new)", To: "ws-02 (new)", Reached: 100 * time.Millisecond, Phase: "succeeded",
			Waiting: "balance: waiting for the released clients to land", Cause: "shed (new node)"}},
		{"back on the same node", gap(4, 21*sec+900*time.Millisecond, 200*time.Millisecond, 1), nodes, TailGap{
			Client: 4, At: 21*sec + 900*time.Millisecond, InChange: 11*sec + 900*time.Millisecond, Len: 200 * time.Millisecond, Reconnect: 1,
			From: "ws-01 (old)", To: "ws-01 (old)", Reached: 100 * time.Millisecond, Phase: "first half", Waiting: "draining ws-01, ws-02", Cause: "same node"}},
		{"the routes show no new node", gap(5, 25*sec, 100*time.Millisecond, 1), nodes, TailGap{
			Client: 5, At: 25 * sec, InChange: 15 * sec, Len: 100 * time.Millisecond, Reconnect: 1,
			From: "ws-02 (old)", To: "?", Phase: "first half", Waiting: "draining ws-01, ws-02", Cause: "drain first half"}},
		{"without routes: the phase and the wait's kind", gap(9, 20*sec+100*time.Millisecond, 100*time.Millisecond, 1), nil, TailGap{
			Client: 9, At: 20*sec + 100*time.Millisecond, InChange: 10*sec + 100*time.Millisecond, Len: 100 * time.Millisecond, Reconnect: 1,
			From: "?", To: "?", Phase: "first half", Waiting: "draining ws-01, ws-02", Cause: "first half: draining ws-01,"}},
		{"without routes, a wait with a colon", gap(9, 10*sec+100*time.Millisecond, 100*time.Millisecond, 1), nil, TailGap{
			Client: 9, At: 10*sec + 100*time.Millisecond, InChange: 100 * time.Millisecond, Len: 100 * time.Millisecond, Reconnect: 1,
			From: "?", To: "?", Phase: "canary", Waiting: "canary share: the canary takes its share (3 of 9 clients)", Cause: "canary: canary share"}},
		{"before the change", gap(9, 2*sec, 100*time.Millisecond, 1), nil, TailGap{
			Client: 9, At: 2 * sec, InChange: -8 * sec, Len: 100 * time.Millisecond, Reconnect: 1,
			From: "?", To: "?", Phase: "before the change", Cause: "before the change"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tailGaps([]probe.Gap{tt.gap}, start, changeStart, steps, tt.nodes)
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("tailGaps =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestTailCauses(t *testing.T) {
	gaps := []TailGap{
		{Len: 900 * time.Millisecond, Cause: "drain first half"},
		{Len: 800 * time.Millisecond, Cause: "canary retired"},
		{Len: 700 * time.Millisecond, Cause: "drain first half"},
		{Len: 600 * time.Millisecond, Cause: "canary share"},
		{Len: 500 * time.Millisecond, Cause: "drain second half"},
	}
	tests := []struct {
		name string
		p99  time.Duration
		n    int
		want string
	}{
		{"above p99 only", 650 * time.Millisecond, 3, "drain first half 2, canary retired 1"},
		{"ties by name", 550 * time.Millisecond, 4, "drain first half 2, canary retired 1, canary share 1"},
		{"none", time.Second, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, causes := tailCauses(gaps, tt.p99)
			if n != tt.n || strings.Join(causes, ", ") != tt.want {
				t.Errorf("tailCauses = %d %q, want %d %q", n, strings.Join(causes, ", "), tt.n, tt.want)
			}
		})
	}
	s := &Summary{GapP99: 650 * time.Millisecond, TailGaps: gaps}
	var buf bytes.Buffer
	s.writeTailText(&buf, 2)
	text := buf.String()
	if !strings.Contains(text, "tail:      3 gaps at or above p99 650ms: drain first half 2, canary retired 1") || strings.Count(text, "  gap ") != 2 {
		t.Errorf("text:\n%s", text)
	}
	buf.Reset()
	s.writeTailMarkdown(&buf)
	if md := buf.String(); !strings.Contains(md, "## The longest gaps") || strings.Count(md, "| 900ms |")+strings.Count(md, "| 500ms |") != 2 {
		t.Errorf("markdown:\n%s", md)
	}
}

func TestPhaseTrackerTimeline(t *testing.T) {
	now := time.Duration(0)
	pt := phaseTracker{clock: func() time.Duration { return now }}
	for _, s := range []phaseStep{{1 * sec, "canary", "a"}, {2 * sec, "canary", "a"}, {3 * sec, "canary", "b"}, {4 * sec, "first half", "b"}} {
		now = s.At
		pt.set(s.Phase, s.Waiting)
	}
	got := pt.timeline()
	want := []phaseStep{{1 * sec, "canary", "a"}, {3 * sec, "canary", "b"}, {4 * sec, "first half", "b"}}
	if len(got) != len(want) {
		t.Fatalf("timeline = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

package probe

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"wsfleet/client"
)

func TestTailGaps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	gap := func(client int, down, length time.Duration) Gap {
		return Gap{Client: client, Down: t0.Add(down), Up: t0.Add(down + length), Len: length}
	}
	tests := []struct {
		name string
		keep int
		add  []Gap
		want []Gap // longest first
	}{
		{"keeps none", 0, []Gap{gap(1, 0, time.Second)}, nil},
		{"fewer than kept", 3, []Gap{gap(1, 0, 100*time.Millisecond), gap(2, time.Second, 300*time.Millisecond)},
			[]Gap{gap(2, time.Second, 300*time.Millisecond), gap(1, 0, 100*time.Millisecond)}},
		{"keeps the longest", 2, []Gap{
			gap(1, 0, 100*time.Millisecond), gap(2, 0, 500*time.Millisecond), gap(3, 0, 200*time.Millisecond),
			gap(4, 0, 50*time.Millisecond), gap(5, 0, 400*time.Millisecond),
		}, []Gap{gap(2, 0, 500*time.Millisecond), gap(5, 0, 400*time.Millisecond)}},
		{"equal lengths: earlier, then lower client", 2, []Gap{
			gap(7, time.Second, 200*time.Millisecond), gap(6, 0, 200*time.Millisecond), gap(5, time.Second, 200*time.Millisecond),
		}, []Gap{gap(6, 0, 200*time.Millisecond), gap(5, time.Second, 200*time.Millisecond)}},
		{"a shorter gap does not displace", 1, []Gap{gap(1, 0, time.Second), gap(2, 0, time.Millisecond)},
			[]Gap{gap(1, 0, time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := &tailGaps{n: tt.keep}
			for _, g := range tt.add {
				tg.add(g)
			}
			got := tg.sorted()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("kept %v, want %v", got, tt.want)
			}
			if len(tg.heap) > tt.keep {
				t.Errorf("holds %d gaps, want at most %d", len(tg.heap), tt.keep)
			}
		})
	}
}

// TestTailGapsFromStates: the probe's clients turn their down and up
// events into kept gaps with the client, when, which reconnect and why.
func TestTailGapsFromStates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type ev struct {
		up   bool
		at   time.Duration
		err  error
		reh  bool
		stop bool // the probe is closing its clients
	}
	tests := []struct {
		name   string
		events []ev
		want   []Gap
	}{
		{"one reconnect", []ev{{up: true}, {at: time.Second, err: errors.New("going away")}, {up: true, at: 1300 * time.Millisecond, reh: true}},
			[]Gap{{Client: 3, Down: t0.Add(time.Second), Up: t0.Add(1300 * time.Millisecond), Len: 300 * time.Millisecond, Reconnect: 1, Rehandshake: true, Reason: "going away"}}},
		{"second reconnect numbered, no reason", []ev{{up: true}, {at: time.Second}, {up: true, at: 2 * time.Second}, {at: 3 * time.Second}, {up: true, at: 3100 * time.Millisecond}},
			[]Gap{
				{Client: 3, Down: t0.Add(time.Second), Up: t0.Add(2 * time.Second), Len: time.Second, Reconnect: 1},
				{Client: 3, Down: t0.Add(3 * time.Second), Up: t0.Add(3100 * time.Millisecond), Len: 100 * time.Millisecond, Reconnect: 2},
			}},
		{"a long reason is cut", []ev{{up: true}, {at: time.Second, err: errors.New(strings.Repeat("x", 500))}, {up: true, at: 2 * time.Second}},
			[]Gap{{Client: 3, Down: t0.Add(time.Second), Up: t0.Add(2 * time.Second), Len: time.Second, Reconnect: 1, Reason: strings.Repeat("x", maxGapReason)}}},
		{"still open: not kept", []ev{{up: true}, {at: time.Second}}, nil},
		{"closing: not kept", []ev{{up: true}, {at: time.Second}, {stop: true}, {up: true, at: 2 * time.Second}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Probe{errors: map[string]int64{}, tail: &tailGaps{n: 10}}
			m := &member{p: p, idx: 3, maxN: -1}
			p.members = []*member{m}
			for i, e := range tt.events {
				if e.stop {
					m.closing = true
					continue
				}
				m.onState(client.State{Up: e.up, At: t0.Add(e.at), Err: e.err, Rehandshake: e.reh})
				if i == 0 {
					m.subAt = t0
				}
			}
			got := p.TailGaps()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("TailGaps = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

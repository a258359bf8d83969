package client

import (
	"testing"
	"time"
)

func TestSeqWindow(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint64
		want []verdict
	}{
		{"in order", []uint64{1, 2, 5}, []verdict{seqNew, seqNew, seqNew}},
		{"duplicate", []uint64{1, 2, 2, 1}, []verdict{seqNew, seqNew, seqDuplicate, seqDuplicate}},
		{"late then duplicate", []uint64{1, 5, 3, 3, 4}, []verdict{seqNew, seqNew, seqLate, seqDuplicate, seqLate}},
		{"gap cleared", []uint64{10, 10 + windowSize - 1, 11, 10 + windowSize}, []verdict{seqNew, seqNew, seqLate, seqNew}},
		{"slid past the window", []uint64{10, 10 + windowSize, 10}, []verdict{seqNew, seqNew, seqDuplicate}},
		{"big jump clears all", []uint64{5, 5 + 3*windowSize, 5 + 3*windowSize - 1}, []verdict{seqNew, seqNew, seqLate}},
		{"bit reuse after wrap", []uint64{1, 1 + windowSize/2, 1 + windowSize + 1, 1 + windowSize}, []verdict{seqNew, seqNew, seqNew, seqLate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w seqWindow
			for i, s := range tt.seqs {
				if got := w.add(s); got != tt.want[i] {
					t.Fatalf("add(%d) #%d = %v, want %v", s, i, got, tt.want[i])
				}
			}
		})
	}
}

func TestBackoffFullJitter(t *testing.T) {
	tests := []struct {
		name     string
		rand     float64
		attempts int
		want     []time.Duration
	}{
		{"ceiling doubles to the cap", 0.999999, 6, []time.Duration{100, 200, 400, 800, 1000, 1000}},
		{"zero draw", 0, 3, []time.Duration{0, 0, 0}},
		{"half", 0.5, 4, []time.Duration{50, 100, 200, 400}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff{min: 100 * time.Millisecond, max: time.Second, rand: func() float64 { return tt.rand }}
			for i := range tt.attempts {
				got := b.next().Round(time.Millisecond)
				if want := tt.want[i] * time.Millisecond; got != want {
					t.Fatalf("attempt %d: %v, want %v", i, got, want)
				}
			}
			b.reset()
			if got, want := b.next().Round(time.Millisecond), tt.want[0]*time.Millisecond; got != want {
				t.Fatalf("after reset: %v, want %v", got, want)
			}
		})
	}
}

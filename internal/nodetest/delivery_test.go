package nodetest

import (
	"slices"
	"testing"
)

// TestExactlyOnce checks what ExactlyOnce and MissingOf make of what a
// client received of 0..3.
func TestExactlyOnce(t *testing.T) {
	type counts struct{ missing, dups, reordered int }
	cases := []struct {
		name      string
		got       []int
		want      counts
		missingOf []int
	}{
		{name: "all", got: []int{0, 1, 2, 3}},
		{name: "none", want: counts{missing: 4}, missingOf: []int{0, 1, 2, 3}},
		{name: "gap", got: []int{0, 3}, want: counts{missing: 2}, missingOf: []int{1, 2}},
		{name: "duplicate", got: []int{0, 1, 1, 2, 3}, want: counts{dups: 1}},
		{name: "reordered", got: []int{0, 2, 1, 3}, want: counts{reordered: 1}},
		{name: "replayed", got: []int{0, 1, 2, 1, 2, 3}, want: counts{dups: 2, reordered: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got counts
			got.missing, got.dups, got.reordered = ExactlyOnce(c.got, 4)
			if got != c.want {
				t.Errorf("ExactlyOnce(%v) = %+v, want %+v", c.got, got, c.want)
			}
			if got := MissingOf(c.got, 4); !slices.Equal(got, c.missingOf) {
				t.Errorf("MissingOf(%v) = %v, want %v", c.got, got, c.missingOf)
			}
		})
	}
}

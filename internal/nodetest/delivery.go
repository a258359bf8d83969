package nodetest

import (
	"testing"
	"time"
)

// ExactlyOnce reports how got differs from 0..n-1 in order: numbers
// missing, extra copies, and numbers that arrived after a larger one.
func ExactlyOnce(got []int, n int) (missing, dups, reordered int) {
	seen := map[int]int{}
	last := -1
	for _, v := range got {
		seen[v]++
		if v < last {
			reordered++
		}
		last = v
	}
	for i := range n {
		switch c := seen[i]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	return missing, dups, reordered
}

// MissingOf lists the numbers below n that got lacks.
func MissingOf(got []int, n int) []int {
	seen := map[int]bool{}
	for _, v := range got {
		seen[v] = true
	}
	var out []int
	for i := range n {
		if !seen[i] {
			out = append(out, i)
		}
	}
	return out
}

// Feed publishes {"n":i} to channel through baseURL for i from 0 to
// total-1, 20ms apart, calling before(i) ahead of each (where a test
// drains or kills a node in mid-stream). A message that cannot be
// published fails the test, which goes on with the next.
func Feed(t testing.TB, baseURL, token, channel string, total int, before func(i int)) {
	t.Helper()
	for i := range total {
		before(i)
		if err := Publish(baseURL, token, channel, map[string]int{"n": i}); err != nil {
			t.Errorf("publish %d failed: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckDelivery asks report for the clients' records, 250ms apart, until
// every client has received 0..total-1 or 20s have passed (8s after a
// crash, whose losses never arrive), logs what each received and fails the
// test on any duplicate or reordering. With crashed false (a drain) it
// fails on any missing message; with crashed true (kill -9) it fails if no
// client lost one, since then the test could not see loss and its drains
// prove nothing.
func CheckDelivery(t testing.TB, report func() []ClientRecord, total int, crashed bool) {
	t.Helper()
	wait := 20 * time.Second
	if crashed {
		wait = 8 * time.Second
	}
	lossy := 0
	for i, r := range await(report, total, wait) {
		m, d, o := ExactlyOnce(r.Got, total)
		t.Logf("client %d %s: received %d, missing %d, duplicates %d, reordered %d, handshakes %d, longest gap %dms",
			i, r.Kind, len(r.Got), m, d, o, r.Handshakes, r.MaxGapMs)
		if d > 0 || o > 0 {
			t.Errorf("client %d %s: %d duplicates, %d out of order", i, r.Kind, d, o)
		}
		if m > 0 {
			lossy++
			if !crashed {
				t.Errorf("client %d %s lost %d messages: %v", i, r.Kind, m, MissingOf(r.Got, total))
			}
		}
	}
	if crashed && lossy == 0 {
		t.Errorf("kill -9 showed no loss: the test cannot see loss")
	}
}

// await returns report's records once every client has 0..total-1 or wait
// has passed.
func await(report func() []ClientRecord, total int, wait time.Duration) []ClientRecord {
	deadline := time.Now().Add(wait)
	for {
		recs := report()
		complete := true
		for _, r := range recs {
			if m, _, _ := ExactlyOnce(r.Got, total); m > 0 {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(250 * time.Millisecond)
	}
}

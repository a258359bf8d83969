package probe

import (
	"testing"
	"time"
)

// TestMerge: merged parts add their counts and errors, take the longest
// elapsed time, and summarize every gap and every latency of all parts,
// as one probe holding all the clients would.
func TestMerge(t *testing.T) {
	part := func(clients int, lost int64, lat []time.Duration, gaps []time.Duration) Part {
		var h histogram
		for _, d := range lat {
			h.add(d)
		}
		pt := Part{Report: Report{Final: true, Clients: clients, Channels: 1, ClientsSubscribed: clients, Sent: 10,
			Expected: int64(10 * clients), Delivered: int64(10*clients) - lost, Lost: lost, Reconnects: int64(len(gaps)),
			ElapsedMs: float64(clients), Errors: map[string]int64{"connection_lost": int64(len(gaps))}},
			Latency: map[int]uint64{}, LatencyMaxNs: h.max.Load()}
		for b := range h.counts {
			if n := h.counts[b].Load(); n > 0 {
				pt.Latency[b] = n
			}
		}
		for _, g := range gaps {
			pt.GapsNs = append(pt.GapsNs, int64(g))
		}
		return pt
	}
	ms := time.Millisecond
	a := part(3, 0, []time.Duration{1 * ms, 2 * ms, 3 * ms}, []time.Duration{100 * ms})
	b := part(5, 2, []time.Duration{50 * ms, 60 * ms}, []time.Duration{200 * ms, 900 * ms})
	r := Merge([]Part{a, b})
	if !r.Final || r.Clients != 8 || r.Channels != 2 || r.Expected != 80 || r.Delivered != 78 || r.Lost != 2 || r.Reconnects != 3 || r.ElapsedMs != 5 {
		t.Errorf("merged counts %+v", r)
	}
	if r.Errors["connection_lost"] != 3 {
		t.Errorf("merged errors %v, want 3 connection_lost", r.Errors)
	}
	if r.Gap.Count != 3 || r.Gap.P50 != 200 || r.Gap.Max != 900 {
		t.Errorf("merged gaps %+v, want 3, p50 200 ms, max 900 ms", r.Gap)
	}
	if r.Latency.Count != 5 || r.Latency.Max != 60 || r.Latency.P50 < 2.9 || r.Latency.P50 > 3.1 {
		t.Errorf("merged latency %+v, want 5, p50 about 3 ms, max 60 ms", r.Latency)
	}
	if r := Merge([]Part{a, {Report: Report{Final: false}}}); r.Final {
		t.Error("a part not final merged into a final report")
	}
}

package probe

import (
	"errors"
	"time"
)

// Part is a stopped probe's figures in a form that merges exactly with
// other probes' (Merge): the demo at scale runs its chat clients as
// several generator processes, each a probe over its own clients and
// rooms, and reports them as one. It travels as JSON.
type Part struct {
	Report Report `json:"report"`
	// Latency is the latency histogram, bucket → count (only buckets
	// with a count); LatencyMaxNs its exact maximum.
	Latency      map[int]uint64 `json:"latency"`
	LatencyMaxNs int64          `json:"latency_max_ns"`
	// GapsNs are the disconnect gaps the report's Gap summarizes.
	GapsNs []int64 `json:"gaps_ns"`
	// Ups are ClientUps, as Unix nanoseconds, by client index.
	Ups [][]int64 `json:"ups"`
}

// Part returns the probe's figures for Merge; the probe must be stopped.
func (p *Probe) Part() (Part, error) {
	if p.stoppedAt.Load() == nil {
		return Part{}, errors.New("probe: Part before Stop")
	}
	pt := Part{Report: p.final, Latency: map[int]uint64{}, LatencyMaxNs: p.latency.max.Load()}
	for b := range p.latency.counts {
		if n := p.latency.counts[b].Load(); n > 0 {
			pt.Latency[b] = n
		}
	}
	for _, g := range p.finalGaps {
		pt.GapsNs = append(pt.GapsNs, int64(g))
	}
	for _, us := range p.ClientUps() {
		ns := make([]int64, len(us))
		for i, u := range us {
			ns[i] = u.UnixNano()
		}
		pt.Ups = append(pt.Ups, ns)
	}
	return pt, nil
}

// Merge is the report of the probes whose parts these are, as one probe
// holding all their clients and channels would have made it: counts add
// up, the latency quantiles come from the summed histograms and the gap
// quantiles from every gap, the elapsed time is the longest.
func Merge(parts []Part) Report {
	r := Report{Final: len(parts) > 0, Errors: map[string]int64{}}
	var lat histogram
	var gaps []time.Duration
	for _, pt := range parts {
		x := pt.Report
		r.Final = r.Final && x.Final
		r.ElapsedMs = max(r.ElapsedMs, x.ElapsedMs)
		r.Clients += x.Clients
		r.Channels += x.Channels
		r.ClientsConnected += x.ClientsConnected
		r.ClientsSubscribed += x.ClientsSubscribed
		r.Sent += x.Sent
		r.PublishFailed += x.PublishFailed
		r.Expected += x.Expected
		r.Delivered += x.Delivered
		r.Lost += x.Lost
		r.Pending += x.Pending
		r.Duplicated += x.Duplicated
		r.OutOfOrder += x.OutOfOrder
		r.Reconnects += x.Reconnects
		for k, v := range x.Errors {
			r.Errors[k] += v
		}
		for b, n := range pt.Latency {
			if b >= 0 && b < len(lat.counts) {
				lat.counts[b].Add(n)
				lat.n.Add(n)
			}
		}
		if pt.LatencyMaxNs > lat.max.Load() {
			lat.max.Store(pt.LatencyMaxNs)
		}
		for _, g := range pt.GapsNs {
			gaps = append(gaps, time.Duration(g))
		}
	}
	r.Latency = lat.summary()
	r.Gap = summarize(gaps)
	return r
}

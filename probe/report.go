package probe

import (
	"sort"
	"time"
)

// Report is what a probe measured. Field names are the JSON of
// `wsfleet probe --json` (documented in docs/probe.md). Counts of
// deliveries are over (message, subscriber) pairs.
type Report struct {
	// Final is set on the report Stop returns.
	Final     bool    `json:"final"`
	ElapsedMs float64 `json:"elapsed_ms"`
	Clients   int     `json:"clients"`
	Channels  int     `json:"channels"`
	// ClientsConnected are up now (at Stop: just before closing them);
	// ClientsSubscribed have ever had their subscription acknowledged.
	ClientsConnected  int `json:"clients_connected"`
	ClientsSubscribed int `json:"clients_subscribed"`
	// Sent are messages whose publish the server acknowledged;
	// PublishFailed are those it refused or did not answer.
	Sent          int64 `json:"sent"`
	PublishFailed int64 `json:"publish_failed"`
	// Expected pairs: a sent message and a client subscribed to its
	// channel before it was published.
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	// Lost pairs: expected, not delivered, and older than the grace
	// period (at Stop: all not delivered). Pending: not delivered yet,
	// still within the grace period.
	Lost    int64 `json:"lost"`
	Pending int64 `json:"pending"`
	// Duplicated counts deliveries of a message a client already had,
	// whether the client library dropped them by ext.seq or the probe
	// saw them twice.
	Duplicated int64 `json:"duplicated"`
	// OutOfOrder counts messages that arrived after a later message of
	// the same channel.
	OutOfOrder int64 `json:"out_of_order"`
	// Latency is publish-to-delivery time of first deliveries.
	Latency Summary `json:"latency_ms"`
	// Gap is how long clients were without a working subscription, one
	// sample per disconnection (a gap still open counts up to now).
	Gap        Summary          `json:"gap_ms"`
	Reconnects int64            `json:"reconnects"`
	Errors     map[string]int64 `json:"errors"`
}

// LossRatio is Lost/Expected, 0 when nothing was expected.
func (r Report) LossRatio() float64 {
	if r.Expected == 0 {
		return 0
	}
	return float64(r.Lost) / float64(r.Expected)
}

// report computes the figures at now; final counts everything missing as
// lost.
func (p *Probe) report(now time.Time, final bool) Report {
	r, _ := p.reportGaps(now, final)
	return r
}

// reportGaps is report with the disconnect gaps its Gap summarizes.
func (p *Probe) reportGaps(now time.Time, final bool) (Report, []time.Duration) {
	r := Report{
		Final:     final,
		ElapsedMs: ms(now.Sub(p.started)),
		Clients:   len(p.members),
		Channels:  len(p.channels),
		Latency:   p.latency.summary(),
		Errors:    map[string]int64{},
	}
	cutoff := now.Add(-p.cfg.Grace)
	// Copy each channel's records once.
	recs := make([][]pubRecord, len(p.channels))
	for i, cl := range p.channels {
		cl.mu.Lock()
		recs[i] = append([]pubRecord(nil), cl.recs...)
		cl.mu.Unlock()
		for _, rec := range recs[i] {
			switch rec.state {
			case pubOK:
				r.Sent++
			case pubFailed:
				r.PublishFailed++
			}
		}
	}
	var gaps []time.Duration
	for _, m := range p.members {
		m.mu.Lock()
		if m.up {
			r.ClientsConnected++
		}
		r.Duplicated += m.dup
		r.OutOfOrder += m.ooo
		r.Reconnects += m.reconn
		gaps = append(gaps, m.gaps...)
		if !m.subAt.IsZero() {
			r.ClientsSubscribed++
			if !m.up {
				gaps = append(gaps, now.Sub(m.downAt))
			}
			rs := recs[m.ch]
			// Records are in time order: skip those sent before the
			// subscription was acknowledged.
			first := sort.Search(len(rs), func(i int) bool { return !rs[i].start.Before(m.subAt) })
			for n := first; n < len(rs); n++ {
				if rs[n].state != pubOK {
					continue
				}
				r.Expected++
				switch {
				case m.has(n):
					r.Delivered++
				case final || rs[n].start.Before(cutoff):
					r.Lost++
				default:
					r.Pending++
				}
			}
		}
		c := m.c
		m.mu.Unlock()
		if c != nil {
			r.Duplicated += c.Stats().Duplicates
		}
	}
	r.Gap = summarize(gaps)
	p.errMu.Lock()
	for k, v := range p.errors {
		r.Errors[k] = v
	}
	p.errMu.Unlock()
	return r, gaps
}

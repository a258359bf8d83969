package probe

import (
	"testing"
	"time"

	"wsfleet/client"
)

// FuzzDelivery feeds a probe member whatever data a server (or another
// publisher on the channel) could deliver. It must not panic, must not
// grow its bitmap past what the probe published, and must keep the report
// consistent.
func FuzzDelivery(f *testing.F) {
	f.Add([]byte(`{"probe":"run","c":0,"n":3,"t":1}`))
	f.Add([]byte(`{"probe":"run","c":0,"n":100000000000,"t":1}`))
	f.Add([]byte(`{"probe":"run","c":0,"n":-1}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		t0 := time.Unix(1000, 0)
		p := &Probe{cfg: Config{Grace: time.Second}, runID: "run", started: t0, errors: map[string]int64{}}
		cl := &channelLog{name: "/probe/0"}
		for i := range 10 {
			cl.recs = append(cl.recs, pubRecord{start: t0.Add(time.Duration(i) * time.Second), state: pubOK})
		}
		cl.count.Store(10)
		p.channels = []*channelLog{cl}
		m := &member{p: p, subAt: t0, up: true, maxN: -1}
		p.members = []*member{m}
		d := client.Delivery{Channel: "/probe/0", Data: data, Received: t0.Add(time.Minute)}
		m.onDelivery(d)
		m.onDelivery(d)
		if len(m.got) > 1 {
			t.Fatalf("bitmap grew to %d words for 10 messages", len(m.got))
		}
		r := p.report(t0.Add(time.Minute), true)
		if r.Expected != 10 || r.Delivered+r.Lost != r.Expected || r.Delivered > 1 || r.Duplicated > 1 {
			t.Fatalf("report %+v", r)
		}
	})
}

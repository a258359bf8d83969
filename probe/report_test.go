package probe

import (
	"testing"
	"time"
)

// TestReportLossAccounting pins down which (message, subscriber) pairs
// count as expected, delivered, lost and pending.
func TestReportLossAccounting(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	recs := []pubRecord{
		{start: at(0), state: pubOK},     // 0: before the subscription
		{start: at(1), state: pubOK},     // 1
		{start: at(2), state: pubFailed}, // 2: refused: never expected
		{start: at(3), state: pubOK},     // 3
		{start: at(9), state: pubOK},     // 4: within the grace at now=10
		{start: at(9.5), state: pubInFlight},
	}
	tests := []struct {
		name  string
		subAt time.Time
		got   []int
		final bool
		want  Report
	}{
		{"all arrived", at(0.5), []int{1, 3, 4}, false,
			Report{Expected: 3, Delivered: 3}},
		{"missing old is lost, young is pending", at(0.5), []int{1}, false,
			Report{Expected: 3, Delivered: 1, Lost: 1, Pending: 1}},
		{"final counts the young as lost", at(0.5), []int{1}, true,
			Report{Expected: 3, Delivered: 1, Lost: 2}},
		{"subscribed at the publish instant expects it", at(1), nil, true,
			Report{Expected: 3, Lost: 3}},
		{"message before the subscription is not expected even if it came", at(0.5), []int{0, 1, 3, 4}, false,
			Report{Expected: 3, Delivered: 3}},
		{"never subscribed expects nothing", time.Time{}, nil, true,
			Report{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Probe{cfg: Config{Grace: 2 * time.Second}, started: t0, errors: map[string]int64{}}
			p.channels = []*channelLog{{name: "/probe/0", recs: recs}}
			m := &member{p: p, subAt: tt.subAt, up: true, maxN: -1}
			for _, n := range tt.got {
				w := n / 64
				for len(m.got) <= w {
					m.got = append(m.got, 0)
				}
				m.got[w] |= 1 << (n % 64)
			}
			p.members = []*member{m}
			r := p.report(at(10), tt.final)
			if r.Sent != 4 || r.PublishFailed != 1 {
				t.Fatalf("sent %d failed %d, want 4 and 1", r.Sent, r.PublishFailed)
			}
			if r.Expected != tt.want.Expected || r.Delivered != tt.want.Delivered || r.Lost != tt.want.Lost || r.Pending != tt.want.Pending {
				t.Fatalf("got expected/delivered/lost/pending %d/%d/%d/%d, want %d/%d/%d/%d",
					r.Expected, r.Delivered, r.Lost, r.Pending,
					tt.want.Expected, tt.want.Delivered, tt.want.Lost, tt.want.Pending)
			}
		})
	}
}

func TestHistogram(t *testing.T) {
	tests := []struct {
		name          string
		samples       []time.Duration
		p50, p99, max float64 // ms
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []time.Duration{5 * time.Millisecond}, 5, 5, 5},
		{"spread", func() []time.Duration {
			var ds []time.Duration
			for i := 1; i <= 100; i++ {
				ds = append(ds, time.Duration(i)*time.Millisecond)
			}
			return ds
		}(), 50, 99, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, d := range tt.samples {
				h.add(d)
			}
			s := h.summary()
			near := func(got, want float64) bool { return got >= want*0.96 && got <= want*1.04 }
			if s.Count != int64(len(tt.samples)) || !near(s.P50, tt.p50) || !near(s.P99, tt.p99) || s.Max != tt.max {
				t.Fatalf("summary %+v, want p50≈%v p99≈%v max=%v", s, tt.p50, tt.p99, tt.max)
			}
		})
	}
}

func TestBucketsContiguous(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us++ {
		b := bucketOf(us)
		if b != prev && b != prev+1 {
			t.Fatalf("bucket jumps from %d to %d at %dµs", prev, b, us)
		}
		if lo := bucketValue(b); lo > float64(us)*1.02+1 || lo < float64(us)*0.98-1 {
			t.Fatalf("bucket %d value %v far from %dµs", b, lo, us)
		}
		prev = b
	}
}

func TestChannelName(t *testing.T) {
	tests := []struct {
		prefix string
		i      int
		want   string
	}{
		{"/probe", 3, "/probe/3"},
		{"/probe/", 0, "/probe/0"},
		{"/api/v1/rooms/{id}/chatMessages", 7, "/api/v1/rooms/7/chatMessages"},
	}
	for _, tt := range tests {
		if got := channelName(tt.prefix, tt.i); got != tt.want {
			t.Errorf("channelName(%q, %d) = %q, want %q", tt.prefix, tt.i, got, tt.want)
		}
	}
}

func TestDefaultSourceAddrs(t *testing.T) {
	tests := []struct {
		host    string
		clients int
		want    int
	}{
		{"127.0.0.1", 10, 1},
		{"localhost", 10000, 3},
		{"10.0.0.5", 10000, 0},
	}
	for _, tt := range tests {
		if got := defaultSourceAddrs(tt.host, tt.clients); len(got) != tt.want {
			t.Errorf("defaultSourceAddrs(%q, %d) = %v, want %d addresses", tt.host, tt.clients, got, tt.want)
		}
	}
}

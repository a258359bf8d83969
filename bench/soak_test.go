package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

func TestFlatness(t *testing.T) {
	// ts: a sample every 5 s over 10 minutes.
	ts := make([]float64, 121)
	for i := range ts {
		ts[i] = float64(5 * i)
	}
	series := func(f func(t float64, i int) float64) []float64 {
		ys := make([]float64, len(ts))
		for i, t := range ts {
			ys[i] = f(t, i)
		}
		return ys
	}
	for _, tc := range []struct {
		name     string
		ys       []float64
		flat     bool
		driftPct float64 // expected, within 0.1
	}{
		{"level", series(func(float64, int) float64 { return 100e3 }), true, 0},
		// a sawtooth of ±10% (garbage collection) fits a level line
		{"sawtooth", series(func(_ float64, i int) float64 { return 100e3 + float64(i%2*2-1)*10e3 }), true, 0},
		// warm-up in the first half is not judged
		{"warm-up then level", series(func(t float64, _ int) float64 { return 100e3 - 50e3*math.Max(0, 1-t/200) }), true, 0},
		// 2 % a minute: +10 % over the 5-minute window
		{"leak", series(func(t float64, _ int) float64 { return 100e3 * (1 + 0.02*t/60) }), false, 8.7},
		{"shrinking", series(func(t float64, _ int) float64 { return 100e3 * (1 - 0.02*t/60) }), false, -11.8},
		// 0.5 % a minute: +2.5 % over the window, under the 5 % bound
		{"slow creep", series(func(t float64, _ int) float64 { return 100e3 * (1 + 0.005*t/60) }), true, 2.4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := Flatness("rss", ts, tc.ys, 5, 0)
			if fc.Flat != tc.flat {
				t.Errorf("flat = %v, want %v (%+v)", fc.Flat, tc.flat, fc)
			}
			if math.Abs(fc.DriftPct-tc.driftPct) > 0.1 {
				t.Errorf("drift = %.2f%%, want %.2f%%", fc.DriftPct, tc.driftPct)
			}
			if fc.From != 300 || fc.To != 600 || fc.Samples != 61 {
				t.Errorf("window %g–%g s, %d samples; want 300–600 s, 61", fc.From, fc.To, fc.Samples)
			}
		})
	}
	t.Run("floor", func(t *testing.T) {
		// 20 goroutines climbing by 2 across the second half: +10% of the
		// median, within a floor of 10.
		ys := series(func(t float64, _ int) float64 { return 20 + 2*max(0, t-300)/300 })
		if fc := Flatness("goroutines", ts, ys, 5, 10); !fc.Flat || fc.DriftPct < 5 {
			t.Errorf("got %+v, want flat by the floor with a drift over 5%%", fc)
		}
		if fc := Flatness("goroutines", ts, ys, 5, 0); fc.Flat {
			t.Errorf("got %+v, want not flat without the floor", fc)
		}
		// a climb of 30 over the window is past the floor
		ys = series(func(t float64, _ int) float64 { return 20 + t/10 })
		if fc := Flatness("goroutines", ts, ys, 5, 10); fc.Flat {
			t.Errorf("got %+v, want not flat", fc)
		}
	})
	t.Run("bursts", func(t *testing.T) {
		// goroutines at 23 but for a burst caught in one sample of six,
		// more of them late in the window: flat; the same bursts on a
		// leak of 30 across the window: not flat.
		burst := func(i int) float64 {
			if i%6 == 0 && i > 80 {
				return 1400
			}
			return 0
		}
		ys := series(func(_ float64, i int) float64 { return 23 + burst(i) })
		if fc := Flatness("goroutines", ts, ys, 5, 10); !fc.Flat || fc.Median != 23 {
			t.Errorf("got %+v, want flat at a median of 23", fc)
		}
		if _, mean := linearSlope(ts[60:], ys[60:]); mean < 100 {
			t.Fatalf("mean %g: the bursts should weigh on the mean", mean)
		}
		ys = series(func(t float64, i int) float64 { return 23 + max(0, t-300)/10 + burst(i) })
		if fc := Flatness("goroutines", ts, ys, 5, 10); fc.Flat || math.Abs(fc.Drift-30) > 1 {
			t.Errorf("got %+v, want not flat, a drift of 30", fc)
		}
	})
	t.Run("too few samples", func(t *testing.T) {
		fc := Flatness("rss", []float64{0, 5, 10, 15, 20}, []float64{1, 1, 1, 1, 1}, 5, 0)
		if fc.Flat || fc.Samples != 3 || fc.Note == "" {
			t.Errorf("got %+v, want not flat, 3 samples, a note", fc)
		}
	})
	t.Run("no samples", func(t *testing.T) {
		if fc := Flatness("rss", nil, nil, 5, 0); fc.Flat {
			t.Errorf("got %+v, want not flat", fc)
		}
	})
}

func TestLinearSlope(t *testing.T) {
	for _, tc := range []struct {
		name        string
		xs, ys      []float64
		slope, mean float64
	}{
		{"line", []float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}, 2, 4},
		{"noisy", []float64{0, 1, 2, 3}, []float64{0, 2, 1, 3}, 0.8, 1.5},
		{"one x", []float64{2, 2}, []float64{1, 5}, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m := linearSlope(tc.xs, tc.ys)
			if math.Abs(s-tc.slope) > 1e-9 || math.Abs(m-tc.mean) > 1e-9 {
				t.Errorf("slope, mean = %g, %g; want %g, %g", s, m, tc.slope, tc.mean)
			}
		})
	}
}

// nodeMetrics is a cut of a node's /metrics, as client_golang writes it.
const nodeMetrics = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 23
# HELP wsfleet_errors_total Bayeux errors returned to clients, and HTTP 400s, by code.
# TYPE wsfleet_errors_total counter
wsfleet_errors_total{code="401"} 3
wsfleet_errors_total{code="400"} 1
# HELP wsfleet_handshakes_total /meta/handshake replies, by outcome: ok (a session) or failed (an error reply).
# TYPE wsfleet_handshakes_total counter
wsfleet_handshakes_total{outcome="failed"} 2
wsfleet_handshakes_total{outcome="ok"} 10512
wsfleet_publish_deliver_seconds_bucket{le="+Inf"} 1.2e+06
wsfleet_limit{limit="odd \"one\" {x} y"} 7 1700000000000
wsfleet_sessions 10000
process_resident_memory_bytes 8.5e+07
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(nodeMetrics))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"go_goroutines":                              23,
		"wsfleet_errors_total":                       4,
		`wsfleet_errors_total{code="401"}`:           3,
		"wsfleet_handshakes_total":                   10514,
		`wsfleet_handshakes_total{outcome="failed"}`: 2,
		"wsfleet_publish_deliver_seconds_bucket":     1.2e6,
		"wsfleet_limit":                              7,
		`wsfleet_limit{limit="odd \"one\" {x} y"}`:   7,
		"wsfleet_sessions":                           10000,
		"process_resident_memory_bytes":              8.5e7,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %g (present %v), want %g", name, got, ok, want)
		}
	}
	ne := nodeErrors(m)
	if ne["wsfleet_errors_total"] != 4 || ne[`wsfleet_errors_total{code="401"}`] != 3 || ne[`wsfleet_handshakes_total{outcome="failed"}`] != 2 || ne["wsfleet_slow_consumers_total"] != 0 {
		t.Errorf("node errors = %v", ne)
	}
	if _, ok := ne[`wsfleet_handshakes_total{outcome="ok"}`]; ok {
		t.Errorf("node errors hold the successful handshakes: %v", ne)
	}
	if n := nodeErrorSum(ne); n != 6 {
		t.Errorf("node error sum = %g, want 6 (4 errors, 2 failed handshakes)", n)
	}
	for _, bad := range []string{"go_goroutines\n", `x{a="b" 1` + "\n", "x one\n"} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMetrics(%q): no error", bad)
		}
	}
}

func TestCheckSeq(t *testing.T) {
	for _, tc := range []struct {
		name      string
		seen      []int64
		lost, dup int64
		last      int64
	}{
		{"in order from anywhere", []int64{17, 18, 19}, 0, 0, 19},
		{"a gap", []int64{1, 2, 5, 6}, 2, 0, 6},
		{"a duplicate", []int64{1, 2, 2, 3}, 0, 1, 3},
		{"an old one", []int64{4, 5, 3, 6}, 0, 1, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last atomic.Int64
			last.Store(-1)
			var lost, dup int64
			for _, s := range tc.seen {
				l, d := checkSeq(&last, s)
				lost += l
				dup += d
			}
			if lost != tc.lost || dup != tc.dup || last.Load() != tc.last {
				t.Errorf("lost %d dup %d last %d; want %d %d %d", lost, dup, last.Load(), tc.lost, tc.dup, tc.last)
			}
		})
	}
}

func TestJudgeSoak(t *testing.T) {
	level := func(rss int64) []SoakSample {
		var out []SoakSample
		out = append(out, SoakSample{T: 0, Phase: "ramp", RSSKiB: 10}) // not judged
		for i := range 40 {
			out = append(out, SoakSample{T: float64(10 + 5*i), Phase: "hold", RSSKiB: rss + int64(i)*rss/100, Goroutines: 25})
		}
		return append(out, SoakSample{T: 300, Phase: "fence", RSSKiB: 1}) // not judged
	}
	for _, tc := range []struct {
		name    string
		samples []SoakSample
		totals  SoakTotals
		pass    bool
		verdict string
		errors  int
	}{
		{"clean", level(0), SoakTotals{Delivered: 5}, true, "flat, no error", 0},
		{"lost", level(0), SoakTotals{Delivered: 5, Lost: 2, TailMissing: 1}, false, "flat, but 2 kinds of error", 2},
		{"node errors", level(0), SoakTotals{Delivered: 5, NodeErrors: map[string]float64{"wsfleet_slow_consumers_total": 1}}, false, "flat, but 1 kinds of error", 1},
		{"nothing delivered", level(0), SoakTotals{}, false, "flat, but 1 kinds of error", 1},
		// 1 % of the start per sample: a leak
		{"leak", level(1000), SoakTotals{Delivered: 5}, false, "NOT flat, no error", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "leak" {
				for i := range tc.samples {
					if tc.samples[i].Phase == "hold" {
						tc.samples[i].RSSKiB = 1000
					}
				}
			}
			r := &SoakResult{Samples: tc.samples, Totals: tc.totals}
			judgeSoak(r, 5)
			if r.Pass != tc.pass || r.Verdict != tc.verdict || len(r.Errors) != tc.errors {
				t.Errorf("pass %v verdict %q errors %q; want %v %q %d", r.Pass, r.Verdict, r.Errors, tc.pass, tc.verdict, tc.errors)
			}
			if len(r.Flat) != 2 || r.Flat[0].From != 110 {
				t.Errorf("flat checks %+v: want rss and goroutines over the hold's second half (from 110 s)", r.Flat)
			}
		})
	}
}

func TestWriteSoakChart(t *testing.T) {
	r := &SoakResult{}
	for i := range 30 {
		r.Samples = append(r.Samples, SoakSample{T: float64(5 * i), Phase: "hold", RSSKiB: 80000 + int64(i%3)*100,
			NATSRSSKiB: 20000, Goroutines: 22, Sessions: 10000, Live: 10000})
	}
	judgeSoak(r, 5)
	var b bytes.Buffer
	if err := WriteSoakChart(&b, "soak & <test>", r); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, an svg root, the title and the legend as text,
	// lines drawn, nothing fetched from elsewhere.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var root string
	var texts []string
	paths := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			if el.Name.Local == "path" {
				paths++
			}
			for _, a := range el.Attr {
				if a.Name.Local == "href" && !strings.HasPrefix(a.Value, "#") && !strings.HasPrefix(a.Value, "data:") {
					t.Errorf("external reference %q", a.Value)
				}
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(el)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	all := strings.Join(texts, "|")
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	for _, want := range []string{"soak & <test>", "RSS (MiB)", "goroutines", "judged window", "nats-server", "minutes since the start"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart has no text %q (texts: %.300s)", want, all)
		}
	}
	if paths < 10 {
		t.Errorf("%d paths, want the lines and axes", paths)
	}
}

func TestOpenFDs(t *testing.T) {
	pid := os.Getpid()
	// A first open sets up the runtime's poller (its own descriptors).
	if f, err := os.Open(os.DevNull); err == nil {
		f.Close()
	}
	before := openFDs(pid)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	after := openFDs(pid)
	f.Close()
	if before <= 0 || after != before+1 {
		t.Errorf("open fds %d, then %d with one more file open", before, after)
	}
	if n := openFDs(-1); n != -1 {
		t.Errorf("openFDs of no process = %d, want -1", n)
	}
}

// TestRejudge: a soak result written and read back is judged again with
// this version's rule, at the limit it recorded, its old verdict replaced.
func TestRejudge(t *testing.T) {
	var samples []SoakSample
	for i := range 40 {
		g := 23.0
		if i%6 == 0 && i > 25 {
			g = 1400 // bursts late in the hold: least squares tilts on them
		}
		samples = append(samples, SoakSample{T: float64(5 * i), Phase: "hold", RSSKiB: 1000, Goroutines: g})
	}
	in := &SoakResult{Samples: samples, Totals: SoakTotals{Delivered: 5}, Settings: map[string]any{"flat_limit_pct": 5.0},
		Verdict: "NOT flat, no error", Errors: []string{"stale"}}
	var buf bytes.Buffer
	if err := WriteSoakJSON(&buf, in); err != nil {
		t.Fatal(err)
	}
	res, err := ReadSoakJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	Rejudge(res)
	if !res.Pass || res.Verdict != "flat, no error" || len(res.Errors) != 0 || len(res.Flat) != 2 || res.Flat[1].Median != 23 {
		t.Errorf("judged again: pass %v verdict %q errors %q flat %+v", res.Pass, res.Verdict, res.Errors, res.Flat)
	}
	if _, err := ReadSoakJSON(strings.NewReader(`{"samples": []}`)); err == nil {
		t.Error("a result without samples read without error")
	}
	if _, err := ReadSoakJSON(strings.NewReader(`{"samples": [`)); err == nil {
		t.Error("truncated JSON read without error")
	}
}

package demo

import (
	"bytes"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const sec = time.Second

func hops(at []int, inst ...string) []hop {
	out := make([]hop, len(inst))
	for i, in := range inst {
		out[i] = hop{At: time.Duration(at[i]) * sec, Instance: in}
	}
	return out
}

func TestCountMoves(t *testing.T) {
	tests := []struct {
		name      string
		hs        []hop
		want      int
		firstAt   time.Duration
		firstInst string
	}{
		{"never connected", nil, 0, 0, ""},
		{"stayed", hops([]int{1}, "a"), 0, 0, ""},
		{"reconnected to the same node", hops([]int{1, 5}, "a", "a"), 0, 0, ""},
		{"one move", hops([]int{1, 5}, "a", "b"), 1, 5 * sec, "b"},
		{"same node, then a move", hops([]int{1, 3, 5}, "a", "a", "c"), 1, 5 * sec, "c"},
		{"moved twice", hops([]int{1, 5, 9}, "a", "canary", "n1"), 2, 5 * sec, "canary"},
		{"back and forth", hops([]int{1, 2, 3, 4}, "a", "b", "a", "b"), 3, 2 * sec, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countMoves(tt.hs); got != tt.want {
				t.Errorf("countMoves = %d, want %d", got, tt.want)
			}
			h, ok := firstMove(tt.hs)
			if ok != (tt.want > 0) || h.At != tt.firstAt || h.Instance != tt.firstInst {
				t.Errorf("firstMove = %+v %v, want at %s on %q", h, ok, tt.firstAt, tt.firstInst)
			}
		})
	}
}

func TestMoveFigures(t *testing.T) {
	canary := func(id string) bool { return id == "canary" }
	canaryPhase := []window{{From: 0, To: 10 * sec}}
	tests := []struct {
		name    string
		paths   map[int][]hop
		clients int
		want    MoveFigures
	}{
		{
			name:    "nobody moved",
			paths:   map[int][]hop{0: hops([]int{1}, "a"), 1: hops([]int{1}, "b")},
			clients: 2,
			want:    MoveFigures{Clients: 2, Histogram: [4]int{2, 0, 0, 0}, Connections: 2},
		},
		{
			name: "moved once each, outside the canary phase",
			paths: map[int][]hop{
				0: hops([]int{1, 20}, "a", "n1"),
				1: hops([]int{1, 20, 21}, "b", "n2", "n2"), // a reconnect to the same node is no move
			},
			clients: 2,
			want: MoveFigures{Clients: 2, Histogram: [4]int{0, 2, 0, 0}, Total: 2, PerClient: 1,
				Outside: 2, OutsidePerClient: 1, Connections: 5},
		},
		{
			name: "the canary share's clients may move twice",
			paths: map[int][]hop{
				0: hops([]int{1, 5, 20}, "a", "canary", "n1"), // canary share, then retired: allowed
				1: hops([]int{1, 20}, "b", "n2"),
				2: hops([]int{1, 15, 25}, "a", "n1", "n2"), // moved twice, no canary share: over
				3: hops([]int{1, 5}, "b", "canary"),        // canary kept
			},
			clients: 5, // one never connected
			want: MoveFigures{Clients: 4, Unrouted: 1, Histogram: [4]int{0, 2, 2, 0}, CanaryHistogram: [4]int{0, 1, 1, 0},
				Total: 6, PerClient: 1.5, CanaryShareClients: 2, Outside: 4, OutsidePerClient: 1, OverAllowance: 1, Connections: 10},
		},
		{
			name: "landing on the canary after its phase is no canary share",
			paths: map[int][]hop{
				0: hops([]int{1, 12, 20}, "a", "canary", "n1"),
			},
			clients: 1,
			want: MoveFigures{Clients: 1, Histogram: [4]int{0, 0, 1, 0}, Total: 2, PerClient: 2,
				Outside: 2, OutsidePerClient: 2, OverAllowance: 1, Connections: 3},
		},
		{
			name: "three moves and more share a bucket; the canary share allows one more, not two",
			paths: map[int][]hop{
				0: hops([]int{1, 5, 20, 30}, "a", "canary", "n1", "n2"),
				1: hops([]int{1, 15, 20, 30, 40}, "a", "n1", "n2", "n3", "n4"),
			},
			clients: 2,
			want: MoveFigures{Clients: 2, Histogram: [4]int{0, 0, 0, 2}, CanaryHistogram: [4]int{0, 0, 0, 1},
				Total: 7, PerClient: 3.5, CanaryShareClients: 1, Outside: 6, OutsidePerClient: 3, OverAllowance: 2, Connections: 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := moveFigures(tt.paths, tt.clients, canary, canaryPhase)
			if got != tt.want {
				t.Errorf("moveFigures:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestResolveHops(t *testing.T) {
	known := []knownInstance{
		{ID: "i-old", IP: "127.0.1.1", First: 0},
		{ID: "i-new", IP: "127.0.1.2", First: 10 * sec},
		{ID: "i-reuse", IP: "127.0.1.1", First: 30 * sec}, // took i-old's address
	}
	routes := map[int][]routeHop{
		0: {{At: 1 * sec, Target: "127.0.1.1:8080"}, {At: 9 * sec, Target: "127.0.1.2:8080"}, {At: 40 * sec, Target: "127.0.1.1:8080"}},
		1: {{At: 2 * sec, Target: "127.0.1.9:8080"}}, // nobody's
	}
	got, unknown := resolveHops(routes, known)
	if unknown != 1 {
		t.Errorf("unknown = %d, want 1", unknown)
	}
	// The new instance took a connection a moment before it was first
	// sampled: still its own.
	want := hops([]int{1, 9, 40}, "i-old", "i-new", "i-reuse")
	if len(got[0]) != len(want) {
		t.Fatalf("client 0: %+v, want %+v", got[0], want)
	}
	for i := range want {
		if got[0][i] != want[i] {
			t.Errorf("client 0 hop %d: %+v, want %+v", i, got[0][i], want[i])
		}
	}
	if len(got[1]) != 0 {
		t.Errorf("client 1: %+v, want no hop", got[1])
	}
}

// fleet is a sample of instances: name=connections, old ones "o…", the
// canary "c…", new ones "n…"; a trailing "x" marks an instance gone, "?"
// one whose node did not answer.
func fleet(at time.Duration, spec ...string) Sample {
	smp := Sample{At: at}
	for _, sp := range spec {
		name, n, _ := strings.Cut(sp, "=")
		gone := strings.HasSuffix(n, "x")
		unread := strings.HasSuffix(n, "?")
		n = strings.TrimRight(n, "x?")
		c := 0
		for _, r := range n {
			c = c*10 + int(r-'0')
		}
		img := oldImage
		if name[0] != 'o' {
			img = newImage
		}
		smp.Instances = append(smp.Instances, InstanceSample{ID: "i-" + name, Name: name, Image: img, Connections: c, Gone: gone, Unread: unread})
	}
	return smp
}

func TestCanaryShare(t *testing.T) {
	canaries := map[string]bool{"i-c1": true}
	span := window{From: 0, To: 20 * sec}
	bake := window{From: 10 * sec, To: 20 * sec}
	tests := []struct {
		name      string
		samples   []Sample
		canaries  map[string]bool
		want      *CanaryShare // Points compared by count
		wantPts   int
		wantShare []float64
	}{
		{
			name: "no canary sampled",
			samples: []Sample{
				fleet(5*sec, "o1=50", "o2=50"),
			},
			canaries: canaries,
		},
		{
			name:     "no canary phase",
			samples:  []Sample{fleet(5*sec, "o1=50", "c1=0")},
			canaries: map[string]bool{},
		},
		{
			name: "an empty canary through its bake",
			samples: []Sample{
				fleet(5*sec, "o1=45", "o2=45", "c1=0"),
				fleet(12*sec, "o1=45", "o2=45", "c1=0"),
				fleet(18*sec, "o1=45", "o2=45", "c1=0"),
				fleet(25*sec, "o1=45", "o2=45", "c1=0"), // after the canary phase
			},
			canaries:  canaries,
			want:      &CanaryShare{Window: "bake", From: 10 * sec, To: 20 * sec, Samples: 2, Min: 0, Mean: 0, Canaries: []string{"c1 (i-c1)"}},
			wantPts:   3,
			wantShare: []float64{0, 0, 0},
		},
		{
			name: "the canary fills before its bake and holds through it",
			samples: []Sample{
				fleet(5*sec, "o1=50", "o2=40", "c1=0"),
				fleet(10*sec, "o1=40", "o2=35", "c1=15"),          // fair 30: 50 %
				fleet(15*sec, "o1=30", "o2=30", "c1=30"),          // fair 30: 100 %
				fleet(20*sec, "o1=36", "o2=30", "c1=24", "o3=0x"), // gone: not live; fair 30: 80 %
				fleet(20*sec, "o1=36", "o2=30?", "c1=0?"),         // unread: skipped
			},
			canaries:  canaries,
			want:      &CanaryShare{Window: "bake", From: 10 * sec, To: 20 * sec, Samples: 3, Min: 0.5, Mean: (0.5 + 1 + 0.8) / 3, Canaries: []string{"c1 (i-c1)"}},
			wantPts:   4,
			wantShare: []float64{0, 0.5, 1, 0.8},
		},
		{
			name: "two canaries: the emptier one counts, a missing one holds nothing",
			samples: []Sample{
				fleet(12*sec, "o1=40", "c1=40", "c2=10"), // fair 30: 1/3
				fleet(14*sec, "o1=60", "c1=30"),          // c2 not sampled: 0
			},
			canaries:  map[string]bool{"i-c1": true, "i-c2": true},
			want:      &CanaryShare{Window: "bake", From: 10 * sec, To: 20 * sec, Samples: 2, Min: 0, Mean: 1.0 / 6, Canaries: []string{"c1 (i-c1)", "c2 (i-c2)"}},
			wantPts:   2,
			wantShare: []float64{1.0 / 3, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := canaryShare(tt.samples, tt.canaries, span, bake, "bake")
			if tt.want == nil {
				if got != nil {
					t.Fatalf("canaryShare = %+v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatal("canaryShare = nil")
			}
			if got.Window != tt.want.Window || got.From != tt.want.From || got.To != tt.want.To || got.Samples != tt.want.Samples ||
				!near(got.Min, tt.want.Min) || !near(got.Mean, tt.want.Mean) || strings.Join(got.Canaries, ",") != strings.Join(tt.want.Canaries, ",") {
				t.Errorf("canaryShare:\n got %+v\nwant %+v", got, tt.want)
			}
			if len(got.Points) != tt.wantPts {
				t.Fatalf("points: %d, want %d", len(got.Points), tt.wantPts)
			}
			for i, w := range tt.wantShare {
				if !near(got.Points[i].Share, w) {
					t.Errorf("point %d share %g, want %g", i, got.Points[i].Share, w)
				}
			}
		})
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestEndBalance(t *testing.T) {
	tests := []struct {
		name    string
		samples []Sample
		nil     bool
		mean    float64
		maxDev  float64
		count   int
	}{
		{name: "no samples", nil: true},
		{name: "no new instance", samples: []Sample{fleet(1*sec, "o1=10")}, nil: true},
		{name: "even", samples: []Sample{fleet(1*sec, "n1=25", "n2=25", "n3=25", "n4=25")}, mean: 25, maxDev: 0, count: 4},
		{
			name: "the last sample counts; old and gone instances do not",
			samples: []Sample{
				fleet(1*sec, "n1=100", "n2=0"),
				fleet(2*sec, "n1=30", "n2=20", "n3=10", "o1=40", "n9=0x"),
			},
			mean: 20, maxDev: 50, count: 3,
		},
		{
			name: "the last sample where every new instance answered",
			samples: []Sample{
				fleet(1*sec, "n1=30", "n2=10"),
				fleet(2*sec, "n1=30", "n2=0?", "o1=0?"),
			},
			mean: 20, maxDev: 50, count: 2,
		},
		{name: "never read", samples: []Sample{fleet(1*sec, "n1=0?")}, nil: true},
		{name: "everybody gone", samples: []Sample{fleet(1*sec, "n1=0", "n2=0")}, mean: 0, maxDev: 0, count: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := endBalance(tt.samples, newImage)
			if tt.nil {
				if b != nil {
					t.Fatalf("endBalance = %+v, want nil", b)
				}
				return
			}
			if b == nil {
				t.Fatal("endBalance = nil")
			}
			if !near(b.Mean, tt.mean) || !near(b.MaxDeviation, tt.maxDev) || len(b.Instances) != tt.count {
				t.Errorf("endBalance = %+v, want mean %g, max deviation %g %%, %d instances", b, tt.mean, tt.maxDev, tt.count)
			}
		})
	}
}

func TestRouteLogRecord(t *testing.T) {
	now := 3 * sec
	l := newRouteLog(func(time.Time) time.Duration { return now })
	req := func(q string) *http.Request {
		return &http.Request{URL: &url.URL{Path: "/bayeux", RawQuery: q}}
	}
	l.record(time.Time{}, "127.0.1.1:8080", req("demo_client=7"), http.StatusSwitchingProtocols)
	l.record(time.Time{}, "127.0.1.2:8080", req("demo_client=7"), http.StatusServiceUnavailable) // refused: not connected there
	l.record(time.Time{}, "127.0.1.2:8080", req(""), http.StatusSwitchingProtocols)              // not a demo client
	l.record(time.Time{}, "127.0.1.2:8080", req("demo_client=x"), http.StatusSwitchingProtocols)
	l.record(time.Time{}, "127.0.1.2:8080", nil, http.StatusSwitchingProtocols)
	now = 5 * sec
	l.record(time.Time{}, "127.0.1.3:8080", req("demo_client=7"), http.StatusSwitchingProtocols)
	got := l.snapshot()
	want := []routeHop{{At: 3 * sec, Target: "127.0.1.1:8080"}, {At: 5 * sec, Target: "127.0.1.3:8080"}}
	if len(got) != 1 || len(got[7]) != 2 || got[7][0] != want[0] || got[7][1] != want[1] {
		t.Errorf("routes = %+v, want client 7: %+v", got, want)
	}
}

func TestPhaseTrackerBakes(t *testing.T) {
	now := time.Duration(0)
	pt := phaseTracker{clock: func() time.Duration { return now }}
	step := func(at time.Duration, phase, waiting string) {
		now = at
		pt.set(phase, waiting)
	}
	step(1*sec, "canary", "0 of 1 replacements")
	step(3*sec, "canary", "baking until 10:42:07")
	step(4*sec, "canary", "baking until 10:42:07") // the same bake
	step(9*sec, "first half", "")
	step(12*sec, "second half", "bake") // the naive steps' word
	step(14*sec, "third", "baking until 10:45:00")
	now = 20 * sec
	got := pt.bakeWindows()
	want := []bakeWindow{{"canary", 3 * sec, 9 * sec}, {"second half", 12 * sec, 14 * sec}, {"third", 14 * sec, 20 * sec}}
	if len(got) != len(want) {
		t.Fatalf("bakes = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bake %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestInstanceNames(t *testing.T) {
	names := instanceNames([]Replacement{{Name: "ws-01", Old: []string{"i-1"}, New: []string{"i-9"}}}, map[string]bool{"i-c": true})
	if names["i-9"] != "ws-01" || names["i-c"] != "canary" || len(names) != 2 {
		t.Errorf("instanceNames = %v", names)
	}
}

func TestPlacementCharts(t *testing.T) {
	cs := &CanaryShare{Window: "bake", From: 10 * sec, To: 20 * sec, Points: []SharePoint{
		{At: 5 * sec, Share: 0}, {At: 10 * sec, Share: 0.5}, {At: 15 * sec, Share: 1}, {At: 20 * sec, Share: 0.9},
	}}
	var buf bytes.Buffer
	if err := WriteShareChart(&buf, "share title", cs); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	for _, want := range []string{"<svg", "share title", "fair share (100 %)", "80 % of it", "canary", "bake"} {
		if !strings.Contains(svg, want) {
			t.Errorf("share svg lacks %q", want)
		}
	}
	if strings.Contains(svg, "<script") {
		t.Error("share svg has a script")
	}
	if err := WriteShareChart(&buf, "x", &CanaryShare{}); err == nil {
		t.Error("a share chart without samples was drawn")
	}

	buf.Reset()
	m := MoveFigures{Histogram: [4]int{3, 1480, 512, 7}, CanaryHistogram: [4]int{0, 10, 200, 1}}
	if err := WriteMovesChart(&buf, "moves title", m); err != nil {
		t.Fatal(err)
	}
	svg = buf.String()
	for _, want := range []string{"<svg", "moves title", "other clients", "canary share&#39;s clients", "1480", "512", "3+"} {
		if !strings.Contains(svg, want) {
			t.Errorf("moves svg lacks %q", want)
		}
	}
}

func TestPlacementText(t *testing.T) {
	sum := &Summary{Mode: "rollout", Status: "succeeded", PeakReconnectRate: 67, Placement: Placement{
		ReconnectBudget: 200, ReconnectsPerClient: 1.262,
		CanaryShare: &CanaryShare{Canaries: []string{"canary (i-c)"}, Window: "bake", From: 10 * sec, To: 130 * sec, Samples: 240, Min: 0.84, Mean: 0.97},
		Moves: MoveFigures{Clients: 2000, Histogram: [4]int{3, 1480, 510, 7}, CanaryHistogram: [4]int{0, 0, 200, 1}, Total: 2524, PerClient: 1.262,
			CanaryShareClients: 201, OutsidePerClient: 1.16, OverAllowance: 316},
		EndBalance: &Balance{Instances: []InstanceCount{{Name: "ws-01", ID: "i-1", Connections: 230}, {Name: "ws-02", ID: "i-2", Connections: 270}}, Mean: 250, MaxDeviation: 8},
	}}
	sum.Files.ShareChart = "/x/share.svg"
	var text, md bytes.Buffer
	sum.WriteText(&text)
	sum.WriteMarkdown(&md)
	for _, want := range []string{
		"peak 67/s (budget 200/s)",
		"canary:    canary (i-c) held min 84 %, mean 97 % of its fair share through its bake (2m0s, 240 samples)",
		"moves:     1.26 per client (0: 3, 1: 1480, 2: 510, 3+: 7), reconnects 1.26 per client; outside the canary share 1.16 per client; 201 clients moved by the canary share, 316 over their allowance",
		"balance:   2 new instances at the end, mean 250 connections, max deviation 8.0 %",
		"share.svg, moves.svg",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{
		"## Where the clients went", "**min 84 %, mean 97 %**", "![the canary's share of its fair share](share.svg)",
		"| 2 | 510 | 200 |", "![moves per client](moves.svg)", "| **moves outside the canary share, per client** | **1.16** |",
		"**max deviation 8.0 %**", "| ws-01 (i-1) | 230 | -8.0 % |", "| ws-02 (i-2) | 270 | +8.0 % |",
		"the plan's budget (drain.max_rate) is 200/s", "| reconnects per client (the clients' own count; a reconnect to the same node is no move) | 1.26 |", "| peak reconnect rate | 67/s (budget 200/s) |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestWorkedRoutes(t *testing.T) {
	rh := func(at ...int) []routeHop {
		var out []routeHop
		for i, a := range at {
			out = append(out, routeHop{At: time.Duration(a) * sec, Target: "t" + string(rune('0'+i))})
		}
		return out
	}
	secs := func(at ...int) []time.Duration {
		var out []time.Duration
		for _, a := range at {
			out = append(out, time.Duration(a)*sec)
		}
		return out
	}
	tests := []struct {
		name string
		hs   []routeHop
		ups  []time.Duration
		want []string // targets kept
	}{
		{"every websocket worked", rh(1, 5, 9), secs(2, 6, 10), []string{"t0", "t1", "t2"}},
		{"a refused handshake in between", rh(1, 5, 6), secs(2, 7), []string{"t0", "t2"}},
		{"never came up", rh(1), nil, nil},
		{"up before its websocket is another's", rh(5), secs(2), nil},
		{"the last one, up late", rh(1, 5), secs(2, 30), []string{"t0", "t1"}},
		{"an up at the next websocket's instant is the next one's", rh(1, 5), secs(5), []string{"t1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := workedRoutes(tt.hs, tt.ups)
			var targets []string
			for _, h := range got {
				targets = append(targets, h.Target)
			}
			if strings.Join(targets, ",") != strings.Join(tt.want, ",") {
				t.Errorf("workedRoutes = %v, want %v", targets, tt.want)
			}
		})
	}
}

func TestBakeSpan(t *testing.T) {
	canary := map[string]bool{"canary": true}
	phase := window{From: 2 * sec, To: 20 * sec}
	tests := []struct {
		name  string
		bakes []bakeWindow
		want  window
		what  string
	}{
		{"no bake", nil, phase, "canary phase"},
		{"another phase's bake", []bakeWindow{{"first half", 25 * sec, 30 * sec}}, phase, "canary phase"},
		{"one bake", []bakeWindow{{"canary", 5 * sec, 18 * sec}}, window{From: 5 * sec, To: 18 * sec}, "bake"},
		{"a bake the waiting text split", []bakeWindow{{"canary", 5 * sec, 9 * sec}, {"canary", 10 * sec, 18 * sec}, {"first half", 25 * sec, 30 * sec}},
			window{From: 5 * sec, To: 18 * sec}, "bake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, what := bakeSpan(tt.bakes, canary, phase)
			if got != tt.want || what != tt.what {
				t.Errorf("bakeSpan = %+v %q, want %+v %q", got, what, tt.want, tt.what)
			}
		})
	}
}

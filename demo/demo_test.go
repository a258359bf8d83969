package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"wsfleet/examples"
	"wsfleet/probe"
	"wsfleet/rollout"
)

// The end-to-end run is `make test`'s `wsfleet demo --fast` (it needs the
// built binary as the nodes' executable); these tests cover the parts that
// decide what the demo runs and what it reports.

func TestTopologyForDemo(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		wantLines  []string
		avoidLines []string
		hooks      int
	}{
		{"normal", Config{}, []string{"--nats=nats://127.0.0.1:1234", "--drain-window=10s", "--aws-lifecycle-interval=1s"}, []string{"--nats=nats://127.0.0.1:4222"}, 1},
		{"fast", Config{Fast: true}, []string{"--nats=nats://127.0.0.1:1234", "--drain-window=2s", "--drain-deadline=10s"}, []string{"--drain-window=10s"}, 1},
		{"naive", Config{Naive: true, Fast: true}, []string{"--drain-window=0s", "--drain-deadline=1ms", "--aws-lifecycle-interval=24h"}, []string{"--aws-lifecycle-interval=1s"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo, err := topologyForDemo(examples.SeedTopology, "nats://127.0.0.1:1234", tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ud := strings.Split(topo.Launch().UserData, "\n")
			has := func(l string) bool {
				for _, u := range ud {
					if u == l {
						return true
					}
				}
				return false
			}
			for _, l := range tt.wantLines {
				if !has(l) {
					t.Errorf("user data lacks %q:\n%s", l, topo.Launch().UserData)
				}
			}
			for _, l := range tt.avoidLines {
				if has(l) {
					t.Errorf("user data still has %q", l)
				}
			}
			if got := len(topo.Groups[0].LifecycleHooks); got != tt.hooks {
				t.Errorf("lifecycle hooks: %d, want %d", got, tt.hooks)
			}
			g := topo.Groups[0]
			if g.Name != groupName || g.Desired != 8 || len(g.InstanceNames) != 8 || topo.Launch().ImageID != oldImage {
				t.Errorf("the seed's group changed: %+v", g)
			}
		})
	}
	if _, err := topologyForDemo([]byte("groups: []\n"), "nats://x", Config{}); err == nil {
		t.Error("a topology without the seed's shape was accepted")
	}
	if _, err := topologyForDemo([]byte("bogus: 1\n"), "nats://x", Config{}); err == nil {
		t.Error("an unknown key was accepted")
	}
}

func TestPlanForDemo(t *testing.T) {
	out, err := planForDemo(examples.NewAMIPlan, "http://127.0.0.1:39001", "http://127.0.0.1:39002")
	if err != nil {
		t.Fatal(err)
	}
	p, err := rollout.ParsePlan(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.AWS.Endpoint != "http://127.0.0.1:39001" {
		t.Errorf("endpoint %q", p.AWS.Endpoint)
	}
	var site string
	for _, c := range p.Checks {
		if h, ok := c.Spec.(*rollout.HTTPCheck); ok {
			site = h.URL
		}
	}
	if site != "http://127.0.0.1:39002/healthz" {
		t.Errorf("site check url %q", site)
	}
	// Everything else is the file as shipped: the seed's timing and phases.
	orig, _ := rollout.ParsePlan(examples.NewAMIPlan)
	if p.Phases[0].Bake != orig.Phases[0].Bake || p.Drain != orig.Drain || len(p.Phases) != 3 || p.Image.AMI != newImage || p.Group != groupName {
		t.Errorf("plan changed beyond its addresses: %+v", p)
	}
	if _, err := planForDemo([]byte("change: x\n"), "a", "b"); err == nil {
		t.Error("a plan without the seed's addresses was accepted")
	}
}

func TestPeakRate(t *testing.T) {
	pts := func(at []float64, rec []int64) []probePoint {
		var out []probePoint
		for i := range at {
			out = append(out, probePoint{At: time.Duration(at[i] * float64(time.Second)), Reconnects: rec[i]})
		}
		return out
	}
	tests := []struct {
		name   string
		points []probePoint
		want   float64
	}{
		{"none", nil, 0},
		{"flat", pts([]float64{0, .5, 1, 1.5, 2}, []int64{0, 0, 0, 0, 0}), 0},
		{"steady 100/s", pts([]float64{0, .5, 1, 1.5, 2}, []int64{0, 50, 100, 150, 200}), 100},
		// A burst of 300 inside one half second is 300 over the second
		// around it, not 600/s.
		{"burst", pts([]float64{0, .5, 1, 1.5, 2, 2.5}, []int64{0, 0, 0, 300, 300, 300}), 300},
		// Two points closer than three quarters of the window say nothing.
		{"too close", pts([]float64{0, .2}, []int64{0, 100}), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := peakRate(tt.points, time.Second)
			if got != tt.want {
				t.Errorf("peak %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSummaryVerdict(t *testing.T) {
	allNew := make([]FleetMember, 8)
	for i := range allNew {
		allNew[i] = FleetMember{Name: "ws-0" + itoa(i+1), ID: "i-" + itoa(i), Lifecycle: "InService", Image: newImage, NodeImage: newImage}
	}
	oneOld := append([]FleetMember(nil), allNew...)
	oneOld[3].NodeImage = oldImage // the cloud says new, the node says old
	tests := []struct {
		name    string
		mode    string
		res     changeResult
		lost    int64
		fleet   []FleetMember
		ok      bool
		problem string
	}{
		{"clean rollout", "rollout", changeResult{status: "succeeded"}, 0, allNew, true, ""},
		{"rollout lost a message", "rollout", changeResult{status: "succeeded"}, 1, allNew, false, "1 messages lost"},
		{"naive loses and still ends on the image", "naive", changeResult{status: "succeeded"}, 40, allNew, true, ""},
		{"node reports the old image", "rollout", changeResult{status: "succeeded"}, 0, oneOld, false, "not on ami-new: ws-04"},
		{"rolled back", "rollout", changeResult{status: "rolled-back", err: rollout.ErrFailed}, 0, allNew, false, "the change: rollout failed"},
		{"fleet short", "naive", changeResult{status: "succeeded"}, 0, allNew[:7], false, "7 live instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &run{cfg: Config{Clients: 10, Now: time.Now}, start: time.Now(), samp: newSampler(nil)}
			rep := probe.Report{Clients: 10, ClientsSubscribed: 10, Lost: tt.lost}
			s := d.summarize(tt.mode, tt.res, rep, tt.fleet, 0, time.Second)
			if s.OK() != tt.ok {
				t.Fatalf("OK() = %v, want %v; problems %v", s.OK(), tt.ok, s.Problems)
			}
			if tt.problem != "" && !strings.Contains(strings.Join(s.Problems, "; "), tt.problem) {
				t.Errorf("problems %v lack %q", s.Problems, tt.problem)
			}
			var txt, md bytes.Buffer
			s.WriteText(&txt)
			s.WriteMarkdown(&md)
			want := "change OK"
			if !tt.ok {
				want = "change NOT OK"
			}
			if !strings.Contains(txt.String(), want) {
				t.Errorf("text summary lacks %q:\n%s", want, txt.String())
			}
			if !strings.Contains(md.String(), "| **deliveries lost** | **"+itoa(int(tt.lost))+"** |") {
				t.Errorf("report lacks the loss row:\n%s", md.String())
			}
		})
	}
}

func TestReplacements(t *testing.T) {
	s := newSampler(nil)
	for _, si := range []*seenInstance{
		{ID: "i-1", Name: "ws-01", Image: oldImage},
		{ID: "i-2", Name: "ws-02", Image: oldImage},
		{ID: "i-9", Name: "ws-09", Image: newImage},
		{ID: "i-3", Name: "ws-01", Image: newImage},
		{ID: "i-4", Name: "ws-02", Image: newImage},
		{ID: "i-5", Image: newImage}, // never named: not a replacement
	} {
		s.seen[si.ID] = si
		s.order = append(s.order, si.ID)
	}
	var got []string
	for _, r := range s.replacements() {
		got = append(got, r.String())
	}
	want := "ws-01: i-1 -> i-3 | ws-02: i-2 -> i-4 | ws-09: - -> i-9"
	if strings.Join(got, " | ") != want {
		t.Errorf("replacements\n got %s\nwant %s", strings.Join(got, " | "), want)
	}
}

func TestParseReplaced(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"ws-01 (i-0001) -> i-0010", "ws-01: i-0001 -> i-0010", true},
		{"ws-01 -> i-0010", "", false},
		{"garbage", "", false},
	} {
		r, ok := parseReplaced(tc.in)
		if ok != tc.ok || (ok && r.String() != tc.want) {
			t.Errorf("parseReplaced(%q) = %v %v, want %q %v", tc.in, r, ok, tc.want, tc.ok)
		}
	}
}

package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// placeHarness is a harness whose cloud models connection placement:
// clients released by drains and sheds reconnect to the healthy targets,
// and a cordon turns a target unhealthy after hcLatency.
func placeHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.cloud.place = true
	h.cloud.hcLatency = 2 * time.Second
	return h
}

func (h *harness) placeEngine() *Engine {
	e := h.engine()
	e.Provider = placeCloud{e.Provider.(processView)}
	e.Nodes = placeNodes{memNodes{h.cloud}}
	return e
}

// placeFigures are the figures the issue judges a change by, from the
// model: the canary's clients through its bake (min), its fair share,
// reconnects, and the end balance (largest deviation from the mean).
type placeFigures struct {
	bakeMin, fair int
	moves         int
	endDev        float64
	cordoned      []string
}

func (h *harness) figures() placeFigures {
	f := placeFigures{moves: h.cloud.moves, fair: 2000 / 9}
	var live []*memInst
	for _, in := range h.cloud.sorted() {
		if in.lifecycle == "InService" {
			live = append(live, in)
		}
		if in.cordoned && in.lifecycle == "InService" {
			f.cordoned = append(f.cordoned, in.name)
		}
	}
	total := 0
	for _, in := range live {
		total += in.conns
	}
	if len(live) > 0 {
		mean := float64(total) / float64(len(live))
		for _, in := range live {
			f.endDev = math.Max(f.endDev, math.Abs(float64(in.conns)-mean)/mean)
		}
	}
	return f
}

// TestPlacementSeedPlan runs the seed's change with placement on: the
// canary bakes holding its fair share, every client moves once (the
// canary's share twice), the fleet ends balanced, nothing is lost.
func TestPlacementSeedPlan(t *testing.T) {
	h := placeHarness(t)
	h.cloud.floor = 8
	e := h.placeEngine()
	bakeMin := h.watchBake(e)
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if st.Status != StatusSucceeded {
		t.Fatalf("status %s (%s)", st.Status, st.Failure)
	}
	if st.Placement == nil || !st.Placement.On {
		t.Fatalf("placement %+v, want on", st.Placement)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
	f := h.figures()
	total := 0
	for _, in := range h.cloud.inst {
		if in.lifecycle == "InService" {
			total += in.conns
		}
	}
	if total != 2000 {
		t.Errorf("%d clients at the end, want 2000 (none lost)", total)
	}
	if *bakeMin == math.MaxInt || *bakeMin < f.fair*8/10 {
		t.Errorf("canary held at least %d clients through its bake, want >= 80%% of its fair share %d", *bakeMin, f.fair)
	}
	if f.moves > 2000*115/100 {
		t.Errorf("%d reconnects for 2000 clients, want <= 2300", f.moves)
	}
	if f.endDev > 0.15 {
		t.Errorf("end balance off the mean by %.0f%%, want within 15%%", 100*f.endDev)
	}
	if len(f.cordoned) > 0 {
		t.Errorf("still cordoned at the end: %v", f.cordoned)
	}
	if h.cloud.desired != 8 || len(h.cloud.terminated) != 9 {
		t.Errorf("desired %d, %d terminated", h.cloud.desired, len(h.cloud.terminated))
	}
	t.Logf("canary held >= %d (fair %d), %d reconnects, end balance ±%.1f%%", *bakeMin, f.fair, f.moves, 100*f.endDev)
	var report strings.Builder
	WriteReport(&report, st)
	for _, want := range []string{"## Placement\n\nplacement: on\n", "Canary share (canary): fair share 222 clients, asked 222, held 222 when the bake began; through the bake min 222, mean 222 (100 % of the fair share at the least).",
		"| canary | 222 |", "| first half | 888 |", "| second half | 1112 |", "End balance: mean 250 clients a new instance, largest deviation 0.4 %"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}
}

// watchBake samples the canary's clients at every save of the canary
// phase's bake; the result is the least seen (MaxInt: never sampled).
func (h *harness) watchBake(e *Engine) *int {
	least := math.MaxInt
	e.View = func(st *State) {
		if st.Rollback || st.Cursor >= len(st.Steps) {
			return
		}
		s := st.Steps[st.Cursor]
		if s.Kind != StepBake || s.Phase != 0 || s.Started.IsZero() {
			return
		}
		for _, in := range h.cloud.inst {
			if in.image == "ami-new" && in.lifecycle == "InService" {
				least = min(least, in.conns)
			}
		}
	}
	return &least
}

// TestPlacementCanaryOnly: a plan with a canary phase only takes the
// canary's share and retires the canary at the end of its phase as
// without placement: its clients go back to the old nodes, none of which
// is cordoned then.
func TestPlacementCanaryOnly(t *testing.T) {
	h := placeHarness(t)
	e := h.placeEngine()
	bakeMin := h.watchBake(e)
	plan := strings.Replace(string(seedPlan(h.site.URL, "launch-before-terminate")), `  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest, not_before: "2019-08-19T07:00:00Z"}
`, "", 1)
	st, err := e.Start(context.Background(), []byte(plan))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("rollout: %v %v", st, err)
	}
	h.checkInvariants()
	f := h.figures()
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet %s, want %s", got, want)
	}
	cordons := 0
	for _, j := range st.Journal {
		if j.Effect.Kind == EffCordon {
			cordons++
		}
	}
	if cordons != 1 {
		t.Errorf("%d cordons, want 1 (the canary share's; the retirement cordons nothing)", cordons)
	}
	if *bakeMin < f.fair*8/10 || f.moves != 2*f.fair || len(f.cordoned) > 0 {
		t.Errorf("canary held >= %d through its bake (fair %d), %d reconnects (want %d), cordoned %v", *bakeMin, f.fair, f.moves, 2*f.fair, f.cordoned)
	}
}

// balance1 is the seed plan with placement's balance at 1 %.
func balance1(url string) []byte {
	return []byte(strings.Replace(string(seedPlan(url, "launch-before-terminate")), "phases:", "placement: {balance: 1%}\nphases:", 1))
}

// TestPlacementSteerMovesOnce: with a band of 1% the seed's change ends
// within it by steering alone: the end balance sheds no one, and every
// client moves once (the canary's share twice: 2,000 + 222 reconnects).
// Steering that opened every instance below its share (before) left them
// 1.6 % apart and the end balance moved 12 clients a second time
// (2,230 reconnects).
func TestPlacementSteerMovesOnce(t *testing.T) {
	h := placeHarness(t)
	st, err := h.placeEngine().Start(context.Background(), balance1(h.site.URL))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("rollout: %v %v", st, err)
	}
	f := h.figures()
	resume := st.Steps[len(st.Steps)-1]
	if resume.Place == nil || len(resume.Place.Shed) > 0 || f.endDev > 0.01 {
		t.Errorf("end balance shed %v (end ±%.1f%%): clients moved a second time", resume.Place, 100*f.endDev)
	}
	if f.moves != 2000+f.fair {
		t.Errorf("%d reconnects, want %d (each client once, the canary's share twice)", f.moves, 2000+f.fair)
	}
}

// lateArrivals makes n new clients land on the first new instance once
// the change reaches its resume step (a burst through the load balancer
// while one instance alone is open), once per harness: e's and any later
// engine's view.
func (h *harness) lateArrivals(e *Engine, n int, done *bool) {
	e.View = func(st *State) {
		if *done || st.Rollback || st.Cursor >= len(st.Steps) || st.Steps[st.Cursor].Kind != StepResume {
			return
		}
		h.cloud.mu.Lock()
		defer h.cloud.mu.Unlock()
		for _, in := range h.cloud.sorted() {
			if in.image == "ami-new" && in.lifecycle == "InService" {
				in.conns += n
				*done = true
				return
			}
		}
	}
}

// TestPlacementEndBalance: with balance 1% the seed's change ends outside
// the band (steering leaves the new instances 0.4 % apart at most, and
// 12 clients arrive on one of them at the end); the end balance brings
// each within it by paced sheds
// from those above, after the phases, and a crash around each of its
// effects neither repeats nor skips one.
func TestPlacementEndBalance(t *testing.T) {
	var points []string
	resumeKey := ""
	{
		h := placeHarness(t)
		e := h.placeEngine()
		var arrived bool
		h.lateArrivals(e, 12, &arrived)
		e.Crash = func(p string) bool { points = append(points, p); return false }
		st, err := e.Start(context.Background(), balance1(h.site.URL))
		resumeKey = fmt.Sprintf("f%d", len(st.Steps)-1)
		if err != nil || st.Status != StatusSucceeded {
			t.Fatalf("rollout: %v %v", st, err)
		}
		f := h.figures()
		resume := st.Steps[len(st.Steps)-1]
		if resume.Place == nil || resume.Place.ShedBefore+sumOf(resume.Place.Shed) == 0 || f.endDev > 0.01 || len(f.cordoned) > 0 {
			t.Fatalf("end balance %+v: ±%.1f%%, cordoned %v", resume.Place, 100*f.endDev, f.cordoned)
		}
		t.Logf("balance 1%%: %d reconnects, end ±%.1f%% after the balance shed %d in %d rounds", f.moves, 100*f.endDev, resume.Place.ShedBefore+sumOf(resume.Place.Shed), resume.Place.Round)
	}
	for k, p := range points {
		if !strings.Contains(p, ":"+resumeKey+":") { // the resume step's: the balance
			continue
		}
		t.Run(fmt.Sprintf("%02d-%s", k, p), func(t *testing.T) {
			h := placeHarness(t)
			e := h.placeEngine()
			var arrived bool
			h.lateArrivals(e, 12, &arrived)
			n := 0
			e.Crash = func(string) bool { n++; return n == k+1 }
			if _, err := e.Start(context.Background(), balance1(h.site.URL)); !errors.Is(err, ErrCrashed) {
				t.Fatalf("first run: %v, want a crash", err)
			}
			e2 := h.placeEngine()
			h.lateArrivals(e2, 12, &arrived)
			st, err := e2.Resume(context.Background(), "gitter-ws-new-ami", false)
			if err != nil || st.Status != StatusSucceeded {
				t.Fatalf("resume: %v %v", st, err)
			}
			h.checkInvariants()
			shed := 0
			for _, in := range h.cloud.inst {
				for id, n := range in.shedIDs {
					if n > 1 && !strings.Contains(p, "shed") {
						t.Errorf("%s asked to shed %s %d times", in.name, id, n)
					}
					if strings.Contains(id, "/"+resumeKey+"/") {
						shed++
					}
				}
			}
			if f := h.figures(); f.endDev > 0.01 || len(f.cordoned) > 0 || shed == 0 {
				t.Errorf("after the crash: end ±%.1f%%, cordoned %v, %d balance sheds", 100*f.endDev, f.cordoned, shed)
			}
		})
	}
}

// TestPlacementOff is the same change without placement: the canary bakes
// empty and clients move more than once (the figures placement fixes).
func TestPlacementOff(t *testing.T) {
	h := placeHarness(t)
	e := h.placeEngine()
	e.Provider = e.Provider.(placeCloud).processView // no health check to read: off
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("rollout: %v %v", st, err)
	}
	if st.Placement == nil || st.Placement.On || !strings.Contains(st.Placement.Reason, "health checks") {
		t.Fatalf("placement %+v, want off for the provider", st.Placement)
	}
	if f := h.figures(); f.moves <= 2000*115/100 {
		t.Errorf("%d reconnects without placement: the model shows nothing placement fixes", f.moves)
	}
}

// TestPlacementCrashAtEveryEffect crashes the engine at every point around
// an effect of a change with placement and resumes: nothing cordoned is
// left so, no shed is made twice, and the figures still hold.
func TestPlacementCrashAtEveryEffect(t *testing.T) {
	var points []string
	{
		h := placeHarness(t)
		e := h.placeEngine()
		e.Crash = func(p string) bool { points = append(points, p); return false }
		if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); err != nil {
			t.Fatal(err)
		}
	}
	var placing []int
	for k, p := range points {
		if strings.Contains(p, "cordon") || strings.Contains(p, "shed") {
			placing = append(placing, k)
		}
	}
	if len(placing) < 6 {
		t.Fatalf("only %d placement crash points: %v", len(placing), points)
	}
	for _, k := range placing {
		t.Run(fmt.Sprintf("%02d-%s", k, points[k]), func(t *testing.T) {
			h := placeHarness(t)
			h.cloud.floor = 8
			e := h.placeEngine()
			n := 0
			e.Crash = func(string) bool { n++; return n == k+1 }
			if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); !errors.Is(err, ErrCrashed) {
				t.Fatalf("first run: %v, want a crash", err)
			}
			e = h.placeEngine()
			bakeMin := h.watchBake(e)
			st, err := e.Resume(context.Background(), "gitter-ws-new-ami", false)
			if err != nil || st.Status != StatusSucceeded {
				t.Fatalf("resume: %v %v", st, err)
			}
			h.checkInvariants()
			for _, in := range h.cloud.inst {
				for id, n := range in.shedIDs {
					if n > 1 && !strings.Contains(points[k], "shed") {
						t.Errorf("%s asked to shed %s %d times", in.name, id, n)
					}
				}
			}
			f := h.figures()
			if len(f.cordoned) > 0 {
				t.Errorf("still cordoned: %v", f.cordoned)
			}
			if *bakeMin != math.MaxInt && *bakeMin < f.fair*8/10 {
				t.Errorf("after the crash the canary held %d through its bake, fair share %d", *bakeMin, f.fair)
			}
			if f.endDev > 0.15 || f.moves > 2300 {
				t.Errorf("after the crash: %d reconnects, end balance ±%.0f%%", f.moves, 100*f.endDev)
			}
		})
	}
}

// TestPlacementAbortUncordons aborts a change while the old nodes are
// cordoned for the canary's share: abort gives them their readiness back
// and marks them healthy in the group before resuming its processes.
func TestPlacementAbortUncordons(t *testing.T) {
	for _, how := range []string{"abort", "rollback"} {
		t.Run(how, func(t *testing.T) {
			h := placeHarness(t)
			e := h.placeEngine()
			stopped := false
			e.Crash = func(p string) bool {
				if !stopped && strings.HasPrefix(p, "after:") && strings.Contains(p, ":shed/") {
					stopped = true
					return true
				}
				return false
			}
			if _, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate")); !errors.Is(err, ErrCrashed) {
				t.Fatalf("first run: %v", err)
			}
			for _, in := range h.cloud.inst {
				if in.image == "ami-old" {
					if !in.cordoned {
						t.Fatalf("%s not cordoned during the canary share", in.name)
					}
					in.unhealthy = true // the group's ELB health check saw it
				}
			}
			var st *State
			var err error
			if how == "abort" {
				st, err = h.placeEngine().Abort(context.Background(), "gitter-ws-new-ami")
			} else {
				st, err = h.placeEngine().Resume(context.Background(), "gitter-ws-new-ami", true)
			}
			if err != nil && !(how == "rollback" && errors.Is(err, ErrFailed)) {
				t.Fatalf("%s: %v", how, err)
			}
			if want := map[string]Status{"abort": StatusAborted, "rollback": StatusRolledBack}[how]; st.Status != want {
				t.Errorf("status %s, want %s", st.Status, want)
			}
			if how == "rollback" {
				// The kept old nodes take clients again before the
				// rollback drains the canary.
				var order []string
				for _, j := range st.Journal {
					if strings.HasPrefix(j.Step, "r") && (j.Effect.Kind == EffUncordon || j.Effect.Kind == EffDrain) {
						order = append(order, string(j.Effect.Kind))
					}
				}
				if len(order) < 2 || order[0] != string(EffUncordon) {
					t.Errorf("rollback's uncordon and drains: %v, want the uncordon first", order)
				}
			}
			for _, in := range h.cloud.inst {
				if in.lifecycle != "InService" {
					continue
				}
				if in.cordoned {
					t.Errorf("%s still cordoned after %s", in.name, how)
				}
				if in.unhealthy {
					t.Errorf("%s still marked unhealthy after %s", in.name, how)
				}
			}
			if h.cloud.suspended["ReplaceUnhealthy"] {
				t.Errorf("ReplaceUnhealthy still suspended after %s", how)
			}
			h.cloud.mu.Lock()
			h.cloud.tick() // the group acts on its marks
			h.cloud.mu.Unlock()
			want := strings.Join(wantFleet("ami-old"), " ")
			if how == "abort" {
				want += " ws-09:ami-new" // an abort keeps what is there
			}
			if got := strings.Join(h.fleet(), " "); got != want || h.cloud.elbKilled > 0 {
				t.Errorf("after %s: fleet %s, %d replaced by the group on health", how, got, h.cloud.elbKilled)
			}
		})
	}
}

// obsWith is an observation of nodes i-1.. with the given clients, all
// in service on ami-new and healthy.
func obsWith(counts ...int) (Observation, []string) {
	obs := Observation{Nodes: map[string]NodeObs{}, Now: t0}
	var ids []string
	for i, c := range counts {
		id := fmt.Sprintf("i-%d", i+1)
		ids = append(ids, id)
		obs.Group.Instances = append(obs.Group.Instances, Instance{ID: id, Name: fmt.Sprintf("ws-%02d", i+1), Image: "ami-new", Lifecycle: "InService", Health: "healthy"})
		obs.Nodes[id] = NodeObs{Status: NodeStatus{State: "ready", Connections: c}}
	}
	return obs, ids
}

func TestBalancePlan(t *testing.T) {
	cases := []struct {
		name   string
		counts []int
		want   string // id:count sorted
		open   string
	}{
		{"one above the band sheds down to the aim, into the lowest", []int{45, 41, 40, 41, 34, 32, 35, 32}, "i-1:4", "i-6"},
		{"the lowest gets what it lacks of the aim", []int{40, 40, 40, 40, 40, 40, 40, 20}, "i-1:2 i-2:2 i-3:2 i-4:2 i-5:2 i-6:2 i-7:2", "i-8"},
		{"CI 2026-12-06: the lowest lacks more than the forced shed", []int{53, 58, 57, 52, 67, 69, 72, 72}, "i-7:3 i-8:3", "i-4"},
		{"a forced shed larger than the lowest lacks opens the next", []int{60, 60, 60, 60, 60, 60, 60, 80}, "i-8:11", "i-1 i-2 i-3 i-4"},
		{"CI 2026-12-07: only the lowest, from the highest", []int{54, 58, 58, 53, 66, 69, 71, 71}, "i-7:2 i-8:1", "i-4"},
		{"the demo's second half without steering", []int{388, 388, 389, 389, 111, 111, 112, 112}, "i-1:110 i-2:110 i-3:111 i-4:111", "i-5 i-6 i-7 i-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs, ids := obsWith(tc.counts...)
			total := 0
			for _, c := range tc.counts {
				total += c
			}
			got, open, closed := balancePlan(obs, ids, float64(total)/float64(len(ids)), 15*balanceAim, 15)
			var parts []string
			for _, id := range ids {
				if got[id] > 0 {
					parts = append(parts, fmt.Sprintf("%s:%d", id, got[id]))
				}
			}
			if s := strings.Join(parts, " "); s != tc.want || strings.Join(open, " ") != tc.open {
				t.Errorf("shed %s into %v, want %s into %s", s, open, tc.want, tc.open)
			}
			if len(open)+len(closed) != len(ids) {
				t.Errorf("open %v and closed %v: want every instance in one of them", open, closed)
			}
		})
	}
}

func TestSteer(t *testing.T) {
	timing := Timing{Poll: time.Second, Drain: DrainOptions{Window: 30 * time.Second, MaxRate: 200}}
	cases := []struct {
		name     string
		counts   []int // new instances' clients; the batch's one target holds target
		target   int
		cordoned []string
		want     string // effects
		final    int    // the end fleet, 0: the group's 8
	}{
		{"first batch: none near its share", []int{0, 0, 0, 0}, 1110, nil, "", 0},
		// 300 to come over 4 lacking 8, 78, 38 and 178: open three, the
		// least over their share (100 each: 62 over for i-3; two open
		// would take 150 each, 72 over for i-2)
		{"first batch: near the share", []int{270, 200, 240, 100}, 300, nil, "cordon/i-1", 0},
		// 400 to come while a cordon takes 2 s at 200/s: opening every
		// one that lacks more than 200/s × 1 s / 8 (the five lacking 100
		// and 35) gave each 80, two of them 45 over; three open, lacking
		// 100 each, take 133 (33 over, the least of any set)
		{"after a batch: five below, two of them lacking little", []int{240, 240, 240, 150, 150, 150, 215, 215}, 400, nil, "cordon/i-1,i-2,i-3,i-7,i-8", 0},
		{"every one at its share: the least loaded stays open", []int{278, 278, 278, 277}, 0, nil, "cordon/i-1,i-2,i-3", 0},
		{"second batch: the first batch's at their share, fresh ones fill", []int{277, 277, 278, 278, 0, 0, 0, 0}, 888, nil, "cordon/i-1,i-2,i-3,i-4", 0},
		{"a cordoned one below again is uncordoned", []int{100, 277, 278, 278, 0, 0, 0, 0}, 888, []string{"i-1", "i-2"}, "cordon/i-3,i-4 uncordon/i-1", 0},
		// A kept canary makes the end fleet 9: 2,070 clients are 230 each
		// over 9, 259 over 8; the canary (the 9th, empty here) must fill.
		{"end fleet of 8: none at its share", []int{230, 230, 230, 230, 230, 230, 230, 230, 0}, 230, nil, "", 0},
		{"a kept canary: the end fleet of 9's share", []int{230, 230, 230, 230, 230, 230, 230, 230, 0}, 230, nil, "cordon/i-1,i-2,i-3,i-4,i-5,i-6,i-7,i-8", 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs, _ := obsWith(tc.counts...)
			obs.Group.Instances = append(obs.Group.Instances, Instance{ID: "i-old", Name: "ws-old", Image: "ami-old", Lifecycle: "InService", Health: "draining"})
			obs.Nodes["i-old"] = NodeObs{Status: NodeStatus{State: "draining", Connections: tc.target}}
			pl := &PlacementState{On: true, Seen: time.Second, Cordoned: map[string]time.Time{}}
			st := &State{Change: "c", InitialDesired: 8, Placement: pl}
			for _, id := range tc.cordoned {
				pl.Cordoned[id] = t0
				st.Journal = append(st.Journal, JournalEntry{Status: "done", Effect: Effect{Kind: EffCordon, IDs: []string{id}}})
			}
			s := Step{Kind: StepBatch, Image: "ami-new", Targets: []string{"i-old"}, Progress: Progress{Terminated: map[string]time.Time{}}}
			final := tc.final
			if final == 0 {
				final = st.InitialDesired
			}
			_, effs, _ := steer(st, s, obs, timing, final)
			var got []string
			for _, e := range effs {
				got = append(got, e.Key)
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("effects %q, want %q", s, tc.want)
			}
		})
	}
}

func TestPlacementPlanKeys(t *testing.T) {
	base := "change: c\ngroup: g\nimage: ami-1\n"
	cases := []struct {
		name, yaml string
		want       string // error substring, or "" for valid
		check      func(*Plan) string
	}{
		{"defaults", "phases:\n  - {name: c, canary: 1}\n  - {name: r, replace: rest}\n", "", func(p *Plan) string {
			if pl := p.placement(); pl.Off || !pl.MoveOnce || pl.Balance != 15 {
				return fmt.Sprintf("placement %+v", pl)
			}
			if s := p.canaryShare(0, 8, 1); math.Abs(s-1.0/9) > 1e-9 {
				return fmt.Sprintf("share %g", s)
			}
			return ""
		}},
		{"share 10%", "phases:\n  - {name: c, canary: 1, canary_share: 10%}\n", "", func(p *Plan) string {
			if s := p.canaryShare(0, 8, 1); s != 0.1 {
				return fmt.Sprintf("share %g", s)
			}
			return ""
		}},
		{"share 0 is off", "phases:\n  - {name: c, canary: 1, canary_share: 0}\n", "", func(p *Plan) string {
			if s := p.canaryShare(0, 8, 1); s != 0 {
				return fmt.Sprintf("share %g", s)
			}
			return ""
		}},
		{"placement off", "placement: off\nphases:\n  - {name: c, canary: 1}\n", "", func(p *Plan) string {
			if !p.placement().Off || p.canaryShare(0, 8, 1) != 0 {
				return "not off"
			}
			return ""
		}},
		{"placement false", "placement: false\nphases:\n  - {name: c, canary: 1}\n", "", func(p *Plan) string {
			if !p.placement().Off {
				return "not off"
			}
			return ""
		}},
		{"move_once off, balance 20%", "placement: {move_once: false, balance: 20%}\nphases:\n  - {name: c, canary: 1}\n", "", func(p *Plan) string {
			if pl := p.placement(); pl.Off || pl.MoveOnce || pl.Balance != 20 {
				return fmt.Sprintf("placement %+v", pl)
			}
			return ""
		}},
		{"share out of range", "phases:\n  - {name: c, canary: 1, canary_share: 70%}\n", "line 5: phases[0].canary_share: \"70%\": not a percentage from 0% to 50%", nil},
		{"share not a share", "phases:\n  - {name: c, canary: 1, canary_share: lots}\n", "phases[0].canary_share", nil},
		{"share on a replace phase", "phases:\n  - {name: r, replace: rest, canary_share: auto}\n", "line 5: phases[0].canary_share: only applies to a canary phase", nil},
		{"balance out of range", "placement: {balance: 200%}\nphases:\n  - {name: c, canary: 1}\n", "line 4: placement: balance: \"200%\": not a percentage from 1% to 100%", nil},
		{"unknown placement key", "placement: {move_ones: true}\nphases:\n  - {name: c, canary: 1}\n", "line 4: placement: unknown key move_ones; valid keys here: move_once, balance", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePlan([]byte(base + tc.yaml))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			case tc.check != nil:
				if msg := tc.check(p); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// hcProvider is a provider that only reads health checks.
type hcProvider struct {
	Provider
	hcs []HealthCheck
}

func (p hcProvider) TargetHealthChecks(ctx context.Context, group string) ([]HealthCheck, error) {
	return p.hcs, nil
}

// versionNodes answers each node's status with an admin API version, or
// an error for version 0.
type versionNodes map[string]int

func (v versionNodes) Drain(ctx context.Context, in Instance, o DrainOptions) error { return nil }
func (v versionNodes) Status(ctx context.Context, in Instance) (NodeStatus, error) {
	if v[in.ID] == 0 {
		return NodeStatus{}, errors.New("connection refused")
	}
	return NodeStatus{APIVersion: v[in.ID], Node: in.Name, State: "ready"}, nil
}
func (v versionNodes) Cordon(ctx context.Context, in Instance, cordoned bool) error { return nil }
func (v versionNodes) Shed(ctx context.Context, in Instance, o ShedOptions) error   { return nil }

func TestPlacementSupport(t *testing.T) {
	alb := HealthCheck{TargetGroup: "gitter-ws", TrafficProtocol: "HTTP", TrafficPort: 8080, Port: "traffic-port", Enabled: true,
		Protocol: "HTTP", Path: "/readyz", Interval: 10 * time.Second, UnhealthyThreshold: 2}
	with := func(f func(*HealthCheck)) []HealthCheck { hc := alb; f(&hc); return []HealthCheck{hc} }
	g := Group{Name: "gitter-ws", Instances: []Instance{
		{ID: "i-1", Name: "ws-01", Lifecycle: "InService"}, {ID: "i-2", Name: "ws-02", Lifecycle: "InService"}}}
	v2 := versionNodes{"i-1": 2, "i-2": 2}
	cases := []struct {
		name  string
		plan  string
		p     Provider
		nodes Nodes
		want  string
	}{
		{"an ALB checking /readyz, nodes on version 2", "", hcProvider{hcs: []HealthCheck{alb}}, v2, "placement: on"},
		{"a node that does not answer does not count against it", "", hcProvider{hcs: []HealthCheck{alb}}, versionNodes{"i-1": 2}, "placement: on"},
		{"no node answers", "", hcProvider{hcs: []HealthCheck{alb}}, versionNodes{}, "placement: off (no node's admin API version could be read"},
		{"the plan turns it off", "placement: off\n", hcProvider{hcs: []HealthCheck{alb}}, v2, "placement: off (the plan turns it off)"},
		{"no health checks to read", "", processView{memCloud: newMemCloud(time.Now, 1, "ami-old")}, v2, "placement: off (the provider cannot read the target groups' health checks)"},
		{"no target group", "", hcProvider{}, v2, "placement: off (group gitter-ws has no target group)"},
		{"a Network Load Balancer's", "", hcProvider{hcs: with(func(h *HealthCheck) { h.TrafficProtocol = "TCP" })}, v2, "Network Load Balancer"},
		{"another path", "", hcProvider{hcs: with(func(h *HealthCheck) { h.Path = "/healthz" })}, v2, "checks /healthz, not the nodes' readiness /readyz"},
		{"another port", "", hcProvider{hcs: with(func(h *HealthCheck) { h.Port = "9090" })}, v2, "on port 9090, not the nodes' port 8080"},
		{"checks disabled", "", hcProvider{hcs: with(func(h *HealthCheck) { h.Enabled = false })}, v2, "health check disabled"},
		{"a TCP health check", "", hcProvider{hcs: with(func(h *HealthCheck) { h.Protocol = "TCP" })}, v2, "checks health over TCP"},
		{"a node on version 1", "", hcProvider{hcs: []HealthCheck{alb}}, versionNodes{"i-1": 2, "i-2": 1}, "ws-02 (i-2) speaks node admin API version 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := ParsePlan([]byte("change: c\ngroup: gitter-ws\nimage: ami-1\n" + tc.plan + "phases:\n  - {name: c, canary: 1}\n"))
			if err != nil {
				t.Fatal(err)
			}
			pl, reason := PlacementSupport(context.Background(), tc.p, tc.nodes, plan, g)
			pl.Reason = reason
			if got := PlacementLine(pl); !strings.Contains(got, tc.want) {
				t.Errorf("%q, want %q", got, tc.want)
			}
			if pl.On && pl.HealthWait != 20*time.Second {
				t.Errorf("health wait %s, want 20s", pl.HealthWait)
			}
		})
	}
}

// TestDecideShare walks a canary's share decision by decision: cordon the
// old nodes (recorded before the call), wait for the load balancer, shed
// in proportion at the fleet-wide budget, wait for the canary, uncordon,
// wait for the old nodes' targets, done.
func TestDecideShare(t *testing.T) {
	plan, err := ParsePlan([]byte("change: c\ngroup: g\nimage: ami-new\ndrain: {window: 30s, max_rate: 200}\nphases:\n  - {name: canary, canary: 1}\n  - {name: rest, replace: rest}\n"))
	if err != nil {
		t.Fatal(err)
	}
	timing := Timing{Poll: time.Second, Drain: DrainOptions{Window: 30 * time.Second, MaxRate: 200}}
	old := func(id, name string, health string) Instance {
		return Instance{ID: id, Name: name, Image: "ami-old", Lifecycle: "InService", Health: health}
	}
	canary := Instance{ID: "i-9", Name: "ws-09", Image: "ami-new", Lifecycle: "InService", Health: "healthy"}
	step := Step{Kind: StepBatch, Phase: 0, Launch: 1, Image: "ami-new", TargetsFrom: -1,
		Progress: Progress{Init: true, Ready: true, BaseDesired: 2, Adopted: []Adoption{{ID: "i-9", Name: "ws-09"}}}}
	st := &State{Change: "c", Started: t0, Placement: &PlacementState{On: true, HealthWait: 20 * time.Second}, Steps: []Step{step}}
	at := t0
	obs := func(health string, counts ...int) Observation {
		o := Observation{Group: Group{Desired: 3, Instances: []Instance{old("i-1", "ws-01", health), old("i-2", "ws-02", health), canary}}, Nodes: map[string]NodeObs{}, Now: at}
		for i, id := range []string{"i-1", "i-2", "i-9"} {
			o.Nodes[id] = NodeObs{Status: NodeStatus{State: "ready", Connections: counts[i]}}
		}
		return o
	}
	// apply records a decision as the engine does, and its effects.
	apply := func(d Decision) string {
		st.Steps[0] = d.Step
		if d.Placement != nil {
			st.Placement = d.Placement
		}
		var out []string
		for _, e := range d.Effects {
			st.Journal = append(st.Journal, JournalEntry{Step: "f0", Effect: e, Status: "done"})
			st.apply(e, outcome{}, at)
			s := e.Key
			if e.Kind == EffShed {
				s = fmt.Sprintf("%s:%d@%g:%s", e.Key, e.N, e.Drain.MaxRate, e.Value)
			}
			out = append(out, s)
		}
		switch {
		case d.Done:
			out = append(out, "done")
		case len(d.Effects) == 0:
			out = append(out, "wait: "+d.Reason)
		}
		return strings.Join(out, " ")
	}
	seq := []struct {
		obs  Observation
		want string
	}{
		{obs("healthy", 200, 100, 0), "wait: "},         // the share: 300/3 = 100
		{obs("healthy", 200, 100, 0), "cordon/i-1,i-2"}, //
		{obs("healthy", 200, 100, 0), "wait: canary share: waiting for the load balancer to see ws-01 (i-1) cordoned"},
		{obs("unhealthy", 200, 100, 0), "shed/i-1:67@121.94000000000001:c@" + fmt.Sprint(t0.Unix()) + "/f0/i-1 shed/i-2:33@60.06:c@" + fmt.Sprint(t0.Unix()) + "/f0/i-2"},
		{obs("unhealthy", 150, 80, 70), "wait: canary share: the canary takes its share (70 of 100 clients)"},
		{obs("unhealthy", 133, 67, 100), "uncordon/i-1,i-2"},
		{obs("unhealthy", 133, 67, 100), "wait: canary share: waiting for the load balancer to see ws-01 (i-1) uncordoned"},
		{obs("healthy", 133, 67, 100), "done"},
	}
	for i, s := range seq {
		at = at.Add(time.Second)
		s.obs.Now = at
		d := decide(plan, st, s.obs, timing)
		if got := apply(d); got != s.want && !(s.want == "wait: " && strings.HasPrefix(got, "wait: ")) {
			t.Fatalf("decision %d: %q\nwant %q", i+1, got, s.want)
		}
	}
	if sh := st.Steps[0].Share; sh.Fair != 100 || sh.Held != 100 || len(st.Placement.Cordoned) != 0 || len(st.Placement.Ever) != 2 {
		t.Errorf("share %+v, placement %+v", sh, st.Placement)
	}
}

// TestDecideBalanceRounds replays CI's failed end balances (500 clients,
// balance 15 %) against a load balancer that gives everything shed to one
// open instance (its round robin counts requests: a reconnecting client
// makes more than one, and the parts are not equal; seen: ten shed over
// four open, the one at 53 of a mean of 62.5 got none). A round opens the
// instance lacking the most (and as many more as the forced shed needs)
// and the next round evens out what the last one left, so the end is
// within half the band whichever open instance took the clients.
func TestDecideBalanceRounds(t *testing.T) {
	cases := []struct {
		name   string
		counts []int
		rounds int // at most
	}{
		{"CI 2026-12-07: one at 53 got nothing", []int{54, 58, 58, 53, 66, 69, 71, 71}, 2},
		{"CI 2026-12-06: one at 67 left open took a part", []int{53, 58, 57, 52, 67, 69, 72, 72}, 3},
		{"one far below, little above", []int{50, 60, 60, 60, 66, 66, 66, 72}, 2},
		{"the demo's second half without steering", []int{388, 388, 389, 389, 111, 111, 112, 112}, maxBalanceRounds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			timing := Timing{Poll: time.Second, Drain: DrainOptions{Window: 30 * time.Second, MaxRate: 200}}
			obs, ids := obsWith(tc.counts...)
			pl := &PlacementState{On: true, Seen: time.Second, Cordoned: map[string]time.Time{}}
			st := &State{Change: "c", InitialDesired: 8, Placement: pl}
			s := Step{Kind: StepBatch, Image: "ami-new", Progress: Progress{Place: &MovePlace{}}}
			health := func(id, h string) {
				obs.Group.Instances[slices.IndexFunc(obs.Group.Instances, func(in Instance) bool { return in.ID == id })].Health = h
			}
			total, moved, sheds := sumOf(countsOf(obs, ids)), 0, map[string]bool{}
			for i := 0; i < 200 && (!s.Place.Balanced || len(pl.Cordoned) > 0); i++ {
				obs.Now = t0.Add(time.Duration(i) * 5 * time.Second)
				d := decideBalance(st, s, obs, timing, 15)
				s = d.Step
				if d.Placement != nil {
					st.Placement, pl = d.Placement, d.Placement
				}
				for _, e := range d.Effects {
					st.Journal = append(st.Journal, JournalEntry{Status: "done", Effect: e})
					switch e.Kind {
					case EffCordon:
						for _, id := range e.IDs {
							health(id, "unhealthy")
						}
					case EffUncordon:
						for _, id := range e.IDs {
							delete(pl.Cordoned, id)
							health(id, "healthy")
						}
					case EffShed:
						if sheds[e.Value] {
							t.Fatalf("shed ID %s asked twice: a node sheds an ID once", e.Value)
						}
						sheds[e.Value] = true
						// everything to the open instance that lacks the least
						to := ""
						for _, id := range ids {
							if _, c := pl.Cordoned[id]; !c && (to == "" || obs.Nodes[id].Status.Connections > obs.Nodes[to].Status.Connections) {
								to = id
							}
						}
						from, into := obs.Nodes[e.ID], obs.Nodes[to]
						from.Status.Connections -= e.N
						into.Status.Connections += e.N
						obs.Nodes[e.ID], obs.Nodes[to] = from, into
						moved += e.N
					}
				}
			}
			end := countsOf(obs, ids)
			if !s.Place.Balanced || sumOf(end) != total {
				t.Fatalf("not balanced after 200 decisions: %v (round %d)", end, s.Place.Round)
			}
			mean := float64(total) / float64(len(ids))
			if outsideBand(obs, ids, mean, 15) || s.Place.Round > tc.rounds || s.Place.Round < maxBalanceRounds && outsideBand(obs, ids, mean, 15*balanceAim) {
				t.Errorf("end %v after %d rounds: want within three quarters of 15 %% of %.1f, in %d rounds at most", end, s.Place.Round, mean, tc.rounds)
			}
			if s.Place.ShedBefore+sumOf(s.Place.Shed) != moved {
				t.Errorf("report counts %d shed, the nodes were asked %d", s.Place.ShedBefore+sumOf(s.Place.Shed), moved)
			}
			if len(pl.Cordoned) != 0 {
				t.Errorf("left cordoned: %v", pl.Cordoned)
			}
			t.Logf("%v -> %v: %d moved in %d rounds", tc.counts, end, moved, s.Place.Round)
		})
	}
}

// countsOf is the connections of each of ids.
func countsOf(obs Observation, ids []string) map[string]int {
	out := map[string]int{}
	for _, id := range ids {
		out[id] = obs.Nodes[id].Status.Connections
	}
	return out
}

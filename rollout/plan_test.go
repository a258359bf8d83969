package rollout

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestPlanValidation runs every plan in testdata/plans through ParsePlan
// and Compile against the seed's group, and checks that the error names
// the key and line and says what would be valid.
func TestPlanValidation(t *testing.T) {
	cases := []struct {
		file string
		want []string // substrings of the error; nil: valid
	}{
		{"unknown-key.yaml", []string{"line 6: phases[0].replce: unknown key", `did you mean "replace"`, "valid keys here: name, canary"}},
		{"missing-group.yaml", []string{"group: missing; name the Auto Scaling group"}},
		{"missing-image.yaml", []string{"image: missing; give the new image id"}},
		{"name-not-in-group.yaml", []string{"line 6: phases[0].replace: ws-12 is not an instance of group gitter-ws; it has ws-01, ws-02"}},
		{"overlapping-phases.yaml", []string{"line 7: phases[1].replace: ws-02 is already replaced by phase \"a\"; phases must not overlap"}},
		{"after-rest.yaml", []string{"line 7: phases[1].replace: phase \"a\" already replaces the rest"}},
		{"deadline-shorter-than-drain.yaml", []string{"line 8: phases[0].deadline: 2m0s is shorter than drain.deadline 5m0s", "raise it to at least 5m0s"}},
		{"bad-duration.yaml", []string{"line 6: phases[0].bake: \"2 minutes\" is not a duration like 30s"}},
		{"bad-percent.yaml", []string{"line 6: phases[0].replace: \"150%\" is not a percentage between 1% and 100%"}},
		{"canary-and-replace.yaml", []string{"line 6: phases[0]: a phase has exactly one of canary: N or replace:"}},
		{"bad-strategy.yaml", []string{"line 5: strategy: \"blue-green\"; valid: launch-before-terminate, terminate-then-replace"}},
		{"check-two-kinds.yaml", []string{"line 6: checks[0]: a check has exactly one of " + strings.Join(gateKeys(), ", ") + " (found 2)"}},
		{"count-too-large.yaml", []string{"phases[0].replace: 9 asks for 9 instances but only 8 old ones are left"}},
		{"percent-then-rest.yaml", nil},
		{"duplicate-phase-name.yaml", []string{"line 8: phases[1].name: \"a\" is used by another phase"}},
		{"drain-deadline-under-window.yaml", []string{"line 4: drain.deadline: 1m0s is shorter than drain.window 5m0s"}},
		{"syntax.yaml", []string{"line 1"}},
		{"bad-state-bucket.yaml", []string{"line 4: state:", `bucket "Team_State": use lowercase letters`}},
		{"state-s3.yaml", nil},
		{"../../../examples/gitter-ws-new-ami.yaml", nil},
	}
	for _, tc := range cases {
		tc := badPlanCase{file: tc.file, want: tc.want}
		t.Run(strings.TrimSuffix(filepath.Base(tc.file), ".yaml"), func(t *testing.T) { tc.run(t) })
	}
}

// badPlanCase is one plan file of testdata/plans, prepared against the
// seed's group (8 instances, max size 8 unless maxSize says otherwise):
// want are substrings of the error, nil for a valid plan.
type badPlanCase struct {
	file    string
	want    []string
	maxSize int
}

func (tc badPlanCase) run(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/plans", tc.file))
	if err != nil {
		t.Fatal(err)
	}
	c := newMemCloud(func() time.Time { return t0 }, 8, "ami-old")
	if tc.maxSize > 0 {
		c.max = tc.maxSize
	}
	// Every plan, however hostile, is refused or accepted promptly: the
	// bounds make parsing and compiling take time in the file's size.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, _, steps, err := Prepare(ctx, c, data)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Prepare took %s", d)
	}
	if tc.want == nil {
		if err != nil {
			t.Fatalf("valid plan rejected: %v", err)
		}
		if len(steps) == 0 {
			t.Fatal("no steps")
		}
		return
	}
	if err == nil {
		t.Fatalf("invalid plan accepted")
	}
	if !errors.Is(err, ErrInvalidPlan) {
		t.Errorf("error %v does not match ErrInvalidPlan", err)
	}
	for _, w := range tc.want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
		}
	}
	if c.calls["SetDesiredCapacity"]+c.calls["CreateLaunchTemplateVersion"] > 0 {
		t.Error("validation changed the group")
	}
}

// TestBadPlansCannotHurt: the plans of issue 17, as a hostile or careless
// author would write them, are refused promptly with every error, each
// with its key, line and allowed range; a valid anchor and alias is
// accepted.
func TestBadPlansCannotHurt(t *testing.T) {
	cases := []badPlanCase{
		{file: "alias-bomb.yaml", want: []string{"line 13: alias *d: the aliases expand the plan to more than 50000 YAML nodes", "allowed: at most 50000"}},
		{file: "canary-maxint.yaml", want: []string{"line 5: phases[0].canary: 9223372036854775807 is out of range; allowed: 1 to 10000 instances, and at most the group's max size"}},
		{file: "canary-100000.yaml", want: []string{"line 5: phases[0].canary: 100000 is out of range; allowed: 1 to 10000"}},
		{file: "canary-over-max-size.yaml", maxSize: 4, want: []string{"line 5: phases[0].canary: 5 is larger than group gitter-ws's max size 4; allowed: 1 to 4"}},
		{file: "canary-over-max-size.yaml", want: nil}, // the same canary fits a group of max size 8
		{file: "probe-huge.yaml", want: []string{
			"line 5: checks[0].probe.clients: 2000000000 is out of range; allowed: 1 to 20000 clients",
			"line 5: checks[0].probe.rate: 1e+308 is out of range; allowed: more than 0 and at most 10000 messages per second",
			"line 7: phases[0].deadline: 2562047h0m0s is out of range; allowed: drain.deadline to 168h0m0s",
		}},
		{file: "type-errors.yaml", want: []string{
			"line 4: nodes.admin_port: want a whole number",
			"line 5: drain.max_rate: want a number",
			"line 7: checks[0].http.status: want a whole number",
			"line 9: phases[0].canary: want a whole number",
			"line 10: phases[1].protect_old: want true or false",
		}},
		{file: "two-documents.yaml", want: []string{"line 7: a plan is one YAML document; this file holds 2"}},
		{file: "anchor-alias.yaml", want: nil},
		{file: "drain-over-node-limits.yaml", want: []string{
			"line 4: drain.max_rate: 2e+06 is out of range; allowed: 0 to 1e+06 reconnects per second",
			"line 4: drain.window: 25h0m0s is out of range; allowed: 0 to 24h0m0s",
			"line 4: drain.deadline: 48h0m0s is out of range; allowed: 0 to 24h0m0s",
		}},
		{file: "numbers-out-of-range.yaml", want: []string{
			"line 4: warm_up: 2h0m0s is out of range; allowed: 0 to 1h0m0s",
			"line 5: healthy_timeout: 25h0m0s is out of range; allowed: 1s to 24h0m0s",
			"line 7: checks[0].interval: 2h0m0s is out of range; allowed: 1ms to 1h0m0s",
			"line 7: checks[0].http.status: 1000 is out of range; allowed: 100 to 599",
			"line 7: checks[0].http.timeout: 1h0m0s is out of range; allowed: 1ms to 5m0s",
			"line 8: checks[1].probe.channels: 60 is out of range; allowed: 0 to clients",
			"line 8: checks[1].probe.rate: NaN is out of range",
			"line 8: checks[1].probe.max_loss: -1 is out of range; allowed: 0 to 1000000000",
			"line 8: checks[1].probe.max_gap: 2h0m0s is out of range; allowed: 0 to 1h0m0s",
			"line 9: checks[2].metric.max_increase: +Inf is out of range; allowed: 0 to 9.007199254740992e+15",
			"line 10: checks[3].command.timeout: 2h0m0s is out of range; allowed: 1ms to 1h0m0s",
			"line 12: phases[0].bake: 200h0m0s is out of range; allowed: 0 to 168h0m0s",
			"line 13: phases[1].replace: 100000 is out of range; allowed: a count of 1 to 10000",
		}},
		{file: "merge-key.yaml", want: []string{"line 6: phases[1].<<: merge keys (<<) are not supported in a plan"}},
	}
	for _, tc := range cases {
		name := strings.TrimSuffix(tc.file, ".yaml")
		if tc.maxSize > 0 {
			name += fmt.Sprintf("-max-%d", tc.maxSize)
		}
		t.Run(name, func(t *testing.T) { tc.run(t) })
	}
}

// TestParsePlanCancelled: a parse whose context has ended stops with
// ctx's error instead of working on.
func TestParsePlanCancelled(t *testing.T) {
	data, err := os.ReadFile("../examples/gitter-ws-new-ami.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ParsePlanContext(ctx, data); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled parse: %v", err)
	}
	p, err := ParsePlan(data)
	if err != nil {
		t.Fatal(err)
	}
	p.Phases[0].Canary = maxInstances
	g := Group{Name: "gitter-ws", Desired: 8, Max: maxInstances, Image: "ami-old"}
	if _, err := CompileContext(ctx, p, g); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled compile: %v", err)
	}
}

// TestCanaryNamesLinear: a canary as large as the plan allows is named in
// time linear in its size (the names were found in quadratic time).
func TestCanaryNamesLinear(t *testing.T) {
	data, err := os.ReadFile("../examples/gitter-ws-new-ami.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePlan(data)
	if err != nil {
		t.Fatal(err)
	}
	p.Phases[0].Canary = maxInstances
	g := Group{Name: "gitter-ws", Desired: 8, Max: maxInstances, Image: "ami-old"}
	for i := 1; i <= 8; i++ {
		g.Instances = append(g.Instances, Instance{ID: fmt.Sprintf("i-%d", i), Name: fmt.Sprintf("ws-%02d", i), Image: "ami-old", Lifecycle: "InService"})
	}
	start := time.Now()
	steps, err := Compile(p, g)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("compiling a canary of %d took %s", maxInstances, d)
	}
	for _, s := range steps {
		if s.Kind == StepBatch && s.Launch == maxInstances {
			if s.Names[0] != "ws-09" || s.Names[len(s.Names)-1] != fmt.Sprintf("ws-%02d", 8+maxInstances) {
				t.Errorf("canary names %s … %s", s.Names[0], s.Names[len(s.Names)-1])
			}
			return
		}
	}
	t.Error("no canary batch")
}

func TestPlanGroupNotFound(t *testing.T) {
	data, _ := os.ReadFile("../examples/gitter-ws-new-ami.yaml")
	c := newMemCloud(func() time.Time { return t0 }, 8, "ami-old")
	c.name = "other"
	_, _, _, err := Prepare(context.Background(), c, data)
	if err == nil || !strings.Contains(err.Error(), `line 7: group: no Auto Scaling group named "gitter-ws"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestReplaceSelections(t *testing.T) {
	cases := []struct {
		replace string
		want    []string // per phase, target names
	}{
		{"[ws-03, ws-01]", []string{"ws-03,ws-01", "ws-02,ws-04,ws-05,ws-06,ws-07,ws-08"}},
		{"3", []string{"ws-01,ws-02,ws-03", "ws-04,ws-05,ws-06,ws-07,ws-08"}},
		{"25%", []string{"ws-01,ws-02", "ws-03,ws-04,ws-05,ws-06,ws-07,ws-08"}},
		{"rest", []string{"ws-01,ws-02,ws-03,ws-04,ws-05,ws-06,ws-07,ws-08"}},
	}
	for _, tc := range cases {
		t.Run(tc.replace, func(t *testing.T) {
			plan := "change: c\ngroup: gitter-ws\nimage: ami-new\nphases:\n  - {name: a, replace: " + tc.replace + "}\n"
			if tc.replace != "rest" {
				plan += "  - {name: b, replace: rest}\n"
			}
			c := newMemCloud(func() time.Time { return t0 }, 8, "ami-old")
			_, _, steps, err := Prepare(context.Background(), c, []byte(plan))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				if s.Kind == StepBatch {
					got = append(got, strings.Join(s.TargetNames, ","))
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRenderPlanGolden pins what `wsfleet plan` prints for the seed.
func TestRenderPlanGolden(t *testing.T) {
	data, err := os.ReadFile("../examples/gitter-ws-new-ami.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := newMemCloud(func() time.Time { return t0 }, 8, "ami-old")
	p, g, steps, err := Prepare(context.Background(), c, data)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	RenderPlan(&buf, p, g, steps)
	golden(t, "testdata/golden/plan.txt", buf.Bytes())
}

// TestReportGolden pins the report of the seed plan on the in-memory
// fleet (fake clock, so every figure is deterministic).
func TestReportGolden(t *testing.T) {
	h := newHarness(t)
	plan := strings.ReplaceAll(string(seedPlan("http://127.0.0.1:1/healthz", "launch-before-terminate")), "checks:\n  - {name: site, http: {url: http://127.0.0.1:1/healthz, status: 200}}\n", "")
	st, err := h.engine().Start(context.Background(), []byte(plan))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	WriteReport(&buf, st)
	golden(t, "testdata/golden/report.md", buf.Bytes())
	var view bytes.Buffer
	RenderView(&view, st, st.Ended)
	if !strings.Contains(view.String(), "succeeded") {
		t.Errorf("view:\n%s", view.String())
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update to accept):\n%s", path, got)
	}
}

// FuzzParsePlan: no input makes the parser panic, and every error is a
// PlanErrors that names a line or a key.
func FuzzParsePlan(f *testing.F) {
	entries, _ := os.ReadDir("testdata/plans")
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("testdata/plans", e.Name())); err == nil {
			f.Add(b)
		}
	}
	if b, err := os.ReadFile("../examples/gitter-ws-new-ami.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer failSlow(t, time.Now())
		p, err := ParsePlan(data)
		if err != nil {
			var pe PlanErrors
			if !errors.As(err, &pe) || len(pe) == 0 {
				t.Fatalf("error %T %v is not PlanErrors", err, err)
			}
			return
		}
		if p.Change == "" || p.Group == "" || p.Image.IsZero() || len(p.Phases) == 0 {
			t.Fatalf("accepted a plan without change, group, image or phases: %+v", p)
		}
		c := newMemCloud(func() time.Time { return t0 }, 3, "ami-old")
		c.name = p.Group
		Compile(p, Group{Name: p.Group, Desired: 3, Image: "ami-old", Instances: []Instance{
			{ID: "i-1", Name: "ws-01", Image: "ami-old", Lifecycle: "InService"},
			{ID: "i-2", Name: "ws-02", Image: "ami-old", Lifecycle: "InService"},
		}})
	})
}

func FuzzSumMetric(f *testing.F) {
	f.Add([]byte("# HELP x\n# TYPE bayeux_errors_total counter\nbayeux_errors_total{code=\"401\"} 3\nbayeux_errors_total 2.5e0\n"))
	f.Add([]byte("bayeux_errors_total{a=\"}\\\"\"} 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		SumMetric(bytes.NewReader(data), "bayeux_errors_total", nil)
		SumMetric(bytes.NewReader(data), "bayeux_errors_total", map[string]string{"code": "401"})
	})
}

func TestSumMetric(t *testing.T) {
	in := "# TYPE bayeux_errors_total counter\nbayeux_errors_total{code=\"401\",msg=\"a}b\"} 3\nbayeux_errors_total 2\nbayeux_errors_totally 100\nother 7\n"
	sum, n, err := SumMetric(strings.NewReader(in), "bayeux_errors_total", nil)
	if err != nil || sum != 5 || n != 2 {
		t.Fatalf("sum %v n %d err %v", sum, n, err)
	}
	sum, n, err = SumMetric(strings.NewReader(in), "bayeux_errors_total", map[string]string{"msg": "a}b"})
	if err != nil || sum != 3 || n != 1 {
		t.Fatalf("with labels: sum %v n %d err %v", sum, n, err)
	}
	if _, _, err := SumMetric(strings.NewReader("bayeux_errors_total{a=\"1\" 3\n"), "bayeux_errors_total", nil); err == nil {
		t.Error("unterminated labels accepted")
	}
}

func TestParseLock(t *testing.T) {
	l := LockInfo{Change: "c-1", Host: "host:with:colons", PID: 42, Expires: t0}
	got, ok := ParseLock(l.String())
	if !ok || got != l {
		t.Fatalf("round trip %v -> %q -> %v %v", l, l.String(), got, ok)
	}
	for _, bad := range []string{"", "x", "c@h:1 until never", "c@h until 2019-08-19T06:00:00Z"} {
		if _, ok := ParseLock(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// failSlow fails a fuzz input that took longer than a second: a hang or
// a blow-up (make fuzz-long relies on it). Deferred with the start time.
func failSlow(t *testing.T, start time.Time) {
	t.Helper()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("input took %s, over the 1s bound", d)
	}
}

// TestWarmUpZero checks that an explicit warm_up of 0s means no warm-up,
// and only an absent key takes the 10s default: 0 is in the documented
// range, and reading it as unset added 10s to every batch.
func TestWarmUpZero(t *testing.T) {
	for _, c := range []struct {
		line string
		want time.Duration
	}{
		{"", defaultWarmUp},
		{"warm_up: 0s\n", 0},
		{"warm_up: 2s\n", 2 * time.Second},
	} {
		t.Run(c.line, func(t *testing.T) {
			p, err := ParsePlan([]byte("change: c\ngroup: g\nimage: ami-new\n" + c.line + "phases:\n  - {name: all, replace: rest}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.WarmUp.D(); got != c.want {
				t.Errorf("warm_up = %v, want %v", got, c.want)
			}
		})
	}
}

package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/internal/vendortest"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"3", 3 * time.Second, true},
		{"0", 0, true},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"soon", 0, false},
		{"-2", 0, false},
	} {
		if got, ok := retryAfter(tc.v, now); got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %s %v, want %s %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

// notice is a notice of change at phase (started or not) with st.
func notice(st *State, typ, phase string, started bool) Notice {
	return Notice{Type: typ, Phase: phase, Started: started, At: time.Now(), State: st}
}

// TestMaintenanceNotifier: a window per phase, opened at its start (a
// rate-limited create sent again whole), ended at its end or at a
// failure; a second notifier (a resumed rollout) finds the open window
// instead of making another.
func TestMaintenanceNotifier(t *testing.T) {
	const token = "pd-notify-secret-81"
	t.Setenv("TEST_PD_NOTIFY", token)
	pd := vendortest.NewPagerDuty(t, token)
	spec := &PagerDutyMaintenance{URL: pd.URL, TokenEnv: "TEST_PD_NOTIFY", Services: []string{"P1", "P2"}, From: "ops@example.com"}
	spec.validate(func(key, format string, args ...any) {
		t.Fatalf("validate %s: "+format, append([]any{key}, args...)...)
	})
	w := &waits{}
	m := &maintenanceNotifier{spec: spec, checker: &Checker{Sleep: w.sleep}}
	ctx := context.Background()
	st := &State{Change: "c1"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	open := func() []vendortest.Window {
		var out []vendortest.Window
		for _, w := range pd.Windows() {
			if w.End.After(time.Now()) && !w.Deleted {
				out = append(out, w)
			}
		}
		return out
	}

	pd.RateLimit(1, "2")
	must(m.Notify(ctx, notice(st, "phase", "canary", true)))
	if ws := open(); len(ws) != 1 || ws[0].Description != "wsfleet change c1 phase canary" || strings.Join(ws[0].Services, " ") != "P1 P2" || ws[0].From != "ops@example.com" {
		t.Fatalf("open windows %+v", ws)
	}
	if ws := pd.Windows(); ws[0].End.Sub(ws[0].Start) < 119*time.Minute {
		t.Errorf("window %s to %s, want max_duration 2h", ws[0].Start, ws[0].End)
	}
	if got := w.all(); len(got) != 1 || got[0] != 2*time.Second {
		t.Errorf("retry waits %v, want [2s]", got)
	}

	// A resumed rollout: a new notifier, the same phase.
	m2 := &maintenanceNotifier{spec: spec, checker: &Checker{Sleep: w.sleep}}
	must(m2.Notify(ctx, notice(st, "resume", "canary", false)))
	must(m2.Notify(ctx, notice(st, "phase", "canary", true)))
	if n := len(pd.Windows()); n != 1 {
		t.Errorf("%d windows after the resume, want the one", n)
	}
	// Another change's window is not this change's business.
	other := &State{Change: "c10"}
	must(m2.Notify(ctx, notice(other, "phase", "canary", true)))
	must(m2.Notify(ctx, notice(st, "phase", "canary", false)))
	if ws := open(); len(ws) != 1 || ws[0].Description != "wsfleet change c10 phase canary" {
		t.Errorf("after canary's end, open: %+v", ws)
	}
	must(m2.Notify(ctx, notice(st, "phase", "first half", true)))
	must(m2.Notify(ctx, notice(st, "fail", "first half", false)))
	must(m2.Notify(ctx, notice(other, "end", "", false)))
	if ws := open(); len(ws) != 0 {
		t.Errorf("after the failure and the other's end, open: %+v", ws)
	}
	if n := len(pd.Windows()); n != 3 {
		t.Errorf("%d windows in all, want 3", n)
	}
}

// TestGitLabNotifier: one progress comment, made once and edited; found
// again by a new notifier; the report once at the end, even when the end
// is told twice.
func TestGitLabNotifier(t *testing.T) {
	const token = "glpat-notify-secret-52"
	t.Setenv("TEST_GL_NOTIFY", token)
	gl := vendortest.NewGitLab(t, token)
	gl.PerPageMax = 1 // the marker is found past the first page
	spec := &GitLabIssueNotes{URL: gl.URL, TokenEnv: "TEST_GL_NOTIFY", Project: "gitlab-com/gl-infra/production", Issue: 7}
	spec.validate(func(key, format string, args ...any) {
		t.Fatalf("validate %s: "+format, append([]any{key}, args...)...)
	})
	ctx := context.Background()
	st := &State{Change: "c1", Group: "gitter-ws", OldImage: "ami-old", Status: StatusRunning, Started: time.Now(),
		Phases: []PhaseRecord{{Name: "canary", Status: "pending"}, {Name: "rest", Status: "pending"}}}
	// Someone else's comment first.
	g0 := &gitlabNotifier{spec: &GitLabIssueNotes{URL: gl.URL, TokenEnv: "TEST_GL_NOTIFY", Project: spec.Project, Issue: 7}, checker: &Checker{}}
	if err := g0.Notify(ctx, notice(&State{Change: "other"}, "start", "", false)); err != nil {
		t.Fatal(err)
	}
	g := &gitlabNotifier{spec: spec, checker: &Checker{}}
	for _, n := range []Notice{notice(st, "start", "", false), notice(st, "phase", "canary", true)} {
		if err := g.Notify(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	st.Phases[0] = PhaseRecord{Name: "canary", Status: "done", Checks: []CheckResult{{Name: "sentry", Pass: true, Detail: "0 Sentry events"}}}
	g2 := &gitlabNotifier{spec: spec, checker: &Checker{}} // resumed
	st.Status, st.Ended = StatusSucceeded, time.Now()
	for _, n := range []Notice{notice(st, "phase", "canary", false), notice(st, "end", "", false), notice(st, "end", "", false)} {
		if err := g2.Notify(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	notes := gl.Notes(spec.Project, 7)
	if len(notes) != 3 {
		t.Fatalf("%d comments, want the other change's, the progress and the report", len(notes))
	}
	p := notes[1]
	if len(p.Bodies) != 5 || !strings.Contains(p.Body, "| canary | done |") || !strings.Contains(p.Body, "sentry pass (0 Sentry events)") || !strings.Contains(p.Body, "**wsfleet rollout c1**: succeeded") {
		t.Errorf("progress comment, %d versions:\n%s", len(p.Bodies), p.Body)
	}
	if r := notes[2]; !strings.HasPrefix(r.Body, "<!-- wsfleet:report change=c1 -->\n# Rollout c1: succeeded") {
		t.Errorf("report comment:\n%s", r.Body)
	}
}

// TestSlackNotifier: a rate-limited post is sent again after Retry-After.
func TestSlackNotifier(t *testing.T) {
	sl := vendortest.NewSlack(t, "/services/T1/B1/notify-secret")
	t.Setenv("TEST_SLACK_NOTIFY", sl.WebhookURL())
	w := &waits{}
	s := &slackNotifier{spec: &SlackWebhook{URLEnv: "TEST_SLACK_NOTIFY"}, checker: &Checker{Sleep: w.sleep}}
	st := &State{Change: "c1", Group: "gitter-ws", OldImage: "ami-old", Phases: []PhaseRecord{{Name: "canary", Status: "failed", Checks: []CheckResult{{Name: "pagerduty", Detail: "1 PagerDuty incidents"}}}}}
	sl.RateLimit(1)
	if err := s.Notify(context.Background(), notice(st, "phase", "canary", false)); err != nil {
		t.Fatal(err)
	}
	if got := sl.Messages(); len(got) != 1 || got[0] != "wsfleet c1: phase canary failed: pagerduty FAIL (1 PagerDuty incidents)" {
		t.Errorf("messages %q", got)
	}
	if got := w.all(); len(got) != 1 || got[0] != time.Second {
		t.Errorf("retry waits %v, want [1s]", got)
	}
}

// TestMaintenanceWindowAheadOfPagerDutysClock: a window made from a
// clock a little ahead of PagerDuty's starts in PagerDuty's future; the
// phase's end must still end it (and a resume must find it, not make a
// second one), not leave the services in maintenance for max_duration.
func TestMaintenanceWindowAheadOfPagerDutysClock(t *testing.T) {
	const token = "pd-skew-secret-77"
	t.Setenv("TEST_PD_SKEW", token)
	pd := vendortest.NewPagerDuty(t, token)
	pd.Now = func() time.Time { return time.Now().Add(-30 * time.Second) }
	spec := &PagerDutyMaintenance{URL: pd.URL, TokenEnv: "TEST_PD_SKEW", Services: []string{"P1"}, From: "ops@example.com"}
	spec.validate(func(key, format string, args ...any) {
		t.Fatalf("validate %s: "+format, append([]any{key}, args...)...)
	})
	ctx := context.Background()
	st := &State{Change: "c1"}
	m := &maintenanceNotifier{spec: spec, checker: &Checker{Sleep: (&waits{}).sleep}}
	if err := m.Notify(ctx, notice(st, "phase", "canary", true)); err != nil {
		t.Fatal(err)
	}
	m2 := &maintenanceNotifier{spec: spec, checker: &Checker{Sleep: (&waits{}).sleep}}
	if err := m2.Notify(ctx, notice(st, "phase", "canary", true)); err != nil {
		t.Fatal(err)
	}
	if n := len(pd.Windows()); n != 1 {
		t.Errorf("%d windows after the resumed phase start, want 1", n)
	}
	if err := m2.Notify(ctx, notice(st, "abort", "canary", false)); err != nil {
		t.Fatal(err)
	}
	for _, w := range pd.Windows() {
		if !w.Deleted && w.End.After(pd.Now()) {
			t.Errorf("window %s %q still open until %s after the abort", w.ID, w.Description, w.End)
		}
	}
}

// TestRedactEncodedForms: a secret is taken out of a message also where
// it appears as a URL's query or path escapes it, quoted by %q, or in
// JSON (a webhook URL in a *url.Error, a token echoed by a service).
func TestRedactEncodedForms(t *testing.T) {
	const tok = `s3cr+et/to=ken&"x"<y> é`
	for _, tc := range []struct{ name, msg string }{
		{"plain", "token " + tok},
		{"query", "GET https://svc.example/api?token=" + url.QueryEscape(tok) + ": 500"},
		{"path", "POST https://hooks.example/services/" + url.PathEscape(tok) + ": EOF"},
		{"url", (&url.URL{Scheme: "https", Host: "hooks.example", Path: "/services/" + tok}).String()},
		{"quoted", fmt.Sprintf("Post %q: dial tcp: refused", "https://hooks.example/"+tok)},
		{"json", func() string { b, _ := json.Marshal(map[string]string{"echo": tok}); return string(b) }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redact(tc.msg, tok)
			if !strings.Contains(got, "[redacted]") || strings.Contains(got, "s3cr") {
				t.Errorf("redact(%q) = %q, secret left", tc.msg, got)
			}
		})
	}
	if got := redact("a key abc in it", "abc"); got != "a key abc in it" {
		t.Errorf("short secret redacted: %q", got)
	}
}

// answers is a RoundTripper that gives its answers in turn, the last
// one again and again.
type answers struct {
	mu   sync.Mutex
	seen int
	resp []func() *http.Response
}

func (a *answers) RoundTrip(*http.Request) (*http.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := min(a.seen, len(a.resp)-1)
	a.seen++
	return a.resp[i](), nil
}

func answer(code int, header ...string) func() *http.Response {
	return func() *http.Response {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader("{}"))}
	}
}

// TestVendorRateLimitHeaders: a 429 without Retry-After waits what the
// service's own header says: Datadog's X-RateLimit-Reset and PagerDuty's
// ratelimit-reset (seconds until the limit resets), not the short
// backoff that would spend the retries inside the limit's period.
func TestVendorRateLimitHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []string
		want   time.Duration
	}{
		{"Retry-After", []string{"Retry-After", "4"}, 4 * time.Second},
		{"Datadog", []string{"X-RateLimit-Limit", "100", "X-RateLimit-Period", "60", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "7"}, 7 * time.Second},
		{"PagerDuty", []string{"ratelimit-limit", "960", "ratelimit-remaining", "0", "ratelimit-reset", "3"}, 3 * time.Second},
		{"Retry-After first", []string{"Retry-After", "2", "X-RateLimit-Reset", "9"}, 2 * time.Second},
		{"beyond the most", []string{"X-RateLimit-Reset", "3600"}, vendorMaxWait},
		{"none", nil, vendorBackoff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &waits{}
			a := &answers{resp: []func() *http.Response{answer(http.StatusTooManyRequests, tc.header...), answer(http.StatusOK)}}
			c := (&Checker{HTTP: &http.Client{Transport: a}, Sleep: w.sleep}).vendorClient()
			resp, err := c.Get("http://vendor.invalid/api")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := w.all(); resp.StatusCode != http.StatusOK || len(got) != 1 || got[0] != tc.want {
				t.Errorf("status %d after waits %v, want 200 after [%s]", resp.StatusCode, got, tc.want)
			}
		})
	}
}

package rollout_test

// The seed's checks and effects for real, end to end on simulated nodes:
// a rollout of eight instances on the local cloud whose plan checks
// PagerDuty, Sentry, Datadog and GitLab's deployments, and keeps a
// PagerDuty maintenance window, a GitLab comment and Slack messages going,
// against stand-ins that validate every request against the vendors'
// published API descriptions (internal/vendortest). Every output of the
// run is searched for the credentials.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wsfleet/internal/simcloud"
	"wsfleet/internal/vendortest"
	"wsfleet/rollout"
)

// vendorSecrets are the credentials of the run, each in its env var.
var vendorSecrets = map[string]string{
	"E2E_PD_TOKEN":     "pd-e2e-secret-4c9a1f",
	"E2E_SENTRY_TOKEN": "sntrys-e2e-secret-77b2",
	"E2E_DD_API_KEY":   "dd-api-e2e-secret-0e3d",
	"E2E_DD_APP_KEY":   "dd-app-e2e-secret-9a41",
	"E2E_GITLAB_TOKEN": "glpat-e2e-secret-51f0",
}

const slackPath = "/services/T0E2E/B0E2E/slack-e2e-secret-path-3d8c"

// vendorRun is one rollout against the stand-ins.
type vendorRun struct {
	t      *testing.T
	pd     *vendortest.PagerDuty
	sentry *vendortest.Sentry
	dd     *vendortest.Datadog
	gl     *vendortest.GitLab
	slack  *vendortest.Slack
	e      *e2e
	eng    *rollout.Engine
	logs   *syncBuffer
	plan   string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hookNotifier calls fn with every notice: how a test makes something
// happen at a phase's start.
type hookNotifier func(rollout.Notice)

func (h hookNotifier) Notify(_ context.Context, n rollout.Notice) error { h(n); return nil }

const ddQuery = "sum:gitter.ws.handshake_failures{service:gitter-ws}.as_count()"

func newVendorRun(t *testing.T, ctx context.Context, change string) *vendorRun {
	for k, v := range vendorSecrets {
		t.Setenv(k, v)
	}
	t.Setenv("E2E_SLACK_WEBHOOK", "")
	r := &vendorRun{t: t, logs: &syncBuffer{}}
	r.pd = vendortest.NewPagerDuty(t, vendorSecrets["E2E_PD_TOKEN"])
	r.sentry = vendortest.NewSentry(t, vendorSecrets["E2E_SENTRY_TOKEN"])
	r.dd = vendortest.NewDatadog(t, vendorSecrets["E2E_DD_API_KEY"], vendorSecrets["E2E_DD_APP_KEY"])
	r.gl = vendortest.NewGitLab(t, vendorSecrets["E2E_GITLAB_TOKEN"])
	r.slack = vendortest.NewSlack(t, slackPath)
	t.Setenv("E2E_SLACK_WEBHOOK", r.slack.WebhookURL())
	r.dd.AddMonitor("gitter ws handshake failures", "OK", "service:gitter-ws")
	r.gl.AddDeployment("gitlab-com/gl-infra/gitter-infrastructure", "production", "success")

	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	names := make([]string, 8)
	for i := range names {
		names[i] = fmt.Sprintf("ws-%02d", i+1)
	}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: simToken, DeregistrationDelay: 10, Logger: logger})
	dir := t.TempDir()
	r.e = &e2e{dir: dir, api: cloud.Endpoint(), stateDir: filepath.Join(dir, "state")}
	want := ""
	for _, n := range names {
		want += n + ":ami-old:healthy "
	}
	waitSimFleet(t, r.e, "ami-old", want, 30*time.Second)

	r.plan = fmt.Sprintf(`change: %s
group: gitter-ws
image: ami-new
aws: {region: us-east-1, endpoint: %s}
warm_up: 200ms
healthy_timeout: 30s
drain: {window: 300ms, max_rate: 20000, deadline: 10s}
checks:
  - name: no deployments
    gitlab_deployments: {url: %s, token_env: E2E_GITLAB_TOKEN, projects: [gitlab-com/gl-infra/gitter-infrastructure, gitlab-org/gitter/webapp], environments: [production, staging]}
  - {name: sentry, interval: 200ms, sentry: {url: %s, token_env: E2E_SENTRY_TOKEN, organization: gitter, project: gitter-ws}}
  - {name: datadog, interval: 200ms, datadog: {url: %s, api_key_env: E2E_DD_API_KEY, app_key_env: E2E_DD_APP_KEY, query: "%s", max: 10, monitor_tag: "service:gitter-ws"}}
  - {name: pagerduty, interval: 200ms, pagerduty: {url: %s, token_env: E2E_PD_TOKEN, services: [PWSPROD]}}
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 1s}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], bake: 500ms}
  - {name: second half, replace: rest, bake: 500ms}
rollback: {on_failure: auto}
notify:
  pagerduty_maintenance: {url: %s, token_env: E2E_PD_TOKEN, services: [PWSPROD, PWSSTAGING], from: release@gitter.example}
  gitlab_issue: {url: %s, token_env: E2E_GITLAB_TOKEN, project: gitlab-com/gl-infra/production, issue: 1042}
  slack: {webhook_url_env: E2E_SLACK_WEBHOOK}
`, change, r.e.api, r.gl.URL, r.sentry.URL, r.dd.URL, ddQuery, r.pd.URL, r.pd.URL, r.gl.URL)

	nodes := &rollout.HTTPNodes{Token: simToken}
	events, err := rollout.OpenEventLog(r.e.stateDir, change, r.logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	r.eng = &rollout.Engine{
		Provider: r.e.provider(t),
		Nodes:    nodes,
		Checker:  &rollout.Checker{MetricsURL: nodes.MetricsURL},
		Store:    &rollout.Store{Dir: r.e.stateDir},
		Events:   events,
		Log:      logger,
		MinPoll:  50 * time.Millisecond,
		MaxPoll:  200 * time.Millisecond,
	}
	return r
}

// at calls fn once, when phase starts.
func (r *vendorRun) at(phase string, fn func()) {
	var once sync.Once
	r.eng.Notifiers = append(r.eng.Notifiers, hookNotifier(func(n rollout.Notice) {
		if n.Type == "phase" && n.Started && n.Phase == phase {
			once.Do(fn)
		}
	}))
}

// checkWindows checks that each phase that ran had exactly one
// maintenance window, open from its start to its end (to the second:
// PagerDuty's times are whole seconds), and none is open now.
func (r *vendorRun) checkWindows(st *rollout.State) {
	t := r.t
	t.Helper()
	ws := r.pd.Windows()
	ran := 0
	for _, ph := range st.Phases {
		if ph.Started.IsZero() {
			continue
		}
		ran++
		desc := rollout.MaintenanceDescription(st.Change, ph.Name)
		var mine []vendortest.Window
		for _, w := range ws {
			if w.Description == desc {
				mine = append(mine, w)
			}
		}
		if len(mine) != 1 {
			t.Errorf("phase %s: %d maintenance windows, want 1", ph.Name, len(mine))
			continue
		}
		w := mine[0]
		if d := w.Start.Sub(ph.Started); d < -time.Second || d > time.Second {
			t.Errorf("phase %s started %s, its window %s", ph.Name, ph.Started.Format(time.RFC3339Nano), w.Start.Format(time.RFC3339))
		}
		if d := w.End.Sub(ph.Ended); ph.Ended.IsZero() || d < -time.Second || d > 2*time.Second {
			t.Errorf("phase %s ended %s, its window %s", ph.Name, ph.Ended.Format(time.RFC3339Nano), w.End.Format(time.RFC3339))
		}
		if w.From != "release@gitter.example" || strings.Join(w.Services, ",") != "PWSPROD,PWSSTAGING" {
			t.Errorf("window %+v", w)
		}
		if !w.End.Before(time.Now()) {
			t.Errorf("phase %s's window still open at the end: %+v", ph.Name, w)
		}
	}
	if len(ws) != ran {
		t.Errorf("%d maintenance windows for %d phases that ran: %+v", len(ws), ran, ws)
	}
}

// checkGitLab checks the progress comment (made once, edited in place,
// ending with every phase's result) and the report comment.
func (r *vendorRun) checkGitLab(st *rollout.State, want ...string) {
	t := r.t
	t.Helper()
	notes := r.gl.Notes("gitlab-com/gl-infra/production", 1042)
	if len(notes) != 2 {
		t.Fatalf("%d comments on the issue, want the progress and the report", len(notes))
	}
	progress, report := notes[0], notes[1]
	if !strings.HasPrefix(progress.Body, "<!-- wsfleet:progress change="+st.Change+" -->") || progress.Modified < 5 {
		t.Errorf("progress comment edited %d times:\n%s", progress.Modified, progress.Body)
	}
	for _, ph := range st.Phases {
		line := fmt.Sprintf("| %s | %s |", ph.Name, ph.Status)
		if !strings.Contains(progress.Body, line) {
			t.Errorf("progress comment lacks %q:\n%s", line, progress.Body)
		}
	}
	if !strings.Contains(report.Body, "# Rollout "+st.Change+": "+string(st.Status)) || !strings.Contains(report.Body, "## Checks") {
		t.Errorf("report comment:\n%s", report.Body)
	}
	for _, w := range want {
		if !strings.Contains(progress.Body, w) {
			t.Errorf("progress comment lacks %q:\n%s", w, progress.Body)
		}
	}
}

// checkSlack checks that the messages carry every milestone in order.
func (r *vendorRun) checkSlack(want ...string) {
	t := r.t
	t.Helper()
	msgs := strings.Join(r.slack.Messages(), "\n")
	at := 0
	for _, w := range want {
		i := strings.Index(msgs[at:], w)
		if i < 0 {
			t.Errorf("Slack messages lack %q after position %d:\n%s", w, at, msgs)
			return
		}
		at += i + len(w)
	}
}

// checkNoSecret searches every output of the run for the credentials:
// the logs and the events written to them, every file in the state
// directory, the report, the comments, the Slack messages, the error.
func (r *vendorRun) checkNoSecret(st *rollout.State, runErr error) {
	t := r.t
	t.Helper()
	outputs := map[string]string{"logs": r.logs.String(), "slack": strings.Join(r.slack.Messages(), "\n")}
	if runErr != nil {
		outputs["error"] = runErr.Error()
	}
	for _, n := range r.gl.Notes("gitlab-com/gl-infra/production", 1042) {
		outputs[fmt.Sprintf("comment %d", n.ID)] = strings.Join(n.Bodies, "\n")
	}
	var rep bytes.Buffer
	rollout.WriteReport(&rep, st)
	outputs["report"] = rep.String()
	filepath.WalkDir(r.e.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			outputs[path] = string(b)
		}
		return nil
	})
	if len(outputs["logs"]) < 1000 {
		t.Errorf("logs of %d bytes: the search would prove little", len(outputs["logs"]))
	}
	secrets := []string{slackPath, r.slack.WebhookURL()}
	for _, v := range vendorSecrets {
		secrets = append(secrets, v)
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("a secret (%.6s…) appears in %s", s, name)
			}
		}
	}
}

// TestVendorChecksE2E runs the seed's plan with the hosted services'
// checks and effects on eight simulated instances: a clean run, then one
// failure of each service, each caught in the canary and rolled back.
func TestVendorChecksE2E(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("clean: every phase in its window, reported", func(t *testing.T) {
		r := newVendorRun(t, ctx, "gitter-ws-checks")
		st, err := r.eng.Start(ctx, []byte(r.plan))
		if err != nil || st.Status != rollout.StatusSucceeded {
			t.Fatalf("rollout: %v (%v)", err, st)
		}
		st = r.e.load(t, "gitter-ws-checks")
		for _, ph := range st.Phases {
			if len(ph.Checks) != 4 {
				t.Errorf("phase %s: checks %+v", ph.Name, ph.Checks)
			}
			for _, c := range ph.Checks {
				if !c.Pass {
					t.Errorf("phase %s: %s failed: %s", ph.Name, c.Name, c.Detail)
				}
			}
		}
		r.checkWindows(st)
		r.checkGitLab(st, "| second half | done |", "pagerduty pass (0 PagerDuty incidents")
		r.checkSlack("rollout started", "phase canary started", "phase canary done: no deployments pass", "sentry pass", "datadog pass", "pagerduty pass",
			"phase first half done", "phase second half done", "rollout ended succeeded")
		r.checkNoSecret(st, err)
	})

	for _, tc := range []struct {
		name, check, want string
		fault             func(r *vendorRun)
	}{
		{"pagerduty incident", "pagerduty", "1 PagerDuty incidents triggered or acknowledged since the phase began: #1 gitter ws 5xx above 1%",
			func(r *vendorRun) { r.pd.AddIncident("PWSPROD", "gitter ws 5xx above 1%") }},
		{"sentry events", "sentry", "Sentry events in gitter-ws since the phase began",
			func(r *vendorRun) {
				r.sentry.AddEvent("gitter-ws", "", "panic: nil map in faye handshake", time.Now())
			}},
		{"datadog alert", "datadog", "1 Datadog monitors tagged service:gitter-ws in Alert: gitter ws handshake failures",
			func(r *vendorRun) {
				for _, id := range []int64{1000} {
					r.dd.SetMonitor(id, "Alert")
				}
			}},
	} {
		t.Run(tc.name+" fails the canary", func(t *testing.T) {
			change := "gitter-ws-" + strings.ReplaceAll(tc.name, " ", "-")
			r := newVendorRun(t, ctx, change)
			r.at("canary", func() { tc.fault(r) })
			st, err := r.eng.Start(ctx, []byte(r.plan))
			if !errors.Is(err, rollout.ErrFailed) {
				t.Fatalf("rollout: %v", err)
			}
			st = r.e.load(t, change)
			if st.Status != rollout.StatusRolledBack || !strings.Contains(st.Failure, "check "+tc.check+": ") || !strings.Contains(st.Failure, tc.want) {
				t.Errorf("status %s, failure %q; want rolled back on %s: %s", st.Status, st.Failure, tc.check, tc.want)
			}
			if st.Phases[0].Status != "rolled back" || st.Phases[1].Status != "pending" {
				t.Errorf("phases %+v", st.Phases)
			}
			r.checkWindows(st)
			r.checkGitLab(st, "Failure: check "+tc.check, "| rollback | done |")
			r.checkSlack("rollout started", "phase canary started", "FAILED: check "+tc.check, "rolling back", "phase rollback started", "rollout ended rolled-back")
			r.checkNoSecret(st, err)
		})
	}

	t.Run("killed in the canary and resumed: the same window and comment", func(t *testing.T) {
		r := newVendorRun(t, ctx, "gitter-ws-resumed")
		var inCanary atomic.Bool
		r.at("canary", func() { inCanary.Store(true) })
		r.eng.Crash = func(point string) bool { return inCanary.Load() && strings.HasPrefix(point, "after:") }
		if _, err := r.eng.Start(ctx, []byte(r.plan)); !errors.Is(err, rollout.ErrCrashed) {
			t.Fatalf("first run: %v, want a crash", err)
		}
		if ws := r.pd.Windows(); len(ws) != 1 || ws[0].End.Before(time.Now()) {
			t.Fatalf("windows after the crash: %+v", ws)
		}
		old := r.eng // a new process: the same dependencies, nothing remembered
		r.eng = &rollout.Engine{Provider: old.Provider, Nodes: old.Nodes, Checker: old.Checker, Store: old.Store,
			Events: old.Events, Log: old.Log, MinPoll: old.MinPoll, MaxPoll: old.MaxPoll}
		st, err := r.eng.Resume(ctx, "gitter-ws-resumed", false)
		if err != nil || st.Status != rollout.StatusSucceeded {
			t.Fatalf("resume: %v (%v)", err, st)
		}
		st = r.e.load(t, "gitter-ws-resumed")
		r.checkWindows(st)
		r.checkGitLab(st, "| second half | done |")
		r.checkSlack("rollout started", "phase canary started", "rollout resumed", "phase canary done", "rollout ended succeeded")
		r.checkNoSecret(st, err)
	})

	t.Run("Slack unreachable: logged without its URL, the rollout goes on", func(t *testing.T) {
		r := newVendorRun(t, ctx, "gitter-ws-no-slack")
		r.slack.Close() // its URL, the secret, now refuses connections
		r.eng.Checker.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
		st, err := r.eng.Start(ctx, []byte(r.plan))
		if err != nil || st.Status != rollout.StatusSucceeded {
			t.Fatalf("rollout: %v (%v)", err, st)
		}
		logs := r.logs.String()
		if n := strings.Count(logs, `"msg":"notification failed"`); n < 8 || !strings.Contains(logs, "post to Slack: ") || !strings.Contains(logs, "[redacted]") {
			t.Errorf("%d failed notifications in the events; logs:\n%s", n, tail(logs, 3000))
		}
		r.checkNoSecret(r.e.load(t, "gitter-ws-no-slack"), err)
	})

	t.Run("a running GitLab deployment refuses the rollout before any change", func(t *testing.T) {
		r := newVendorRun(t, ctx, "gitter-ws-deploying")
		t.Setenv("E2E_SENTRY_TOKEN", "")
		if _, err := r.eng.Start(ctx, []byte(r.plan)); err == nil || !strings.Contains(err.Error(), "checks[1].sentry.token_env: environment variable E2E_SENTRY_TOKEN is not set") {
			t.Errorf("rollout without a credential: %v", err)
		}
		t.Setenv("E2E_SENTRY_TOKEN", vendorSecrets["E2E_SENTRY_TOKEN"])
		r.gl.AddDeployment("gitlab-org/gitter/webapp", "staging", "running")
		// What `wsfleet plan` runs and shows.
		p, g, _, err := rollout.Prepare(ctx, r.eng.Provider, []byte(r.plan))
		if err != nil {
			t.Fatal(err)
		}
		pre, err := rollout.PreCheck(ctx, p, rollout.PhaseEnv{Checker: &rollout.Checker{}, Image: p.Image.AMI, Group: g, Now: time.Now()})
		const want = "1 GitLab deployments running (none allowed): gitlab-org/gitter/webapp: deployment 2 of main to staging"
		if err == nil || len(pre) != 1 || pre[0].Pass || !strings.Contains(pre[0].Detail, want) {
			t.Errorf("plan's pre-check: %v %+v", err, pre)
		}
		before := r.e.activities(t)
		_, err = r.eng.Start(ctx, []byte(r.plan))
		if err == nil || !strings.Contains(err.Error(), "check no deployments: pre-check failed before any change: "+want) {
			t.Fatalf("rollout: %v", err)
		}
		after := r.e.activities(t)
		if len(after) != len(before) {
			t.Errorf("the group changed: %d scaling activities, were %d", len(after), len(before))
		}
		g2, err := r.eng.Provider.Group(ctx, "gitter-ws")
		if err != nil {
			t.Fatal(err)
		}
		if g2.Tags[rollout.LockTag] != "" || g2.Image != "ami-old" {
			t.Errorf("group after the refusal: lock %q, image %s", g2.Tags[rollout.LockTag], g2.Image)
		}
		if n := len(r.pd.Windows()) + len(r.gl.Notes("gitlab-com/gl-infra/production", 1042)) + len(r.slack.Messages()); n != 0 {
			t.Errorf("a refused rollout notified: %d windows, comments and messages", n)
		}
		r.checkNoSecret(&rollout.State{Change: "gitter-ws-deploying"}, err)
	})
}

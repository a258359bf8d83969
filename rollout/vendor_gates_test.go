package rollout

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/internal/vendortest"
)

// waits records the waits of the vendor clients' retries without
// sleeping them.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// vendorGate validates spec as a plan would (failing the test on an
// error) and returns its gate begun at now, with a checker whose retries
// do not sleep.
func vendorGate(t *testing.T, spec GateSpec, now time.Time) (Gate, PhaseEnv, *waits) {
	t.Helper()
	spec.Validate(func(key, format string, args ...any) {
		t.Fatalf("validate: %s: "+format, append([]any{key}, args...)...)
	})
	w := &waits{}
	env := PhaseEnv{Checker: &Checker{Sleep: w.sleep}, Phase: "canary", Now: now}
	g := spec.Gate()
	if err := g.Begin(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return g, env, w
}

// wantResult fails the test unless r passes as wantPass with a detail
// containing every part.
func wantResult(t *testing.T, r GateResult, wantPass bool, parts ...string) {
	t.Helper()
	if r.Pass != wantPass {
		t.Errorf("pass %v, want %v: %s", r.Pass, wantPass, r.Detail)
	}
	for _, p := range parts {
		if !strings.Contains(r.Detail, p) {
			t.Errorf("detail %q lacks %q", r.Detail, p)
		}
	}
}

// wantUnreachable takes s down, judges, and wants a failure that says
// the service could not be asked, without the secrets.
func wantUnreachable(t *testing.T, s interface {
	Down()
	Up()
}, judge func() GateResult, want string, secrets ...string) {
	t.Helper()
	s.Down()
	defer s.Up()
	r := judge()
	wantResult(t, r, false, want+" could not be asked")
	noSecret(t, r.Detail, secrets...)
}

// noSecret fails the test when s holds the secret.
func noSecret(t *testing.T, s string, secrets ...string) {
	t.Helper()
	for _, v := range secrets {
		if strings.Contains(s, v) {
			t.Errorf("a secret appears in %q", s)
		}
	}
}

func TestPagerDutyGate(t *testing.T) {
	const token = "pd-secret-token-6f1e"
	t.Setenv("TEST_PD_TOKEN", token)
	pd := vendortest.NewPagerDuty(t, token)
	ctx := context.Background()
	g, env, w := vendorGate(t, &PagerDutyCheck{URL: pd.URL, TokenEnv: "TEST_PD_TOKEN", Services: []string{"PWS0001"}}, time.Now())

	env.Now = time.Now()
	wantResult(t, g.Evaluate(ctx, env), true, "0 PagerDuty incidents")

	pd.AddIncident("POTHER1", "another service's")
	env.Now = time.Now()
	wantResult(t, g.Evaluate(ctx, env), true, "0 PagerDuty incidents")

	pd.AddIncident("PWS0001", "ws errors above 1%")
	env.Now = time.Now()
	wantResult(t, g.Evaluate(ctx, env), false, "1 PagerDuty incidents triggered or acknowledged", "ws errors above 1%", "allowed at most 0")

	t.Run("rate limit honoured", func(t *testing.T) {
		pd.RateLimit(2, "3")
		before := len(w.all())
		wantResult(t, g.Evaluate(ctx, env), false, "ws errors above 1%")
		if got := w.all()[before:]; len(got) != 2 || got[0] != 3*time.Second || got[1] != 3*time.Second {
			t.Errorf("retry waits %v, want [3s 3s] (Retry-After)", got)
		}
	})
	t.Run("unreachable fails, and says so", func(t *testing.T) {
		wantUnreachable(t, pd, func() GateResult { return g.Evaluate(ctx, env) }, "PagerDuty (incidents)", token)
	})
	t.Run("wrong token refused", func(t *testing.T) {
		t.Setenv("TEST_PD_TOKEN", "not-the-token")
		wantResult(t, g.Evaluate(ctx, env), false, "could not be asked")
	})
}

func TestDatadogGate(t *testing.T) {
	const apiKey, appKey = "dd-api-key-secret-91c", "dd-app-key-secret-4b7"
	t.Setenv("TEST_DD_API", apiKey)
	t.Setenv("TEST_DD_APP", appKey)
	dd := vendortest.NewDatadog(t, apiKey, appKey)
	ctx := context.Background()
	const q = "sum:ws.handshake.errors{service:gitter-ws}.as_count()"
	max := 5.0
	begun := time.Now()
	dd.AddPoint(q, begun.Add(-time.Minute), 50) // before the phase: not its business
	ok := dd.AddMonitor("ws errors", "OK", "service:gitter-ws")
	dd.AddMonitor("other service", "Alert", "service:other")
	g, env, w := vendorGate(t, &DatadogCheck{URL: dd.URL, APIKeyEnv: "TEST_DD_API", AppKeyEnv: "TEST_DD_APP", Query: q, Max: &max, MonitorTag: "service:gitter-ws"}, begun)

	dd.AddPoint(q, begun.Add(time.Second), 3)
	env.Now = time.Now().Add(2 * time.Second)
	wantResult(t, g.Evaluate(ctx, env), true, "peaked at 3", "0 of 1 monitors tagged service:gitter-ws in Alert")

	dd.SetMonitor(ok, "Alert")
	wantResult(t, g.Evaluate(ctx, env), false, "1 Datadog monitors tagged service:gitter-ws in Alert: ws errors", "allowed at most 0")
	dd.SetMonitor(ok, "OK")

	dd.AddPoint(q, begun.Add(2*time.Second), 7)
	wantResult(t, g.Evaluate(ctx, env), false, "reached 7", "allowed at most 5")

	t.Run("server errors retried", func(t *testing.T) {
		dd.Fail(2)
		before := len(w.all())
		wantResult(t, g.Evaluate(ctx, env), false, "reached 7")
		if got := w.all()[before:]; len(got) != 2 || got[0] != vendorBackoff || got[1] != 2*vendorBackoff {
			t.Errorf("retry waits %v, want a doubling backoff from %s", got, vendorBackoff)
		}
	})
	t.Run("unreachable fails, and says so", func(t *testing.T) {
		wantUnreachable(t, dd, func() GateResult { return g.Evaluate(ctx, env) }, "Datadog (metrics query)", apiKey, appKey)
		if n := len(w.all()); n < vendorAttempts-1 {
			t.Errorf("%d retries in all, want at least %d", n, vendorAttempts-1)
		}
	})
}

func TestSentryGate(t *testing.T) {
	const token = "sntrys-secret-token-0a5d"
	t.Setenv("TEST_SENTRY", token)
	sn := vendortest.NewSentry(t, token)
	sn.PageSize = 2 // so that counting follows the Link header's cursor
	ctx := context.Background()
	begun := time.Now().Truncate(time.Second)
	sn.AddEvent("gitter-ws", "v2", "before the phase", begun.Add(-time.Hour))
	g, env, _ := vendorGate(t, &SentryCheck{URL: sn.URL, TokenEnv: "TEST_SENTRY", Organization: "gitter", Project: "gitter-ws", Release: "v2", MaxEvents: 2, MaxNewIssues: 3}, begun)
	env.Now = begun.Add(5 * time.Second)
	wantResult(t, g.Evaluate(ctx, env), true, "0 Sentry events, 0 new issues")

	sn.AddEvent("gitter-ws", "v1", "old release", begun.Add(time.Second))
	sn.AddEvent("other", "v2", "other project", begun.Add(time.Second))
	sn.AddEvent("gitter-ws", "v2", "nil map in handshake", begun.Add(time.Second))
	sn.AddEvent("gitter-ws", "v2", "second", begun.Add(2*time.Second))
	wantResult(t, g.Evaluate(ctx, env), true, "2 Sentry events, 2 new issues")
	sn.AddEvent("gitter-ws", "v2", "third", begun.Add(3*time.Second))
	wantResult(t, g.Evaluate(ctx, env), false, "at least 3 Sentry events in gitter-ws since the phase began", "nil map in handshake", "allowed at most 2")
	reqs := sn.Requests()
	if !strings.Contains(reqs[len(reqs)-1].Query, "cursor=") {
		t.Errorf("the count did not follow the next page: %+v", reqs[len(reqs)-1])
	}

	t.Run("no release: new issues counted", func(t *testing.T) {
		g, env, _ := vendorGate(t, &SentryCheck{URL: sn.URL, TokenEnv: "TEST_SENTRY", Organization: "gitter", Project: "gitter-ws", MaxEvents: 100, MaxNewIssues: 3}, begun)
		env.Now = begun.Add(5 * time.Second)
		wantResult(t, g.Evaluate(ctx, env), false, "at least 4 new Sentry issues", "allowed at most 3")
	})
	t.Run("rate limit, then unreachable", func(t *testing.T) {
		sn.RateLimit(vendorAttempts, "1")
		r := g.Evaluate(ctx, env)
		wantResult(t, r, false, "Sentry (events) could not be asked", "status 429")
		noSecret(t, r.Detail, token)
	})
}

func TestGitLabDeploymentsGate(t *testing.T) {
	const token = "glpat-secret-token-77aa"
	t.Setenv("TEST_GITLAB", token)
	gl := vendortest.NewGitLab(t, token)
	gl.PerPageMax = 2
	ctx := context.Background()
	const infra = "gitlab-com/gl-infra/gitter-infrastructure"
	for range 3 {
		gl.AddDeployment(infra, "production", "success")
	}
	gl.AddDeployment(infra, "canary", "running")
	spec := &GitLabDeploymentsCheck{URL: gl.URL, TokenEnv: "TEST_GITLAB", Projects: []string{infra, "gitter/webapp"}, Environments: []string{"production", "staging"}}
	g, env, _ := vendorGate(t, spec, time.Now())
	pc, ok := g.(PreChecker)
	if !ok {
		t.Fatal("gitlab_deployments is not a pre-check")
	}
	wantResult(t, pc.PreCheck(ctx, env), true, "no deployment running in 2 projects x 2 environments")
	for range 3 {
		gl.AddDeployment("gitter/webapp", "staging", "running")
	}
	wantResult(t, pc.PreCheck(ctx, env), false, "3 GitLab deployments running (none allowed): gitter/webapp: deployment 5 of main to staging")
	wantResult(t, g.Evaluate(ctx, env), false, "3 GitLab deployments running")
	gl.SetDeployments("gitter/webapp", "success")
	wantResult(t, pc.PreCheck(ctx, env), true)

	t.Run("unreachable fails, and says so", func(t *testing.T) {
		wantUnreachable(t, gl, func() GateResult { return pc.PreCheck(ctx, env) }, "GitLab (deployments of gitlab-com/gl-infra/gitter-infrastructure)", token)
	})
}

// TestVendorPlanKeys: the keys of the hosted services' checks and
// effects are validated at plan time, and a credential's variable that
// is not set is an error naming it.
func TestVendorPlanKeys(t *testing.T) {
	t.Setenv("SET_TOKEN", "x-secret-value")
	plan := func(check, notify string) []byte {
		p := strings.Replace(string(seedPlan("http://unused", "launch-before-terminate")),
			"  - {name: site, http: {url: http://unused, status: 200}}", check, 1)
		return []byte(p + notify)
	}
	for _, tc := range []struct{ check, notify, want string }{
		{"  - {name: pd, pagerduty: {token_env: UNSET_PD_TOKEN, services: [P1]}}", "", "checks[0].pagerduty.token_env: environment variable UNSET_PD_TOKEN is not set"},
		{"  - {name: pd, pagerduty: {token_env: SET_TOKEN}}", "", "checks[0].pagerduty.services: missing"},
		{"  - {name: dd, datadog: {api_key_env: SET_TOKEN, app_key_env: UNSET_DD_APP, query: q, max: 1}}", "", "checks[0].datadog.app_key_env: environment variable UNSET_DD_APP is not set"},
		{"  - {name: dd, datadog: {api_key_env: SET_TOKEN, app_key_env: SET_TOKEN, query: q}}", "", "checks[0].datadog.max: missing"},
		{"  - {name: sn, sentry: {token_env: SET_TOKEN, organization: o}}", "", "checks[0].sentry.project: missing"},
		{"  - {name: sn, sentry: {token_env: SET_TOKEN, organization: o, project: p, max_events: 5000}}", "", "checks[0].sentry.max_events: 5000 is out of range; allowed: 0 to 1000"},
		{"  - {name: sn, sentry: {token_env: SET_TOKEN, organization: o, project: p, max_new_issues: 5000}}", "", "checks[0].sentry.max_new_issues: 5000 is out of range; allowed: 0 to 1000"},
		{"  - {name: pd, pagerduty: {token_env: SET_TOKEN, services: [P1], max_incidents: 20000}}", "", "checks[0].pagerduty.max_incidents: 20000 is out of range; allowed: 0 to 1000"},
		{"  - {name: dd, datadog: {api_key_env: SET_TOKEN, app_key_env: SET_TOKEN, monitor_tag: t, max_alerting: 20000}}", "", "checks[0].datadog.max_alerting: 20000 is out of range; allowed: 0 to 1000"},
		{"  - {name: gl, gitlab_deployments: {token_env: SET_TOKEN, projects: [a/b]}}", "", "checks[0].gitlab_deployments.environments: missing"},
		{"  - {name: gl, gitlab_deployments: {token_env: UNSET_GL, projects: [a/b], environments: [production]}}", "", "environment variable UNSET_GL is not set"},
		{"  - {name: site, http: {url: http://unused, status: 200}}", "notify:\n  slack: {webhook_url_env: UNSET_SLACK}\n", "notify.slack.webhook_url_env: environment variable UNSET_SLACK is not set"},
		{"  - {name: site, http: {url: http://unused, status: 200}}", "notify:\n  pagerduty_maintenance: {token_env: SET_TOKEN, services: [P1], from: nobody}\n", `notify.pagerduty_maintenance.from: "nobody"`},
		{"  - {name: site, http: {url: http://unused, status: 200}}", "notify:\n  gitlab_issue: {token_env: SET_TOKEN, project: a/b}\n", "notify.gitlab_issue.issue: 0 is out of range"},
		{"  - {name: site, http: {url: http://unused, status: 200}}", "notify:\n  pagerduty_maintenance: {token_env: SET_TOKEN, services: [P1], from: a@b.example, max_duration: 10s}\n", "notify.pagerduty_maintenance.max_duration: 10s is out of range; allowed: 1m to 168h0m0s"},
		{"  - {name: site, http: {url: http://unused, status: 200}}", "notify:\n  slak: {}\n", `notify.slak: unknown key; did you mean "slack"?`},
	} {
		p, err := ParsePlan(plan(tc.check, tc.notify))
		if err == nil {
			err = p.CheckCredentials()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s%s:\nerr  %v\nwant %s", tc.check, tc.notify, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "x-secret-value") {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}

// TestGitterChecksExample: the example plan with the seed's checks by
// name is valid once its variables are set, and names the first missing
// one otherwise.
func TestGitterChecksExample(t *testing.T) {
	data, err := os.ReadFile("../examples/gitter-ws-checks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vars := []string{"GITLAB_TOKEN", "SENTRY_AUTH_TOKEN", "DD_API_KEY", "DD_APP_KEY", "PAGERDUTY_TOKEN", "SLACK_WEBHOOK_URL"}
	for _, v := range vars {
		t.Setenv(v, "")
	}
	p, err := ParsePlan(data)
	if err != nil {
		t.Fatalf("a stored plan is read without its credentials: %v", err)
	}
	err = p.CheckCredentials()
	for _, v := range vars {
		if err == nil || !strings.Contains(err.Error(), "environment variable "+v+" is not set") {
			t.Errorf("without %s: %v", v, err)
		}
	}
	for _, v := range vars {
		t.Setenv(v, "set-"+strings.ToLower(v))
	}
	if err := p.CheckCredentials(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range p.Checks {
		names = append(names, c.Name+"="+c.Kind)
	}
	if got, want := strings.Join(names, " "), "no production/staging deployments=gitlab_deployments gitter works=http sentry errors=sentry datadog errors=datadog pagerduty=pagerduty"; got != want {
		t.Errorf("checks %s\nwant   %s", got, want)
	}
	if p.Notify.PagerDuty == nil || p.Notify.GitLab == nil || p.Notify.Slack == nil {
		t.Errorf("notify %+v", p.Notify)
	}
}

// TestSentryPageBound: when the pages a count may follow run out before
// the list does (a busy project's events of other releases fill them), the
// check cannot say how many events the release has: it fails and says so,
// it does not pass on what it read.
func TestSentryPageBound(t *testing.T) {
	const token = "sntrys-secret-token-77c1"
	t.Setenv("TEST_SENTRY_PAGES", token)
	sn := vendortest.NewSentry(t, token)
	sn.PageSize = 1
	begun := time.Now().Truncate(time.Second)
	for i := 0; i < sentryMaxPages+5; i++ {
		sn.AddEvent("gitter-ws", "v1", fmt.Sprintf("old release %d", i), begun.Add(time.Second))
	}
	g, env, _ := vendorGate(t, &SentryCheck{URL: sn.URL, TokenEnv: "TEST_SENTRY_PAGES", Organization: "gitter", Project: "gitter-ws", Release: "v2"}, begun)
	env.Now = begun.Add(5 * time.Second)
	wantResult(t, g.Evaluate(context.Background(), env), false, fmt.Sprintf("more than %d pages", sentryMaxPages))
}

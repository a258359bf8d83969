package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wsfleet/internal/simcloud"
	"wsfleet/internal/vendortest"
)

func TestPlanCommandOffline(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"plan", "--offline", "-f", "../../examples/gitter-ws-new-ami.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "valid (3 phases, 3 checks)") {
		t.Errorf("stdout %q", out.String())
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("change: c\ngroup: g\nimage: i\nphases:\n  - {name: a, replace: rest, bake: soon}\n"), 0o644)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"plan", "--offline", "-f", bad}, &out, &errOut); code != 2 {
		t.Fatalf("bad plan: exit %d", code)
	}
	if want := bad + `: line 5: phases[0].bake: "soon" is not a duration like 30s, 2m or 1h30m`; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q\nwant %q", errOut.String(), want)
	}
}

func TestRolloutCommandUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"rollout"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "-f FILE is required") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	if code := run([]string{"resume"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "-c CHANGE is required") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"status", "--state-dir", t.TempDir()}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "no rollouts") {
		t.Errorf("status on an empty state dir: exit %d: %s %s", code, out.String(), errOut.String())
	}
}

// TestPlanCommandPreCheck: `wsfleet plan` runs the plan's pre-checks
// after showing the steps, and fails while one fails: a GitLab deployment
// running in a named project and environment. A credential's variable
// that is not set fails it first, naming the variable, even offline.
func TestPlanCommandPreCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: []string{"ws-01", "ws-02"}, Token: "t", DeregistrationDelay: 30})
	gl := vendortest.NewGitLab(t, "glpat-plan-secret")
	file := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`change: c
group: gitter-ws
image: ami-new
aws: {region: us-east-1, endpoint: %s}
drain: {deadline: 30s}
checks:
  - name: no deployments
    gitlab_deployments: {url: %s, token_env: PLAN_TEST_GITLAB_TOKEN, projects: [gitter/webapp], environments: [production, staging]}
phases:
  - {name: all, replace: rest}
`, cloud.Endpoint(), gl.URL)), 0o644)

	var out, errOut bytes.Buffer
	t.Setenv("PLAN_TEST_GITLAB_TOKEN", "")
	if code := run([]string{"plan", "--offline", "-f", file}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "line 8: checks[0].gitlab_deployments.token_env: environment variable PLAN_TEST_GITLAB_TOKEN is not set") {
		t.Errorf("without the token: exit %d: %s", code, errOut.String())
	}
	t.Setenv("PLAN_TEST_GITLAB_TOKEN", "glpat-plan-secret")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"plan", "-f", file}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "pre-check no deployments: pass: no deployment running in 1 projects x 2 environments") {
		t.Errorf("no deployment: exit %d: %s\n%s", code, out.String(), errOut.String())
	}
	gl.AddDeployment("gitter/webapp", "staging", "running")
	out.Reset()
	errOut.Reset()
	code := run([]string{"plan", "-f", file}, &out, &errOut)
	const want = "1 GitLab deployments running (none allowed): gitter/webapp: deployment 1 of main to staging"
	if code == 0 || !strings.Contains(out.String(), "pre-check no deployments: FAIL: "+want) || !strings.Contains(errOut.String(), "pre-check failed before any change: "+want) {
		t.Errorf("a deployment running: exit %d: %s\n%s", code, out.String(), errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), "glpat-plan-secret") {
		t.Error("the token appears in plan's output")
	}
}

package rollout_test

// A group on a launch configuration, end to end on simulated instances:
// the `ami-…` form (wsfleet copies the configuration with the new image),
// then a `terraform apply` made elsewhere (a new configuration made and
// the group pointed at it through the API) and the `current` form, then
// another such change whose canary fails and rolls back through the API,
// and one whose old configuration is gone.
// What the group and its instances run is read back with the AWS CLI, as
// an operator would check it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"wsfleet/internal/simcloud"
	"wsfleet/rollout"
)

// awsCLI runs the AWS CLI against endpoint with nothing from the user's
// configuration and decodes its JSON output.
func awsCLI(t *testing.T, endpoint string) func(args ...string) (map[string]any, error) {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Fatal("the AWS CLI is not installed: run scripts/test-deps.sh (Debian package awscli)")
	}
	home := t.TempDir()
	return func(args ...string) (map[string]any, error) {
		cmd := exec.Command(bin, append([]string{"--endpoint-url", endpoint, "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "AWS_ACCESS_KEY_ID=AKIDLCE2E", "AWS_SECRET_ACCESS_KEY=x", "AWS_DEFAULT_REGION=us-east-1",
			"AWS_REGION=us-east-1", "AWS_CONFIG_FILE="+home+"/none", "AWS_SHARED_CREDENTIALS_FILE="+home+"/none", "AWS_PAGER=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("aws %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		out := map[string]any{}
		if b := bytes.TrimSpace(stdout.Bytes()); len(b) > 0 {
			if err := json.Unmarshal(b, &out); err != nil {
				return nil, fmt.Errorf("aws %s: %v", strings.Join(args, " "), err)
			}
		}
		return out, nil
	}
}

// cliView is what the AWS CLI shows of the group: the launch
// configuration it is on, every launch configuration with its image, and
// each live instance's "launch-configuration:image" (from
// describe-auto-scaling-groups and ec2 describe-instances), sorted.
type cliView struct {
	groupLC   string
	lcs       map[string]string
	instances []string
}

func readCLIView(t *testing.T, aws func(args ...string) (map[string]any, error)) cliView {
	t.Helper()
	must := func(args ...string) map[string]any {
		out, err := aws(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	v := cliView{lcs: map[string]string{}}
	g := must("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "gitter-ws")
	grp := g["AutoScalingGroups"].([]any)[0].(map[string]any)
	v.groupLC, _ = grp["LaunchConfigurationName"].(string)
	lcOf := map[string]string{}
	var ids []string
	for _, in := range grp["Instances"].([]any) {
		m := in.(map[string]any)
		if s := m["LifecycleState"].(string); strings.HasPrefix(s, "Terminat") {
			continue
		}
		id := m["InstanceId"].(string)
		ids = append(ids, id)
		lcOf[id], _ = m["LaunchConfigurationName"].(string)
	}
	for _, lc := range must("autoscaling", "describe-launch-configurations")["LaunchConfigurations"].([]any) {
		m := lc.(map[string]any)
		v.lcs[m["LaunchConfigurationName"].(string)] = m["ImageId"].(string)
	}
	di := must(append([]string{"ec2", "describe-instances", "--instance-ids"}, ids...)...)
	for _, r := range di["Reservations"].([]any) {
		for _, in := range r.(map[string]any)["Instances"].([]any) {
			m := in.(map[string]any)
			v.instances = append(v.instances, lcOf[m["InstanceId"].(string)]+":"+m["ImageId"].(string))
		}
	}
	sort.Strings(v.instances)
	return v
}

// simFleet is e2e.fleet's list for the named instances, all healthy on
// image.
func simFleet(names []string, image string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + ":" + image + ":healthy "
	}
	return strings.Join(out, "")
}

// times repeats s n times, for the expected instance lists.
func times(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestLaunchConfigurationForms runs serially (not parallelShared): its
// whole run has a 2-minute budget, which it overran (22 s on a quiet
// machine) beside the parallel end-to-end tests at load 45.
func TestLaunchConfigurationForms(t *testing.T) {
	const n = 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	names := []string{"ws-01", "ws-02", "ws-03", "ws-04"}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: simToken, DeregistrationDelay: 10, Logger: logger, LaunchConfiguration: true})
	dir := t.TempDir()
	e := &e2e{dir: dir, api: cloud.Endpoint(), stateDir: filepath.Join(dir, "state")}
	p := e.provider(t)
	aws := awsCLI(t, cloud.Endpoint())
	fleetOn := func(image string) string { return simFleet(names, image) }
	waitSimFleet(t, e, "ami-old", fleetOn("ami-old"), 30*time.Second)

	plan := func(change, image, extra, checks string) []byte {
		return fmt.Appendf(nil, `change: %s
group: gitter-ws
image: %s
%saws: {region: us-east-1, endpoint: %s}
warm_up: 100ms
healthy_timeout: 30s
drain: {window: 200ms, max_rate: 20000, deadline: 5s}
%sphases:
  - {name: canary, canary: 1, bake: 100ms}
  - {name: rest, replace: rest}
rollback: {on_failure: auto}
`, change, image, extra, e.api, checks)
	}
	run := func(change string, planYAML []byte) *rollout.State {
		t.Helper()
		eng := &rollout.Engine{Provider: p, Nodes: &rollout.HTTPNodes{Token: simToken}, Checker: &rollout.Checker{},
			Store: &rollout.Store{Dir: e.stateDir}, Log: logger, MinPoll: 50 * time.Millisecond, MaxPoll: 200 * time.Millisecond}
		if _, err := eng.Start(ctx, planYAML); err != nil {
			t.Logf("rollout %s: %v", change, err) // the state says how it ended
		}
		return e.load(t, change)
	}
	// outside is a terraform apply made elsewhere: a new launch
	// configuration with image, and the group on it (through the SDK;
	// the CLI reads the results).
	outside := func(name, image string) {
		t.Helper()
		asg := cloud.Clients("terraform").ASG
		if _, err := asg.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{LaunchConfigurationName: awssdk.String(name),
			ImageId: awssdk.String(image), InstanceType: awssdk.String("c5.large"), UserData: awssdk.String(base64.StdEncoding.EncodeToString([]byte("--admin-token=" + simToken)))}); err != nil {
			t.Fatal(err)
		}
		if _, err := asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: awssdk.String("gitter-ws"), LaunchConfigurationName: awssdk.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, got cliView, groupLC string, lcs map[string]string, instances []string) {
		t.Helper()
		if got.groupLC != groupLC || fmt.Sprint(got.lcs) != fmt.Sprint(lcs) || fmt.Sprint(got.instances) != fmt.Sprint(instances) {
			t.Fatalf("%s: the AWS CLI sees the group on %q, configurations %v, instances %v;\nwant %q, %v, %v",
				what, got.groupLC, got.lcs, got.instances, groupLC, lcs, instances)
		}
	}

	// 1. image: ami-new: a copy of gitter-ws named after the change.
	st := run("lc-ami", plan("lc-ami", "ami-new", "", ""))
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("lc-ami: %s: %s", st.Status, st.Failure)
	}
	if st.Template == nil || st.Template.Previous.LaunchConfig != "gitter-ws" || st.Template.New.LaunchConfig != "gitter-ws-lc-ami" {
		t.Fatalf("lc-ami recorded %+v", st.Template)
	}
	waitSimFleet(t, e, "ami-new", fleetOn("ami-new"), 10*time.Second)
	check("after image: ami-new", readCLIView(t, aws), "gitter-ws-lc-ami",
		map[string]string{"gitter-ws": "ami-old", "gitter-ws-lc-ami": "ami-new"}, times(n, "gitter-ws-lc-ami:ami-new"))

	// 2. A terraform apply made elsewhere: a new configuration on the
	// same image (only the configuration differs), the group on it.
	outside("gitter-ws-tf1", "ami-new")
	cur := plan("lc-current", "current", "terraform_change: https://gitlab.example/gitter-infrastructure/merge_requests/137\n", "")
	_, _, steps, err := rollout.Prepare(ctx, p, cur)
	if err != nil {
		t.Fatalf("plan image: current: %v", err)
	}
	if !strings.Contains(steps[1].Note, "the group already runs launch configuration gitter-ws-tf1") || !strings.Contains(steps[1].Note, "4 old instances to cycle, most launched from launch configuration gitter-ws-lc-ami") {
		t.Errorf("set-image step of image: current: %q", steps[1].Note)
	}
	st = run("lc-current", cur)
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("lc-current: %s: %s", st.Status, st.Failure)
	}
	if st.Template == nil || !st.Template.Current || st.Template.Previous.LaunchConfig != "gitter-ws-lc-ami" || st.Template.New.LaunchConfig != "gitter-ws-tf1" {
		t.Fatalf("lc-current recorded %+v", st.Template)
	}
	waitSimFleet(t, e, "ami-new", fleetOn("ami-new"), 10*time.Second)
	check("after image: current", readCLIView(t, aws), "gitter-ws-tf1",
		map[string]string{"gitter-ws": "ami-old", "gitter-ws-lc-ami": "ami-new", "gitter-ws-tf1": "ami-new"}, times(n, "gitter-ws-tf1:ami-new"))

	// 3. image: current again: nothing to do, before any change.
	if _, _, _, err := rollout.Prepare(ctx, p, plan("lc-again", "current", "", "")); err == nil || !strings.Contains(err.Error(), "already runs its current launch configuration gitter-ws-tf1; nothing to do") {
		t.Errorf("image: current with every instance current: %v", err)
	}

	// 4. Another outside change (back to ami-old) whose canary fails: the
	// rollback puts the group back on gitter-ws-tf1 through the API and
	// says the Terraform change must be reverted too.
	outside("gitter-ws-tf2", "ami-old")
	st = run("lc-fail", plan("lc-fail", "current", "", "checks:\n  - {name: smoke, command: {run: [\"false\"]}}\n"))
	if st.Status != rollout.StatusRolledBack {
		t.Fatalf("lc-fail: %s: %s", st.Status, st.Failure)
	}
	waitSimFleet(t, e, "ami-new", fleetOn("ami-new"), 10*time.Second)
	check("after the rollback", readCLIView(t, aws), "gitter-ws-tf1",
		map[string]string{"gitter-ws": "ami-old", "gitter-ws-lc-ami": "ami-new", "gitter-ws-tf1": "ami-new", "gitter-ws-tf2": "ami-old"}, times(n, "gitter-ws-tf1:ami-new"))
	// 5. What the old instances run is gone (deleted once the group
	// left it): image: current is refused before any change, since a
	// rollback could not go back to it.
	asg := cloud.Clients("terraform").ASG
	if _, err := asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: awssdk.String("gitter-ws"), LaunchConfigurationName: awssdk.String("gitter-ws-tf2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := asg.DeleteLaunchConfiguration(ctx, &autoscaling.DeleteLaunchConfigurationInput{LaunchConfigurationName: awssdk.String("gitter-ws-tf1")}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := rollout.Prepare(ctx, p, plan("lc-gone", "current", "", "")); err == nil || !strings.Contains(err.Error(), "the old instances run launch configuration gitter-ws-tf1 (image ami-new), which no longer exists") {
		t.Errorf("image: current with the old configuration deleted: %v", err)
	}

	var report, view bytes.Buffer
	rollout.WriteReport(&report, st)
	rollout.RenderView(&view, st, time.Now())
	for what, out := range map[string]string{"report": report.String(), "status": view.String()} {
		if !strings.Contains(out, "revert the Terraform change too (the change that set the group's launch configuration to gitter-ws-tf2)") {
			t.Errorf("the %s does not say to revert the Terraform change:\n%s", what, out)
		}
	}
}

// TestLaunchTemplateCurrent: `image: current` on a group on a launch
// template: a new version made elsewhere (the group on $Latest picks it
// up) is what every instance ends on, told by the version each instance
// carries; the state records the version before.
//
// Serial like TestLaunchConfigurationForms: a 1-minute budget for the run.
func TestLaunchTemplateCurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names := []string{"ws-01", "ws-02"}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: simToken, DeregistrationDelay: 10})
	dir := t.TempDir()
	e := &e2e{dir: dir, api: cloud.Endpoint(), stateDir: filepath.Join(dir, "state")}
	p := e.provider(t)
	waitSimFleet(t, e, "ami-old", simFleet(names, "ami-old"), 30*time.Second)
	aws := awsCLI(t, cloud.Endpoint())
	if _, err := aws("ec2", "create-launch-template-version", "--launch-template-name", "gitter-ws", "--source-version", "1",
		"--launch-template-data", `{"ImageId":"ami-new"}`); err != nil {
		t.Fatal(err)
	}
	planYAML := fmt.Appendf(nil, `change: lt-current
group: gitter-ws
image: current
aws: {region: us-east-1, endpoint: %s}
warm_up: 100ms
drain: {window: 200ms, max_rate: 20000, deadline: 5s}
phases:
  - {name: all, replace: rest}
`, e.api)
	eng := &rollout.Engine{Provider: p, Nodes: &rollout.HTTPNodes{Token: simToken}, Checker: &rollout.Checker{},
		Store: &rollout.Store{Dir: e.stateDir}, Log: slog.New(slog.DiscardHandler), MinPoll: 50 * time.Millisecond, MaxPoll: 200 * time.Millisecond}
	if _, err := eng.Start(ctx, planYAML); err != nil {
		t.Fatal(err)
	}
	st := e.load(t, "lt-current")
	if st.Status != rollout.StatusSucceeded || st.Template == nil || st.Template.Previous.Version != "1" || st.Template.New.Version != "2" || st.Template.PreviousImage != "ami-old" {
		t.Fatalf("%s %s, recorded %+v", st.Status, st.Failure, st.Template)
	}
	waitSimFleet(t, e, "ami-new", simFleet(names, "ami-new"), 10*time.Second)
	g, err := p.Group(ctx, "gitter-ws")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range g.Instances {
		if in.Live() && in.Launch.Version != "2" {
			t.Errorf("%s launched from %+v, want version 2", in.Name, in.Launch)
		}
	}
}

package localcloud

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAWSCLI drives the local cloud with a second, independent client: the
// AWS CLI (botocore's own serializers and parsers), as a user pointing it
// at the endpoint would.
func TestAWSCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the AWS CLI")
	}
	c, _ := startCloud(t, fastConfig())
	run, must := awsCLI(t, c.Endpoint(), "AKIDCLI")
	must("ec2", "create-launch-template", "--launch-template-name", "cli",
		"--launch-template-data", `{"ImageId":"ami-sim","InstanceType":"t3.micro","UserData":"LS1hZG1pbi10b2tlbj14Cg=="}`)
	tg := must("elbv2", "create-target-group", "--name", "cli", "--protocol", "HTTP", "--port", "8080", "--vpc-id", "vpc-1", "--health-check-path", "/readyz")
	tgARN := dig(tg, "TargetGroups", 0, "TargetGroupArn").(string)
	must("autoscaling", "create-auto-scaling-group", "--auto-scaling-group-name", "cli",
		"--launch-template", "LaunchTemplateName=cli,Version=$Latest", "--min-size", "1", "--max-size", "5", "--desired-capacity", "2",
		"--availability-zones", "us-east-1a", "--target-group-arns", tgARN, "--health-check-type", "ELB")
	instances := func(want int) []any {
		var ins []any
		eventually(t, 20*time.Second, "CLI group in service", func() error {
			g := must("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "cli")
			ins = dig(g, "AutoScalingGroups", 0, "Instances").([]any)
			n := 0
			for _, in := range ins {
				if in.(map[string]any)["LifecycleState"] == "InService" {
					n++
				}
			}
			if n != want || len(ins) != want {
				return fmt.Errorf("%d of %d in service, want %d", n, len(ins), want)
			}
			return nil
		})
		return ins
	}
	instances(2)
	must("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", "cli", "--desired-capacity", "3")
	ins := instances(3)
	first := ins[0].(map[string]any)["InstanceId"].(string)
	second := ins[1].(map[string]any)["InstanceId"].(string)
	must("autoscaling", "set-instance-protection", "--auto-scaling-group-name", "cli", "--instance-ids", first, "--protected-from-scale-in")
	act := must("autoscaling", "terminate-instance-in-auto-scaling-group", "--instance-id", second, "--should-decrement-desired-capacity")
	if d := dig(act, "Activity", "Description"); d != "Terminating EC2 instance: "+second {
		t.Errorf("terminate activity %v", act)
	}
	must("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", "cli", "--desired-capacity", "1")
	ins = instances(1)
	if id := ins[0].(map[string]any)["InstanceId"]; id != first || ins[0].(map[string]any)["ProtectedFromScaleIn"] != true {
		t.Errorf("after scale-in to 1: %v, want the protected %s", ins, first)
	}
	th := must("elbv2", "describe-target-health", "--target-group-arn", tgARN)
	eventually(t, 10*time.Second, "target health via CLI", func() error {
		th = must("elbv2", "describe-target-health", "--target-group-arn", tgARN)
		descs := th["TargetHealthDescriptions"].([]any)
		if len(descs) != 1 || dig(th, "TargetHealthDescriptions", 0, "Target", "Id") != first || dig(th, "TargetHealthDescriptions", 0, "TargetHealth", "State") != "healthy" {
			return fmt.Errorf("%v", th)
		}
		return nil
	})
	di := must("ec2", "describe-instances", "--filters", "Name=tag:aws:autoscaling:groupName,Values=cli", "Name=instance-state-name,Values=running")
	if n := len(di["Reservations"].([]any)); n != 1 {
		t.Errorf("running instances of the group: %d reservations, want 1: %v", n, di)
	}
	acts := must("autoscaling", "describe-scaling-activities", "--auto-scaling-group-name", "cli")
	if n := len(acts["Activities"].([]any)); n != 5 {
		t.Errorf("activities: %d, want 5 (3 launches, 2 terminations)", n)
	}
	// A deployment suspends ReplaceUnhealthy and sees it in the group (the
	// rest of the API is covered through the SDK in processes_test.go).
	must("autoscaling", "suspend-processes", "--auto-scaling-group-name", "cli", "--scaling-processes", "ReplaceUnhealthy", "AZRebalance")
	g := must("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "cli")
	sp, _ := dig(g, "AutoScalingGroups", 0, "SuspendedProcesses").([]any)
	if len(sp) != 2 || dig(g, "AutoScalingGroups", 0, "SuspendedProcesses", 0, "ProcessName") != "AZRebalance" ||
		dig(g, "AutoScalingGroups", 0, "SuspendedProcesses", 1, "ProcessName") != "ReplaceUnhealthy" ||
		!strings.HasPrefix(fmt.Sprint(dig(g, "AutoScalingGroups", 0, "SuspendedProcesses", 1, "SuspensionReason")), "User suspended at ") {
		t.Errorf("suspended processes via CLI: %v", sp)
	}
	must("autoscaling", "resume-processes", "--auto-scaling-group-name", "cli")
	// Errors come back as the CLI reports them.
	if _, err := run("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", "cli", "--desired-capacity", "99"); err == nil || !strings.Contains(err.Error(), "ValidationError") {
		t.Errorf("desired above max: %v", err)
	}
	if _, err := run("ec2", "describe-instances", "--instance-ids", "i-0123456789abcdef0"); err == nil || !strings.Contains(err.Error(), "InvalidInstanceID.NotFound") {
		t.Errorf("unknown instance: %v", err)
	}
	// A retried run-instances with its client token launches nothing new;
	// the same token with another count is refused.
	r1 := must("ec2", "run-instances", "--image-id", "ami-sim", "--count", "1", "--client-token", "cli-token-1")
	r2 := must("ec2", "run-instances", "--image-id", "ami-sim", "--count", "1", "--client-token", "cli-token-1")
	if dig(r1, "ReservationId") == nil || dig(r2, "ReservationId") != dig(r1, "ReservationId") || dig(r2, "Instances", 0, "InstanceId") != dig(r1, "Instances", 0, "InstanceId") {
		t.Errorf("retried run-instances: %v, then %v", r1, r2)
	}
	if _, err := run("ec2", "run-instances", "--image-id", "ami-sim", "--count", "2", "--client-token", "cli-token-1"); err == nil || !strings.Contains(err.Error(), "IdempotentParameterMismatch") {
		t.Errorf("same token, other count: %v", err)
	}
	if c.AccessKeys()["AKIDCLI"] == 0 {
		t.Errorf("the CLI's access key was not recorded")
	}
}

// awsCLI returns a runner of the AWS CLI against endpoint, with the given
// access key and nothing from the user's own configuration, which decodes
// the CLI's JSON output; must is run failing the test on an error. It
// skips the test when the CLI is not installed.
func awsCLI(t *testing.T, endpoint, accessKey string) (run func(args ...string) (map[string]any, error), must func(args ...string) map[string]any) {
	t.Helper()
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not installed (scripts/test-deps.sh installs it)")
	}
	home := t.TempDir()
	run = func(args ...string) (map[string]any, error) {
		t.Helper()
		cmd := exec.Command(awsBin, append([]string{"--endpoint-url", endpoint, "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY=cli",
			"AWS_DEFAULT_REGION=us-east-1", "AWS_REGION=us-east-1", "AWS_CONFIG_FILE="+home+"/none", "AWS_SHARED_CREDENTIALS_FILE="+home+"/none", "AWS_PAGER=")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("aws %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		out := map[string]any{}
		if s := strings.TrimSpace(stdout.String()); s != "" {
			if err := json.Unmarshal([]byte(s), &out); err != nil {
				return nil, fmt.Errorf("aws %s: output %q: %v", strings.Join(args, " "), s, err)
			}
		}
		return out, nil
	}
	must = func(args ...string) map[string]any {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return run, must
}

// dig walks decoded JSON by keys and indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

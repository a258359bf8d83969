package rollout_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"wsfleet/internal/tftest"
	"wsfleet/terraform"
)

// TestE2ETerraform is the seed's change through Terraform with real
// nodes: examples/terraform (through the stand-in provider) owns the
// group of 8 `wsfleet serve` processes behind the seed's load balancer;
// `wsfleet plan` and `wsfleet rollout` of the terraform form replace them
// with zero messages lost (the chat probe's max_loss 0), and Terraform
// agrees with the fleet afterwards.
func TestE2ETerraform(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cloud with 8 ws nodes")
	}
	parallelShared(t)
	tftest.NeedTerraform(t)
	rc := tftest.CLIConfig(t)
	start := time.Now()
	var userData string
	e := launchCloud(t, func(topo string) string {
		// The seed's fleet without its group (and launch configuration):
		// Terraform makes them, with the seed's user data.
		ud := topo[strings.Index(topo, "userData: |\n")+len("userData: |\n"):]
		for _, line := range strings.Split(ud, "\n") {
			if !strings.HasPrefix(line, "      ") {
				break
			}
			userData += strings.TrimSpace(line) + "\n"
		}
		topo = topo[:strings.Index(topo, "launchConfigurations:")] + topo[strings.Index(topo, "targetGroups:"):]
		return topo[:strings.Index(topo, "\ngroups:")+1]
	})
	// The wsfleet commands below run Terraform with the stand-in
	// provider's CLI configuration (tftest.Terraform and terraform.Runner
	// are given it directly).
	e.env = []string{"TF_CLI_CONFIG_FILE=" + rc}
	ctx := context.Background()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	elb := elasticloadbalancingv2.NewFromConfig(cfg, func(o *elasticloadbalancingv2.Options) { o.BaseEndpoint = aws.String(e.api) })
	var tgs *elasticloadbalancingv2.DescribeTargetGroupsOutput
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		// the cloud process answers once it has made the topology
		tgs, err = elb.DescribeTargetGroups(ctx, &elasticloadbalancingv2.DescribeTargetGroupsInput{Names: []string{"gitter-ws"}})
		if err == nil && len(tgs.TargetGroups) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target group: %v", err)
		}
	}
	dir := filepath.Join(e.dir, "terraform")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "examples", "terraform"))); err != nil {
		t.Fatal(err)
	}
	vars := fmt.Sprintf("local_endpoint    = %q\ntarget_group_arns = [%q]\nuser_data         = %q\n", e.api, aws.ToString(tgs.TargetGroups[0].TargetGroupArn), userData)
	if err := os.WriteFile(filepath.Join(dir, "terraform.tfvars"), []byte(vars), 0o644); err != nil {
		t.Fatal(err)
	}
	tftest.Terraform(t, dir, rc, "apply", "-auto-approve")
	nameInstances(t, e, 8)
	e.waitFleet(t, "ami-old", 90*time.Second)
	t.Logf("terraform apply and 8 nodes up in %s", time.Since(start).Round(time.Millisecond))

	plan := e.writePlan("tf-real", 0, fmt.Sprintf(`image: {terraform: {dir: %s, var: ami, value: ami-new}}
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest}
`, dir))
	planCmd := exec.Command(e.bin, "plan", "-f", plan, "--state-dir", e.stateDir)
	planCmd.Env = append(os.Environ(), e.env...)
	out, err := planCmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "aws_launch_configuration.ws: replace (create before destroy)") {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if msg, err := e.engine("rollout", "-f", plan).CombinedOutput(); err != nil {
		t.Fatalf("rollout: %v\n%s", err, tail(string(msg), 30))
	}
	st := e.succeededWithoutLoss(t, "tf-real")
	for _, ph := range st.Phases {
		if ph.Probe != nil {
			t.Logf("phase %s: probe lost %d of %d, gap p99 %s", ph.Name, ph.Probe.Lost, ph.Probe.Expected, ph.Probe.GapP99)
		}
	}
	e.waitFleet(t, "ami-new", 60*time.Second)
	r := &terraform.Runner{Spec: terraform.Spec{Dir: dir, Var: "ami"}, CLIConfig: rc}
	if clean, err := r.Clean(ctx); err != nil || !clean {
		msg, _ := tftest.Run(dir, rc, "plan")
		t.Fatalf("terraform plan after the rollout: clean %v, %v\n%s", clean, err, msg)
	}
	t.Logf("terraform e2e with real nodes in %s", time.Since(start).Round(time.Second))
}

// nameInstances tags the group's n instances ws-01.. by launch order, as
// the seed's operators did, once n are live.
func nameInstances(t *testing.T, e *e2e, n int) {
	t.Helper()
	p := e.provider(t)
	deadline := time.Now().Add(60 * time.Second)
	var ids []string
	for time.Now().Before(deadline) {
		g, err := p.Group(context.Background(), "gitter-ws")
		ids = ids[:0]
		if err == nil {
			for _, in := range g.Instances {
				if in.Live() {
					ids = append(ids, in.ID)
				}
			}
		}
		if len(ids) == n {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(ids) != n {
		t.Fatalf("%d live instances, want %d", len(ids), n)
	}
	tftest.NameInstances(t, e.api, ids)
}

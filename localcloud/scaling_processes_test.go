package localcloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// asgHealth reads an instance's lifecycle state and health status as
// DescribeAutoScalingInstances reports them ("gone" once it left).
func asgHealth(ctx context.Context, cl Clients, id string) (state, health string, err error) {
	out, err := cl.ASG.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return "", "", err
	}
	if len(out.AutoScalingInstances) == 0 {
		return "gone", "", nil
	}
	in := out.AutoScalingInstances[0]
	return aws.ToString(in.LifecycleState), aws.ToString(in.HealthStatus), nil
}

// drainNode makes a test node fail /readyz, as a draining wsfleet node
// does, by asking it on its private IP.
func drainNode(t *testing.T, ctx context.Context, cl Clients, id string) {
	t.Helper()
	nodePost(t, ctx, cl, id, "/drain")
}

func suspend(t *testing.T, ctx context.Context, cl Clients, group string, procs ...string) {
	t.Helper()
	if _, err := cl.ASG.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: procs}); err != nil {
		t.Fatalf("SuspendProcesses %v: %v", procs, err)
	}
}

func resume(t *testing.T, ctx context.Context, cl Clients, group string, procs ...string) {
	t.Helper()
	if _, err := cl.ASG.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: procs}); err != nil {
		t.Fatalf("ResumeProcesses %v: %v", procs, err)
	}
}

// TestReplaceUnhealthySuspended is the rollout's case: a node that drains
// fails /readyz, its target turns unhealthy, and with health check type
// ELB the group replaces it once the grace period has passed, unless
// ReplaceUnhealthy is suspended; then it stays InService, marked
// unhealthy, until the process resumes. The grace period (300 s) passes on
// the injected clock.
func TestReplaceUnhealthySuspended(t *testing.T) {
	if testing.Short() {
		t.Skip("runs instance processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var clk clock
	cfg := nodeConfig()
	cfg.Now = clk.now
	_, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "drain", "ami-node", 2)
	setGrace(t, ctx, cl, "drain", 300)
	g := inService(t, ctx, cl, "drain", 2, 20*time.Second)
	a, b := aws.ToString(g.Instances[0].InstanceId), aws.ToString(g.Instances[1].InstanceId)
	targetUnhealthy := func(id string) {
		t.Helper()
		eventually(t, 10*time.Second, id+" target unhealthy", func() error {
			th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
			if err != nil {
				return err
			}
			for _, d := range th.TargetHealthDescriptions {
				if aws.ToString(d.Target.Id) == id {
					if d.TargetHealth.State != "unhealthy" {
						return fmt.Errorf("state %s", d.TargetHealth.State)
					}
					return nil
				}
			}
			return errors.New("not registered")
		})
	}
	replaced := func(id string) {
		t.Helper()
		eventually(t, 20*time.Second, id+" replaced", func() error {
			if st, _, err := asgHealth(ctx, cl, id); err != nil || st != "gone" {
				return fmt.Errorf("%s %v", st, err)
			}
			return nil
		})
		g := inService(t, ctx, cl, "drain", 2, 20*time.Second)
		for _, in := range g.Instances {
			if aws.ToString(in.InstanceId) == id {
				t.Fatalf("%s still in the group", id)
			}
		}
	}

	// Nothing suspended: within the grace period the unhealthy node stays;
	// past it, it is replaced.
	drainNode(t, ctx, cl, a)
	targetUnhealthy(a)
	if st, h, err := asgHealth(ctx, cl, a); err != nil || st != "InService" || h != "HEALTHY" {
		t.Fatalf("%s within the grace period: %s %s %v", a, st, h, err)
	}
	clk.advance(301 * time.Second)
	replaced(a)

	// ReplaceUnhealthy suspended: marked unhealthy, kept in service.
	suspend(t, ctx, cl, "drain", "ReplaceUnhealthy", "AZRebalance")
	g, err := describeGroup(ctx, cl, "drain")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sp := range g.SuspendedProcesses {
		names = append(names, aws.ToString(sp.ProcessName))
		if !strings.HasPrefix(aws.ToString(sp.SuspensionReason), "User suspended at ") {
			t.Errorf("suspension reason %q", aws.ToString(sp.SuspensionReason))
		}
	}
	if !slices.Equal(names, []string{"AZRebalance", "ReplaceUnhealthy"}) {
		t.Errorf("SuspendedProcesses: %v", names)
	}
	drainNode(t, ctx, cl, b)
	targetUnhealthy(b)
	clk.advance(301 * time.Second)
	eventually(t, 10*time.Second, b+" marked unhealthy", func() error {
		st, h, err := asgHealth(ctx, cl, b)
		if err == nil && (st != "InService" || h != "UNHEALTHY") {
			err = fmt.Errorf("%s %s", st, h)
		}
		return err
	})
	// It stays so for many reconcile ticks (50 at 20 ms).
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, h, err := asgHealth(ctx, cl, b)
		if err != nil || st != "InService" || h != "UNHEALTHY" {
			t.Fatalf("%s while ReplaceUnhealthy is suspended: %s %s %v", b, st, h, err)
		}
	}
	if g, err := describeGroup(ctx, cl, "drain"); err != nil || len(g.Instances) != 2 {
		t.Fatalf("group while ReplaceUnhealthy is suspended: %d instances, %v", len(g.Instances), err)
	}

	// Resumed: replaced at once, with AWS's cause.
	resume(t, ctx, cl, "drain", "ReplaceUnhealthy")
	replaced(b)
	acts, err := cl.ASG.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("drain")})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, act := range acts.Activities {
		if aws.ToString(act.Description) == "Terminating EC2 instance: "+b {
			found = strings.Contains(aws.ToString(act.Cause), "in response to an ELB system health check failure")
		}
	}
	if !found {
		t.Errorf("no ELB health check termination activity for %s", b)
	}
	if g, err := describeGroup(ctx, cl, "drain"); err != nil || len(g.SuspendedProcesses) != 1 || aws.ToString(g.SuspendedProcesses[0].ProcessName) != "AZRebalance" {
		t.Errorf("after resuming ReplaceUnhealthy: %+v %v", g.SuspendedProcesses, err)
	}
}

// TestProcessSuspensions covers the other processes the local cloud has
// mechanics for, on simulated instances: Launch, Terminate,
// AddToLoadBalancer, SetInstanceHealth with ReplaceUnhealthy, and the
// API's errors.
func TestProcessSuspensions(t *testing.T) {
	ctx := context.Background()
	cfg := fastConfig()
	_, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "procs", "ami-sim", 2)
	g := inService(t, ctx, cl, "procs", 2, 10*time.Second)
	setDesired := func(n int32) {
		t.Helper()
		if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("procs"), DesiredCapacity: aws.Int32(n)}); err != nil {
			t.Fatal(err)
		}
	}
	// stays checks for a second (50 reconcile ticks) that the group keeps n
	// instances while desiring another number.
	stays := func(what string, n int) {
		t.Helper()
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			g, err := describeGroup(ctx, cl, "procs")
			if err != nil || len(g.Instances) != n {
				t.Fatalf("%s: %d instances (desired %d), want %d: %v", what, len(g.Instances), aws.ToInt32(g.DesiredCapacity), n, err)
			}
		}
	}
	targets := func() []string {
		t.Helper()
		th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range th.TargetHealthDescriptions {
			ids = append(ids, aws.ToString(d.Target.Id))
		}
		return ids
	}

	t.Run("errors", func(t *testing.T) {
		types, err := cl.ASG.DescribeScalingProcessTypes(ctx, &autoscaling.DescribeScalingProcessTypesInput{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range types.Processes {
			names = append(names, aws.ToString(p.ProcessName))
		}
		if !slices.Equal(names, processNames) {
			t.Errorf("DescribeScalingProcessTypes: %v", names)
		}
		for _, tc := range []struct {
			name, group string
			procs       []string
			code        string
		}{
			{"unknown process", "procs", []string{"Launch", "Reboot"}, "ValidationError"},
			{"unknown group", "nope", []string{"Launch"}, "ValidationError"},
		} {
			_, err := cl.ASG.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(tc.group), ScalingProcesses: tc.procs})
			if apiCode(err) != tc.code {
				t.Errorf("%s: suspend %v, want %s", tc.name, err, tc.code)
			}
			_, err = cl.ASG.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String(tc.group), ScalingProcesses: tc.procs})
			if apiCode(err) != tc.code {
				t.Errorf("%s: resume %v, want %s", tc.name, err, tc.code)
			}
		}
		// An invalid list suspends nothing, not even its valid names.
		if g, _ := describeGroup(ctx, cl, "procs"); len(g.SuspendedProcesses) != 0 {
			t.Errorf("suspended after a rejected request: %+v", g.SuspendedProcesses)
		}
		// No list means every process; resuming with no list resumes all.
		suspend(t, ctx, cl, "procs")
		if g, _ := describeGroup(ctx, cl, "procs"); len(g.SuspendedProcesses) != len(processNames) {
			t.Errorf("suspend all: %d suspended", len(g.SuspendedProcesses))
		}
		resume(t, ctx, cl, "procs")
		if g, _ := describeGroup(ctx, cl, "procs"); len(g.SuspendedProcesses) != 0 {
			t.Errorf("resume all: %+v", g.SuspendedProcesses)
		}
	})

	t.Run("Launch", func(t *testing.T) {
		suspend(t, ctx, cl, "procs", "Launch")
		setDesired(3)
		stays("scale-out with Launch suspended", 2)
		// A termination is not replaced either.
		victim := aws.ToString(g.Instances[0].InstanceId)
		if _, err := cl.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
			InstanceId: aws.String(victim), ShouldDecrementDesiredCapacity: aws.Bool(false),
		}); err != nil {
			t.Fatal(err)
		}
		inService(t, ctx, cl, "procs", 1, 10*time.Second)
		stays("after a termination with Launch suspended", 1)
		resume(t, ctx, cl, "procs", "Launch")
		inService(t, ctx, cl, "procs", 3, 10*time.Second)
	})

	t.Run("Terminate", func(t *testing.T) {
		suspend(t, ctx, cl, "procs", "Terminate")
		setDesired(1)
		stays("scale-in with Terminate suspended", 3)
		// TerminateInstanceInAutoScalingGroup still works.
		g := inService(t, ctx, cl, "procs", 3, time.Second)
		if _, err := cl.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
			InstanceId: g.Instances[0].InstanceId, ShouldDecrementDesiredCapacity: aws.Bool(false),
		}); err != nil {
			t.Fatal(err)
		}
		inService(t, ctx, cl, "procs", 2, 10*time.Second)
		resume(t, ctx, cl, "procs", "Terminate")
		inService(t, ctx, cl, "procs", 1, 10*time.Second)
	})

	t.Run("AddToLoadBalancer", func(t *testing.T) {
		suspend(t, ctx, cl, "procs", "AddToLoadBalancer")
		setDesired(2)
		g := inService(t, ctx, cl, "procs", 2, 10*time.Second)
		var fresh string
		for _, in := range g.Instances {
			if id := aws.ToString(in.InstanceId); !slices.Contains(targets(), id) {
				fresh = id
			}
		}
		if fresh == "" || len(targets()) != 1 {
			t.Fatalf("targets with AddToLoadBalancer suspended: %v, group %v", targets(), g.Instances)
		}
		// Resuming does not add the instances launched meanwhile.
		resume(t, ctx, cl, "procs", "AddToLoadBalancer")
		stays("after resuming AddToLoadBalancer", 2)
		if slices.Contains(targets(), fresh) {
			t.Errorf("%s registered after AddToLoadBalancer resumed", fresh)
		}
		setDesired(3)
		inService(t, ctx, cl, "procs", 3, 10*time.Second)
		eventually(t, 5*time.Second, "the next launch registered", func() error {
			if n := len(targets()); n != 2 {
				return fmt.Errorf("%d targets", n)
			}
			return nil
		})
	})

	t.Run("SetInstanceHealth", func(t *testing.T) {
		g := inService(t, ctx, cl, "procs", 3, 10*time.Second)
		id := aws.ToString(g.Instances[0].InstanceId)
		set := func(status string) error {
			_, err := cl.ASG.SetInstanceHealth(ctx, &autoscaling.SetInstanceHealthInput{
				InstanceId: aws.String(id), HealthStatus: aws.String(status), ShouldRespectGracePeriod: aws.Bool(false),
			})
			return err
		}
		is := func(wantState, wantHealth string) {
			t.Helper()
			if st, h, err := asgHealth(ctx, cl, id); err != nil || st != wantState || h != wantHealth {
				t.Fatalf("%s: %s %s %v, want %s %s", id, st, h, err, wantState, wantHealth)
			}
		}
		if err := set("Sick"); apiCode(err) != "ValidationError" {
			t.Errorf("HealthStatus Sick: %v", err)
		}
		suspend(t, ctx, cl, "procs", "ReplaceUnhealthy")
		if err := set("Unhealthy"); err != nil {
			t.Fatal(err)
		}
		stays("unhealthy with ReplaceUnhealthy suspended", 3)
		is("InService", "UNHEALTHY")
		// Marked healthy again (a rollback), it survives the resume.
		if err := set("Healthy"); err != nil {
			t.Fatal(err)
		}
		resume(t, ctx, cl, "procs", "ReplaceUnhealthy")
		stays("healthy again after the resume", 3)
		is("InService", "HEALTHY")
		// Unhealthy with replacement running: replaced.
		if err := set("Unhealthy"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, id+" replaced", func() error {
			if st, _, err := asgHealth(ctx, cl, id); err != nil || st != "gone" {
				return fmt.Errorf("%s %v", st, err)
			}
			return nil
		})
		inService(t, ctx, cl, "procs", 3, 10*time.Second)
		if err := set("Healthy"); apiCode(err) != "ValidationError" {
			t.Errorf("SetInstanceHealth on a terminated instance: %v", err)
		}
	})
}

package localcloud

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"wsfleet/internal/nodetest"
)

// TestSimulatedGroupOf500 scales a group of simulated instances behind a
// target group from 0 to 500 and back to 10, through the API, within the
// minute the issue allows (the test only bounds it; it does not measure).
func TestSimulatedGroupOf500(t *testing.T) {
	ctx := context.Background()
	cfg := fastConfig()
	cfg.Tick = 100 * time.Millisecond
	cfg.HealthCheckInterval = 100 * time.Millisecond
	_, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "big", "ami-sim", 0)
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("big"), MaxSize: aws.Int32(500), DesiredCapacity: aws.Int32(500),
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	inService(t, ctx, cl, "big", 500, 40*time.Second)
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
	if err != nil {
		t.Fatal(err)
	}
	if len(th.TargetHealthDescriptions) != 500 {
		t.Fatalf("targets: %d, want 500", len(th.TargetHealthDescriptions))
	}
	t.Logf("0 → 500 in service in %v", time.Since(start).Round(time.Millisecond))
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("big"), DesiredCapacity: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	inService(t, ctx, cl, "big", 10, 40*time.Second)
	t.Logf("0 → 500 → 10 in %v", time.Since(start).Round(time.Millisecond))
	// Paging through the instances sees each once.
	seen := map[string]bool{}
	p := autoscaling.NewDescribeAutoScalingInstancesPaginator(cl.ASG, &autoscaling.DescribeAutoScalingInstancesInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range out.AutoScalingInstances {
			seen[aws.ToString(in.InstanceId)] = true
		}
	}
	if len(seen) != 10 {
		t.Errorf("DescribeAutoScalingInstances pages: %d instances, want 10", len(seen))
	}
}

// TestSimulatedFailuresReplaced: simulated instances that never pass their
// health checks are replaced when the group's health check type is ELB,
// each replacement a recorded activity with AWS's cause.
func TestSimulatedFailuresReplaced(t *testing.T) {
	ctx := context.Background()
	cfg := fastConfig()
	cfg.SimulatedFailureRate = 1
	_, cl := startCloud(t, cfg)
	makeFleet(t, ctx, cl, "flaky", "ami-sim", 1)
	eventually(t, 10*time.Second, "failed instances replaced", func() error {
		acts, err := cl.ASG.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("flaky")})
		if err != nil {
			return err
		}
		replaced := 0
		for _, a := range acts.Activities {
			if strings.Contains(aws.ToString(a.Cause), "ELB system health check failure") {
				replaced++
			}
		}
		if replaced < 2 {
			return fmt.Errorf("%d health-check replacements so far", replaced)
		}
		return nil
	})
	g, err := describeGroup(ctx, cl, "flaky")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range g.Instances {
		if in.LifecycleState == "InService" {
			t.Fatalf("an instance that never passed a health check is in service: %+v", in)
		}
	}
}

// TestSeedTopologySimulated bootstraps examples/seed-topology.yaml with
// simulated images: the file parses, and the fleet it describes comes up
// named ws-01..ws-08 behind its load balancer, with its drain hook.
func TestSeedTopologySimulated(t *testing.T) {
	ctx := context.Background()
	topo, err := LoadTopology("../examples/seed-topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo.LoadBalancers[0].Listeners[0].Port = int32(nodetest.FreePort(t))
	cfg := fastConfig()
	cfg.Images = map[string]Image{"ami-old": {Simulated: true}, "ami-new": {Simulated: true}}
	// Uncapped, so that the attribute reads the topology's delay (a cap
	// would be reported instead); nothing here drains.
	cfg.DeregistrationDelayMax = 0
	c, cl := startCloud(t, cfg)
	if err := c.Bootstrap(ctx, topo); err != nil {
		t.Fatal(err)
	}
	g := inService(t, ctx, cl, "gitter-ws", 8, 20*time.Second)
	var ids []string
	for _, in := range g.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	di, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range di.Reservations {
		for _, in := range r.Instances {
			for _, tag := range in.Tags {
				if aws.ToString(tag.Key) == "Name" {
					names = append(names, aws.ToString(tag.Value))
				}
			}
			if aws.ToString(in.ImageId) != "ami-old" {
				t.Errorf("instance %s on %s", aws.ToString(in.InstanceId), aws.ToString(in.ImageId))
			}
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "ws-01,ws-02,ws-03,ws-04,ws-05,ws-06,ws-07,ws-08" {
		t.Errorf("names %v", names)
	}
	hooks, err := cl.ASG.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("gitter-ws")})
	if err != nil || len(hooks.LifecycleHooks) != 1 || aws.ToString(hooks.LifecycleHooks[0].LifecycleTransition) != "autoscaling:EC2_INSTANCE_TERMINATING" {
		t.Errorf("hooks %+v %v", hooks, err)
	}
	lbs, err := cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{"gitter"}})
	if err != nil || len(lbs.LoadBalancers) != 1 {
		t.Fatalf("load balancer: %+v %v", lbs, err)
	}
	tgs, err := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{LoadBalancerArn: lbs.LoadBalancers[0].LoadBalancerArn})
	if err != nil || len(tgs.TargetGroups) != 1 || aws.ToString(tgs.TargetGroups[0].HealthCheckPath) != "/readyz" {
		t.Fatalf("target groups of the load balancer: %+v %v", tgs, err)
	}
	attrs, err := cl.ELB.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: tgs.TargetGroups[0].TargetGroupArn})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs.Attributes {
		if aws.ToString(a.Key) == "deregistration_delay.timeout_seconds" && aws.ToString(a.Value) != "30" {
			t.Errorf("deregistration delay %s, want 30", aws.ToString(a.Value))
		}
	}
	if c.LoadBalancerURL("gitter") == "" {
		t.Error("no load balancer URL")
	}
}

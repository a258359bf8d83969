package localcloud

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
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

package localcloud

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// TestActionCalls checks that every call is counted by service and
// action, a throttled one too.
func TestActionCalls(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	for range 3 {
		if _, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatal(err)
	}
	c.SetFaults(Faults{Throttle: 1})
	_, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{}, func(o *autoscaling.Options) { o.RetryMaxAttempts = 1 })
	if apiCode(err) != "Throttling" {
		t.Fatalf("err %v, want Throttling", err)
	}
	got := c.ActionCalls()
	if got["autoscaling:DescribeAutoScalingGroups"] != 4 || got["ec2:DescribeInstances"] != 1 || len(got) != 2 {
		t.Errorf("action calls %v; want 4 DescribeAutoScalingGroups (one throttled) and 1 DescribeInstances", got)
	}
}

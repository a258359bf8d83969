package localcloud

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// TestDeregistrationDelayReported checks that the target group attributes
// report the deregistration delay a target really drains for, once
// Config.DeregistrationDelayMax shortens it: the rollout engine sizes its
// drains by the attribute.
func TestDeregistrationDelayReported(t *testing.T) {
	ctx := context.Background()
	const key = "deregistration_delay.timeout_seconds"
	for _, tc := range []struct {
		name     string
		max      time.Duration
		set      string // the attribute set by ModifyTargetGroupAttributes; "" keeps the default 300
		applied  time.Duration
		reported string
	}{
		{"no cap", 0, "", 300 * time.Second, "300"},
		{"cap shortens the default", 30 * time.Second, "", 30 * time.Second, "30"},
		{"cap above the group's delay", 30 * time.Second, "10", 10 * time.Second, "10"},
		{"cap below a second reads as one", 100 * time.Millisecond, "", 100 * time.Millisecond, "1"},
		{"no delay stays none", 100 * time.Millisecond, "0", 0, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			cfg := fastConfig()
			cfg.DeregistrationDelayMax = tc.max
			cfg.Now = func() time.Time { return now }
			c, cl := startCloud(t, cfg)
			tg, err := cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: aws.String("dd"), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080)})
			if err != nil {
				t.Fatal(err)
			}
			arn := tg.TargetGroups[0].TargetGroupArn
			attr := func(attrs []elbtypes.TargetGroupAttribute) string {
				for _, a := range attrs {
					if aws.ToString(a.Key) == key {
						return aws.ToString(a.Value)
					}
				}
				return "absent"
			}
			if tc.set != "" {
				mod, err := cl.ELB.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: arn,
					Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String(key), Value: aws.String(tc.set)}}})
				if err != nil {
					t.Fatal(err)
				}
				if got := attr(mod.Attributes); got != tc.reported {
					t.Errorf("ModifyTargetGroupAttributes reports %s, want %s", got, tc.reported)
				}
			}
			desc, err := cl.ELB.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: arn})
			if err != nil {
				t.Fatal(err)
			}
			if got := attr(desc.Attributes); got != tc.reported {
				t.Errorf("DescribeTargetGroupAttributes reports %s, want %s", got, tc.reported)
			}
			run, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-sim"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
			if err != nil {
				t.Fatal(err)
			}
			target := []elbtypes.TargetDescription{{Id: run.Instances[0].InstanceId}}
			if _, err := cl.ELB.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: arn, Targets: target}); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.ELB.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: arn, Targets: target}); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			draining := 0
			for _, tr := range c.targetGrps[aws.ToString(arn)].targets {
				draining++
				if got := tr.drainUntil.Sub(now); tr.state != "draining" || got != tc.applied {
					t.Errorf("target %s for %v, want draining for %v", tr.state, got, tc.applied)
				}
			}
			if draining == 0 && tc.applied > 0 {
				t.Errorf("the target left at once, want a drain of %v", tc.applied)
			}
		})
	}
}

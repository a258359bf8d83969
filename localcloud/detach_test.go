package localcloud

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// TestDetachInstances: DetachInstances as the API reference has it: at
// most 20 ids, instances of the group only, the desired capacity lowered
// by their number when asked (never under the min size) and otherwise
// refilled; the detached instances leave their target groups, then the
// group, and keep running until EC2's TerminateInstances ends them.
func TestDetachInstances(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	f := makeFleet(t, ctx, cl, "det", "ami-sim", 4)
	g := inService(t, ctx, cl, "det", 4, 10*time.Second)
	id := func(i int) string { return aws.ToString(g.Instances[i].InstanceId) }
	detach := func(dec bool, ids ...string) error {
		_, err := cl.ASG.DetachInstances(ctx, &autoscaling.DetachInstancesInput{
			AutoScalingGroupName: aws.String("det"), InstanceIds: ids, ShouldDecrementDesiredCapacity: aws.Bool(dec)})
		return err
	}

	many := make([]string, 21)
	for i := range many {
		many[i] = id(0)
	}
	if err := detach(true, many...); apiCode(err) != "ValidationError" {
		t.Errorf("21 ids: %v, want ValidationError", err)
	}
	if err := detach(true, "i-0000000000000000"); apiCode(err) != "ValidationError" {
		t.Errorf("an instance not in the group: %v, want ValidationError", err)
	}
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("det"), MinSize: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	if err := detach(true, id(0), id(1)); apiCode(err) != "ValidationError" {
		t.Errorf("detach under the min size: %v, want ValidationError", err)
	}
	if g2, _ := describeGroup(ctx, cl, "det"); aws.ToInt32(g2.DesiredCapacity) != 4 {
		t.Errorf("a refused detach changed the desired capacity to %d", aws.ToInt32(g2.DesiredCapacity))
	}

	// Decrement: desired 4 -> 3, the instance leaves the target group and
	// the group, and runs on.
	if err := detach(true, id(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, id(0)+" detached", func() error {
		st, _, err := asgHealth(ctx, cl, id(0))
		if err != nil || st != "gone" {
			return fmt.Errorf("%s %v", st, err)
		}
		return nil
	})
	g2 := inService(t, ctx, cl, "det", 3, 5*time.Second)
	if d := aws.ToInt32(g2.DesiredCapacity); d != 3 {
		t.Errorf("desired %d after a decrementing detach, want 3", d)
	}
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range th.TargetHealthDescriptions {
		if aws.ToString(d.Target.Id) == id(0) {
			t.Errorf("%s still in the target group (%s)", id(0), d.TargetHealth.State)
		}
	}
	state := func(id string) string {
		out, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		return string(out.Reservations[0].Instances[0].State.Name)
	}
	if s := state(id(0)); s != "running" {
		t.Errorf("detached instance %s, want running", s)
	}
	if _, err := cl.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id(0)}}); err != nil {
		t.Fatal(err)
	}
	if s := state(id(0)); s != "shutting-down" && s != "terminated" {
		t.Errorf("terminated detached instance %s", s)
	}
	if g2, _ := describeGroup(ctx, cl, "det"); aws.ToInt32(g2.DesiredCapacity) != 3 || len(g2.Instances) != 3 {
		t.Errorf("the group reacted to the termination of a detached instance: desired %d, %d instances", aws.ToInt32(g2.DesiredCapacity), len(g2.Instances))
	}

	// No decrement: the group launches a replacement.
	if err := detach(false, id(1)); err != nil {
		t.Fatal(err)
	}
	g3 := inService(t, ctx, cl, "det", 3, 5*time.Second)
	for _, in := range g3.Instances {
		if aws.ToString(in.InstanceId) == id(1) {
			t.Errorf("%s still in the group", id(1))
		}
	}
	acts, err := cl.ASG.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("det")})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range acts.Activities {
		if strings.HasPrefix(aws.ToString(a.Description), "Detaching EC2 instance: ") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d detach activities, want 2", n)
	}
}

// TestDeregisterTargetsAllOrNothing: a DeregisterTargets that names a
// target not registered is refused with InvalidTarget and deregisters
// none of the others.
func TestDeregisterTargetsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	f := makeFleet(t, ctx, cl, "dereg", "ami-sim", 2)
	g := inService(t, ctx, cl, "dereg", 2, 10*time.Second)
	a := aws.ToString(g.Instances[0].InstanceId)
	_, err := cl.ELB.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: aws.String(f.tgARN),
		Targets: []elbtypes.TargetDescription{{Id: aws.String(a)}, {Id: aws.String("i-0000000000000000")}}})
	if apiCode(err) != "InvalidTarget" {
		t.Fatalf("got %v, want InvalidTarget", err)
	}
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range th.TargetHealthDescriptions {
		if aws.ToString(d.Target.Id) == a && d.TargetHealth.State == elbtypes.TargetHealthStateEnumDraining {
			t.Errorf("%s draining after a refused call", a)
		}
	}
}

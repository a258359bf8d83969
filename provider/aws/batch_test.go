package aws

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"wsfleet/rollout"
)

// TestBatchEffects: a batch's tags, deregistrations and retirements cost
// a few calls for the whole batch, and each can be repeated (after a
// crash, or cut short between its calls) without doing anything twice.
func TestBatchEffects(t *testing.T) {
	_, p := startLocal(t, 3)
	ctx := context.Background()
	inService := func(n int) rollout.Group { return waitHealthy(t, p, n) }
	old := inService(3)
	oldIDs := []string{old.Instances[0].ID, old.Instances[1].ID, old.Instances[2].ID}
	if err := p.SetDesired(ctx, "gitter-ws", 6); err != nil {
		t.Fatal(err)
	}
	g := inService(6)
	var fresh []string
	for _, in := range g.Instances {
		if _, isOld := old.Instance(in.ID); !isOld {
			fresh = append(fresh, in.ID)
		}
	}
	delta := func(before map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range p.APICalls() {
			if v != before[k] {
				out[k] = v - before[k]
			}
		}
		return out
	}

	// Names: one CreateTags each, one DescribeTags for the batch.
	before := p.APICalls()
	names := map[string]string{fresh[0]: "ws-04", fresh[1]: "ws-05", fresh[2]: "ws-06"}
	if err := p.TagInstances(ctx, "Name", names); err != nil {
		t.Fatal(err)
	}
	if d := delta(before); d["CreateTags"] != 3 || d["DescribeTags"] != 1 {
		t.Errorf("tagging 3: calls %v, want 3 CreateTags and 1 DescribeTags", d)
	}
	g, _ = p.Group(ctx, "gitter-ws")
	for id, name := range names {
		if in, _ := g.Instance(id); in.Name != name {
			t.Errorf("%s named %q, want %q", id, in.Name, name)
		}
	}

	// Deregistration: one call for the batch; a target ELBv2 refuses
	// (InvalidTarget) costs a call per target and keeps none registered.
	before = p.APICalls()
	if err := p.DeregisterTargets(ctx, "gitter-ws", oldIDs[:2]); err != nil {
		t.Fatal(err)
	}
	if d := delta(before); d["DeregisterTargets"] != 1 {
		t.Errorf("deregistering 2: %d DeregisterTargets calls, want 1", d["DeregisterTargets"])
	}
	if err := p.DeregisterTargets(ctx, "gitter-ws", []string{oldIDs[2], "i-0000000000000000"}); err != nil {
		t.Fatalf("a batch with an unknown target: %v", err)
	}
	g, _ = p.Group(ctx, "gitter-ws")
	for _, id := range oldIDs {
		if in, _ := g.Instance(id); in.Health != "draining" && in.Health != "unregistered" {
			t.Errorf("%s: target %s after its deregistration", id, in.Health)
		}
	}

	// Cut short: oldIDs[0] detached (as a crash between the two calls
	// leaves it), the other two still in the group.
	if _, err := p.asg.DetachInstances(ctx, &autoscaling.DetachInstancesInput{AutoScalingGroupName: aws.String("gitter-ws"),
		InstanceIds: oldIDs[:1], ShouldDecrementDesiredCapacity: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	before = p.APICalls()
	if err := p.RetireInstances(ctx, "gitter-ws", oldIDs, true); err != nil {
		t.Fatal(err)
	}
	if d := delta(before); d["DetachInstances"] != 1 || d["TerminateInstances"] != 1 || d["TerminateInstanceInAutoScalingGroup"] != 0 {
		t.Errorf("retiring 3: calls %v, want 1 DetachInstances (of the 2 left) and 1 TerminateInstances", d)
	}
	g = inService(3)
	if g.Desired != 3 {
		t.Errorf("desired %d after retiring 3 of 6, want 3", g.Desired)
	}
	out, err := p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: oldIDs})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if s := in.State.Name; s != "shutting-down" && s != "terminated" {
				t.Errorf("%s %s after its retirement", aws.ToString(in.InstanceId), s)
			}
		}
	}
	// Repeated: nothing is detached or terminated again.
	before = p.APICalls()
	if err := p.RetireInstances(ctx, "gitter-ws", oldIDs, true); err != nil {
		t.Fatal(err)
	}
	if d := delta(before); d["DetachInstances"] != 0 || d["TerminateInstances"] != 0 {
		t.Errorf("retiring again: calls %v, want no DetachInstances or TerminateInstances", d)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Desired != 3 {
		t.Errorf("desired %d after a repeated retire, want 3", g.Desired)
	}
}

// waitHealthy waits until the group has n instances, all in service and
// healthy, and returns it.
func waitHealthy(t *testing.T, p *Provider, n int) rollout.Group {
	t.Helper()
	var g rollout.Group
	waitFor(t, fmt.Sprintf("%d in service and healthy", n), func() error {
		var err error
		if g, err = p.Group(context.Background(), "gitter-ws"); err != nil {
			return err
		}
		ok := 0
		for _, in := range g.Instances {
			if in.Lifecycle == "InService" && in.Health == "healthy" {
				ok++
			}
		}
		if ok != n || len(g.Instances) != n {
			return fmt.Errorf("%d of %d in service and healthy: %+v", ok, len(g.Instances), g.Instances)
		}
		return nil
	})
	return g
}

// TestGroupReadsEC2Incrementally: Group describes from EC2 only the
// instances it has not seen, and every instance again once ec2Refresh has
// passed, so that a tag written by hand shows then.
func TestGroupReadsEC2Incrementally(t *testing.T) {
	_, p := startLocal(t, 3)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.ec2c.now = func() time.Time { return now }
	var g rollout.Group
	waitFor(t, "3 instances", func() error {
		var err error
		if g, err = p.Group(ctx, "gitter-ws"); err != nil || len(g.Instances) != 3 || g.Instances[0].Image == "" {
			return fmt.Errorf("%d instances, %v", len(g.Instances), err)
		}
		return nil
	})
	before := p.APICalls()["DescribeInstances"]
	if _, err := p.Group(ctx, "gitter-ws"); err != nil {
		t.Fatal(err)
	}
	if n := p.APICalls()["DescribeInstances"] - before; n != 0 {
		t.Errorf("%d DescribeInstances for a group with nothing new, want 0", n)
	}
	id := g.Instances[0].ID
	if _, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("chat")}}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ec2Refresh)
	g, err := p.Group(ctx, "gitter-ws")
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := g.Instance(id); in.Tags["team"] != "chat" || in.Image == "" {
		t.Errorf("after the refresh: tags %v, image %q", in.Tags, in.Image)
	}
	if n := p.APICalls()["DescribeInstances"] - before; n != 1 {
		t.Errorf("%d DescribeInstances for the refresh, want 1", n)
	}
}

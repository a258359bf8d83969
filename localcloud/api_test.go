package localcloud

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// TestLaunchTemplateVersions walks a template through versions as a
// rollout does: a new version from a source version, the default moved,
// and a group on $Default replacing its instances onto it.
func TestLaunchTemplateVersions(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	f := makeFleet(t, ctx, cl, "tpl", "ami-sim", 2)
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("tpl"),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("tpl"), Version: aws.String("$Default")},
	}); err != nil {
		t.Fatal(err)
	}
	old := inService(t, ctx, cl, "tpl", 2, 10*time.Second)
	v2, err := cl.EC2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
		LaunchTemplateId: aws.String(f.ltID), SourceVersion: aws.String("1"), VersionDescription: aws.String("new image"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-sim2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := aws.ToInt64(v2.LaunchTemplateVersion.VersionNumber); n != 2 {
		t.Fatalf("version %d", n)
	}
	if it := v2.LaunchTemplateVersion.LaunchTemplateData.InstanceType; it != ec2types.InstanceTypeT3Micro {
		t.Errorf("instance type not kept from the source version: %q", it)
	}
	if _, err := cl.EC2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateId: aws.String(f.ltID), DefaultVersion: aws.String("2")}); err != nil {
		t.Fatal(err)
	}
	lts, err := cl.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"tpl"}})
	if err != nil || len(lts.LaunchTemplates) != 1 || aws.ToInt64(lts.LaunchTemplates[0].DefaultVersionNumber) != 2 || aws.ToInt64(lts.LaunchTemplates[0].LatestVersionNumber) != 2 {
		t.Fatalf("DescribeLaunchTemplates: %+v %v", lts, err)
	}
	vs, err := cl.EC2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(f.ltID), Versions: []string{"$Default", "1"}})
	if err != nil || len(vs.LaunchTemplateVersions) != 2 || aws.ToString(vs.LaunchTemplateVersions[0].LaunchTemplateData.ImageId) != "ami-sim2" || !aws.ToBool(vs.LaunchTemplateVersions[0].DefaultVersion) {
		t.Fatalf("DescribeLaunchTemplateVersions: %+v %v", vs, err)
	}
	// Scale out by one, then back in: the default policy terminates the
	// instances on the old version first, so the new one stays.
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("tpl"), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	inService(t, ctx, cl, "tpl", 3, 10*time.Second)
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("tpl"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	g := inService(t, ctx, cl, "tpl", 1, 10*time.Second)
	if v := aws.ToString(g.Instances[0].LaunchTemplate.Version); v != "2" {
		t.Errorf("survivor is on version %s, want 2", v)
	}
	for _, in := range old.Instances {
		if aws.ToString(in.InstanceId) == aws.ToString(g.Instances[0].InstanceId) {
			t.Errorf("an old-version instance survived")
		}
	}
	di, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(g.Instances[0].InstanceId)}})
	if err != nil || aws.ToString(di.Reservations[0].Instances[0].ImageId) != "ami-sim2" {
		t.Fatalf("survivor image: %+v %v", di, err)
	}
}

// TestStandbyTagsAndTargetGroups covers standby, group tags, lifecycle
// hook listing, target group attachment and deletion.
func TestStandbyTagsAndTargetGroups(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	f := makeFleet(t, ctx, cl, "stb", "ami-sim", 2)
	g := inService(t, ctx, cl, "stb", 2, 10*time.Second)
	id := aws.ToString(g.Instances[0].InstanceId)
	sb, err := cl.ASG.EnterStandby(ctx, &autoscaling.EnterStandbyInput{AutoScalingGroupName: aws.String("stb"), InstanceIds: []string{id}, ShouldDecrementDesiredCapacity: aws.Bool(false)})
	if err != nil || len(sb.Activities) != 1 {
		t.Fatalf("EnterStandby: %+v %v", sb, err)
	}
	// Not decremented: a replacement is launched; the standby instance
	// leaves the target group.
	eventually(t, 10*time.Second, "standby and replacement", func() error {
		g, err := describeGroup(ctx, cl, "stb")
		if err != nil {
			return err
		}
		states := map[asgtypes.LifecycleState]int{}
		for _, in := range g.Instances {
			states[in.LifecycleState]++
		}
		if states[asgtypes.LifecycleStateStandby] != 1 || states[asgtypes.LifecycleStateInService] != 2 {
			return fmt.Errorf("states %v", states)
		}
		return nil
	})
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN), Targets: []elbtypes.TargetDescription{{Id: aws.String(id)}}})
	if err != nil || th.TargetHealthDescriptions[0].TargetHealth.State != elbtypes.TargetHealthStateEnumUnused || th.TargetHealthDescriptions[0].TargetHealth.Reason != elbtypes.TargetHealthReasonEnumNotRegistered {
		t.Fatalf("standby target: %+v %v", th, err)
	}
	if _, err := cl.ASG.ExitStandby(ctx, &autoscaling.ExitStandbyInput{AutoScalingGroupName: aws.String("stb"), InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	inService(t, ctx, cl, "stb", 3, 10*time.Second)

	if _, err := cl.ASG.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []asgtypes.Tag{{
		ResourceId: aws.String("stb"), ResourceType: aws.String("auto-scaling-group"), Key: aws.String("env"), Value: aws.String("rehearsal"), PropagateAtLaunch: aws.Bool(true),
	}}}); err != nil {
		t.Fatal(err)
	}
	tags, err := cl.ASG.DescribeTags(ctx, &autoscaling.DescribeTagsInput{Filters: []asgtypes.Filter{{Name: aws.String("key"), Values: []string{"env"}}}})
	if err != nil || len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Value) != "rehearsal" || !aws.ToBool(tags.Tags[0].PropagateAtLaunch) {
		t.Fatalf("DescribeTags: %+v %v", tags, err)
	}
	if _, err := cl.ASG.DeleteTags(ctx, &autoscaling.DeleteTagsInput{Tags: []asgtypes.Tag{{ResourceId: aws.String("stb"), ResourceType: aws.String("auto-scaling-group"), Key: aws.String("env")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String("stb"), LifecycleHookName: aws.String("drain"),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"), HeartbeatTimeout: aws.Int32(120), DefaultResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatal(err)
	}
	hooks, err := cl.ASG.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("stb")})
	if err != nil || len(hooks.LifecycleHooks) != 1 || aws.ToInt32(hooks.LifecycleHooks[0].HeartbeatTimeout) != 120 || aws.ToInt32(hooks.LifecycleHooks[0].GlobalTimeout) != 12000 {
		t.Fatalf("DescribeLifecycleHooks: %+v %v", hooks, err)
	}

	// A second target group attached later gets the in-service instances.
	tg2, err := cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: aws.String("stb2"), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(9090)})
	if err != nil {
		t.Fatal(err)
	}
	arn2 := aws.ToString(tg2.TargetGroups[0].TargetGroupArn)
	if _, err := cl.ASG.AttachLoadBalancerTargetGroups(ctx, &autoscaling.AttachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String("stb"), TargetGroupARNs: []string{arn2}}); err != nil {
		t.Fatal(err)
	}
	th2, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn2)})
	if err != nil || len(th2.TargetHealthDescriptions) != 3 || aws.ToInt32(th2.TargetHealthDescriptions[0].Target.Port) != 9090 {
		t.Fatalf("attached target group: %+v %v", th2, err)
	}
	tgs, err := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(f.lbARN)})
	if err != nil || len(tgs.TargetGroups) != 0 {
		t.Fatalf("target groups of a load balancer without listeners: %+v %v", tgs, err)
	}
	ls, err := cl.ELB.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: aws.String(f.lbARN)})
	if err != nil || len(ls.Listeners) != 0 {
		t.Fatalf("DescribeListeners: %+v %v", ls, err)
	}

	// Deleting a group with instances needs ForceDelete.
	_, err = cl.ASG.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String("stb")})
	if apiCode(err) != "ResourceInUse" {
		t.Fatalf("delete without force: %v", err)
	}
	if _, err := cl.ASG.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String("stb"), ForceDelete: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "group deleted", func() error {
		out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"stb"}})
		if err != nil {
			return err
		}
		if len(out.AutoScalingGroups) != 0 {
			return fmt.Errorf("%d instances left", len(out.AutoScalingGroups[0].Instances))
		}
		return nil
	})
}

package localcloud

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"wsfleet/internal/nodetest"
)

// fastConfig is a cloud that runs AWS's minutes in milliseconds.
func fastConfig() Config {
	return Config{
		Listen:                 "127.0.0.1:0",
		Images:                 map[string]Image{"ami-sim": {Simulated: true}, "ami-sim2": {Simulated: true}},
		Tick:                   20 * time.Millisecond,
		BootTime:               100 * time.Millisecond,
		SimulatedBootTime:      50 * time.Millisecond,
		HealthCheckInterval:    20 * time.Millisecond,
		DeregistrationDelayMax: 100 * time.Millisecond,
		KillGrace:              2 * time.Second,
	}
}

func startCloud(t *testing.T, cfg Config) (*Cloud, Clients) {
	t.Helper()
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Clients("AKIDTEST")
}

// eventually polls f until it returns nil or the time is up.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// fleet creates, through the API alone, a launch template, a target group
// behind a load balancer listener and a group of n instances.
type fleet struct {
	ltID, tgARN, lbARN string
}

func makeFleet(t *testing.T, ctx context.Context, cl Clients, name, ami string, n int32, hooks ...asgtypes.LifecycleHookSpecification) fleet {
	t.Helper()
	lt, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro},
	})
	if err != nil {
		t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	tg, err := cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080), VpcId: aws.String("vpc-1"),
		HealthCheckPath: aws.String("/readyz"), HealthyThresholdCount: aws.Int32(2),
	})
	if err != nil {
		t.Fatalf("CreateTargetGroup: %v", err)
	}
	tgARN := aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	lb, err := cl.ELB.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: aws.String(name), Subnets: []string{"subnet-1"}})
	if err != nil {
		t.Fatalf("CreateLoadBalancer: %v", err)
	}
	lbARN := aws.ToString(lb.LoadBalancers[0].LoadBalancerArn)
	_, err = cl.ELB.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: aws.String(lbARN), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(0),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(tgARN)}},
	})
	if err == nil || apiCode(err) != "ValidationError" {
		t.Fatalf("CreateListener on port 0: got %v, want ValidationError", err)
	}
	// A process instance (ami-node: this test binary, which links the
	// node's packages and, built with -race on a loaded machine, takes
	// well over the 40 ms of two failed checks to listen) gets a grace
	// period covering its start, as AWS advises; simulated ones keep none,
	// so that tests of unhealthy replacement stay fast.
	var grace int32
	if ami == "ami-node" {
		grace = 20
	}
	_, err = cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name), HealthCheckGracePeriod: aws.Int32(grace),
		LaunchTemplate: &asgtypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")},
		MinSize:        aws.Int32(0), MaxSize: aws.Int32(n * 2), DesiredCapacity: aws.Int32(n),
		AvailabilityZones: []string{"us-east-1a", "us-east-1b"},
		TargetGroupARNs:   []string{tgARN}, HealthCheckType: aws.String("ELB"),
		Tags:                           []asgtypes.Tag{{Key: aws.String("Name"), Value: aws.String(name), PropagateAtLaunch: aws.Bool(true)}, {Key: aws.String("team"), Value: aws.String("chat"), PropagateAtLaunch: aws.Bool(false)}},
		LifecycleHookSpecificationList: hooks,
	})
	if err != nil {
		t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
	return fleet{ltID: aws.ToString(lt.LaunchTemplate.LaunchTemplateId), tgARN: tgARN, lbARN: lbARN}
}

func describeGroup(ctx context.Context, cl Clients, name string) (asgtypes.AutoScalingGroup, error) {
	out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return asgtypes.AutoScalingGroup{}, err
	}
	if len(out.AutoScalingGroups) != 1 {
		return asgtypes.AutoScalingGroup{}, errors.New("group not found")
	}
	return out.AutoScalingGroups[0], nil
}

// inService waits until the group has exactly n instances, all InService.
func inService(t *testing.T, ctx context.Context, cl Clients, name string, n int, d time.Duration) asgtypes.AutoScalingGroup {
	t.Helper()
	var g asgtypes.AutoScalingGroup
	eventually(t, d, "group "+name+" in service", func() error {
		var err error
		if g, err = describeGroup(ctx, cl, name); err != nil {
			return err
		}
		ok := 0
		for _, in := range g.Instances {
			if in.LifecycleState == asgtypes.LifecycleStateInService {
				ok++
			}
		}
		if ok != n || len(g.Instances) != n {
			return errors.New("instances: " + itoa(ok) + " in service of " + itoa(len(g.Instances)))
		}
		return nil
	})
	return g
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestGroupLifecycleThroughSDK(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	f := makeFleet(t, ctx, cl, "web", "ami-sim", 3)
	g := inService(t, ctx, cl, "web", 3, 10*time.Second)

	// Name tags propagate; non-propagating tags do not.
	ids := make([]string, 0, 3)
	for _, in := range g.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	di, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, r := range di.Reservations {
		for _, in := range r.Instances {
			seen++
			tags := map[string]string{}
			for _, tg := range in.Tags {
				tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
			}
			if tags["Name"] != "web" || tags["aws:autoscaling:groupName"] != "web" || tags["team"] != "" {
				t.Errorf("instance %s tags %v", aws.ToString(in.InstanceId), tags)
			}
			if in.State.Name != ec2types.InstanceStateNameRunning || aws.ToString(in.PrivateIpAddress) == "" {
				t.Errorf("instance %s state %s ip %q", aws.ToString(in.InstanceId), in.State.Name, aws.ToString(in.PrivateIpAddress))
			}
		}
	}
	if seen != 3 {
		t.Fatalf("DescribeInstances: %d instances, want 3", seen)
	}
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range th.TargetHealthDescriptions {
		if d.TargetHealth.State != elbtypes.TargetHealthStateEnumHealthy {
			t.Errorf("target %s: %s", aws.ToString(d.Target.Id), d.TargetHealth.State)
		}
	}

	// Scale in to 1 with two instances protected: only unprotected go.
	protected := ids[:2]
	if _, err := cl.ASG.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String("web"), InstanceIds: protected, ProtectedFromScaleIn: aws.Bool(true),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("web"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	g = inService(t, ctx, cl, "web", 2, 10*time.Second)
	for _, in := range g.Instances {
		if !contains(protected, aws.ToString(in.InstanceId)) {
			t.Errorf("unprotected instance %s survived scale-in", aws.ToString(in.InstanceId))
		}
	}

	// Terminating a protected instance by hand is allowed; with decrement
	// the group does not replace it.
	act, err := cl.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(protected[0]), ShouldDecrementDesiredCapacity: aws.Bool(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if act.Activity == nil || aws.ToString(act.Activity.Description) != "Terminating EC2 instance: "+protected[0] {
		t.Fatalf("activity %+v", act.Activity)
	}
	// Not replaced although not decremented: desired is 1, and the
	// protected survivor is that one.
	g = inService(t, ctx, cl, "web", 1, 10*time.Second)
	for _, in := range g.Instances {
		if aws.ToString(in.InstanceId) == protected[0] {
			t.Fatalf("terminated instance still in group")
		}
	}
	acts, err := cl.ASG.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("web")})
	if err != nil {
		t.Fatal(err)
	}
	var launches, terms int
	for _, a := range acts.Activities {
		switch {
		case a.StatusCode != asgtypes.ScalingActivityStatusCodeSuccessful:
			t.Errorf("activity %q: %s", aws.ToString(a.Description), a.StatusCode)
		case len(aws.ToString(a.Description)) > 9 && aws.ToString(a.Description)[:9] == "Launching":
			launches++
		default:
			terms++
		}
	}
	if launches != 3 || terms != 2 {
		t.Errorf("activities: %d launches, %d terminations; want 3, 2", launches, terms)
	}
	if c.AccessKeys()["AKIDTEST"] == 0 {
		t.Errorf("access key not recorded: %v", c.AccessKeys())
	}
}

// TestLoadBalancerProxies checks that the listener is a real proxy with
// no healthy target (503), then forwards to registered targets.
func TestLoadBalancerNoTargets(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	tg, err := cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: aws.String("tg"), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080)})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := cl.ELB.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: aws.String("front")})
	if err != nil {
		t.Fatal(err)
	}
	port := nodetest.FreePort(t)
	if _, err := cl.ELB.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(int32(port)),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: tg.TargetGroups[0].TargetGroupArn}},
	}); err != nil {
		t.Fatal(err)
	}
	url := c.LoadBalancerURL("front")
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("no targets: status %d, want 503", resp.StatusCode)
	}
}

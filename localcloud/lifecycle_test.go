package localcloud

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// clock is a wall clock that a test can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func lifecycleOf(g asgtypes.AutoScalingGroup, id string) asgtypes.LifecycleState {
	for _, in := range g.Instances {
		if aws.ToString(in.InstanceId) == id {
			return in.LifecycleState
		}
	}
	return "gone"
}

func waitState(t *testing.T, ctx context.Context, cl Clients, group, id string, want asgtypes.LifecycleState) {
	t.Helper()
	eventually(t, 10*time.Second, id+" "+string(want), func() error {
		g, err := describeGroup(ctx, cl, group)
		if err != nil {
			return err
		}
		if got := lifecycleOf(g, id); got != want {
			return fmt.Errorf("state %s", got)
		}
		return nil
	})
}

// TestLifecycleHooks drives launch and termination hooks: completion,
// heartbeats that extend the wait, timeouts that apply DefaultResult, and
// what IMDS reports meanwhile.
func TestLifecycleHooks(t *testing.T) {
	ctx := context.Background()
	var clk clock
	cfg := fastConfig()
	cfg.Now = clk.now
	c, cl := startCloud(t, cfg)
	makeFleet(t, ctx, cl, "hooked", "ami-sim", 1, asgtypes.LifecycleHookSpecification{
		LifecycleHookName: aws.String("boot"), LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_LAUNCHING"),
		HeartbeatTimeout: aws.Int32(60),
	})
	var id string
	eventually(t, 10*time.Second, "launch", func() error {
		g, err := describeGroup(ctx, cl, "hooked")
		if err != nil || len(g.Instances) != 1 {
			return fmt.Errorf("instances: %v", err)
		}
		id = aws.ToString(g.Instances[0].InstanceId)
		return nil
	})
	waitState(t, ctx, cl, "hooked", id, asgtypes.LifecycleStatePendingWait)
	if _, err := cl.ASG.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("hooked"), LifecycleHookName: aws.String("boot"), InstanceId: aws.String(id), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, cl, "hooked", id, asgtypes.LifecycleStateInService)
	_, err := cl.ASG.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("hooked"), LifecycleHookName: aws.String("boot"), InstanceId: aws.String(id), LifecycleActionResult: aws.String("CONTINUE"),
	})
	if apiCode(err) != "ValidationError" {
		t.Fatalf("completing a finished action: %v, want ValidationError", err)
	}

	// Termination: Terminated in IMDS from the start; the hook waits; a
	// heartbeat extends the wait; the timeout applies DefaultResult.
	if _, err := cl.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String("hooked"), LifecycleHookName: aws.String("drain"),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"), HeartbeatTimeout: aws.Int32(30), DefaultResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatal(err)
	}
	md := imds.New(imds.Options{Endpoint: c.MetadataEndpoint(id)})
	if got := imdsGet(t, md, "autoscaling/target-lifecycle-state"); got != "InService" {
		t.Fatalf("target-lifecycle-state %q, want InService", got)
	}
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("hooked"), DesiredCapacity: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, cl, "hooked", id, asgtypes.LifecycleStateTerminatingWait)
	if got := imdsGet(t, md, "autoscaling/target-lifecycle-state"); got != "Terminated" {
		t.Fatalf("target-lifecycle-state %q, want Terminated", got)
	}
	acts, err := cl.ASG.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("hooked")})
	if err != nil || len(acts.Activities) == 0 || acts.Activities[0].StatusCode != asgtypes.ScalingActivityStatusCodeMidLifecycleAction {
		t.Fatalf("newest activity while the hook waits: %+v %v", acts.Activities, err)
	}
	clk.advance(20 * time.Second)
	if _, err := cl.ASG.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String("hooked"), LifecycleHookName: aws.String("drain"), InstanceId: aws.String(id),
	}); err != nil {
		t.Fatal(err)
	}
	clk.advance(20 * time.Second) // 40 s after the start, 20 s after the heartbeat
	time.Sleep(5 * cfg.Tick)
	waitState(t, ctx, cl, "hooked", id, asgtypes.LifecycleStateTerminatingWait)
	clk.advance(11 * time.Second) // the heartbeat's 30 s are up
	waitState(t, ctx, cl, "hooked", id, "gone")

	// A launch action that times out takes DefaultResult ABANDON: the
	// instance is terminated and the group launches another.
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("hooked"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	var second string
	eventually(t, 10*time.Second, "relaunch", func() error {
		g, err := describeGroup(ctx, cl, "hooked")
		if err != nil || len(g.Instances) != 1 || g.Instances[0].LifecycleState != asgtypes.LifecycleStatePendingWait {
			return fmt.Errorf("group %+v %v", g.Instances, err)
		}
		second = aws.ToString(g.Instances[0].InstanceId)
		return nil
	})
	clk.advance(61 * time.Second)
	eventually(t, 10*time.Second, "abandoned launch replaced", func() error {
		g, err := describeGroup(ctx, cl, "hooked")
		if err != nil {
			return err
		}
		if lifecycleOf(g, second) == asgtypes.LifecycleStatePendingWait {
			return fmt.Errorf("still waiting")
		}
		for _, in := range g.Instances {
			if aws.ToString(in.InstanceId) != second && in.LifecycleState == asgtypes.LifecycleStatePendingWait {
				return nil
			}
		}
		return fmt.Errorf("no replacement yet: %+v", g.Instances)
	})
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func imdsGet(t *testing.T, c *imds.Client, path string) string {
	t.Helper()
	out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		t.Fatalf("imds %s: %v", path, err)
	}
	defer out.Content.Close()
	b, _ := io.ReadAll(out.Content)
	return string(b)
}

// TestMetadataService reads an instance's metadata with the SDK's IMDS
// client (IMDSv2 tokens), including tags set after launch and user data.
func TestMetadataService(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	ud := "--admin-token=secret\n--drain-window=1s\n"
	out, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-sim"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		UserData:          aws.String(b64(ud)),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("ws-09")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	in := out.Instances[0]
	id := aws.ToString(in.InstanceId)
	md := imds.New(imds.Options{Endpoint: c.MetadataEndpoint(id)})
	for path, want := range map[string]string{
		"instance-id":        id,
		"local-ipv4":         aws.ToString(in.PrivateIpAddress),
		"ami-id":             "ami-sim",
		"tags/instance/Name": "ws-09",
	} {
		if got := imdsGet(t, md, path); got != want {
			t.Errorf("imds %s = %q, want %q", path, got, want)
		}
	}
	if _, err := md.GetMetadata(ctx, &imds.GetMetadataInput{Path: "autoscaling/target-lifecycle-state"}); err == nil {
		t.Errorf("target-lifecycle-state outside a group: want 404")
	}
	uo, err := md.GetUserData(ctx, &imds.GetUserDataInput{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(uo.Content)
	if string(b) != ud {
		t.Errorf("user data %q, want %q", b, ud)
	}
	// Tags changed after launch show in IMDS and DescribeInstances alike.
	if _, err := cl.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("ws-01")}}}); err != nil {
		t.Fatal(err)
	}
	if got := imdsGet(t, md, "tags/instance/Name"); got != "ws-01" {
		t.Errorf("Name in IMDS after CreateTags: %q", got)
	}
	// Its tags: the Name, and where its simulated node answers (simnode.go).
	dt, err := cl.EC2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{{Name: aws.String("resource-id"), Values: []string{id}}}})
	if err != nil || len(dt.Tags) != 2 || aws.ToString(dt.Tags[0].Key) != "Name" || aws.ToString(dt.Tags[0].Value) != "ws-01" ||
		aws.ToString(dt.Tags[1].Key) != AdminTag || aws.ToString(dt.Tags[1].Value) != c.simURL(id) {
		t.Errorf("DescribeTags: %+v %v", dt, err)
	}
	// A bad token is refused; a missing one is allowed (HttpTokens optional).
	req, _ := http.NewRequest(http.MethodGet, c.MetadataEndpoint(id)+"/latest/meta-data/instance-id", nil)
	req.Header.Set("X-aws-ec2-metadata-token", "forged")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged token: %d, want 401", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPut, c.MetadataEndpoint(id)+"/latest/api/token", strings.NewReader(""))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("token without TTL: %d, want 400", resp.StatusCode)
	}
	// Terminated: gone from IMDS, still listed by EC2.
	if _, err := cl.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "terminated", func() error {
		out, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			return err
		}
		if s := out.Reservations[0].Instances[0].State.Name; s != ec2types.InstanceStateNameTerminated {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})
	if c.MetadataEndpoint(id) != "" {
		t.Errorf("terminated instance still serves metadata")
	}
}

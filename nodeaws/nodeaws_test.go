package nodeaws

import (
	"context"
	"encoding/base64"
	"flag"
	"io"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"wsfleet/localcloud"
)

func TestParseUserData(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Setting
		wantErr  bool
	}{
		{"empty", "", nil, false},
		{"flags", "# ws node\n--admin-token=abc\n\n  --nats=nats://127.0.0.1:4222,nats://127.0.0.1:4223  \n-drain-window=10s\n--aws-lifecycle\n",
			[]Setting{{"admin-token", "abc", 2}, {"nats", "nats://127.0.0.1:4222,nats://127.0.0.1:4223", 4}, {"drain-window", "10s", 5}, {"aws-lifecycle", "true", 6}}, false},
		{"value with equals", "--rules=a=b\n", []Setting{{"rules", "a=b", 1}}, false},
		{"shell script is someone else's", "#!/bin/sh\necho hi\n", nil, false},
		{"cloud-config too", "#cloud-config\npackages: [x]\n", nil, false},
		{"not a flag", "admin-token=abc\n", nil, true},
		{"no name", "--=x\n", nil, true},
		{"space in name", "--admin token=x\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUserData(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseUserData(f *testing.F) {
	f.Add("--admin-token=abc\n--nats=nats://x\n")
	f.Add("#!/bin/sh\n")
	f.Add("--a\n-b=\n---c==d\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		settings, err := ParseUserData(s)
		if err != nil {
			return
		}
		for _, st := range settings {
			if st.Name == "" || st.Line < 1 {
				t.Fatalf("bad setting %+v from %q", st, s)
			}
		}
	})
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startCloud(t *testing.T) (*localcloud.Cloud, localcloud.Clients) {
	t.Helper()
	c, err := localcloud.Start(context.Background(), localcloud.Config{
		Listen: "127.0.0.1:0", Images: map[string]localcloud.Image{"ami-sim": {Simulated: true}},
		Tick: 20 * time.Millisecond, SimulatedBootTime: 20 * time.Millisecond,
		HealthCheckInterval: 20 * time.Millisecond, DeregistrationDelayMax: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Clients("AKIDNODE")
}

// serveFlags is the part of `wsfleet serve`'s flag set Configure touches.
func serveFlags() (*flag.FlagSet, map[string]*string) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	v := map[string]*string{}
	for _, n := range []string{"listen", "node-id", "image", "admin-token", "nats"} {
		v[n] = fs.String(n, "", "")
	}
	*v["listen"] = ":8080"
	fs.Lookup("listen").DefValue = ":8080"
	return fs, v
}

// TestConfigureFromLocalCloud reads a real instance's metadata from the
// local cloud's IMDS and configures serve's flags from it.
func TestConfigureFromLocalCloud(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t)
	ud := "--admin-token=from-user-data\n--nats=nats://127.0.0.1:4222\n--image=ignored-because-cli\n"
	out, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-sim"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		UserData: aws.String(base64.StdEncoding.EncodeToString([]byte(ud))),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	ip := aws.ToString(out.Instances[0].PrivateIpAddress)
	if _, err := cl.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("ws-03")}}}); err != nil {
		t.Fatal(err)
	}
	md, err := ReadMetadata(ctx, imds.New(imds.Options{Endpoint: c.MetadataEndpoint(id)}))
	if err != nil {
		t.Fatal(err)
	}
	if md.InstanceID != id || md.LocalIPv4 != ip || md.ImageID != "ami-sim" || md.Name != "ws-03" || md.UserData != ud || md.Region != "us-east-1" {
		t.Fatalf("metadata %+v", md)
	}
	fs, v := serveFlags()
	if err := fs.Parse([]string{"--image=cli-image"}); err != nil {
		t.Fatal(err)
	}
	if err := Configure(fs, md, quiet()); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"listen": ip + ":8080", "node-id": "ws-03", "image": "cli-image", "admin-token": "from-user-data", "nats": "nats://127.0.0.1:4222"}
	for k, w := range want {
		if *v[k] != w {
			t.Errorf("--%s = %q, want %q", k, *v[k], w)
		}
	}
	// Unknown flags in user data fail the node.
	fs2, _ := serveFlags()
	md.UserData = "--no-such-flag=1\n"
	if err := Configure(fs2, md, quiet()); err == nil {
		t.Fatal("unknown user data flag accepted")
	}
}

// TestWatcherDrainsAndCompletes runs the lifecycle watcher for a simulated
// instance of a group with a termination hook of 300 s: on scale-in the
// watcher sees Terminated in IMDS, drains, completes the action, and the
// instance is gone long before the hook would time out.
func TestWatcherDrainsAndCompletes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, cl := startCloud(t)
	if _, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("ws-template"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-sim")},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("g"), LaunchTemplate: &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ws-template")},
		MinSize: aws.Int32(0), MaxSize: aws.Int32(2), DesiredCapacity: aws.Int32(1), AvailabilityZones: []string{"us-east-1a"},
		LifecycleHookSpecificationList: []asgtypes.LifecycleHookSpecification{{
			LifecycleHookName: aws.String("drain"), LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"), HeartbeatTimeout: aws.Int32(300),
		}},
	}); err != nil {
		t.Fatal(err)
	}
	var id string
	for id == "" {
		out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g"}})
		if err != nil {
			t.Fatal(err)
		}
		if ins := out.AutoScalingGroups[0].Instances; len(ins) == 1 && ins[0].LifecycleState == asgtypes.LifecycleStateInService {
			id = aws.ToString(ins[0].InstanceId)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var drained atomic.Bool
	w := &Watcher{
		IMDS: imds.New(imds.Options{Endpoint: c.MetadataEndpoint(id)}), ASG: cl.ASG, Interval: 50 * time.Millisecond, Log: quiet(),
		Drain: func(ctx context.Context) error { drained.Store(true); return nil },
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	if drained.Load() {
		t.Fatal("drained while InService")
	}
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("watcher: %v", err)
	}
	if !drained.Load() {
		t.Fatal("completed without draining")
	}
	for {
		out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.AutoScalingGroups[0].Instances) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("instance still in the group: %+v", out.AutoScalingGroups[0].Instances)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcherHeartbeatsDuringLongDrain: a drain that outlasts the hook's
// heartbeat timeout keeps the lifecycle action alive with heartbeats. The
// cloud's clock is moved 40 s past the start of a 30 s hook while the
// drain runs; the instance must still be waiting, not timed out.
func TestWatcherHeartbeatsDuringLongDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	c, err := localcloud.Start(ctx, localcloud.Config{
		Listen: "127.0.0.1:0", Images: map[string]localcloud.Image{"ami-sim": {Simulated: true}},
		Tick: 20 * time.Millisecond, SimulatedBootTime: 20 * time.Millisecond, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := c.Clients("AKIDNODE")
	if _, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("ws-template"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-sim")},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("g"), LaunchTemplate: &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ws-template")},
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(1), AvailabilityZones: []string{"us-east-1a"},
		LifecycleHookSpecificationList: []asgtypes.LifecycleHookSpecification{{
			LifecycleHookName: aws.String("drain"), LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
			HeartbeatTimeout: aws.Int32(30), DefaultResult: aws.String("ABANDON"),
		}},
	}); err != nil {
		t.Fatal(err)
	}
	state := func() (string, string) {
		out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g"}})
		if err != nil || len(out.AutoScalingGroups[0].Instances) == 0 {
			return "", ""
		}
		in := out.AutoScalingGroups[0].Instances[0]
		return aws.ToString(in.InstanceId), string(in.LifecycleState)
	}
	var id string
	for {
		if i, s := state(); s == "InService" {
			id = i
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no instance in service")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stillWaiting := make(chan bool, 1)
	w := &Watcher{
		IMDS: imds.New(imds.Options{Endpoint: c.MetadataEndpoint(id)}), ASG: cl.ASG, Log: quiet(),
		Interval: 50 * time.Millisecond, HeartbeatEvery: 50 * time.Millisecond,
		Drain: func(ctx context.Context) error {
			for {
				if _, s := state(); s == "Terminating:Wait" {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			for range 2 {
				offset.Add(int64(20 * time.Second))
				time.Sleep(300 * time.Millisecond) // heartbeats land
			}
			_, s := state()
			stillWaiting <- s == "Terminating:Wait"
			return nil
		},
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if !<-stillWaiting {
		t.Fatal("the lifecycle action timed out during the drain despite heartbeats")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	acts, err := cl.ASG.DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("g")})
	if err != nil || len(acts.Activities) != 2 {
		t.Fatalf("activities %+v %v", acts, err)
	}
}

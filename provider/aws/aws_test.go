package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"wsfleet/localcloud"
	"wsfleet/rollout"
)

// startLocal starts a local cloud with simulated instances (no processes)
// and a group of n named instances behind a load balancer.
func startLocal(t *testing.T, n int) (*localcloud.Cloud, *Provider) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c, err := localcloud.Start(context.Background(), localcloud.Config{
		Listen:                 "127.0.0.1:0",
		Images:                 map[string]localcloud.Image{"ami-old": {Simulated: true}, "ami-new": {Simulated: true}},
		Tick:                   20 * time.Millisecond,
		SimulatedBootTime:      50 * time.Millisecond,
		HealthCheckInterval:    20 * time.Millisecond,
		DeregistrationDelayMax: 50 * time.Millisecond,
		KillGrace:              time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("ws-%02d", i))
	}
	topo := &localcloud.Topology{
		LaunchTemplates: []localcloud.TopoLaunchTemplate{{Name: "gitter-ws", ImageID: "ami-old", InstanceType: "c5.large"}},
		TargetGroups:    []localcloud.TopoTargetGroup{{Name: "gitter-ws", Port: 8080, HealthCheckPath: "/readyz", HealthCheckIntervalSeconds: 10, HealthyThresholdCount: 2, UnhealthyThresholdCount: 2}},
		LoadBalancers:   []localcloud.TopoLoadBalancer{{Name: "gitter", Listeners: []localcloud.TopoListener{{Port: int32(freePort(t)), TargetGroup: "gitter-ws"}}}},
		Groups: []localcloud.TopoGroup{{Name: "gitter-ws", LaunchTemplate: "gitter-ws", Version: "$Latest", Min: int32(n), Max: int32(n + 2), Desired: int32(n),
			TargetGroups: []string{"gitter-ws"}, HealthCheckType: "ELB", HealthCheckGracePeriod: 60, InstanceNames: names}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Bootstrap(ctx, topo); err != nil {
		t.Fatal(err)
	}
	p, err := New(ctx, Config{Region: "us-east-1", Endpoint: c.Endpoint(), MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestProviderOnLocalCloud(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local cloud")
	}
	c, p := startLocal(t, 3)
	ctx := context.Background()

	g := waitHealthy(t, p, 3)
	if g.Image != "ami-old" || g.Template.Version != "1" || g.Desired != 3 || g.Max != 5 {
		t.Fatalf("group %+v", g)
	}
	var names []string
	for _, in := range g.Instances {
		names = append(names, in.Name)
		if in.Image != "ami-old" || in.PrivateIP == "" || in.LaunchTime.IsZero() {
			t.Errorf("instance %+v", in)
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "ws-01,ws-02,ws-03" {
		t.Errorf("names %v", names)
	}

	if _, err := p.Group(ctx, "nope"); !errors.Is(err, rollout.ErrNotFound) {
		t.Errorf("missing group: %v", err)
	}
	if ok, err := p.ImageExists(ctx, "ami-new"); !ok || err != nil {
		t.Errorf("ami-new exists: %v %v", ok, err)
	}
	if ok, err := p.ImageExists(ctx, "ami-0missing"); ok || err != nil {
		t.Errorf("ami-0missing exists: %v %v", ok, err)
	}

	// SetImage twice with one token makes one version.
	tc1, err := p.SetImage(ctx, "gitter-ws", "ami-new", "change-1")
	if err != nil {
		t.Fatal(err)
	}
	tc2, err := p.SetImage(ctx, "gitter-ws", "ami-new", "change-1")
	if err != nil {
		t.Fatal(err)
	}
	if tc1 != tc2 || tc1.Previous.Version != "1" || tc1.New.Version != "2" || tc1.PreviousImage != "ami-old" {
		t.Fatalf("SetImage not idempotent: %+v vs %+v", tc1, tc2)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Image != "ami-new" || g.Template.Version != "2" {
		t.Fatalf("group after SetImage: %s %s", g.Image, g.Template.Version)
	}

	// Desired above max raises max; the new instance runs the new image.
	if err := p.SetDesired(ctx, "gitter-ws", 6); err != nil {
		t.Fatal(err)
	}
	var fresh rollout.Instance
	waitFor(t, "6 instances", func() error {
		g, err := p.Group(ctx, "gitter-ws")
		if err != nil {
			return err
		}
		if g.Desired != 6 || g.Max < 6 || len(g.Instances) != 6 {
			return fmt.Errorf("desired %d max %d instances %d", g.Desired, g.Max, len(g.Instances))
		}
		for _, in := range g.Instances {
			if in.Image == "ami-new" {
				fresh = in
			}
		}
		return nil
	})
	if err := p.TagInstance(ctx, fresh.ID, "Name", "ws-04"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetProtection(ctx, "gitter-ws", []string{fresh.ID}, true); err != nil {
		t.Fatal(err)
	}
	g, _ = p.Group(ctx, "gitter-ws")
	if in, _ := g.Instance(fresh.ID); in.Name != "ws-04" || !in.Protected {
		t.Errorf("after tag and protect: %+v", in)
	}

	// Terminate once works; twice is ErrNotFound and lowers nothing.
	if err := p.Terminate(ctx, "gitter-ws", fresh.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, "gitter-ws", fresh.ID, true); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("second terminate: %v", err)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Desired != 5 {
		t.Errorf("desired %d after one terminate with decrement, want 5", g.Desired)
	}

	// Rollback of the template.
	if err := p.SetTemplateVersion(ctx, "gitter-ws", tc1.Previous); err != nil {
		t.Fatal(err)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Image != "ami-old" {
		t.Errorf("image after rollback %s", g.Image)
	}

	// Group tags (the lock).
	if err := p.TagGroup(ctx, "gitter-ws", rollout.LockTag, "x@h:1 until 2030-01-01T00:00:00Z"); err != nil {
		t.Fatal(err)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Tags[rollout.LockTag] == "" {
		t.Error("lock tag not set")
	}
	if err := p.TagGroup(ctx, "gitter-ws", rollout.LockTag, ""); err != nil {
		t.Fatal(err)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Tags[rollout.LockTag] != "" {
		t.Error("lock tag not deleted")
	}

	url, err := p.LoadBalancerURL(ctx, "gitter-ws")
	if err != nil || url != c.LoadBalancerURL("gitter") {
		t.Errorf("load balancer url %q (%v), want %q", url, err, c.LoadBalancerURL("gitter"))
	}
	calls := p.APICalls()
	if calls["DescribeAutoScalingGroups"] == 0 || calls["CreateLaunchTemplateVersion"] != 1 || calls["TerminateInstanceInAutoScalingGroup"] != 2 {
		t.Errorf("calls %v", calls)
	}
}

// TestProviderSuspendAndTargets: the calls a rollout makes around a
// drain, against the local cloud through the SDK: suspending processes
// (an operator's earlier suspension is reported and kept), taking a
// target out of the load balancer and putting it back, the health mark,
// the deregistration delay, and terminating a deregistered instance.
func TestProviderSuspendAndTargets(t *testing.T) {
	_, p := startLocal(t, 3)
	ctx := context.Background()
	waitFor(t, "3 in service and healthy", func() error {
		g, err := p.Group(ctx, "gitter-ws")
		if err != nil {
			return err
		}
		for _, in := range g.Instances {
			if in.Lifecycle != "InService" || in.Health != "healthy" {
				return fmt.Errorf("%s %s/%s", in.ID, in.Lifecycle, in.Health)
			}
		}
		return nil
	})
	if err := p.SuspendProcesses(ctx, "gitter-ws", []string{"AZRebalance"}); err != nil { // the operator's
		t.Fatal(err)
	}
	for range 2 { // repeated after a crash
		if err := p.SuspendProcesses(ctx, "gitter-ws", []string{"ReplaceUnhealthy"}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := p.Group(ctx, "gitter-ws")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(g.Suspended, ","); got != "AZRebalance,ReplaceUnhealthy" {
		t.Errorf("suspended %q", got)
	}
	if err := p.ResumeProcesses(ctx, "gitter-ws", []string{"ReplaceUnhealthy"}); err != nil {
		t.Fatal(err)
	}
	if err := p.ResumeProcesses(ctx, "gitter-ws", nil); err != nil { // never "all"
		t.Fatal(err)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); strings.Join(g.Suspended, ",") != "AZRebalance" {
		t.Errorf("after resuming ours: suspended %q, want the operator's AZRebalance", g.Suspended)
	}

	d, ok, err := p.DeregistrationDelay(ctx, "gitter-ws")
	if err != nil || !ok || d <= 0 {
		t.Fatalf("deregistration delay %s %v %v", d, ok, err)
	}
	id := g.Instances[0].ID
	for range 2 { // the second finds it not registered: no error
		if err := p.DeregisterTargets(ctx, "gitter-ws", []string{id}); err != nil {
			t.Fatal(err)
		}
	}
	g, _ = p.Group(ctx, "gitter-ws")
	if in, _ := g.Instance(id); in.Health != "draining" && in.Health != "unregistered" {
		t.Errorf("deregistered target %s", in.Health)
	}
	if err := p.RegisterTargets(ctx, "gitter-ws", []string{id}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetInstanceHealth(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	g, _ = p.Group(ctx, "gitter-ws")
	if in, _ := g.Instance(id); in.Health == "unregistered" || in.HealthStatus != "Healthy" {
		t.Errorf("registered again: target %s, group health %s", in.Health, in.HealthStatus)
	}
	// A deregistered instance still terminates.
	id2 := g.Instances[1].ID
	if err := p.DeregisterTargets(ctx, "gitter-ws", []string{id2}); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, "gitter-ws", id2, false); err != nil { // desired is at the minimum
		t.Fatalf("terminate a deregistered instance: %v", err)
	}
	calls := p.APICalls()
	for _, op := range []string{"SuspendProcesses", "ResumeProcesses", "DeregisterTargets", "RegisterTargets", "SetInstanceHealth", "DescribeTargetGroupAttributes"} {
		if calls[op] == 0 {
			t.Errorf("no %s call counted", op)
		}
	}
}

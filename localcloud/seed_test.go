package localcloud

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"wsfleet/internal/nodetest"
	"wsfleet/nodeapi"
)

// suite builds the wsfleet binary the process instances run.
var suite = &nodetest.Suite{Name: "localcloud"}

// TestSeedTopologyRealNodes brings up examples/seed-topology.yaml with 8
// real ws nodes, checks that they answer through the load balancer under
// their Name tags, and that a scale-in drains a node through its
// termination lifecycle hook: the node (serve --aws-lifecycle) sees
// Terminated in IMDS, drains, and completes the action long before the
// hook's 300 s timeout.
func TestSeedTopologyRealNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wsfleet and runs 8 ws nodes")
	}
	bin := suite.Binary(t)
	topo, err := LoadTopology("../examples/seed-topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Same topology, with a free listener port and without the external
	// NATS address (each node runs alone on its memory broker).
	topo.LoadBalancers[0].Listeners[0].Port = int32(nodetest.FreePort(t))
	var ud []string
	for _, line := range strings.Split(topo.Launch().UserData, "\n") {
		if !strings.HasPrefix(line, "--nats=") {
			ud = append(ud, line)
		}
	}
	topo.Launch().UserData = strings.Join(ud, "\n") + "\n--drain-window=200ms\n--drain-deadline=2s\n--aws-lifecycle-interval=100ms\n"

	cfg := fastConfig()
	cfg.Images = map[string]Image{"ami-old": {Command: bin}, "ami-new": {Command: bin}}
	cfg.Tick = 50 * time.Millisecond
	cfg.BootTime = 300 * time.Millisecond
	cfg.HealthCheckInterval = 200 * time.Millisecond
	cfg.DeregistrationDelayMax = 500 * time.Millisecond
	cfg.KillGrace = 5 * time.Second
	c, cl := startCloud(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	if err := c.Bootstrap(ctx, topo); err != nil {
		t.Fatal(err)
	}
	g := inService(t, ctx, cl, "gitter-ws", 8, 60*time.Second)
	ids := make([]string, len(g.Instances))
	for i, in := range g.Instances {
		ids[i] = aws.ToString(in.InstanceId)
	}
	names := map[string]string{} // instance id → Name
	di, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{"ws-0*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range di.Reservations {
		for _, in := range r.Instances {
			for _, tag := range in.Tags {
				if aws.ToString(tag.Key) == "Name" {
					names[aws.ToString(in.InstanceId)] = aws.ToString(tag.Value)
				}
			}
		}
	}
	if len(names) != 8 {
		t.Fatalf("named instances: %v", names)
	}

	t.Run("nodes answer through the load balancer", func(t *testing.T) {
		lbURL := c.LoadBalancerURL("gitter")
		admin := &nodeapi.Client{Token: "local-admin-token"}
		seen := map[string]bool{}
		for i := 0; i < 64 && len(seen) < 8; i++ {
			st, err := admin.Status(ctx, lbURL)
			if err != nil {
				t.Fatalf("status through the load balancer: %v", err)
			}
			if st.Image != "ami-old" {
				t.Errorf("node %s reports image %q", st.Node, st.Image)
			}
			seen[st.Node] = true
		}
		var got []string
		for n := range seen {
			got = append(got, n)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != "ws-01,ws-02,ws-03,ws-04,ws-05,ws-06,ws-07,ws-08" {
			t.Fatalf("nodes behind the load balancer: %v", got)
		}
		resp, err := http.Post(lbURL+"/bayeux", "application/json", strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling","websocket"]}]`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"successful":true`) {
			t.Fatalf("handshake through the load balancer: %d %s", resp.StatusCode, body)
		}
	})

	// Scale in by one: the node (serve --aws-lifecycle) drains as soon as
	// IMDS says Terminated, then completes its lifecycle action once the
	// hook waits; the hook's 300 s timeout is never reached.
	t.Run("scale-in drains through the lifecycle hook", func(t *testing.T) {
		victim := ids[7]
		start := time.Now()
		if _, err := cl.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
			InstanceId: aws.String(victim), ShouldDecrementDesiredCapacity: aws.Bool(false),
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "terminated "+names[victim]+" (see the node's log in Cloud.LogDir: a node must stay up after its drain until it has completed the lifecycle action)", func() error {
			out, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{victim}})
			if err != nil {
				return err
			}
			if st := out.Reservations[0].Instances[0].State.Name; st != ec2types.InstanceStateNameTerminated {
				return fmt.Errorf("state %s", st)
			}
			return nil
		})
		t.Logf("%s drained and terminated in %v (hook timeout 300s)", names[victim], time.Since(start).Round(time.Millisecond))
		// The group replaces it (no decrement) with an unnamed node.
		inService(t, ctx, cl, "gitter-ws", 8, 30*time.Second)
	})
}

package localcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"wsfleet/nodeapi"
)

// TestSimulatedNodeAPI drives the node of simulated instances through the
// admin API as the rollout engine does, on the cloud's injected clock:
// where the instance tag points, the token each node accepts, status
// before and after boot, a drain paced by its window, one paced by its
// max_rate and cut by its deadline, and the metrics a gate reads.
func TestSimulatedNodeAPI(t *testing.T) {
	ctx := context.Background()
	var clk clock
	cfg := fastConfig()
	cfg.Now = clk.now
	cfg.SimulatedBootTime = time.Hour // boots when the test moves the clock
	cfg.SimulatedAdminToken = "cloud-token"
	c, cl := startCloud(t, cfg)

	launch := func(name, userData string) (id, base string) {
		t.Helper()
		in := &ec2.RunInstancesInput{
			ImageId: aws.String("ami-sim"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}},
		}
		if userData != "" {
			in.UserData = aws.String(b64(userData))
		}
		out, err := cl.EC2.RunInstances(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		id = aws.ToString(out.Instances[0].InstanceId)
		for _, tag := range out.Instances[0].Tags {
			if aws.ToString(tag.Key) == AdminTag {
				base = aws.ToString(tag.Value)
			}
		}
		if base != c.simURL(id) || !strings.HasSuffix(base, "/sim/"+id) {
			t.Fatalf("%s: %s tag %q, want %q", name, AdminTag, base, c.simURL(id))
		}
		return id, base
	}
	// a: its user data's token, as a process node reads it; b: the
	// cloud's; off: a user data line that sets the token empty.
	a, aURL := launch("sim-a", "# node flags\n--admin-token=user-data-token\n--drain-window=1s\n")
	b, bURL := launch("sim-b", "")
	_, offURL := launch("sim-off", "--admin-token=\n")
	as := &nodeapi.Client{Token: "user-data-token"}
	bs := &nodeapi.Client{Token: "cloud-token"}

	// send makes one request to a node and returns its status and body;
	// get is a GET.
	hc := &http.Client{Timeout: 5 * time.Second}
	send := func(method, url, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read: %v", method, url, err)
		}
		return resp.StatusCode, string(b)
	}
	get := func(url, token string) (int, string) { return send(http.MethodGet, url, token, "") }

	// Pending: the node is not up.
	if code, body := get(aURL+nodeapi.PathStatus, "user-data-token"); code != http.StatusServiceUnavailable {
		t.Errorf("status before boot: %d %s", code, body)
	}
	if _, err := as.Status(ctx, aURL); err == nil {
		t.Errorf("status before boot: no error")
	}
	clk.advance(time.Hour)
	eventually(t, 5*time.Second, "booted", func() error {
		_, err := bs.Status(ctx, bURL)
		return err
	})

	t.Run("token", func(t *testing.T) {
		for _, tc := range []struct {
			name, url, token string
			want             int
		}{
			{"user data token", aURL, "user-data-token", 200},
			{"cloud token where user data sets one", aURL, "cloud-token", 401},
			{"cloud token", bURL, "cloud-token", 200},
			{"no token", bURL, "", 401},
			{"wrong token", bURL, "guess", 401},
			{"admin API off", offURL, "cloud-token", 403},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if code, body := get(tc.url+nodeapi.PathStatus, tc.token); code != tc.want {
					t.Errorf("GET status: %d %s, want %d", code, body, tc.want)
				}
			})
		}
		// Health, readiness and metrics need no token, as on a node.
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, body := get(offURL+p, ""); code != 200 {
				t.Errorf("GET %s without a token: %d %s", p, code, body)
			}
		}
		if code, _ := get(strings.Replace(aURL, a, "i-00000000000000000", 1)+nodeapi.PathStatus, "user-data-token"); code != 404 {
			t.Errorf("unknown instance: %d, want 404", code)
		}
	})

	t.Run("status", func(t *testing.T) {
		st, err := as.Status(ctx, aURL)
		if err != nil {
			t.Fatal(err)
		}
		// Version 1: a simulated node has no cordon or shed (version 2).
		want := nodeapi.Status{APIVersion: 1, Node: "sim-a", Version: "simulated", Image: "ami-sim", State: nodeapi.StateReady,
			Connections: DefaultSimulatedConnections, Sessions: DefaultSimulatedConnections, Subscriptions: DefaultSimulatedConnections}
		if fmt.Sprint(st) != fmt.Sprint(want) {
			t.Errorf("status %+v\nwant   %+v", st, want)
		}
		if err := c.SetSimulatedConnections(b, 40); err != nil {
			t.Fatal(err)
		}
		if st, err := bs.Status(ctx, bURL); err != nil || st.Connections != 40 || st.Node != "sim-b" {
			t.Errorf("after SetSimulatedConnections(40): %+v %v", st, err)
		}
		if err := c.SetSimulatedConnections("i-nope", 1); !errors.Is(err, ErrNotSimulated) {
			t.Errorf("SetSimulatedConnections of an unknown instance: %v", err)
		}
	})

	t.Run("drain paced by its window", func(t *testing.T) {
		// 100 connections over 100s: one a second (the max_rate of
		// 10/s does not bind).
		if err := as.Drain(ctx, aURL, nodeapi.DrainRequest{Window: nodeapi.Dur(100 * time.Second), MaxRate: 10, Deadline: nodeapi.Dur(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		check := func(state nodeapi.State, conns, released int, ready int) {
			t.Helper()
			st, err := as.Status(ctx, aURL)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != state || st.Connections != conns || st.Drain.Released != released || st.Drain.Remaining != conns || st.Drain.StartedAt == nil {
				t.Errorf("status %+v, want %s with %d connections, %d released", st, state, conns, released)
			}
			if code, body := get(aURL+"/readyz", ""); code != ready {
				t.Errorf("readyz %d %s, want %d", code, body, ready)
			}
			if _, body := get(aURL+"/metrics", ""); !strings.Contains(body, fmt.Sprintf("wsfleet_connections{transport=\"websocket\"} %d\n", conns)) {
				t.Errorf("metrics:\n%s\nwant %d connections", body, conns)
			}
		}
		check(nodeapi.StateDraining, 100, 0, 503)
		clk.advance(50 * time.Second)
		check(nodeapi.StateDraining, 50, 50, 503)
		// A second drain request joins the first.
		if err := as.Drain(ctx, aURL, nodeapi.DrainRequest{Window: nodeapi.Dur(0)}); err != nil {
			t.Fatal(err)
		}
		check(nodeapi.StateDraining, 50, 50, 503)
		clk.advance(50 * time.Second)
		check(nodeapi.StateDrained, 0, 100, 503)
		if code, _ := get(aURL+"/healthz", ""); code != 200 {
			t.Errorf("healthz of a drained node: %d", code)
		}
	})

	t.Run("drain paced by max_rate, cut by its deadline", func(t *testing.T) {
		// 40 connections, no window, 2 a second: 10 after 5s; the
		// deadline at 10s closes the other 20.
		start := time.Now()
		if err := bs.Drain(ctx, bURL, nodeapi.DrainRequest{Window: nodeapi.Dur(0), MaxRate: 2, Deadline: nodeapi.Dur(10 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		clk.advance(5 * time.Second)
		if st, err := bs.Status(ctx, bURL); err != nil || st.State != nodeapi.StateDraining || st.Connections != 30 || st.Drain.Released != 10 {
			t.Errorf("after 5s: %+v %v, want 30 connections, 10 released", st, err)
		}
		clk.advance(5 * time.Second)
		if st, err := bs.Status(ctx, bURL); err != nil || st.State != nodeapi.StateDrained || st.Connections != 0 || st.Drain.Released != 40 {
			t.Errorf("at the deadline: %+v %v, want drained", st, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("a 10s drain took %s of real time: the cloud's clock was not used", d)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, body := range []string{`{"window":"1s","bogus":1}`, `{"window":30}`, `{"max_rate":-1}`, `{} {}`} {
			// The admin API is off before anything is read.
			if code, msg := send(http.MethodPost, offURL+nodeapi.PathDrain, "cloud-token", body); code != 403 {
				t.Errorf("drain %s on a node without a token: %d %s", body, code, msg)
			}
			err := bs.Drain(ctx, strings.Replace(bURL, b, a, 1), nodeapi.DrainRequest{})
			if err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("drain with another node's token: %v", err)
			}
			if code, msg := send(http.MethodPost, aURL+nodeapi.PathDrain, "user-data-token", body); code != 400 {
				t.Errorf("drain %s: %d %s, want 400", body, code, msg)
			}
		}
		if code, _ := get(aURL+nodeapi.PathDrain, "user-data-token"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET drain: %d, want 405", code)
		}
		if code, _ := send(http.MethodPost, aURL+"/admin/shed", "user-data-token", "{}"); code != http.StatusNotFound {
			t.Errorf("an admin request the node does not know: %d, want 404", code)
		}
		if _, body := get(aURL+"/metrics", ""); !strings.Contains(body, `wsfleet_errors_total{code="400"} 4`) {
			t.Errorf("the refused drains are not counted:\n%s", body)
		}
	})

	t.Run("errors for a metric gate", func(t *testing.T) {
		if _, body := get(bURL+"/metrics", ""); !strings.Contains(body, `wsfleet_errors_total{code="500"} 0`+"\n") {
			t.Errorf("metrics:\n%s", body)
		}
		if err := c.AddSimulatedErrors(b, "500", 3); err != nil {
			t.Fatal(err)
		}
		if _, body := get(bURL+"/metrics", ""); !strings.Contains(body, `wsfleet_errors_total{code="500"} 3`+"\n") {
			t.Errorf("metrics after 3 errors:\n%s", body)
		}
	})

	t.Run("terminated", func(t *testing.T) {
		if _, err := cl.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{a}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "node gone", func() error {
			if code, body := get(aURL+nodeapi.PathStatus, "user-data-token"); code != http.StatusServiceUnavailable {
				return fmt.Errorf("status of a terminated instance: %d %s", code, body)
			}
			return nil
		})
	})
}

// TestSimulatedTargetHealth checks that a simulated instance's target
// follows its node's readiness, as a process node's does: healthy once it
// runs, unhealthy (ResponseCodeMismatch on /readyz) once it drains.
func TestSimulatedTargetHealth(t *testing.T) {
	ctx := context.Background()
	cfg := fastConfig()
	cfg.SimulatedAdminToken = "tok"
	c, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "simhealth", "ami-sim", 2)
	// What a rollout does first, so that the drained node is not replaced.
	if _, err := cl.ASG.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String("simhealth"), ScalingProcesses: []string{"ReplaceUnhealthy"}}); err != nil {
		t.Fatal(err)
	}
	g := inService(t, ctx, cl, "simhealth", 2, 10*time.Second)
	drained := aws.ToString(g.Instances[0].InstanceId)
	other := aws.ToString(g.Instances[1].InstanceId)
	health := func() map[string]string {
		out, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.tgARN)})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, d := range out.TargetHealthDescriptions {
			m[aws.ToString(d.Target.Id)] = string(d.TargetHealth.State) + " " + string(d.TargetHealth.Reason)
		}
		return m
	}
	if h := health(); h[drained] != "healthy " || h[other] != "healthy " {
		t.Fatalf("in service: %v", h)
	}
	cli := &nodeapi.Client{Token: "tok"}
	if err := cli.Drain(ctx, c.simURL(drained), nodeapi.DrainRequest{Window: nodeapi.Dur(time.Hour), Deadline: nodeapi.Dur(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "drained target unhealthy", func() error {
		if h := health(); h[drained] != "unhealthy Target.ResponseCodeMismatch" || h[other] != "healthy " {
			return fmt.Errorf("%v", h)
		}
		return nil
	})
}

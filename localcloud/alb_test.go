package localcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	"github.com/coder/websocket"
)

// What the connection placement of a rollout (docs/rollout.md,
// "Connection placement") needs of the load balancer, as AWS documents an
// ALB: an unhealthy target gets no new connections while one target is
// healthy; with none healthy the group fails open; a cordon takes
// UnhealthyThresholdCount checks HealthCheckIntervalSeconds apart; the
// settings are bounded as AWS bounds them; every routing algorithm AWS
// names is accepted.

// routingCloud is a cloud with one target group of len(states) targets in
// the given states, on running instances 10.0.0.1, 10.0.0.2…, and a
// listener forwarding to it, for pickTarget alone.
func routingCloud(states []string, attrs map[string]string) (*Cloud, *listener) {
	tg := &targetGroup{arn: "tg", port: 8080, attrs: attrs, targets: map[string]*target{}}
	c := &Cloud{targetGrps: map[string]*targetGroup{"tg": tg}, instances: map[string]*instance{}}
	t0 := time.Unix(0, 0)
	for i, st := range states {
		id := fmt.Sprintf("i-%d", i+1)
		c.instances[id] = &instance{id: id, ip: fmt.Sprintf("10.0.0.%d", i+1), state: stateRunning}
		tg.targets[id+":8080"] = &target{id: id, port: 8080, state: st, registered: t0.Add(time.Duration(i) * time.Second)}
	}
	return c, &listener{tgARN: "tg"}
}

func TestTargetRouting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		states []string
		algo   string
		want   []int // how many of 12 new connections each target gets
	}{
		{"new connections go to healthy targets only", []string{"healthy", "unhealthy", "healthy"}, "", []int{6, 0, 6}},
		{"an unhealthy (cordoned) target gets none while one is healthy", []string{"unhealthy", "unhealthy", "healthy"}, "", []int{0, 0, 12}},
		{"fail open: every target unhealthy gets its share", []string{"unhealthy", "unhealthy", "unhealthy"}, "", []int{4, 4, 4}},
		{"fail open never reaches a draining target", []string{"unhealthy", "draining", "unhealthy"}, "", []int{6, 0, 6}},
		{"a draining target gets none", []string{"draining", "healthy", "healthy"}, "", []int{0, 6, 6}},
		{"targets still in initial checks wait while one is healthy", []string{"initial", "healthy", "initial"}, "", []int{0, 12, 0}},
		{"none but draining targets: no target", []string{"draining", "draining"}, "", []int{0, 0}},
		{"round_robin", []string{"healthy", "healthy", "healthy"}, "round_robin", []int{4, 4, 4}},
		{"least_outstanding_requests routes round robin here", []string{"healthy", "healthy", "healthy"}, "least_outstanding_requests", []int{4, 4, 4}},
		{"weighted_random routes round robin here", []string{"healthy", "unhealthy", "healthy"}, "weighted_random", []int{6, 0, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := map[string]string{}
			if tc.algo != "" {
				attrs["load_balancing.algorithm.type"] = tc.algo
			}
			c, l := routingCloud(tc.states, attrs)
			got := make([]int, len(tc.states))
			for range 12 {
				addr := c.pickTarget(l)
				if addr == "" {
					continue
				}
				host, _, _ := net.SplitHostPort(addr)
				n, _ := strconv.Atoi(strings.TrimPrefix(host, "10.0.0."))
				got[n-1]++
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets %v got %v of 12 new connections, want %v", tc.states, got, tc.want)
			}
		})
	}
}

// TestTargetHealthChecks drives the checks of one target through the
// cloud's own scheduling (dueChecks) and counting (recordCheck), on a
// made-up clock: when a check is due, and the state after it.
func TestTargetHealthChecks(t *testing.T) {
	type step struct {
		at    time.Duration // since the first check
		pass  bool          // the check's result, when one is due
		due   bool
		state string // the target's state after the step
	}
	for _, tc := range []struct {
		name                 string
		interval             int // HealthCheckIntervalSeconds
		healthyN, unhealthyN int
		override             time.Duration // Config.HealthCheckInterval
		start                string
		steps                []step
	}{
		{"a cordon takes UnhealthyThresholdCount checks an interval apart", 10, 5, 3, 0, "healthy", []step{
			{0, false, true, "healthy"},
			{5 * time.Second, false, false, "healthy"},
			{10 * time.Second, false, true, "healthy"},
			{19 * time.Second, false, false, "healthy"},
			{20 * time.Second, false, true, "unhealthy"},
		}},
		{"an uncordon takes HealthyThresholdCount checks", 5, 3, 2, 0, "unhealthy", []step{
			{0, true, true, "unhealthy"},
			{5 * time.Second, true, true, "unhealthy"},
			{10 * time.Second, true, true, "healthy"},
		}},
		{"a passed check restarts the count of failures", 5, 2, 2, 0, "healthy", []step{
			{0, false, true, "healthy"},
			{5 * time.Second, true, true, "healthy"},
			{10 * time.Second, false, true, "healthy"},
			{15 * time.Second, false, true, "unhealthy"},
		}},
		{"the largest interval and thresholds", 300, 10, 10, 0, "healthy", []step{
			{0, false, true, "healthy"},
			{299 * time.Second, false, false, "healthy"},
			{300 * time.Second, false, true, "healthy"},
		}},
		{"Config.HealthCheckInterval replaces the interval", 30, 2, 2, 20 * time.Millisecond, "healthy", []step{
			{0, false, true, "healthy"},
			{10 * time.Millisecond, false, false, "healthy"},
			{20 * time.Millisecond, false, true, "unhealthy"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := routingCloud([]string{tc.start}, map[string]string{})
			c.cfg.HealthCheckInterval = tc.override
			tg := c.targetGrps["tg"]
			tg.hcEnabled, tg.hcPath, tg.hcPort, tg.matcher = true, "/readyz", "traffic-port", "200"
			tg.hcInterval, tg.hcTimeout, tg.healthyN, tg.unhealthyN = tc.interval, 2, tc.healthyN, tc.unhealthyN
			tgt := tg.targets["i-1:8080"]
			t0 := time.Unix(1000, 0)
			tgt.nextCheck = t0
			for _, s := range tc.steps {
				c.mu.Lock()
				jobs := c.dueChecks(t0.Add(s.at))
				c.mu.Unlock()
				if (len(jobs) == 1) != s.due {
					t.Fatalf("at %v: %d checks due, want due=%v", s.at, len(jobs), s.due)
				}
				if s.due {
					if jobs[0].url != "http://10.0.0.1:8080/readyz" {
						t.Fatalf("check of %s", jobs[0].url)
					}
					code, reason := 200, ""
					if !s.pass {
						code, reason = 503, "Target.ResponseCodeMismatch"
					}
					c.recordCheck(tg, tgt, s.pass, reason, code)
				}
				if tgt.state != s.state {
					t.Fatalf("at %v: state %s, want %s", s.at, tgt.state, s.state)
				}
			}
		})
	}
}

// TestHealthCheckSettings pins the bounds of the health check settings
// (CreateTargetGroup, ModifyTargetGroup) and the values of the routing
// algorithm attribute, each as ELBv2 answers them.
func TestHealthCheckSettings(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	out, err := cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name: aws.String("hc"), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080), VpcId: aws.String("vpc-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	arn := out.TargetGroups[0].TargetGroupArn
	describe := func() elbtypes.TargetGroup {
		t.Helper()
		d, err := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{TargetGroupArns: []string{aws.ToString(arn)}})
		if err != nil {
			t.Fatal(err)
		}
		return d.TargetGroups[0]
	}
	// AWS's defaults for an HTTP target group.
	if g := describe(); aws.ToInt32(g.HealthCheckIntervalSeconds) != 30 || aws.ToInt32(g.HealthCheckTimeoutSeconds) != 5 ||
		aws.ToInt32(g.HealthyThresholdCount) != 5 || aws.ToInt32(g.UnhealthyThresholdCount) != 2 {
		t.Fatalf("defaults: interval %d timeout %d healthy %d unhealthy %d", aws.ToInt32(g.HealthCheckIntervalSeconds),
			aws.ToInt32(g.HealthCheckTimeoutSeconds), aws.ToInt32(g.HealthyThresholdCount), aws.ToInt32(g.UnhealthyThresholdCount))
	}
	type hc struct{ interval, timeout, healthy, unhealthy int32 }
	i32 := func(v int32) *int32 {
		if v == 0 {
			return nil
		}
		return aws.Int32(v)
	}
	for i, tc := range []struct {
		name string
		set  hc
		err  string // the error's message; "" for none
		want hc     // the settings DescribeTargetGroups reports after
	}{
		{"the fastest cordon AWS allows", hc{5, 2, 2, 2}, "", hc{5, 2, 2, 2}},
		{"the slowest", hc{300, 120, 10, 10}, "", hc{300, 120, 10, 10}},
		{"interval below 5", hc{4, 2, 0, 0}, "1 validation error detected: Value '4' at 'healthCheckIntervalSeconds' failed to satisfy constraint: Member must have value greater than or equal to 5", hc{300, 120, 10, 10}},
		{"interval above 300", hc{301, 0, 0, 0}, "1 validation error detected: Value '301' at 'healthCheckIntervalSeconds' failed to satisfy constraint: Member must have value less than or equal to 300", hc{300, 120, 10, 10}},
		{"unhealthy threshold below 2", hc{10, 5, 0, 1}, "1 validation error detected: Value '1' at 'unhealthyThresholdCount' failed to satisfy constraint: Member must have value greater than or equal to 2", hc{300, 120, 10, 10}},
		{"unhealthy threshold above 10", hc{10, 5, 0, 11}, "1 validation error detected: Value '11' at 'unhealthyThresholdCount' failed to satisfy constraint: Member must have value less than or equal to 10", hc{300, 120, 10, 10}},
		{"healthy threshold above 10", hc{10, 5, 11, 0}, "1 validation error detected: Value '11' at 'healthyThresholdCount' failed to satisfy constraint: Member must have value less than or equal to 10", hc{300, 120, 10, 10}},
		{"timeout not below the interval", hc{10, 10, 0, 0}, "Health check timeout must be smaller than the interval", hc{300, 120, 10, 10}},
		{"a partial change keeps the rest", hc{10, 5, 0, 3}, "", hc{10, 5, 10, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &elb.ModifyTargetGroupInput{TargetGroupArn: arn, HealthCheckIntervalSeconds: i32(tc.set.interval),
				HealthCheckTimeoutSeconds: i32(tc.set.timeout), HealthyThresholdCount: i32(tc.set.healthy), UnhealthyThresholdCount: i32(tc.set.unhealthy)}
			_, err := cl.ELB.ModifyTargetGroup(ctx, in)
			checkValidation(t, "ModifyTargetGroup", err, tc.err)
			g := describe()
			if got := (hc{aws.ToInt32(g.HealthCheckIntervalSeconds), aws.ToInt32(g.HealthCheckTimeoutSeconds),
				aws.ToInt32(g.HealthyThresholdCount), aws.ToInt32(g.UnhealthyThresholdCount)}); got != tc.want {
				t.Errorf("after ModifyTargetGroup: %+v, want %+v", got, tc.want)
			}
			// CreateTargetGroup takes the same settings with the same bounds.
			_, err = cl.ELB.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
				Name: aws.String(fmt.Sprintf("hc-%d", i)), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080),
				HealthCheckIntervalSeconds: i32(tc.set.interval), HealthCheckTimeoutSeconds: i32(tc.set.timeout),
				HealthyThresholdCount: i32(tc.set.healthy), UnhealthyThresholdCount: i32(tc.set.unhealthy),
			})
			checkValidation(t, "CreateTargetGroup", err, tc.err)
		})
	}

	for _, tc := range []struct {
		key, value, err string
	}{
		{"load_balancing.algorithm.type", "round_robin", ""},
		{"load_balancing.algorithm.type", "least_outstanding_requests", ""},
		{"load_balancing.algorithm.type", "weighted_random", ""},
		{"load_balancing.algorithm.anomaly_mitigation", "on", ""},
		{"load_balancing.algorithm.type", "round_robin", "Anomaly mitigation can be turned on only with the weighted_random load balancing algorithm"},
		{"load_balancing.algorithm.anomaly_mitigation", "off", ""},
		{"load_balancing.algorithm.type", "round_robin", ""},
		{"load_balancing.algorithm.type", "least_connections", "Target group attribute 'load_balancing.algorithm.type' must be one of round_robin, least_outstanding_requests, weighted_random"},
		{"load_balancing.algorithm.anomaly_mitigation", "maybe", "Target group attribute 'load_balancing.algorithm.anomaly_mitigation' must be on or off"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			before, err := cl.ELB.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: arn})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.ELB.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: arn,
				Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String(tc.key), Value: aws.String(tc.value)}}})
			checkValidation(t, "ModifyTargetGroupAttributes", err, tc.err)
			after, err := cl.ELB.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: arn})
			if err != nil {
				t.Fatal(err)
			}
			want := attrValue(before.Attributes, tc.key)
			if tc.err == "" {
				want = tc.value
			}
			if got := attrValue(after.Attributes, tc.key); got != want {
				t.Errorf("%s reads %q, want %q", tc.key, got, want)
			}
		})
	}
}

func attrValue(attrs []elbtypes.TargetGroupAttribute, key string) string {
	for _, a := range attrs {
		if aws.ToString(a.Key) == key {
			return aws.ToString(a.Value)
		}
	}
	return ""
}

// checkValidation fails t unless err is ELBv2's ValidationError with the
// message want, or nil when want is "".
func checkValidation(t *testing.T, action string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s: %v", action, err)
		}
		return
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" || ae.ErrorMessage() != want {
		t.Errorf("%s: %v, want ValidationError %q", action, err, want)
	}
}

// checkEvery is the health check interval of the process-node tests
// below: long enough that a check's timeout (the smaller of the group's
// and the interval) is not missed by a node on a loaded machine, which
// would turn a healthy target unhealthy and have it replaced.
const checkEvery = 250 * time.Millisecond

// nodePost posts to a test node (TestMain's) on its private IP: /drain
// makes its /readyz answer 503, as a cordoned wsfleet node's does; /ready
// undoes it.
func nodePost(t *testing.T, ctx context.Context, cl Clients, id, path string) {
	t.Helper()
	out, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	ip := aws.ToString(out.Reservations[0].Instances[0].PrivateIpAddress)
	resp, err := http.Post("http://"+net.JoinHostPort(ip, "8080")+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// targetStates reads DescribeTargetHealth: state, reason and description
// by instance.
func targetStates(ctx context.Context, cl Clients, tgARN string) (map[string]elbtypes.TargetHealth, error) {
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(tgARN)})
	if err != nil {
		return nil, err
	}
	out := map[string]elbtypes.TargetHealth{}
	for _, d := range th.TargetHealthDescriptions {
		out[aws.ToString(d.Target.Id)] = *d.TargetHealth
	}
	return out, nil
}

// TestCordonedTargetKeepsWebsockets runs two process nodes behind a
// listener with a websocket open to each, and cordons and uncordons them
// (their /readyz answers 503, then 200 again): an unhealthy target keeps
// its open websockets and gets no new connection while the other is
// healthy; with both unhealthy the listener fails open; DescribeTargetHealth
// gives the reason and the code.
func TestCordonedTargetKeepsWebsockets(t *testing.T) {
	if testing.Short() {
		t.Skip("runs instance processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := nodeConfig()
	cfg.HealthCheckInterval = checkEvery
	c, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "cordon", "ami-node", 2)
	// As the rollout does before it cordons anything: a cordoned node is
	// unhealthy on purpose and must not be replaced.
	suspend(t, ctx, cl, "cordon", "ReplaceUnhealthy")
	forwardListener(t, ctx, cl, f)
	g := inService(t, ctx, cl, "cordon", 2, 30*time.Second)
	ids := []string{aws.ToString(g.Instances[0].InstanceId), aws.ToString(g.Instances[1].InstanceId)}
	lb := c.LoadBalancerURL("cordon")
	who := func() string {
		t.Helper()
		resp, err := http.Get(lb + "/who")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /who through the load balancer: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	// One websocket to each node.
	ws := map[string]*websocket.Conn{}
	for i := 0; len(ws) < 2; i++ {
		if i == 10 {
			t.Fatalf("10 websockets reached %d nodes", len(ws))
		}
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, b, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ws[string(b)] != nil {
			conn.CloseNow()
			continue
		}
		ws[string(b)] = conn
		defer conn.CloseNow()
	}
	echo := func(id string) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := ws[id].Write(rctx, websocket.MessageText, []byte("ping")); err != nil {
			return err
		}
		_, b, err := ws[id].Read(rctx)
		if err == nil && string(b) != "ping" {
			err = fmt.Errorf("echo %q", b)
		}
		return err
	}

	cordoned := map[string]bool{}
	for _, step := range []struct {
		name     string
		cordoned []int // which nodes are cordoned in this step
		reach    []int // which nodes new connections reach
	}{
		{"both ready", nil, []int{0, 1}},
		{"first cordoned: no new connections, its websocket kept", []int{0}, []int{1}},
		{"both cordoned: fail open", []int{0, 1}, []int{0, 1}},
		{"first uncordoned", []int{1}, []int{0}},
	} {
		t.Run(step.name, func(t *testing.T) {
			want := map[string]bool{}
			for _, i := range step.cordoned {
				want[ids[i]] = true
			}
			for _, id := range ids {
				switch {
				case want[id] && !cordoned[id]:
					nodePost(t, ctx, cl, id, "/drain")
				case !want[id] && cordoned[id]:
					nodePost(t, ctx, cl, id, "/ready")
				}
				cordoned[id] = want[id]
			}
			eventually(t, 10*time.Second, "target states", func() error {
				th, err := targetStates(ctx, cl, f.tgARN)
				if err != nil {
					return err
				}
				for _, id := range ids {
					h := th[id]
					switch {
					case want[id] && (h.State != elbtypes.TargetHealthStateEnumUnhealthy || h.Reason != elbtypes.TargetHealthReasonEnumResponseCodeMismatch ||
						aws.ToString(h.Description) != "Health checks failed with these codes: [503]"):
						return fmt.Errorf("%s: %s %s %q, want unhealthy Target.ResponseCodeMismatch with [503]", id, h.State, h.Reason, aws.ToString(h.Description))
					case !want[id] && h.State != elbtypes.TargetHealthStateEnumHealthy:
						return fmt.Errorf("%s: %s %s, want healthy", id, h.State, h.Reason)
					}
				}
				return nil
			})
			// Several health checks later, the open websockets still
			// work, and new connections go where the step says.
			time.Sleep(4 * checkEvery)
			reached := map[string]bool{}
			for range 8 {
				reached[who()] = true
			}
			var wantReach []string
			for _, i := range step.reach {
				wantReach = append(wantReach, ids[i])
			}
			if len(reached) != len(wantReach) {
				t.Errorf("new connections reached %v, want %v", reached, wantReach)
			}
			for _, id := range wantReach {
				if !reached[id] {
					t.Errorf("new connections reached %v, want %v", reached, wantReach)
				}
			}
			for _, id := range ids {
				if err := echo(id); err != nil {
					t.Fatalf("websocket to %s (cordoned %v): %v", id, cordoned[id], err)
				}
			}
		})
	}
}

// TestCordonKeptBySuspension is the rollout's use of a cordon in a group
// with health check type ELB: with ReplaceUnhealthy suspended, a cordoned
// node past its grace period is marked Unhealthy and kept; uncordoned, it
// is still Unhealthy (the mark never clears by itself) until
// SetInstanceHealth Healthy, after which resuming ReplaceUnhealthy leaves
// it alone. Setting Healthy while its target is still unhealthy does not
// hold (the next check marks it again), and with HealthCheck suspended it
// is never marked. The grace period (300 s) passes on the injected clock.
func TestCordonKeptBySuspension(t *testing.T) {
	if testing.Short() {
		t.Skip("runs instance processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var clk clock
	cfg := nodeConfig()
	cfg.HealthCheckInterval = checkEvery
	cfg.Now = clk.now
	_, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "keep", "ami-node", 1)
	setGrace(t, ctx, cl, "keep", 300)
	g := inService(t, ctx, cl, "keep", 1, 30*time.Second)
	id := aws.ToString(g.Instances[0].InstanceId)
	target := func(t *testing.T, want elbtypes.TargetHealthStateEnum) {
		t.Helper()
		eventually(t, 10*time.Second, id+" target "+string(want), func() error {
			th, err := targetStates(ctx, cl, f.tgARN)
			if err == nil && th[id].State != want {
				err = fmt.Errorf("%s %s", th[id].State, th[id].Reason)
			}
			return err
		})
	}
	health := func(t *testing.T, want string) {
		t.Helper()
		eventually(t, 10*time.Second, id+" "+want, func() error {
			st, h, err := asgHealth(ctx, cl, id)
			if err == nil && (st != "InService" || h != want) {
				err = fmt.Errorf("%s %s", st, h)
			}
			return err
		})
	}
	// stays checks for three check intervals (50 reconcile ticks) that
	// the instance is InService with health want.
	stays := func(t *testing.T, want string) {
		t.Helper()
		for deadline := time.Now().Add(3 * checkEvery); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
			if st, h, err := asgHealth(ctx, cl, id); err != nil || st != "InService" || h != want {
				t.Fatalf("%s: %s %s %v, want InService %s", id, st, h, err, want)
			}
		}
	}
	setHealthy := func(t *testing.T) {
		t.Helper()
		if _, err := cl.ASG.SetInstanceHealth(ctx, &autoscaling.SetInstanceHealthInput{
			InstanceId: aws.String(id), HealthStatus: aws.String("Healthy"), ShouldRespectGracePeriod: aws.Bool(false),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name                 string
		suspended            []string
		marked               string // the health a cordoned node gets past the grace period
		healthyWhileCordon   bool   // call SetInstanceHealth Healthy before uncordoning
		healthyAfterUncordon bool   // call it after the target is healthy again
	}{
		{"ReplaceUnhealthy suspended: kept, restored by SetInstanceHealth before resuming", []string{"ReplaceUnhealthy"}, "UNHEALTHY", false, true},
		{"SetInstanceHealth Healthy while still cordoned does not hold", []string{"ReplaceUnhealthy"}, "UNHEALTHY", true, true},
		{"HealthCheck suspended too: never marked", []string{"HealthCheck", "ReplaceUnhealthy"}, "HEALTHY", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			suspend(t, ctx, cl, "keep", tc.suspended...)
			nodePost(t, ctx, cl, id, "/drain")
			target(t, elbtypes.TargetHealthStateEnumUnhealthy)
			clk.advance(301 * time.Second)
			health(t, tc.marked)
			stays(t, tc.marked)
			if tc.healthyWhileCordon {
				setHealthy(t)
				// The next failed check marks it again, as on AWS.
				health(t, "UNHEALTHY")
			}
			nodePost(t, ctx, cl, id, "/ready")
			target(t, elbtypes.TargetHealthStateEnumHealthy)
			// A healthy target does not clear the mark by itself.
			stays(t, tc.marked)
			if tc.healthyAfterUncordon {
				setHealthy(t)
			}
			resume(t, ctx, cl, "keep", tc.suspended...)
			stays(t, "HEALTHY")
			if g, err := describeGroup(ctx, cl, "keep"); err != nil || len(g.Instances) != 1 || aws.ToString(g.Instances[0].InstanceId) != id {
				t.Fatalf("group after resuming: %+v %v", g.Instances, err)
			}
		})
	}
}

package localcloud

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/coder/websocket"
)

// TestMain doubles as a minimal node: when the local cloud runs this test
// binary as an instance (LOCALCLOUD_TEST_NODE=1), it serves /readyz (failing after POST
// /drain, passing again after POST /ready), /who and a websocket echo on its private IP, found through its own IMDS, so
// that the load balancer is tested against real processes without
// depending on the ws node's package.
func TestMain(m *testing.M) {
	if os.Getenv("LOCALCLOUD_TEST_NODE") == "1" {
		os.Exit(runTestNode())
	}
	if os.Getenv("LOCALCLOUD_TEST_LB_NODE") == "1" {
		// A load balancer node (Config.LBNodes), as `wsfleet cloud lb-node`.
		if err := RunLBNode(context.Background(), os.Stdin, os.Stdout, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	suite.Main(m)
}

// nodeConfig is fastConfig with image ami-node: instances that run this
// test binary as a node (TestMain).
func nodeConfig() Config {
	cfg := fastConfig()
	cfg.Images = map[string]Image{"ami-node": {Command: os.Args[0]}}
	cfg.Env = []string{"LOCALCLOUD_TEST_NODE=1"}
	return cfg
}

// setGrace sets a group's health check grace period.
func setGrace(t *testing.T, ctx context.Context, cl Clients, group string, seconds int32) {
	t.Helper()
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group), HealthCheckGracePeriod: aws.Int32(seconds),
	}); err != nil {
		t.Fatal(err)
	}
}

func runTestNode() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	md := imds.New(imds.Options{})
	read := func(p string) string {
		out, err := md.GetMetadata(ctx, &imds.GetMetadataInput{Path: p})
		if err != nil {
			fmt.Fprintln(os.Stderr, "imds:", err)
			os.Exit(3)
		}
		b, _ := io.ReadAll(out.Content)
		return string(b)
	}
	id, ip := read("instance-id"), read("local-ipv4")
	mux := http.NewServeMux()
	// POST /drain makes the node fail /readyz from then on, as a wsfleet
	// node does while it drains.
	var draining atomic.Bool
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) { draining.Store(true) })
	// POST /ready undoes it, as uncordoning a wsfleet node does.
	mux.HandleFunc("POST /ready", func(w http.ResponseWriter, r *http.Request) { draining.Store(false) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id) })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte(id))
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, b)
		}
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "8080"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 3
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	<-ctx.Done()
	srv.Close()
	return 0
}

// TestLoadBalancerWebsocketAndDeregistration runs two process instances
// behind a listener: HTTP and websocket traffic reaches both; a
// deregistered target gets no new requests while its open websocket keeps
// working until the deregistration delay ends, when it is cut. The same
// holds with the listener in the cloud's process and with it run as two
// load balancer node processes (Config.LBNodes), through every node.
func TestLoadBalancerWebsocketAndDeregistration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs instance processes")
	}
	for _, nodes := range []int{0, 2} {
		t.Run(fmt.Sprintf("lb nodes %d", nodes), func(t *testing.T) { testWebsocketAndDeregistration(t, nodes) })
	}
}

func testWebsocketAndDeregistration(t *testing.T, lbNodes int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := nodeConfig()
	cfg.DeregistrationDelayMax = 0
	cfg.LBNodes = lbNodes
	cfg.LBNodeCommand = []string{os.Args[0]}
	cfg.LBNodeEnv = []string{"LOCALCLOUD_TEST_LB_NODE=1"}
	var proxiedMu sync.Mutex
	var upgrades []string // the targets of the 101s the nodes passed on
	cfg.OnProxied = func(at time.Time, target string, req *http.Request, status int) {
		if time.Since(at) > time.Minute || at.After(time.Now()) {
			t.Errorf("OnProxied at %v, want the moment the node saw it", at)
		}
		if status == http.StatusSwitchingProtocols && req.URL.Path == "/ws" && req.URL.Query().Get("c") == "1" {
			proxiedMu.Lock()
			upgrades = append(upgrades, target)
			proxiedMu.Unlock()
		}
	}
	c, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "echo", "ami-node", 2)
	if _, err := cl.ELB.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: aws.String(f.tgARN),
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("1")}},
	}); err != nil {
		t.Fatal(err)
	}
	forwardListener(t, ctx, cl, f)
	g := inService(t, ctx, cl, "echo", 2, 30*time.Second)
	lbs := c.LoadBalancerURLs("echo")
	if len(lbs) != max(1, lbNodes) || lbs[0] != c.LoadBalancerURL("echo") {
		t.Fatalf("load balancer URLs %v, want %d, the first LoadBalancerURL", lbs, max(1, lbNodes))
	}
	asked := 0
	who := func() string {
		lb := lbs[asked%len(lbs)]
		asked++
		resp, err := http.Get(lb + "/who")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /who through the load balancer: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		seen[who()] = true
	}
	if len(seen) != 2 {
		t.Fatalf("round robin reached %v, want both instances", seen)
	}

	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(lbs[len(lbs)-1], "http")+"/ws?c=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pinned := string(b)
	// A node process reports what it passed on over its pipe: give it a
	// moment.
	for wait := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		proxiedMu.Lock()
		n := len(upgrades)
		proxiedMu.Unlock()
		if n > 0 || time.Now().After(wait) {
			break
		}
	}
	proxiedMu.Lock()
	if len(upgrades) != 1 || !strings.HasPrefix(upgrades[0], "127.0.1.") {
		t.Errorf("OnProxied heard the websocket's 101 from %v, want once from an instance", upgrades)
	}
	proxiedMu.Unlock()
	var other string
	for _, in := range g.Instances {
		if id := aws.ToString(in.InstanceId); id != pinned {
			other = id
		}
	}
	if _, err := cl.ELB.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{
		TargetGroupArn: aws.String(f.tgARN), Targets: []elbtypes.TargetDescription{{Id: aws.String(pinned)}},
	}); err != nil {
		t.Fatal(err)
	}
	deregistered := time.Now()
	for i := 0; i < 6; i++ {
		if got := who(); got != other {
			t.Fatalf("request after deregistration went to %s", got)
		}
	}
	echo := func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := ws.Write(rctx, websocket.MessageText, []byte("ping")); err != nil {
			return err
		}
		_, b, err := ws.Read(rctx)
		if err == nil && string(b) != "ping" {
			err = fmt.Errorf("echo %q", b)
		}
		return err
	}
	if err := echo(); err != nil {
		t.Fatalf("open websocket during the deregistration delay: %v", err)
	}
	th, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{
		TargetGroupArn: aws.String(f.tgARN), Targets: []elbtypes.TargetDescription{{Id: aws.String(pinned)}},
	})
	if err != nil || len(th.TargetHealthDescriptions) != 1 {
		t.Fatalf("target health while draining: %+v %v", th, err)
	}
	// ELBv2 reports a deregistered target during its delay as draining,
	// with reason Target.DeregistrationInProgress.
	if h := th.TargetHealthDescriptions[0].TargetHealth; h.State != elbtypes.TargetHealthStateEnumDraining ||
		h.Reason != elbtypes.TargetHealthReasonEnumDeregistrationInProgress || aws.ToString(h.Description) != "Target deregistration is in progress" {
		t.Fatalf("target health while draining: %s %s %q", h.State, h.Reason, aws.ToString(h.Description))
	}
	for i := 0; i < 6; i++ {
		if got := who(); got != other {
			t.Fatalf("request during the deregistration delay went to the draining %s", got)
		}
	}
	// The delay ends: the websocket is cut.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	_, _, err = ws.Read(rctx)
	if err == nil || rctx.Err() != nil {
		t.Fatalf("websocket after the deregistration delay: read %v (ctx %v), want a cut connection", err, rctx.Err())
	}
	if d := time.Since(deregistered); d < 900*time.Millisecond {
		t.Fatalf("websocket cut after %v, before the 1s deregistration delay", d)
	}
	// With health check type ELB the group keeps the deregistered instance
	// (it is not unhealthy); SetDesiredCapacity still works on it.
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("echo"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	inService(t, ctx, cl, "echo", 1, 20*time.Second)
}

package localcloud

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/coder/websocket"

	"wsfleet/internal/nodetest"
)

// TestLoadBalancerOnProxied: Config.OnProxied hears each target response
// the listener passes on, with the target's address, the request as sent
// (its query intact) and the status, a websocket's 101 included.
func TestLoadBalancerOnProxied(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an instance process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type seen struct {
		target, path, query string
		status              int
	}
	var mu sync.Mutex
	var got []seen
	cfg := fastConfig()
	cfg.Images = map[string]Image{"ami-node": {Command: os.Args[0]}}
	cfg.Env = []string{"LOCALCLOUD_TEST_NODE=1"}
	cfg.OnProxied = func(_ time.Time, target string, req *http.Request, status int) {
		mu.Lock()
		got = append(got, seen{target, req.URL.Path, req.URL.RawQuery, status})
		mu.Unlock()
	}
	c, cl := startCloud(t, cfg)
	f := makeFleet(t, ctx, cl, "hook", "ami-node", 1)
	forwardListener(t, ctx, cl, f)
	inService(t, ctx, cl, "hook", 1, 30*time.Second)
	lb := c.LoadBalancerURL("hook")
	resp, err := http.Get(lb + "/who")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws?demo_client=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.CloseNow()

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("OnProxied heard %+v, want the GET and the websocket", got)
	}
	host, p, err := net.SplitHostPort(got[0].target)
	if err != nil || !strings.HasPrefix(host, "127.0.1.") || p != "8080" || got[1].target != got[0].target {
		t.Errorf("targets %q and %q, want the instance's private address, port 8080, twice", got[0].target, got[1].target)
	}
	if got[0].path != "/who" || got[0].status != http.StatusOK {
		t.Errorf("first response: %+v, want GET /who 200", got[0])
	}
	if got[1].path != "/ws" || got[1].query != "demo_client=7" || got[1].status != http.StatusSwitchingProtocols {
		t.Errorf("second response: %+v, want /ws?demo_client=7 101", got[1])
	}
}

// forwardListener adds an HTTP listener on a free port to the fleet's load
// balancer, forwarding to its target group.
func forwardListener(t *testing.T, ctx context.Context, cl Clients, f fleet) {
	t.Helper()
	port := nodetest.FreePort(t)
	if _, err := cl.ELB.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: aws.String(f.lbARN), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(int32(port)),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(f.tgARN)}},
	}); err != nil {
		t.Fatal(err)
	}
}

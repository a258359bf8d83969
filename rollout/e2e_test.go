package rollout_test

// End to end on the local cloud: the wsfleet binary runs the cloud (8 real
// ws nodes clustered over an embedded NATS, behind its load balancer) and
// the rollout engines as separate processes, so that an engine can be
// killed with SIGKILL and resumed. Timings are the seed's, run with
// --time-scale 0.05.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"wsfleet/internal/nodetest"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

const adminToken = "local-admin-token" // the seed topology's

type e2e struct {
	dir      string
	bin      string
	api      string // AWS endpoint
	lb       string // load balancer URL
	stateDir string
	cloud    *exec.Cmd
	// env is added to the environment of the wsfleet commands the test
	// runs (engine, plan): what a serial test would set with t.Setenv,
	// which a parallel one cannot.
	env []string
}

// freePort picks a free loopback port below Linux's ephemeral range, so
// that no outgoing connection of the tests running beside this one (the
// end-to-end tests run in parallel) takes it before the cloud binds it.
func freePort(t *testing.T) int { return nodetest.FreePort(t) }

// The end-to-end tests run in parallel (t.Parallel), each on a local cloud
// of its own: an instance leases its loopback IP by binding the metadata
// port on it (localcloud.allocIP), so two clouds never share an address,
// and every other port is picked free. They mostly wait (bakes, drains,
// health checks), so running them side by side shortens the package's
// run to about its longest test. Two things bound it:
//
//   - e2eMu: the canary test runs alone among them, and last (parallelAlone;
//     the others take parallelShared). Its verdicts ride on timing (the
//     canary's delivery latency against the other nodes', Prometheus
//     scraping the canary 8 times in 10 s within its bake), and a machine
//     kept busy by other clouds' nodes and in-process fleets bends them:
//     two runs of this package at load 15 and 30 rolled the good image
//     back on latency (before its check was made relative to the fleet's
//     median), with the tests one after another as with them in
//     parallel. Last, because under `make test` the other packages' tests
//     are then mostly done, as they were when it ran in its place in a
//     serial suite.
//   - cloudSlots: at most two clouds of real `wsfleet serve` nodes
//     (launchCloud: 8 nodes each, and the cloud process) at once.
//
// The simulated-fleet tests with a fixed budget for their whole run
// (TestSimRollout100, TestLaunchConfigurationForms,
// TestLaunchTemplateCurrent) stay serial: beside the others, on a loaded
// machine, two of them overran it.
var (
	e2eMu      sync.RWMutex
	cloudSlots = make(chan struct{}, 2)
)

// parallelShared marks the test parallel, to run beside the other
// end-to-end tests but not the canary's. It takes its share of e2eMu
// before t.Parallel, while the tests still start one after another, so
// that every such test holds it before the canary test (which waits for
// all of them to end) asks for it.
func parallelShared(t *testing.T) {
	e2eMu.RLock()
	t.Cleanup(e2eMu.RUnlock)
	t.Parallel()
}

// parallelAlone marks the test parallel, and waits until no other
// end-to-end test runs; they wait until it ends.
func parallelAlone(t *testing.T) {
	t.Parallel()
	e2eMu.Lock()
	t.Cleanup(e2eMu.Unlock)
}

// holdCloudSlot waits for a cloud slot and gives it back when the test
// ends, after its cloud has stopped (cleanups run last-in first-out, so
// it is registered before the cloud's).
func holdCloudSlot(t *testing.T) {
	cloudSlots <- struct{}{}
	t.Cleanup(func() { <-cloudSlots })
}

// startCloud builds wsfleet and runs `wsfleet cloud` with the seed
// topology on free ports, and extra flags (the faults' flags) if given.
func startCloud(t *testing.T, extra ...string) *e2e {
	e := launchCloud(t, nil, extra...)
	e.waitFleet(t, "ami-old", 90*time.Second)
	return e
}

// launchCloud is startCloud with the topology edited by edit (when set),
// without waiting for the fleet.
func launchCloud(t *testing.T, edit func(topology string) string, extra ...string) *e2e {
	holdCloudSlot(t)
	dir := t.TempDir()
	e := &e2e{dir: dir, bin: suite.Binary(t), stateDir: filepath.Join(dir, "state")}
	// A node image that never starts: its instances never pass a check.
	bad := filepath.Join(dir, "bad-node")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho broken image >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	topo, err := os.ReadFile("../examples/seed-topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	apiPort, natsPort, lbPort := freePort(t), freePort(t), freePort(t)
	s := strings.Replace(string(topo), "nats://127.0.0.1:4222", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), 1)
	s = strings.Replace(s, "port: 8000", fmt.Sprintf("port: %d", lbPort), 1)
	if edit != nil {
		s = edit(s)
	}
	topoPath := filepath.Join(dir, "topology.yaml")
	os.WriteFile(topoPath, []byte(s), 0o644)
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	e.api = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	e.lb = fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	cmd := exec.Command(e.bin, "cloud", "--listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--image", "ami-old="+e.bin, "--image", "ami-new="+e.bin, "--image", "ami-bad="+bad,
		"--embedded-nats", fmt.Sprintf("127.0.0.1:%d", natsPort), "--bootstrap", topoPath,
		"--log-dir", filepath.Join(dir, "logs"), "--s3-dir", filepath.Join(dir, "s3"), "--log-level", "warn",
		"--health-check-interval", "1s", "--deregistration-delay-max", "30s", "--kill-grace", "5s", "--tick", "100ms")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.cloud = cmd
	// The cloud stops its instances on SIGTERM; whatever is left of its
	// process group after that is killed.
	t.Cleanup(func() { stopGroup(cmd, 20*time.Second) })
	return e
}

// stopGroup sends SIGTERM to cmd, started in a process group of its own,
// waits up to grace for it to exit, and kills what is left of the group.
func stopGroup(cmd *exec.Cmd, grace time.Duration) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

func (e *e2e) provider(t *testing.T) *awsprov.Provider {
	p, err := awsprov.New(context.Background(), awsprov.Config{Region: "us-east-1", Endpoint: e.api, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFleet waits until the group is 8 healthy, ready instances on image,
// named ws-01..ws-08.
func (e *e2e) waitFleet(t *testing.T, image string, d time.Duration) {
	t.Helper()
	p := e.provider(t)
	deadline := time.Now().Add(d)
	for {
		got, err := e.fleet(p)
		want := ""
		for i := 1; i <= 8; i++ {
			want += fmt.Sprintf("ws-%02d:%s:healthy ", i, image)
		}
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet not 8 x %s within %s: %s %v", image, d, got, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// fleet lists the live instances as "name:image:health ", sorted.
func (e *e2e) fleet(p *awsprov.Provider) (string, error) {
	g, err := p.Group(context.Background(), "gitter-ws")
	if err != nil {
		return "", err
	}
	var out []string
	for _, in := range g.Instances {
		if in.Live() {
			out = append(out, fmt.Sprintf("%s:%s:%s ", in.Name, in.Image, in.Health))
		}
	}
	sort.Strings(out)
	if g.Desired != len(out) {
		return strings.Join(out, ""), fmt.Errorf("desired %d, %d live", g.Desired, len(out))
	}
	return strings.Join(out, ""), nil
}

// planHead is the top of the local cloud's plans: change, group, AWS
// endpoint, the seed's timings and nodes.
func (e *e2e) planHead(change string) string {
	return fmt.Sprintf(`change: %s
group: gitter-ws
aws: {region: us-east-1, endpoint: %s}
warm_up: 20s
healthy_timeout: 60s
nodes: {admin_port: 8080, admin_token_env: WSFLEET_ADMIN_TOKEN}
drain: {window: 30s, max_rate: 200, deadline: 30s}
`, change, e.api)
}

// writePlan writes a plan for the local cloud; maxLoss is the chat
// check's max_loss.
func (e *e2e) writePlan(name string, maxLoss int, body string) string {
	path := filepath.Join(e.dir, name+".yaml")
	head := e.planHead(name) + fmt.Sprintf(`checks:
  - {name: site, http: {url: %s/healthz, status: 200}}
  - {name: chat, probe: {clients: 50, rate: 10, max_loss: %d}}
  - {name: errors, metric: {name: wsfleet_errors_total, labels: {code: "500"}, max_increase: 10}}
rollback: {on_failure: auto}
`, e.lb, maxLoss)
	if !strings.Contains(body, "placement:") {
		// These tests hold the fleet's healthy targets and its clients
		// to what they were before connection placement, which cordons
		// (unhealthy targets) and sheds: placement has its own tests.
		head += "placement: off\n"
	}
	if err := os.WriteFile(path, []byte(head+body), 0o644); err != nil {
		panic(err) // a temporary directory of the test's own
	}
	return path
}

// engine runs a wsfleet rollout command as a process.
func (e *e2e) engine(args ...string) *exec.Cmd {
	args = append(args, "--state-dir", e.stateDir, "--time-scale", "0.05", "--poll", "250ms", "--max-poll", "1s", "--json")
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(append(os.Environ(), "WSFLEET_ADMIN_TOKEN="+adminToken), e.env...)
	return cmd
}

// succeededWithoutLoss loads a change and fails the test unless it
// succeeded with every phase's probe delivering and losing nothing.
func (e *e2e) succeededWithoutLoss(t *testing.T, change string) *rollout.State {
	t.Helper()
	st := e.load(t, change)
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("%s: status %s: %s", change, st.Status, st.Failure)
	}
	for _, ph := range st.Phases {
		if ph.Probe == nil || ph.Probe.Lost != 0 || ph.Probe.Delivered == 0 {
			t.Errorf("phase %s probe %+v", ph.Name, ph.Probe)
		}
	}
	return st
}

// resumeOK resumes a change and fails the test unless it succeeds.
func (e *e2e) resumeOK(t *testing.T, change string) *rollout.State {
	t.Helper()
	msg, err := e.engine("resume", "-c", change).CombinedOutput()
	if err != nil {
		t.Fatalf("resume %s: %v\n%s", change, err, tail(string(msg), 30))
	}
	st := e.load(t, change)
	if st.Status != rollout.StatusSucceeded {
		t.Fatalf("%s after resume: status %s: %s", change, st.Status, st.Failure)
	}
	return st
}

// control runs a command that takes no engine flags (pause, abort, status).
func (e *e2e) control(args ...string) *exec.Cmd {
	return exec.Command(e.bin, append(args, "--state-dir", e.stateDir)...)
}

// started kills the engine process at the end of the test if it is still
// running (the test failed before it finished).
func started(t *testing.T, cmd *exec.Cmd) {
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

func (e *e2e) load(t *testing.T, change string) *rollout.State {
	st, err := (&rollout.Store{Dir: e.stateDir}).Load(change)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// terminations counts the group's terminations per instance, from its
// scaling activities: the cloud's own record.
func (e *e2e) terminations(t *testing.T) map[string]int {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("e2e", "e2e", "")}
	cl := autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(e.api) })
	out := map[string]int{}
	pager := autoscaling.NewDescribeScalingActivitiesPaginator(cl, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("gitter-ws")})
	for pager.HasMorePages() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Activities {
			// A batch's targets are detached, then terminated by EC2
			// (orphans checks that none is left running).
			desc := aws.ToString(a.Description)
			if id, ok := strings.CutPrefix(desc, "Terminating EC2 instance: "); ok {
				out[id]++
			} else if id, ok := strings.CutPrefix(desc, "Detaching EC2 instance: "); ok {
				out[id]++
			}
		}
	}
	return out
}

// apiClients are Auto Scaling and EC2 clients of the local cloud.
func (e *e2e) apiClients() (*autoscaling.Client, *ec2.Client) {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("e2e", "e2e", "")}
	return autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(e.api) }),
		ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(e.api) })
}

// orphans returns the instances launched by the group that are no longer
// in it and still running: a detach whose termination never came.
func (e *e2e) orphans(t *testing.T) []string {
	t.Helper()
	asg, ec := e.apiClients()
	in := map[string]bool{}
	gp := autoscaling.NewDescribeAutoScalingGroupsPaginator(asg, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"gitter-ws"}})
	for gp.HasMorePages() {
		page, err := gp.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.AutoScalingGroups {
			for _, i := range g.Instances {
				in[aws.ToString(i.InstanceId)] = true
			}
		}
	}
	var out []string
	ip := ec2.NewDescribeInstancesPaginator(ec, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:aws:autoscaling:groupName"), Values: []string{"gitter-ws"}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}},
	}})
	for ip.HasMorePages() {
		page, err := ip.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				if id := aws.ToString(i.InstanceId); !in[id] {
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// activities returns the group's scaling activities (description and
// cause), the cloud's own record of what it launched and why.
func (e *e2e) activities(t *testing.T) map[string]string {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("e2e", "e2e", "")}
	cl := autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.BaseEndpoint = aws.String(e.api) })
	out := map[string]string{}
	pager := autoscaling.NewDescribeScalingActivitiesPaginator(cl, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("gitter-ws")})
	for pager.HasMorePages() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Activities {
			out[aws.ToString(a.ActivityId)+" "+aws.ToString(a.Description)] = aws.ToString(a.Cause)
		}
	}
	return out
}

// errorSampler reads every live node's wsfleet_errors_total{code="500"}
// (the "500 Node draining" a client gets when the load balancer routes it
// to a draining node) twice a second while it runs, and returns how much
// the sum over the nodes rose: each node from its first reading (0 for a
// node that started meanwhile) to its last.
func (e *e2e) errorSampler(t *testing.T, ctx context.Context) func() (rise, nodes int) {
	p := e.provider(t)
	first, last := map[string]int{}, map[string]int{}
	initial := map[string]bool{}
	if g, err := p.Group(ctx, "gitter-ws"); err == nil {
		for _, in := range g.Instances {
			initial[in.ID] = true
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			g, err := p.Group(ctx, "gitter-ws")
			if err == nil {
				for _, in := range g.Instances {
					n, ok := node500s(ctx, in.PrivateIP)
					if !ok {
						continue
					}
					if _, seen := first[in.ID]; !seen {
						first[in.ID] = 0
						if initial[in.ID] {
							first[in.ID] = n
						}
					}
					last[in.ID] = max(last[in.ID], n)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		<-done
		rise := 0
		for id, n := range last {
			rise += n - first[id]
		}
		return rise, len(last)
	}
}

// node500s reads a node's count of 500 responses from its /metrics.
func node500s(ctx context.Context, ip string) (int, bool) {
	if ip == "" {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ip+":8080/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "wsfleet_errors_total{") && strings.Contains(line, `code="500"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += int(v)
		}
	}
	return total, true
}

// healthySampler records the fewest healthy targets seen while it runs.
func (e *e2e) healthySampler(t *testing.T, ctx context.Context) func() int {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("e2e", "e2e", "")}
	cl := elb.NewFromConfig(cfg, func(o *elb.Options) { o.BaseEndpoint = aws.String(e.api) })
	tgs, err := cl.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"gitter-ws"}})
	if err != nil || len(tgs.TargetGroups) == 0 {
		t.Fatalf("target group: %v", err)
	}
	arn := tgs.TargetGroups[0].TargetGroupArn
	var mu sync.Mutex
	fewest := 1 << 30
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			out, err := cl.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: arn})
			if err == nil {
				n := 0
				for _, d := range out.TargetHealthDescriptions {
					if d.TargetHealth != nil && d.TargetHealth.State == "healthy" {
						n++
					}
				}
				mu.Lock()
				fewest = min(fewest, n)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return func() int {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return fewest
	}
}

func TestE2ELocalCloud(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cloud with 8 ws nodes")
	}
	parallelShared(t)
	start := time.Now()
	e := startCloud(t)
	t.Logf("cloud with 8 nodes up in %s", time.Since(start).Round(time.Millisecond))

	t.Run("three phases, zero loss, second rollout refused", func(t *testing.T) {
		plan := e.writePlan("e2e-new", 0, `image: ami-new
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest, not_before: "2019-08-21T06:00:00Z"}
`)
		other := e.writePlan("e2e-other", 0, "image: ami-new\nphases:\n  - {name: all, replace: rest}\n")
		ctx, cancel := context.WithCancel(context.Background())
		fewest := e.healthySampler(t, ctx)
		errors500 := e.errorSampler(t, ctx)
		before := e.activities(t)
		terms0 := e.terminations(t)
		cmd := e.engine("rollout", "-f", plan)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started(t, cmd)
		// Once the first holds the lock, a second rollout of the group
		// fails at once, naming it.
		waitEvent(t, filepath.Join(e.stateDir, "e2e-new.events.jsonl"), `"type":"phase"`, 60*time.Second)
		t0 := time.Now()
		second := e.engine("rollout", "-f", other)
		msg, err := second.CombinedOutput()
		if err == nil || !strings.Contains(string(msg), "locked by another rollout: e2e-new@") {
			t.Errorf("second rollout: %v\n%s", err, msg)
		}
		if d := time.Since(t0); d > 30*time.Second {
			t.Errorf("second rollout took %s to be refused", d)
		}
		err = cmd.Wait()
		cancel()
		if err != nil {
			t.Fatalf("rollout: %v\n%s\n%s", err, tail(out.String(), 30), tail(errOut.String(), 20))
		}
		st := e.succeededWithoutLoss(t, "e2e-new")
		e.waitFleet(t, "ami-new", 30*time.Second)
		if n := fewest(); n < 8 {
			t.Errorf("healthy targets fell to %d during the rollout (launch-before-terminate keeps 8)", n)
		}
		// The group launched the canary and the eight replacements the
		// engine asked for, and nothing of its own: the draining nodes
		// (marked unhealthy) were not replaced, so there was no surplus
		// to hand back.
		launched := 0
		for a, cause := range e.activities(t) {
			if _, old := before[a]; old {
				continue
			}
			if strings.Contains(a, "Launching") {
				launched++
			}
			if strings.Contains(strings.ToLower(cause), "health") {
				t.Errorf("the group acted on health during the change: %s: %s", a, cause)
			}
		}
		if launched != 9 {
			t.Errorf("the group launched %d instances during the change, want 9 (canary and 8 replacements)", launched)
		}
		// Terminations as the group's activities record them (a batch's
		// targets are detached, then terminated by EC2): the canary and
		// the 8 old instances, each once.
		terms := 0
		for id, k := range e.terminations(t) {
			switch d := k - terms0[id]; {
			case d > 1:
				t.Errorf("%s terminated %d times", id, d)
			case d == 1:
				terms++
			}
		}
		if terms != 9 {
			t.Errorf("%d instances terminated by the engine, want 9 (no surplus handed back)", terms)
		}
		if o := e.orphans(t); len(o) > 0 {
			t.Errorf("detached and left running: %v", o)
		}
		if st.Suspension == nil || !st.Suspension.Resumed || len(st.Suspension.Ours) != 2 {
			t.Errorf("suspension %+v", st.Suspension)
		}
		if g, err := e.provider(t).Group(context.Background(), "gitter-ws"); err != nil || len(g.Suspended) != 0 {
			t.Errorf("processes left suspended: %v %v", g.Suspended, err)
		}
		n, nodes := errors500()
		t.Logf("group launches during the change %d; 500s over %d nodes rose by %d", launched, nodes, n)
		if nodes < 17 { // 8 old, the canary, 8 new
			t.Errorf("read the 500 count of only %d nodes", nodes)
		} else if n != 0 {
			t.Errorf("wsfleet_errors_total{code=\"500\"} rose by %d during the change: clients were routed to draining nodes", n)
		}
		var replaced []string
		for _, ph := range st.Phases {
			replaced = append(replaced, ph.Replaced...)
		}
		if len(replaced) != 8 {
			t.Errorf("replacements %q, want 8", replaced)
		}
		var report bytes.Buffer
		rollout.WriteReport(&report, st)
		t.Logf("report:\n%s", report.String())
	})

	t.Run("kill -9 mid-replace, resume", func(t *testing.T) {
		before := e.terminations(t)
		// Loss is not what this test is about (the killed engine's probe
		// dies with it); the three-phase test above holds it to zero.
		plan := e.writePlan("e2e-back", 1000000, `image: ami-old
phases:
  - {name: first half, replace: 4}
  - {name: second half, replace: rest}
`)
		cmd := e.engine("rollout", "-f", plan)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started(t, cmd)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fewest := e.healthySampler(t, ctx)
		events := filepath.Join(e.stateDir, "e2e-back.events.jsonl")

		// Pause and resume the running engine from other processes.
		waitEvent(t, events, `"type":"phase"`, 60*time.Second)
		if msg, err := e.control("pause", "-c", "e2e-back").CombinedOutput(); err != nil || !strings.Contains(string(msg), "asked the engine") {
			t.Fatalf("pause: %v %s", err, msg)
		}
		waitEvent(t, events, `"type":"pause"`, 30*time.Second)
		paused := e.load(t, "e2e-back")
		time.Sleep(2 * time.Second)
		if st := e.load(t, "e2e-back"); st.Status != rollout.StatusPaused || st.Cursor != paused.Cursor {
			t.Errorf("paused engine: status %s, step %d -> %d", st.Status, paused.Cursor, st.Cursor)
		}
		if msg, err := e.engine("resume", "-c", "e2e-back").CombinedOutput(); err != nil || !strings.Contains(string(msg), "asked the engine") {
			t.Fatalf("resume of a paused engine: %v %s", err, msg)
		}

		// Kill it as soon as it asked the first old node to drain.
		waitEvent(t, events, `"effect":"drain/`, 90*time.Second)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		st := e.load(t, "e2e-back")
		if st.Status.Final() {
			t.Fatalf("killed engine already %s", st.Status)
		}
		st = e.resumeOK(t, "e2e-back")
		for _, ph := range st.Phases {
			if ph.Probe != nil {
				t.Logf("phase %s (after resume): probe lost %d of %d, gap p99 %s", ph.Name, ph.Probe.Lost, ph.Probe.Expected, ph.Probe.GapP99)
			}
		}
		e.waitFleet(t, "ami-old", 30*time.Second)
		cancel()
		if n := fewest(); n < 8 {
			t.Errorf("healthy targets fell to %d across the kill and the resume", n)
		}
		after := e.terminations(t)
		for id, n := range after {
			if n-before[id] > 1 {
				t.Errorf("%s terminated %d times", id, n-before[id])
			}
		}
		if n := len(after) - len(before); n != 8 {
			t.Errorf("%d instances terminated, want 8", n)
		}
	})

	t.Run("canary fails, automatic rollback", func(t *testing.T) {
		plan := e.writePlan("e2e-bad", 0, `image: ami-bad
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m}
  - {name: all, replace: rest}
`)
		plan2, _ := os.ReadFile(plan)
		os.WriteFile(plan, bytes.Replace(plan2, []byte("healthy_timeout: 60s"), []byte("healthy_timeout: 15s"), 1), 0o644)
		cmd := e.engine("rollout", "-f", plan)
		msg, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("a canary that never became healthy did not fail the rollout\n%s", tail(string(msg), 20))
		}
		st := e.load(t, "e2e-bad")
		if st.Status != rollout.StatusRolledBack || !strings.Contains(st.Failure, "not healthy") {
			t.Fatalf("status %s: %s\n%s", st.Status, st.Failure, tail(string(msg), 20))
		}
		e.waitFleet(t, "ami-old", 30*time.Second)
		g, err := e.provider(t).Group(context.Background(), "gitter-ws")
		if err != nil {
			t.Fatal(err)
		}
		if g.Image != "ami-old" || g.Tags[rollout.LockTag] != "" {
			t.Errorf("after rollback: image %s, lock %q", g.Image, g.Tags[rollout.LockTag])
		}
		for _, in := range g.Instances {
			if in.Live() && in.Protected {
				t.Errorf("%s left protected", in.Name)
			}
		}
	})
	// Last, on the fleet back on ami-old: the default placement with
	// clients connected (placement_e2e_test.go; make test-placement runs
	// the demo's 2,000 clients).
	t.Run("placement: canary share, move once, end balance", func(t *testing.T) {
		placementChange(t, e, "e2e-place", "ami-new", 500)
	})
	t.Logf("e2e total %s", time.Since(start).Round(time.Second))
}

// waitEvent waits until the event log has a line containing s.
func waitEvent(t *testing.T, path, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if strings.Contains(sc.Text(), s) {
					f.Close()
					return
				}
			}
			f.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no event %s in %s within %s", s, path, d)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

package localcloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"
)

// once is a retryer option that makes every call a single attempt, so
// that a test sees the fault itself and not the SDK's retries of it.
func once(o *retry.StandardOptions) { o.MaxAttempts = 1 }

// callEach makes one read call on each service with a single attempt.
func callEach(ctx context.Context, cl Clients) map[string]error {
	r := retry.NewStandard(once)
	_, e1 := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}, func(o *ec2.Options) { o.Retryer = r })
	_, e2 := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{}, func(o *autoscaling.Options) { o.Retryer = r })
	_, e3 := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{}, func(o *elb.Options) { o.Retryer = r })
	return map[string]error{svcEC2: e1, svcASG: e2, svcELB: e3}
}

// TestFaultsAsTheSDKSeesThem: each injected fault reaches aws-sdk-go-v2
// with AWS's code and HTTP status for its service, and the SDK's own
// classifiers (the ones its retryers use) call it what they call AWS's:
// throttling is a throttle, 5xx and dropped connections are retryable.
func TestFaultsAsTheSDKSeesThem(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	type want struct {
		codes    map[string]int // code -> status
		throttle bool
		api      bool // an AWS error document (not a dropped connection)
	}
	cases := []struct {
		name   string
		faults Faults
		want   map[string]want
	}{
		{"throttle", Faults{Throttle: 1}, map[string]want{
			svcEC2: {codes: map[string]int{"RequestLimitExceeded": 503}, throttle: true, api: true},
			svcASG: {codes: map[string]int{"Throttling": 400}, throttle: true, api: true},
			svcELB: {codes: map[string]int{"Throttling": 400}, throttle: true, api: true},
		}},
		{"5xx", Faults{Errors: 1, Seed: 7}, map[string]want{
			svcEC2: {codes: map[string]int{"InternalError": 500, "ServiceUnavailable": 503}, api: true},
			svcASG: {codes: map[string]int{"InternalFailure": 500, "ServiceUnavailable": 503}, api: true},
			svcELB: {codes: map[string]int{"InternalFailure": 500, "ServiceUnavailable": 503}, api: true},
		}},
		{"drop", Faults{Drop: 1}, map[string]want{svcEC2: {}, svcASG: {}, svcELB: {}}},
	}
	throttles := retry.IsErrorThrottles(retry.DefaultThrottles)
	retryables := retry.IsErrorRetryables(retry.DefaultRetryables)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.SetFaults(tc.faults)
			defer c.SetFaults(Faults{})
			for i := 0; i < 4; i++ { // both 5xx codes, both drop moments
				for svc, err := range callEach(ctx, cl) {
					w := tc.want[svc]
					if err == nil {
						t.Fatalf("%s: no error under %+v", svc, tc.faults)
					}
					var ae smithy.APIError
					var re *awshttp.ResponseError
					if w.api {
						if !errors.As(err, &ae) || !errors.As(err, &re) {
							t.Fatalf("%s: %v is not an AWS error document", svc, err)
						}
						status, ok := w.codes[ae.ErrorCode()]
						if !ok || re.HTTPStatusCode() != status {
							t.Errorf("%s: %s with HTTP %d, want one of %v", svc, ae.ErrorCode(), re.HTTPStatusCode(), w.codes)
						}
					} else if errors.As(err, &ae) {
						t.Errorf("%s: dropped connection came back as %s", svc, ae.ErrorCode())
					}
					if got := throttles.IsErrorThrottle(err) == aws.TrueTernary; got != w.throttle {
						t.Errorf("%s: SDK throttle classification %v, want %v: %v", svc, got, w.throttle, err)
					}
					if retryables.IsErrorRetryable(err) != aws.TrueTernary {
						t.Errorf("%s: the SDK would not retry %v", svc, err)
					}
				}
			}
		})
	}
	if n := c.FaultCounts(); n["throttle ec2"] == 0 || n["5xx autoscaling"] == 0 || n["drop elasticloadbalancing"] == 0 {
		t.Errorf("fault counts %v", n)
	}
	// No faults: the calls succeed again.
	for svc, err := range callEach(ctx, cl) {
		if err != nil {
			t.Errorf("%s after the faults stopped: %v", svc, err)
		}
	}
}

// TestFaultDocuments checks the bytes on the wire: EC2's Response/Errors
// envelope and the Query services' ErrorResponse with the Sender or
// Receiver type.
func TestFaultDocuments(t *testing.T) {
	c, _ := startCloud(t, fastConfig())
	post := func(version, action string) (int, string) {
		resp, err := http.Post(c.Endpoint(), "application/x-www-form-urlencoded", strings.NewReader("Action="+action+"&Version="+version))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c.SetFaults(Faults{Throttle: 1})
	st, body := post(ec2Version, "DescribeInstances")
	if st != 503 || !strings.Contains(body, "<Response><Errors><Error><Code>RequestLimitExceeded</Code>") || !strings.Contains(body, "<RequestID>") {
		t.Errorf("EC2 throttle: %d %s", st, body)
	}
	st, body = post(asgVersion, "DescribeAutoScalingGroups")
	if st != 400 || !strings.Contains(body, `<ErrorResponse xmlns="`+asgNS+`"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>`) {
		t.Errorf("Auto Scaling throttle: %d %s", st, body)
	}
	c.SetFaults(Faults{Errors: 1})
	st, body = post(elbVersion, "DescribeTargetGroups")
	if st < 500 || !strings.Contains(body, "<Type>Receiver</Type>") {
		t.Errorf("ELBv2 5xx: %d %s", st, body)
	}
}

// TestFaultsAsTheCLISees: the AWS CLI (botocore's retry handler) retries
// each fault as it retries AWS's, and gives up on a client error at once.
func TestFaultsAsTheCLISees(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the AWS CLI")
	}
	// botocore's standard retry mode, two attempts: "reached max retries:
	// 1" says the CLI retried.
	t.Setenv("AWS_RETRY_MODE", "standard")
	t.Setenv("AWS_MAX_ATTEMPTS", "2")
	c, _ := startCloud(t, fastConfig())
	cli, _ := awsCLI(t, c.Endpoint(), "AKIDCLI")
	run := func(args ...string) string {
		if _, err := cli(args...); err != nil {
			return err.Error()
		}
		return ""
	}
	for _, tc := range []struct {
		faults Faults
		args   []string
		want   []string
	}{
		{Faults{Throttle: 1}, []string{"ec2", "describe-instances"}, []string{"(RequestLimitExceeded)", "reached max retries: 1"}},
		{Faults{Throttle: 1}, []string{"autoscaling", "describe-auto-scaling-groups"}, []string{"(Throttling)", "reached max retries: 1"}},
		{Faults{Throttle: 1}, []string{"elbv2", "describe-target-groups"}, []string{"(Throttling)", "reached max retries: 1"}},
		{Faults{Errors: 1}, []string{"autoscaling", "describe-auto-scaling-groups"}, []string{"reached max retries: 1"}},
		{Faults{Errors: 1}, []string{"ec2", "describe-instances"}, []string{"reached max retries: 1"}},
	} {
		c.SetFaults(tc.faults)
		out := run(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("aws %s under %+v: no %q in\n%s", strings.Join(tc.args, " "), tc.faults, w, out)
			}
		}
	}
	c.SetFaults(Faults{})
	if out := run("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", "nope", "--desired-capacity", "1"); !strings.Contains(out, "(ValidationError)") || strings.Contains(out, "max retries") {
		t.Errorf("a client error was retried or not reported:\n%s", out)
	}
}

// TestFaultBuckets: with AWS's buckets on, EC2 answers a non-mutating
// action 100 times at once, then throttles it, and refills 20 a second;
// each EC2 action has its own bucket.
func TestFaultBuckets(t *testing.T) {
	ctx := context.Background()
	_, cl, clock := clockedCloud(t, Faults{Buckets: true})
	r := retry.NewStandard(once)
	describe := func() error {
		_, err := cl.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-sim"}}, func(o *ec2.Options) { o.Retryer = r })
		return err
	}
	for i := 0; i < 100; i++ {
		if err := describe(); err != nil {
			t.Fatalf("call %d of a full bucket: %v", i+1, err)
		}
	}
	var ae smithy.APIError
	if err := describe(); !errors.As(err, &ae) || ae.ErrorCode() != "RequestLimitExceeded" {
		t.Fatalf("call 101: %v, want RequestLimitExceeded", err)
	}
	// Another action has its own bucket.
	if _, err := cl.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{"lt-0"}}, func(o *ec2.Options) { o.Retryer = r }); errors.As(err, &ae) && ae.ErrorCode() == "RequestLimitExceeded" {
		t.Errorf("DescribeLaunchTemplates throttled by DescribeImages' bucket")
	}
	clock.Add(time.Second)
	ok := 0
	for i := 0; i < 30; i++ {
		if describe() == nil {
			ok++
		}
	}
	if ok != 20 {
		t.Errorf("%d calls after a second's refill, want 20", ok)
	}
}

// TestFaultStale: a launch and a tag written late are not read back
// until their delay has passed, then are.
func TestFaultStale(t *testing.T) {
	ctx := context.Background()
	c, cl, clock := clockedCloud(t, Faults{})
	run, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-sim"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	if _, err := cl.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: tagsOf("Name", "before")}); err != nil {
		t.Fatal(err)
	}
	c.SetFaults(Faults{Stale: 1, StaleDelay: 2 * time.Second})
	if _, err := cl.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: tagsOf("Name", "after")}); err != nil {
		t.Fatal(err)
	}
	late, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-sim"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	lateID := aws.ToString(late.Instances[0].InstanceId)
	name := func() string {
		out, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range out.Reservations[0].Instances[0].Tags {
			if aws.ToString(tg.Key) == "Name" {
				return aws.ToString(tg.Value)
			}
		}
		return ""
	}
	if n := name(); n != "before" {
		t.Errorf("tag read at once: %q, want the old value", n)
	}
	var ae smithy.APIError
	if _, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{lateID}}); !errors.As(err, &ae) || ae.ErrorCode() != "InvalidInstanceID.NotFound" {
		t.Errorf("instance just launched: %v, want InvalidInstanceID.NotFound", err)
	}
	clock.Add(2 * time.Second)
	if n := name(); n != "after" {
		t.Errorf("tag after the delay: %q", n)
	}
	if _, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{lateID}}); err != nil {
		t.Errorf("instance after the delay: %v", err)
	}
}

// TestFaultsAdmin: the admin path sets and reads the faults; a bad body
// is refused and changes nothing.
func TestFaultsAdmin(t *testing.T) {
	c, cl := startCloud(t, fastConfig())
	post := func(body string) (int, faultsStatus) {
		resp, err := http.Post(c.Endpoint()+FaultsPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st faultsStatus
		b, _ := io.ReadAll(resp.Body)
		json.NewDecoder(bytes.NewReader(b)).Decode(&st)
		return resp.StatusCode, st
	}
	code, st := post(`{"throttle": 1, "stale": 0.5, "stale_delay": "2s", "seed": 3}`)
	if code != 200 || st.Faults.Throttle != 1 || st.Faults.StaleDelay != 2*time.Second || st.Faults.Seed != 3 {
		t.Fatalf("POST: %d %+v", code, st)
	}
	if err := callEach(context.Background(), cl)[svcASG]; err == nil || !strings.Contains(err.Error(), "Throttling") {
		t.Errorf("after the admin call: %v", err)
	}
	for _, bad := range []string{`{"throttle": 2}`, `{"throtle": 1}`, `{"stale_delay": "soon"}`, `not json`} {
		if code, _ := post(bad); code != 400 {
			t.Errorf("POST %s: %d, want 400", bad, code)
		}
	}
	if f, _ := c.faults.get(); f.Throttle != 1 {
		t.Errorf("a refused body changed the faults: %+v", f)
	}
	code, _ = post(`{}`)
	if err := callEach(context.Background(), cl)[svcASG]; code != 200 || err != nil {
		t.Errorf("faults off: %d %v", code, err)
	}
}

// TestFaultsSeeded: the same seed gives the same faults to the same
// calls.
func TestFaultsSeeded(t *testing.T) {
	seq := func(seed uint64) string {
		f := newInjector(Faults{Seed: seed, Throttle: 0.3, Errors: 0.2, Drop: 0.1})
		var b strings.Builder
		for i := 0; i < 200; i++ {
			p := f.plan(&request{Service: svcASG, Action: "DescribeAutoScalingGroups"}, time.Time{})
			switch {
			case p.err != nil:
				b.WriteString(p.err.Code[:1])
			case p.drop != noDrop:
				b.WriteString("d")
			default:
				b.WriteString(".")
			}
		}
		return b.String()
	}
	a, b := seq(42), seq(42)
	if a != b {
		t.Errorf("same seed, different faults:\n%s\n%s", a, b)
	}
	if a == seq(43) {
		t.Errorf("different seeds gave the same faults")
	}
	if n := strings.Count(a, "T"); n < 30 || n > 90 {
		t.Errorf("%d throttles in 200 calls at 30%%", n)
	}
}

func tagsOf(k, v string) []ec2types.Tag {
	return []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}}
}

// testClock is a clock the test moves, in nanoseconds since 2026.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(c.ns.Load()))
}

func (c *testClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// clockedCloud starts a cloud on a clock the test moves, with faults.
func clockedCloud(t *testing.T, f Faults) (*Cloud, Clients, *testClock) {
	clock := &testClock{}
	cfg := fastConfig()
	cfg.Now, cfg.Faults = clock.Now, f
	c, cl := startCloud(t, cfg)
	return c, cl, clock
}

package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"wsfleet/localcloud"
)

// TestCloudWatchGate runs the gate against the local cloud's CloudWatch:
// it passes while the alarms are OK or without data, fails the moment
// the test raises one with SetAlarmState, and fails on an alarm that
// does not exist.
func TestCloudWatchGate(t *testing.T) {
	c, err := localcloud.Start(context.Background(), localcloud.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cw := c.Clients("test").CloudWatch
	ctx := context.Background()
	for _, name := range []string{"ws-5xx", "ws-latency"} {
		if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{AlarmName: aws.String(name), MetricName: aws.String("m"), Namespace: aws.String("n"),
			Statistic: cwtypes.StatisticSum, Period: aws.Int32(60), EvaluationPeriods: aws.Int32(1), Threshold: aws.Float64(1),
			ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold}); err != nil {
			t.Fatal(err)
		}
	}
	spec := &CloudWatchCheck{Alarms: []string{"ws-5xx", "ws-latency"}, Region: "us-east-1", Endpoint: c.Endpoint()}
	spec.Validate(func(key, format string, args ...any) { t.Fatalf("%s: "+format, append([]any{key}, args...)...) })
	g := spec.Gate().(*cloudwatchGate)
	env := PhaseEnv{Checker: &Checker{}, Now: time.Now()}
	if r := g.PreCheck(ctx, env); !r.Pass || r.Detail != "ws-5xx INSUFFICIENT_DATA, ws-latency INSUFFICIENT_DATA" {
		t.Fatalf("pre-check %+v", r)
	}
	if err := g.Begin(ctx, env); err != nil {
		t.Fatal(err)
	}
	if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("ws-latency"), StateValue: cwtypes.StateValueAlarm, StateReason: aws.String("p99 above 100ms")}); err != nil {
		t.Fatal(err)
	}
	r := g.Evaluate(ctx, env)
	if r.Pass || !strings.HasPrefix(r.Detail, "alarm ws-latency in ALARM since ") || !strings.HasSuffix(r.Detail, "(p99 above 100ms); allowed: none in ALARM") {
		t.Errorf("raised: %+v", r)
	}
	cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("ws-latency"), StateValue: cwtypes.StateValueOk, StateReason: aws.String("back")})
	if r := g.Evaluate(ctx, env); !r.Pass {
		t.Errorf("back to OK: %+v", r)
	}
	spec2 := &CloudWatchCheck{Alarms: []string{"ws-5xx", "typo"}, Region: "us-east-1", Endpoint: c.Endpoint()}
	g2 := spec2.Gate().(*cloudwatchGate)
	if r := g2.PreCheck(ctx, env); r.Pass || r.Detail != "alarm typo not found in CloudWatch" {
		t.Errorf("missing: %+v", r)
	}
	// unreachable: the gate fails, it never passes by default
	spec3 := &CloudWatchCheck{Alarms: []string{"ws-5xx"}, Region: "us-east-1", Endpoint: "http://127.0.0.1:1"}
	g3 := spec3.Gate().(*cloudwatchGate)
	g3.Begin(ctx, env)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if r := g3.Evaluate(cctx, env); r.Pass || !strings.Contains(r.Detail, "cloudwatch DescribeAlarms: ") {
		t.Errorf("unreachable: %+v", r)
	}
}

package localcloud

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	smithy "github.com/aws/smithy-go"
)

// TestCloudWatchAlarms drives the alarms through aws-sdk-go-v2's
// cloudwatch client, which speaks RPC v2 CBOR: the answers decode into
// the SDK's types, and the errors into the model's error types.
func TestCloudWatchAlarms(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	cw := cl.CloudWatch
	for _, name := range []string{"ws-5xx", "ws-latency", "other"} {
		if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{
			AlarmName: aws.String(name), MetricName: aws.String("HTTPCode_Target_5XX_Count"), Namespace: aws.String("AWS/ApplicationELB"),
			Statistic: cwtypes.StatisticSum, Period: aws.Int32(60), EvaluationPeriods: aws.Int32(2), Threshold: aws.Float64(10.5),
			ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold,
			Dimensions:         []cwtypes.Dimension{{Name: aws.String("LoadBalancer"), Value: aws.String("app/gitter/1")}},
		}); err != nil {
			t.Fatalf("PutMetricAlarm %s: %v", name, err)
		}
	}

	out, err := cw.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{"ws-5xx", "ws-latency"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.MetricAlarms) != 2 {
		t.Fatalf("%d alarms", len(out.MetricAlarms))
	}
	a := out.MetricAlarms[0]
	if aws.ToString(a.AlarmName) != "ws-5xx" || a.StateValue != cwtypes.StateValueInsufficientData || aws.ToFloat64(a.Threshold) != 10.5 ||
		aws.ToInt32(a.Period) != 60 || a.ComparisonOperator != cwtypes.ComparisonOperatorGreaterThanThreshold || len(a.Dimensions) != 1 ||
		!strings.HasPrefix(aws.ToString(a.AlarmArn), "arn:aws:cloudwatch:us-east-1:") || a.StateUpdatedTimestamp == nil || a.StateUpdatedTimestamp.IsZero() {
		t.Errorf("alarm %+v", a)
	}

	if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("ws-latency"), StateValue: cwtypes.StateValueAlarm,
		StateReason: aws.String("test raises it"), StateReasonData: aws.String(`{"version":"1.0"}`)}); err != nil {
		t.Fatal(err)
	}
	out, err = cw.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{StateValue: cwtypes.StateValueAlarm})
	if err != nil || len(out.MetricAlarms) != 1 || aws.ToString(out.MetricAlarms[0].AlarmName) != "ws-latency" || aws.ToString(out.MetricAlarms[0].StateReason) != "test raises it" {
		t.Fatalf("in ALARM: %+v %v", out, err)
	}

	t.Run("pages", func(t *testing.T) {
		var names []string
		p := cloudwatch.NewDescribeAlarmsPaginator(cw, &cloudwatch.DescribeAlarmsInput{MaxRecords: aws.Int32(1)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.MetricAlarms {
				names = append(names, aws.ToString(a.AlarmName))
			}
		}
		if fmt.Sprint(names) != "[other ws-5xx ws-latency]" {
			t.Errorf("pages gave %v", names)
		}
	})

	t.Run("errors of the model", func(t *testing.T) {
		_, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("nope"), StateValue: cwtypes.StateValueAlarm, StateReason: aws.String("x")})
		var nf *cwtypes.ResourceNotFound
		if !errors.As(err, &nf) {
			t.Errorf("unknown alarm: %v", err)
		}
		_, err = cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("other"), StateValue: cwtypes.StateValueAlarm, StateReason: aws.String("x"), StateReasonData: aws.String("{not json")})
		var bad *cwtypes.InvalidFormatFault
		if !errors.As(err, &bad) || bad.ErrorCode() != "InvalidFormat" {
			t.Errorf("bad JSON: %v", err)
		}
		_, err = cw.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{NextToken: aws.String("garbage")})
		var tok *cwtypes.InvalidNextToken
		if !errors.As(err, &tok) {
			t.Errorf("bad token: %v", err)
		}
		_, err = cw.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{"a"}, AlarmNamePrefix: aws.String("a")})
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "InvalidParameterCombination" {
			t.Errorf("names and prefix: %v", err)
		}
		_, err = cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("other"), StateValue: "RED", StateReason: aws.String("x")})
		if !errors.As(err, &api) || api.ErrorCode() != "InvalidParameterValue" {
			t.Errorf("bad state: %v", err)
		}
	})
}

// TestCloudWatchCLI raises an alarm with the AWS CLI (scripts/test-deps.sh
// installs it), which speaks the protocol its own model lists first.
func TestCloudWatchCLI(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		t.Fatal("the AWS CLI is missing: run scripts/test-deps.sh (Debian package awscli)")
	}
	c, cl := startCloud(t, fastConfig())
	ctx := context.Background()
	aws1 := func(args ...string) (string, error) {
		cmd := exec.Command("aws", append([]string{"--endpoint-url", c.Endpoint(), "--region", "us-east-1", "--output", "json", "cloudwatch"}, args...)...)
		cmd.Env = append(cmd.Environ(), "AWS_ACCESS_KEY_ID=cli", "AWS_SECRET_ACCESS_KEY=cli", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := aws1("put-metric-alarm", "--alarm-name", "cli-alarm", "--metric-name", "Errors", "--namespace", "wsfleet",
		"--statistic", "Sum", "--period", "60", "--evaluation-periods", "1", "--threshold", "1", "--comparison-operator", "GreaterThanThreshold"); err != nil {
		t.Fatalf("put-metric-alarm: %v\n%s", err, out)
	}
	if out, err := aws1("set-alarm-state", "--alarm-name", "cli-alarm", "--state-value", "ALARM", "--state-reason", "raised from the CLI"); err != nil {
		t.Fatalf("set-alarm-state: %v\n%s", err, out)
	}
	out, err := aws1("describe-alarms", "--alarm-names", "cli-alarm")
	if err != nil || !strings.Contains(out, `"StateValue": "ALARM"`) || !strings.Contains(out, "raised from the CLI") {
		t.Fatalf("describe-alarms: %v\n%s", err, out)
	}
	if out, err := aws1("set-alarm-state", "--alarm-name", "missing", "--state-value", "OK", "--state-reason", "x"); err == nil || !strings.Contains(out, "ResourceNotFound") {
		t.Errorf("missing alarm: %v\n%s", err, out)
	}
	got, err := cl.CloudWatch.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{StateValue: cwtypes.StateValueAlarm})
	if err != nil || len(got.MetricAlarms) != 1 {
		t.Errorf("the SDK sees %+v %v", got, err)
	}
}

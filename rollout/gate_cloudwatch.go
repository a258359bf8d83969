package rollout

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
)

// cloudwatchKind is the cloudwatch check: none of the named CloudWatch
// alarms is in ALARM, what an Instance Refresh's alarm specification
// offers.
var cloudwatchKind = GateKind{Key: "cloudwatch", Spec: func() GateSpec { return &CloudWatchCheck{} }}

// CloudWatchCheck describes Alarms with DescribeAlarms and fails when one
// is in ALARM, or is not there at all (a misspelt alarm would otherwise
// never fire). Region and Endpoint default to the standard AWS
// configuration (AWS_REGION, AWS_ENDPOINT_URL, shared files); the local
// cloud needs its endpoint here.
type CloudWatchCheck struct {
	Alarms   []string `yaml:"alarms" json:"alarms"`
	Region   string   `yaml:"region" json:"region,omitempty"`
	Endpoint string   `yaml:"endpoint" json:"endpoint,omitempty"`
}

// Validate wants 1 to 100 alarm names (one DescribeAlarms call's worth).
func (cc *CloudWatchCheck) Validate(at func(key, format string, args ...any)) {
	if len(cc.Alarms) == 0 || len(cc.Alarms) > 100 {
		outOfRange(at, "alarms", fmt.Sprintf("%d alarms", len(cc.Alarms)), "1 to 100 alarm names")
	}
	seen := map[string]bool{}
	for _, a := range cc.Alarms {
		if a == "" || len(a) > 255 {
			at("alarms", "%q is not an alarm name (1 to 255 characters)", a)
		}
		if seen[a] {
			at("alarms", "%q is listed twice", a)
		}
		seen[a] = true
	}
	if cc.Endpoint != "" && !strings.HasPrefix(cc.Endpoint, "http://") && !strings.HasPrefix(cc.Endpoint, "https://") {
		at("endpoint", "%q; want an http:// or https:// URL", cc.Endpoint)
	}
}

// Describe names the alarms.
func (cc *CloudWatchCheck) Describe() string {
	return fmt.Sprintf("CloudWatch alarms %s not in ALARM", strings.Join(cc.Alarms, ", "))
}

// Gate returns a gate with no client yet.
func (cc *CloudWatchCheck) Gate() Gate { return &cloudwatchGate{spec: cc} }

type cloudwatchGate struct {
	spec   *CloudWatchCheck
	client *cloudwatch.Client
}

// Begin makes the client; the SDK's retries cover throttling and 5xx.
func (g *cloudwatchGate) Begin(ctx context.Context, env PhaseEnv) error {
	var opts []func(*config.LoadOptions) error
	if g.spec.Region != "" {
		opts = append(opts, config.WithRegion(g.spec.Region))
	}
	if g.spec.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(g.spec.Endpoint))
		if os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
			// a local endpoint takes any key, as the provider's does
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("wsfleet-local", "wsfleet-local", "")))
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("cloudwatch: aws config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if env.Checker != nil && env.Checker.HTTP != nil {
		cfg.HTTPClient = env.Checker.HTTP
	}
	g.client = cloudwatch.NewFromConfig(cfg)
	return nil
}

// PreCheck refuses a rollout while one of the alarms is in ALARM
// already: a fleet in trouble is no base to change from.
func (g *cloudwatchGate) PreCheck(ctx context.Context, env PhaseEnv) GateResult {
	if g.client == nil {
		if err := g.Begin(ctx, env); err != nil {
			return verdict("", err)
		}
	}
	return g.Evaluate(ctx, env)
}

func (g *cloudwatchGate) End(context.Context, PhaseEnv) *GateResult { return nil }

// Evaluate describes the alarms and fails on any in ALARM or missing.
func (g *cloudwatchGate) Evaluate(ctx context.Context, _ PhaseEnv) GateResult {
	states := map[string]cwtypes.MetricAlarm{}
	p := cloudwatch.NewDescribeAlarmsPaginator(g.client, &cloudwatch.DescribeAlarmsInput{AlarmNames: g.spec.Alarms})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return verdict("", fmt.Errorf("cloudwatch DescribeAlarms: %w", err))
		}
		for _, a := range page.MetricAlarms {
			states[aws.ToString(a.AlarmName)] = a
		}
	}
	var firing, missing, seen []string
	for _, name := range g.spec.Alarms {
		a, ok := states[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case a.StateValue == cwtypes.StateValueAlarm:
			firing = append(firing, fmt.Sprintf("%s in ALARM since %s (%s)", name, aws.ToTime(a.StateUpdatedTimestamp).UTC().Format("15:04:05"), aws.ToString(a.StateReason)))
		default:
			seen = append(seen, fmt.Sprintf("%s %s", name, a.StateValue))
		}
	}
	sort.Strings(seen)
	switch {
	case len(firing) > 0:
		return verdict("", fmt.Errorf("alarm %s; allowed: none in ALARM", strings.Join(firing, "; ")))
	case len(missing) > 0:
		return verdict("", fmt.Errorf("alarm %s not found in CloudWatch", strings.Join(missing, ", ")))
	}
	return verdict(strings.Join(seen, ", "), nil)
}

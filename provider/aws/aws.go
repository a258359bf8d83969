// Package aws is the rollout's fleet provider on AWS: Auto Scaling groups,
// EC2 launch templates and instances, and ELBv2 target health, through
// aws-sdk-go-v2. The same code runs against the local cloud, whose
// endpoint a plan may give (aws.endpoint).
package aws

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"

	"wsfleet/rollout"
)

// Config selects the region and, for the local cloud only, an endpoint.
type Config struct {
	Region   string
	Endpoint string
	// MaxAttempts bounds the SDK's attempts at a throttled, 5xx or
	// dropped call (adaptive mode: exponential backoff with jitter up to
	// MaxBackoff, and a client-side send rate that falls when AWS
	// throttles); default the AWS configuration's max_attempts
	// (AWS_MAX_ATTEMPTS), else 8. MaxBackoff defaults to 20s.
	MaxAttempts int
	MaxBackoff  time.Duration
	// ConfirmTimeout bounds how long an effect is read back before the
	// provider gives up on seeing it (AWS's reads are eventually
	// consistent); default 60s. ConfirmInterval is the first pause
	// between reads (doubling up to 2s); default 200ms.
	ConfirmTimeout  time.Duration
	ConfirmInterval time.Duration
	// Sleep waits between confirmation reads; default a timer.
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger *slog.Logger
}

// Provider is a rollout.Provider on an AWS account (or the local cloud).
type Provider struct {
	asg *autoscaling.Client
	ec2 *ec2.Client
	elb *elb.Client
	log *slog.Logger

	confirmTimeout, confirmInterval time.Duration
	sleep                           func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	calls map[string]int
	// images caches the AMI of numbered launch template versions, which
	// never change once made.
	images map[string]string
	ec2c   ec2Cache
}

var (
	_ rollout.Provider          = (*Provider)(nil)
	_ rollout.LoadBalancerURLer = (*Provider)(nil)
	_ rollout.CallCounter       = (*Provider)(nil)
	_ rollout.ImageChecker      = (*Provider)(nil)
	_ rollout.ProcessSuspender  = (*Provider)(nil)
	_ rollout.TargetRegistrar   = (*Provider)(nil)
)

// New loads the standard AWS configuration (environment, shared files,
// instance role) with cfg's region and endpoint. With an endpoint and no
// credentials in the environment or a profile, it signs with fixed local
// credentials: the local cloud accepts any.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	p := &Provider{log: cfg.Logger, calls: map[string]int{}, images: map[string]string{},
		confirmTimeout:  cmp.Or(max(cfg.ConfirmTimeout, 0), 60*time.Second),
		confirmInterval: cmp.Or(max(cfg.ConfirmInterval, 0), 200*time.Millisecond),
		sleep:           cfg.Sleep}
	if p.sleep == nil {
		p.sleep = rollout.Sleep
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	ac, err := loadConfig(ctx, cfg, p.countCalls)
	if err != nil {
		return nil, err
	}
	p.asg = autoscaling.NewFromConfig(ac)
	p.ec2 = ec2.NewFromConfig(ac)
	p.elb = elb.NewFromConfig(ac)
	return p, nil
}

// loadConfig loads the standard AWS configuration (environment, shared
// files, instance role) with cfg's region, endpoint and retries, and the
// middleware api adds to every call, if any.
func loadConfig(ctx context.Context, cfg Config, api func(*middleware.Stack) error) (aws.Config, error) {
	backoff := cfg.MaxBackoff
	if backoff <= 0 {
		backoff = 20 * time.Second
	}
	opts := []func(*config.LoadOptions) error{
		// The SDK's own warnings (a response body it could not discard)
		// would interleave with the live view; errors still come back.
		config.WithLogger(logging.Nop{}),
	}
	if api != nil {
		opts = append(opts, config.WithAPIOptions([]func(*middleware.Stack) error{api}))
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(cfg.Endpoint))
		if os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("wsfleet-local", "wsfleet-local", "")))
		}
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	if ac.Region == "" {
		ac.Region = "us-east-1"
	}
	attempts := cfg.MaxAttempts
	if attempts <= 0 {
		attempts = ac.RetryMaxAttempts // max_attempts, AWS_MAX_ATTEMPTS
	}
	if attempts <= 0 {
		attempts = 8
	}
	ac.Retryer = func() aws.Retryer { return newRetryer(attempts, backoff) }
	return ac, nil
}

// newRetryer is the SDK's adaptive retryer, bounded: at most attempts
// tries of a call AWS throttled, answered 5xx or dropped, backing off
// with jitter up to backoff, and sending more slowly while AWS
// throttles.
func newRetryer(attempts int, backoff time.Duration) aws.Retryer {
	return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
		o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.MaxBackoff = backoff
			// The retry quota would stop retrying throttled calls
			// exactly when a busy account needs it most; the
			// adaptive send rate slows the calls down instead.
			so.RateLimiter = ratelimit.None
		})
	})
}

// countCalls adds a middleware that counts each operation once (retries
// are not counted again) and marks the error of a call the SDK gave up
// retrying as rollout.ErrUnavailable.
func (p *Provider) countCalls(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("wsfleetCountCalls",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			p.mu.Lock()
			p.calls[middleware.GetOperationName(ctx)]++
			p.mu.Unlock()
			out, md, err := next.HandleInitialize(ctx, in)
			return out, md, unavailable(ctx, err)
		}), middleware.Before)
}

// retryables is how the SDK's retryer tells a transient error.
var retryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// unavailableError is an error AWS may not give again: throttling, 5xx,
// a dropped connection, after the retryer's last attempt, or an effect
// not yet readable. It is rollout.ErrUnavailable and unwraps to the
// AWS error, so that both the engine and a caller looking for the AWS
// code find what they look for.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == rollout.ErrUnavailable }

// unavailable marks err when the SDK classes it as transient (or it is
// the retry quota running out); a client error, or the caller's own
// cancellation, stays as it is.
func unavailable(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	var quota ratelimit.QuotaExceededError
	if retryables.IsErrorRetryable(err) == aws.TrueTernary || errors.As(err, &quota) {
		return &unavailableError{err}
	}
	var maxed *retry.MaxAttemptsError
	if errors.As(err, &maxed) && retryables.IsErrorRetryable(maxed.Err) == aws.TrueTernary {
		return &unavailableError{err}
	}
	return err
}

// confirm reads until seen reports the effect visible: AWS's reads are
// eventually consistent, so a write that succeeded may not read back at
// once. It gives up after the confirmation timeout with an error that is
// rollout.ErrUnavailable: the engine stops rather than go on from an
// effect it cannot see, and a resume decides again from what it reads.
func (p *Provider) confirm(ctx context.Context, what string, seen func(ctx context.Context) (bool, error)) error {
	deadline := time.Now().Add(p.confirmTimeout)
	wait := p.confirmInterval
	for {
		ok, err := seen(ctx)
		if err != nil {
			return fmt.Errorf("confirm %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return &unavailableError{fmt.Errorf("confirm %s: not read back within %s", what, p.confirmTimeout)}
		}
		if err := p.sleep(ctx, wait); err != nil {
			return fmt.Errorf("confirm %s: %w", what, err)
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// confirmGroup confirms an effect seen in the group's description.
func (p *Provider) confirmGroup(ctx context.Context, group, what string, seen func(asgtypes.AutoScalingGroup) bool) error {
	return p.confirm(ctx, what, func(ctx context.Context) (bool, error) {
		g, err := p.describeGroup(ctx, group)
		if err != nil {
			return false, err
		}
		return seen(g), nil
	})
}

// APICalls reports the calls made so far, by operation.
func (p *Provider) APICalls() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.calls))
	for k, v := range p.calls {
		out[k] = v
	}
	return out
}

func (p *Provider) describeGroup(ctx context.Context, name string) (asgtypes.AutoScalingGroup, error) {
	out, err := p.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return asgtypes.AutoScalingGroup{}, fmt.Errorf("describe group %s: %w", name, err)
	}
	if len(out.AutoScalingGroups) == 0 {
		return asgtypes.AutoScalingGroup{}, fmt.Errorf("group %s: %w", name, rollout.ErrNotFound)
	}
	return out.AutoScalingGroups[0], nil
}

// templateOf returns the group's launch template specification.
func templateOf(g asgtypes.AutoScalingGroup) (*asgtypes.LaunchTemplateSpecification, error) {
	if g.LaunchTemplate != nil {
		return g.LaunchTemplate, nil
	}
	if m := g.MixedInstancesPolicy; m != nil && m.LaunchTemplate != nil && m.LaunchTemplate.LaunchTemplateSpecification != nil {
		return m.LaunchTemplate.LaunchTemplateSpecification, nil
	}
	return nil, fmt.Errorf("group %s has no launch template", aws.ToString(g.AutoScalingGroupName))
}

// resolveVersion turns a version spec ($Latest, $Default or a number) into
// its number and image.
func (p *Provider) resolveVersion(ctx context.Context, id, version string) (string, string, error) {
	if version == "" {
		version = "$Default"
	}
	key := id + ":" + version
	if _, err := strconv.Atoi(version); err == nil {
		p.mu.Lock()
		img, ok := p.images[key]
		p.mu.Unlock()
		if ok {
			return version, img, nil
		}
	}
	out, err := p.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(id), Versions: []string{version}})
	if err != nil {
		return "", "", fmt.Errorf("describe launch template %s version %s: %w", id, version, err)
	}
	if len(out.LaunchTemplateVersions) == 0 {
		return "", "", fmt.Errorf("launch template %s version %s: %w", id, version, rollout.ErrNotFound)
	}
	v := out.LaunchTemplateVersions[0]
	num := strconv.FormatInt(aws.ToInt64(v.VersionNumber), 10)
	img := ""
	if v.LaunchTemplateData != nil {
		img = aws.ToString(v.LaunchTemplateData.ImageId)
	}
	p.mu.Lock()
	p.images[id+":"+num] = img
	p.mu.Unlock()
	return num, img, nil
}

// Group describes the group, its instances (EC2) and their target health
// (ELBv2).
func (p *Provider) Group(ctx context.Context, name string) (rollout.Group, error) {
	ag, err := p.describeGroup(ctx, name)
	if err != nil {
		return rollout.Group{}, err
	}
	g := rollout.Group{
		Name:    name,
		Desired: int(aws.ToInt32(ag.DesiredCapacity)),
		Min:     int(aws.ToInt32(ag.MinSize)),
		Max:     int(aws.ToInt32(ag.MaxSize)),
		Tags:    map[string]string{},
	}
	for _, t := range ag.Tags {
		g.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	for _, sp := range ag.SuspendedProcesses {
		g.Suspended = append(g.Suspended, aws.ToString(sp.ProcessName))
	}
	sort.Strings(g.Suspended)
	if onLC, err := p.groupLC(ctx, ag, &g); err != nil {
		return rollout.Group{}, err
	} else if lt, err := templateOf(ag); err == nil && !onLC {
		num, img, err := p.resolveVersion(ctx, aws.ToString(lt.LaunchTemplateId), aws.ToString(lt.Version))
		if err != nil {
			return rollout.Group{}, err
		}
		g.Template = rollout.TemplateRef{ID: aws.ToString(lt.LaunchTemplateId), Name: aws.ToString(lt.LaunchTemplateName), Version: num}
		g.Image = img
	}
	if len(ag.Instances) == 0 {
		return g, nil
	}
	ids := make([]string, 0, len(ag.Instances))
	for _, in := range ag.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	ec2s, err := p.ec2c.instances(ctx, p, ids) // ec2cache.go
	if err != nil {
		return rollout.Group{}, fmt.Errorf("describe instances of %s: %w", name, err)
	}
	health := map[string]string{}
	for _, arn := range ag.TargetGroupARNs {
		out, err := p.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn)})
		if err != nil {
			return rollout.Group{}, fmt.Errorf("describe target health of %s: %w", name, err)
		}
		for _, d := range out.TargetHealthDescriptions {
			if d.Target == nil || d.TargetHealth == nil {
				continue
			}
			id, state := aws.ToString(d.Target.Id), string(d.TargetHealth.State)
			// With several target groups the worst state counts.
			if prev, ok := health[id]; !ok || prev == "healthy" {
				health[id] = state
			}
		}
	}
	for _, ai := range ag.Instances {
		id := aws.ToString(ai.InstanceId)
		in := rollout.Instance{ID: id, Lifecycle: string(ai.LifecycleState), HealthStatus: aws.ToString(ai.HealthStatus),
			Protected: aws.ToBool(ai.ProtectedFromScaleIn), Tags: map[string]string{}, Launch: launchOf(ai)}
		if len(ag.TargetGroupARNs) > 0 {
			in.Health = health[id]
			if in.Health == "" {
				in.Health = "unregistered"
			}
		}
		if e, ok := ec2s[id]; ok {
			in.Image = aws.ToString(e.ImageId)
			in.PrivateIP = aws.ToString(e.PrivateIpAddress)
			in.LaunchTime = aws.ToTime(e.LaunchTime)
			in.ClientToken = aws.ToString(e.ClientToken)
			for _, t := range e.Tags {
				in.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			in.Name = in.Tags["Name"]
		}
		g.Instances = append(g.Instances, in)
	}
	sort.Slice(g.Instances, func(i, j int) bool { return g.Instances[i].ID < g.Instances[j].ID })
	return g, nil
}

// versionDescription marks the launch template version a change made, and
// the version it was made from, so that SetImage repeated after a crash
// finds both.
func versionDescription(token, from string) string {
	return "wsfleet change " + token + " from version " + from
}

// madeFrom parses a version description written by versionDescription
// for token; ok is false for any other.
func madeFrom(desc, token string) (from string, ok bool) {
	from, ok = strings.CutPrefix(desc, "wsfleet change "+token+" from version ")
	return from, ok && from != ""
}

// SetImage makes (or finds, by token) a launch template version with image
// and points the group at it. A group on $Latest picks it up by itself; a
// group on a number or $Default is set to the new number.
func (p *Provider) SetImage(ctx context.Context, group, image, token string) (rollout.TemplateChange, error) {
	ag, err := p.describeGroup(ctx, group)
	if err != nil {
		return rollout.TemplateChange{}, err
	}
	if ag.LaunchConfigurationName != nil {
		return p.setImageLC(ctx, ag, image, token)
	}
	lt, err := templateOf(ag)
	if err != nil {
		return rollout.TemplateChange{}, err
	}
	id := aws.ToString(lt.LaunchTemplateId)
	ref := rollout.TemplateRef{ID: id, Name: aws.ToString(lt.LaunchTemplateName)}
	var tc rollout.TemplateChange
	// A version this change already made?
	var made *ec2types.LaunchTemplateVersion
	var from string
	pager := ec2.NewDescribeLaunchTemplateVersionsPaginator(p.ec2, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(id)})
	for pager.HasMorePages() && made == nil {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return tc, fmt.Errorf("set image: list versions of %s: %w", id, err)
		}
		for i, v := range page.LaunchTemplateVersions {
			if f, ok := madeFrom(aws.ToString(v.VersionDescription), token); ok {
				made, from = &page.LaunchTemplateVersions[i], f
				break
			}
		}
	}
	if made != nil {
		prevNum, prevImg, err := p.resolveVersion(ctx, id, from)
		if err != nil {
			return tc, err
		}
		tc.Previous, tc.PreviousImage = ref, prevImg
		tc.Previous.Version = prevNum
	} else {
		num, img, err := p.resolveVersion(ctx, id, aws.ToString(lt.Version))
		if err != nil {
			return tc, err
		}
		tc.Previous, tc.PreviousImage = ref, img
		tc.Previous.Version = num
		out, err := p.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
			LaunchTemplateId:   aws.String(id),
			SourceVersion:      aws.String(num),
			VersionDescription: aws.String(versionDescription(token, num)),
			ClientToken:        aws.String(clientToken(token)),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(image)},
		})
		if err != nil {
			return tc, fmt.Errorf("set image: create launch template version: %w", err)
		}
		made = out.LaunchTemplateVersion
	}
	tc.New, tc.NewImage = ref, image
	tc.New.Version = strconv.FormatInt(aws.ToInt64(made.VersionNumber), 10)
	// Pin the group to the new number: the rollback pins it back.
	if err := p.SetTemplateVersion(ctx, group, tc.New); err != nil {
		return tc, err
	}
	return tc, nil
}

// clientToken fits EC2's 64-character limit on client tokens.
func clientToken(token string) string {
	t := "wsfleet-" + token
	if len(t) > 64 {
		t = t[:64]
	}
	return t
}

// SetTemplateVersion points the group at a numbered launch template
// version, or at a launch configuration (launchconfig.go).
func (p *Provider) SetTemplateVersion(ctx context.Context, group string, t rollout.TemplateRef) error {
	if t.IsLaunchConfig() {
		return p.setLC(ctx, group, t.LaunchConfig)
	}
	_, err := p.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(t.ID), Version: aws.String(t.Version)},
	})
	if err != nil {
		return fmt.Errorf("set launch template version %s of %s: %w", t.Version, group, err)
	}
	return p.confirmGroup(ctx, group, fmt.Sprintf("launch template version %s of %s", t.Version, group), func(g asgtypes.AutoScalingGroup) bool {
		lt, err := templateOf(g)
		return err == nil && aws.ToString(lt.LaunchTemplateId) == t.ID && aws.ToString(lt.Version) == t.Version
	})
}

// SetDesired sets the desired capacity, raising the maximum size with it
// when needed, and reads it back. A group already at n is left alone.
func (p *Provider) SetDesired(ctx context.Context, group string, n int) error {
	ag, err := p.describeGroup(ctx, group)
	if err != nil {
		return err
	}
	if int(aws.ToInt32(ag.DesiredCapacity)) == n {
		return nil
	}
	if int32(n) > aws.ToInt32(ag.MaxSize) {
		_, err = p.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String(group), MaxSize: aws.Int32(int32(n)), DesiredCapacity: aws.Int32(int32(n)),
		})
	} else {
		_, err = p.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
			AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(int32(n)), HonorCooldown: aws.Bool(false),
		})
	}
	if err != nil {
		return fmt.Errorf("set desired capacity of %s to %d: %w", group, n, err)
	}
	return p.confirmGroup(ctx, group, fmt.Sprintf("desired capacity %d of %s", n, group), func(g asgtypes.AutoScalingGroup) bool {
		return int(aws.ToInt32(g.DesiredCapacity)) == n
	})
}

// SetProtection sets scale-in protection, 50 instances per call (the API's
// limit), and reads it back on every instance still in the group.
func (p *Provider) SetProtection(ctx context.Context, group string, ids []string, protected bool) error {
	all := ids
	for len(ids) > 0 {
		n := min(len(ids), 50)
		_, err := p.asg.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
			AutoScalingGroupName: aws.String(group), InstanceIds: ids[:n], ProtectedFromScaleIn: aws.Bool(protected),
		})
		if err != nil {
			return fmt.Errorf("set scale-in protection %v on %s: %w", protected, strings.Join(ids[:n], ","), err)
		}
		ids = ids[n:]
	}
	return p.confirmInstances(ctx, fmt.Sprintf("scale-in protection %v on %d instances of %s", protected, len(all), group), all,
		func(in asgtypes.AutoScalingInstanceDetails) bool {
			return aws.ToBool(in.ProtectedFromScaleIn) == protected
		})
}

// confirmInstances confirms an effect on instances of a group, read with
// DescribeAutoScalingInstances (50 a call): an answer the size of the
// instances asked about, not of the group. An instance the answer leaves
// out has left the group, and counts as seen.
func (p *Provider) confirmInstances(ctx context.Context, what string, ids []string, seen func(asgtypes.AutoScalingInstanceDetails) bool) error {
	return p.confirm(ctx, what, func(ctx context.Context) (bool, error) {
		for rest := ids; len(rest) > 0; {
			n := min(len(rest), 50)
			out, err := p.asg.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: rest[:n]})
			if err != nil {
				return false, err
			}
			for _, in := range out.AutoScalingInstances {
				if !seen(in) {
					return false, nil
				}
			}
			rest = rest[n:]
		}
		return true, nil
	})
}

// Terminate terminates one instance of the group. An instance already
// terminating, or not in the group, yields ErrNotFound and no change.
func (p *Provider) Terminate(ctx context.Context, group, id string, decrement bool) error {
	_, err := p.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(decrement),
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" {
			msg := ae.ErrorMessage()
			if strings.Contains(msg, "not found") || strings.Contains(msg, "already being terminated") || strings.Contains(msg, "terminat") && strings.Contains(msg, "progress") {
				return fmt.Errorf("terminate %s: %s: %w", id, msg, rollout.ErrNotFound)
			}
		}
		return fmt.Errorf("terminate %s: %w", id, err)
	}
	return p.confirmInstances(ctx, "termination of "+id, []string{id}, func(in asgtypes.AutoScalingInstanceDetails) bool {
		return strings.HasPrefix(aws.ToString(in.LifecycleState), "Terminat")
	})
}

// TagInstance sets a tag on an EC2 instance.
func (p *Provider) TagInstance(ctx context.Context, id, key, value string) error {
	_, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String(key), Value: aws.String(value)}}})
	if err != nil {
		return fmt.Errorf("tag %s %s=%s: %w", id, key, value, err)
	}
	err = p.confirm(ctx, fmt.Sprintf("tag %s %s=%s", id, key, value), func(ctx context.Context) (bool, error) {
		out, err := p.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
			{Name: aws.String("resource-id"), Values: []string{id}}, {Name: aws.String("key"), Values: []string{key}},
		}})
		if err != nil {
			return false, err
		}
		for _, t := range out.Tags {
			if aws.ToString(t.Value) == value {
				return true, nil
			}
		}
		return false, nil
	})
	if err == nil {
		p.ec2c.setTag(id, key, value) // read back: what Group shows now
	}
	return err
}

// TagGroup sets or (value "") deletes a group tag, not propagated to
// instances.
func (p *Provider) TagGroup(ctx context.Context, group, key, value string) error {
	tag := asgtypes.Tag{ResourceId: aws.String(group), ResourceType: aws.String("auto-scaling-group"), Key: aws.String(key), PropagateAtLaunch: aws.Bool(false)}
	var err error
	if value == "" {
		_, err = p.asg.DeleteTags(ctx, &autoscaling.DeleteTagsInput{Tags: []asgtypes.Tag{tag}})
	} else {
		tag.Value = aws.String(value)
		_, err = p.asg.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []asgtypes.Tag{tag}})
	}
	if err != nil {
		return fmt.Errorf("tag group %s %s: %w", group, key, err)
	}
	return p.confirmGroup(ctx, group, fmt.Sprintf("tag %s of %s", key, group), func(g asgtypes.AutoScalingGroup) bool {
		for _, t := range g.Tags {
			if aws.ToString(t.Key) == key {
				return aws.ToString(t.Value) == value
			}
		}
		return value == ""
	})
}

// ImageExists reports whether the image is visible to the account.
func (p *Provider) ImageExists(ctx context.Context, image string) (bool, error) {
	out, err := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{image}})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && strings.HasPrefix(ae.ErrorCode(), "InvalidAMIID") {
			return false, nil
		}
		return false, fmt.Errorf("describe image %s: %w", image, err)
	}
	return len(out.Images) > 0, nil
}

// LoadBalancerURL returns the URL of the first listener of the first load
// balancer in front of the group's target groups.
func (p *Provider) LoadBalancerURL(ctx context.Context, group string) (string, error) {
	ag, err := p.describeGroup(ctx, group)
	if err != nil {
		return "", err
	}
	if len(ag.TargetGroupARNs) == 0 {
		return "", nil
	}
	tgs, err := p.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{TargetGroupArns: ag.TargetGroupARNs[:1]})
	if err != nil {
		return "", fmt.Errorf("describe target groups of %s: %w", group, err)
	}
	if len(tgs.TargetGroups) == 0 || len(tgs.TargetGroups[0].LoadBalancerArns) == 0 {
		return "", nil
	}
	lbArn := tgs.TargetGroups[0].LoadBalancerArns[0]
	lbs, err := p.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{lbArn}})
	if err != nil || len(lbs.LoadBalancers) == 0 {
		return "", fmt.Errorf("describe load balancer %s: %w", lbArn, err)
	}
	ls, err := p.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: aws.String(lbArn)})
	if err != nil {
		return "", fmt.Errorf("describe listeners of %s: %w", lbArn, err)
	}
	host := aws.ToString(lbs.LoadBalancers[0].DNSName)
	best := int32(0)
	scheme := "http"
	for _, l := range ls.Listeners {
		if port := aws.ToInt32(l.Port); best == 0 || port < best {
			best = port
			scheme = "http"
			if l.Protocol == "HTTPS" {
				scheme = "https"
			}
		}
	}
	switch {
	case best == 0, scheme == "http" && best == 80, scheme == "https" && best == 443:
		return scheme + "://" + host, nil
	}
	return fmt.Sprintf("%s://%s:%d", scheme, host, best), nil
}

// SuspendProcesses suspends the named Auto Scaling processes of the group.
func (p *Provider) SuspendProcesses(ctx context.Context, group string, processes []string) error {
	if len(processes) == 0 {
		return nil // an empty list would suspend every process
	}
	_, err := p.asg.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: processes})
	if err != nil {
		return fmt.Errorf("suspend %s of %s: %w", strings.Join(processes, ","), group, err)
	}
	return p.confirmSuspended(ctx, group, processes, true)
}

// confirmSuspended reads the group until every process named is
// suspended (or, with suspended false, none is).
func (p *Provider) confirmSuspended(ctx context.Context, group string, processes []string, suspended bool) error {
	what := fmt.Sprintf("suspension %v of %s on %s", suspended, strings.Join(processes, ","), group)
	return p.confirmGroup(ctx, group, what, func(g asgtypes.AutoScalingGroup) bool {
		now := map[string]bool{}
		for _, sp := range g.SuspendedProcesses {
			now[aws.ToString(sp.ProcessName)] = true
		}
		for _, name := range processes {
			if now[name] != suspended {
				return false
			}
		}
		return true
	})
}

// ResumeProcesses resumes the named Auto Scaling processes of the group,
// and no other.
func (p *Provider) ResumeProcesses(ctx context.Context, group string, processes []string) error {
	if len(processes) == 0 {
		return nil // an empty list would resume every process, an operator's too
	}
	_, err := p.asg.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: processes})
	if err != nil {
		return fmt.Errorf("resume %s of %s: %w", strings.Join(processes, ","), group, err)
	}
	return p.confirmSuspended(ctx, group, processes, false)
}

// SetInstanceHealth sets the group's health mark of an instance, not
// waiting for the grace period.
func (p *Provider) SetInstanceHealth(ctx context.Context, id string, healthy bool) error {
	status := "Unhealthy"
	if healthy {
		status = "Healthy"
	}
	_, err := p.asg.SetInstanceHealth(ctx, &autoscaling.SetInstanceHealthInput{
		InstanceId: aws.String(id), HealthStatus: aws.String(status), ShouldRespectGracePeriod: aws.Bool(false),
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" && strings.Contains(strings.ToLower(ae.ErrorMessage()), "not found") {
			return fmt.Errorf("set health of %s: %s: %w", id, ae.ErrorMessage(), rollout.ErrNotFound)
		}
		return fmt.Errorf("set health of %s to %s: %w", id, status, err)
	}
	return nil
}

// DeregisterTargets takes the instances out of every target group of the
// group (on each group's own port). A target that is not registered is
// not an error: the call is repeated after a crash.
func (p *Provider) DeregisterTargets(ctx context.Context, group string, ids []string) error {
	arns, err := p.targetGroups(ctx, group)
	if err != nil {
		return err
	}
	for _, arn := range arns {
		if err := p.deregisterFrom(ctx, arn, ids); err != nil {
			return err
		}
	}
	return nil
}

// RegisterTargets adds the instances to every target group of the group.
func (p *Provider) RegisterTargets(ctx context.Context, group string, ids []string) error {
	arns, err := p.targetGroups(ctx, group)
	if err != nil {
		return err
	}
	for _, arn := range arns {
		if _, err := p.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: targetsOf(ids)}); err != nil {
			return fmt.Errorf("register %s with %s: %w", strings.Join(ids, ","), arn, err)
		}
	}
	return nil
}

// DeregistrationDelay reads deregistration_delay.timeout_seconds of each
// target group of the group and returns the shortest.
func (p *Provider) DeregistrationDelay(ctx context.Context, group string) (time.Duration, bool, error) {
	arns, err := p.targetGroups(ctx, group)
	if err != nil || len(arns) == 0 {
		return 0, false, err
	}
	var least time.Duration
	found := false
	for _, arn := range arns {
		out, err := p.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
		if err != nil {
			return 0, false, fmt.Errorf("describe attributes of %s: %w", arn, err)
		}
		d := 300 * time.Second // AWS's default, when the attribute is absent
		for _, a := range out.Attributes {
			if aws.ToString(a.Key) == "deregistration_delay.timeout_seconds" {
				n, err := strconv.Atoi(aws.ToString(a.Value))
				if err != nil {
					return 0, false, fmt.Errorf("%s: deregistration_delay.timeout_seconds %q: %w", arn, aws.ToString(a.Value), err)
				}
				d = time.Duration(n) * time.Second
			}
		}
		if !found || d < least {
			least, found = d, true
		}
	}
	return least, found, nil
}

func (p *Provider) targetGroups(ctx context.Context, group string) ([]string, error) {
	ag, err := p.describeGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	return ag.TargetGroupARNs, nil
}

func targetsOf(ids []string) []elbtypes.TargetDescription {
	out := make([]elbtypes.TargetDescription, len(ids))
	for i, id := range ids {
		out[i] = elbtypes.TargetDescription{Id: aws.String(id)}
	}
	return out
}

// TargetHealthChecks reads the health check of each target group of the
// group (DescribeTargetGroups, 20 ARNs a call): whether placement's
// cordons can steer its load balancer (rollout.PlacementSupport).
func (p *Provider) TargetHealthChecks(ctx context.Context, group string) ([]rollout.HealthCheck, error) {
	arns, err := p.targetGroups(ctx, group)
	if err != nil || len(arns) == 0 {
		return nil, err
	}
	var out []rollout.HealthCheck
	for i := 0; i < len(arns); i += 20 {
		res, err := p.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{TargetGroupArns: arns[i:min(i+20, len(arns))]})
		if err != nil {
			return nil, fmt.Errorf("describe target groups of %s: %w", group, err)
		}
		for _, tg := range res.TargetGroups {
			out = append(out, rollout.HealthCheck{
				TargetGroup:        aws.ToString(tg.TargetGroupName),
				TrafficProtocol:    string(tg.Protocol),
				Port:               aws.ToString(tg.HealthCheckPort),
				TrafficPort:        int(aws.ToInt32(tg.Port)),
				Enabled:            aws.ToBool(tg.HealthCheckEnabled),
				Protocol:           string(tg.HealthCheckProtocol),
				Path:               aws.ToString(tg.HealthCheckPath),
				Interval:           time.Duration(aws.ToInt32(tg.HealthCheckIntervalSeconds)) * time.Second,
				Timeout:            time.Duration(aws.ToInt32(tg.HealthCheckTimeoutSeconds)) * time.Second,
				HealthyThreshold:   int(aws.ToInt32(tg.HealthyThresholdCount)),
				UnhealthyThreshold: int(aws.ToInt32(tg.UnhealthyThresholdCount)),
			})
		}
	}
	return out, nil
}

package localcloud

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/goccy/go-yaml"
)

// Topology is a starting fleet: what `wsfleet cloud --bootstrap FILE`
// creates in one step (examples/seed-topology.yaml is the seed's). It is
// applied through the cloud's own AWS API with the AWS SDK, so a topology
// is exactly what the same calls against AWS would build.
type Topology struct {
	LaunchTemplates []TopoLaunchTemplate `yaml:"launchTemplates"`
	// LaunchConfigurations are Auto Scaling launch configurations, with
	// the same fields as a launch template here (the seed's group is on
	// one).
	LaunchConfigurations []TopoLaunchConfiguration `yaml:"launchConfigurations"`
	TargetGroups         []TopoTargetGroup         `yaml:"targetGroups"`
	LoadBalancers        []TopoLoadBalancer        `yaml:"loadBalancers"`
	Groups               []TopoGroup               `yaml:"groups"`
}

// TopoLaunchConfiguration is a launch configuration; UserData is plain
// text (the bootstrap base64-encodes it as the API expects).
type TopoLaunchConfiguration = TopoLaunchTemplate

// Launch returns the topology's first launch configuration, or its first
// launch template when it has none (nil when it has neither): what the
// examples' single group launches from, for callers that adjust its user
// data.
func (t *Topology) Launch() *TopoLaunchTemplate {
	switch {
	case len(t.LaunchConfigurations) > 0:
		return &t.LaunchConfigurations[0]
	case len(t.LaunchTemplates) > 0:
		return &t.LaunchTemplates[0]
	}
	return nil
}

// TopoLaunchTemplate is a launch template; UserData is plain text (the
// bootstrap base64-encodes it as EC2 expects).
type TopoLaunchTemplate struct {
	Name         string `yaml:"name"`
	ImageID      string `yaml:"imageId"`
	InstanceType string `yaml:"instanceType"`
	UserData     string `yaml:"userData"`
}

// TopoTargetGroup is an HTTP target group.
type TopoTargetGroup struct {
	Name                       string `yaml:"name"`
	Port                       int32  `yaml:"port"`
	HealthCheckPath            string `yaml:"healthCheckPath"`
	HealthCheckIntervalSeconds int32  `yaml:"healthCheckIntervalSeconds"`
	HealthyThresholdCount      int32  `yaml:"healthyThresholdCount"`
	UnhealthyThresholdCount    int32  `yaml:"unhealthyThresholdCount"`
	DeregistrationDelaySeconds *int   `yaml:"deregistrationDelaySeconds"`
}

// TopoLoadBalancer is an application load balancer and its HTTP listeners.
type TopoLoadBalancer struct {
	Name      string         `yaml:"name"`
	Listeners []TopoListener `yaml:"listeners"`
}

// TopoListener forwards a port of 127.0.0.1 to a target group.
type TopoListener struct {
	Port        int32  `yaml:"port"`
	TargetGroup string `yaml:"targetGroup"`
}

// TopoGroup is an Auto Scaling group. InstanceNames name the first
// instances it launches (Name tags set with CreateTags, as an operator or
// the rollout does); Tags are group tags propagated at launch.
type TopoGroup struct {
	Name                   string            `yaml:"name"`
	LaunchTemplate         string            `yaml:"launchTemplate"`
	LaunchConfiguration    string            `yaml:"launchConfiguration"` // instead of LaunchTemplate
	Version                string            `yaml:"version"`
	Min                    int32             `yaml:"min"`
	Max                    int32             `yaml:"max"`
	Desired                int32             `yaml:"desired"`
	AvailabilityZones      []string          `yaml:"availabilityZones"`
	TargetGroups           []string          `yaml:"targetGroups"`
	HealthCheckType        string            `yaml:"healthCheckType"`
	HealthCheckGracePeriod int32             `yaml:"healthCheckGracePeriod"`
	TerminationPolicies    []string          `yaml:"terminationPolicies"`
	InstanceNames          []string          `yaml:"instanceNames"`
	Tags                   map[string]string `yaml:"tags"`
	LifecycleHooks         []TopoHook        `yaml:"lifecycleHooks"`
}

// TopoHook is a lifecycle hook.
type TopoHook struct {
	Name             string `yaml:"name"`
	Transition       string `yaml:"transition"`
	HeartbeatTimeout int32  `yaml:"heartbeatTimeout"`
	DefaultResult    string `yaml:"defaultResult"`
}

// LoadTopology reads a topology file; unknown fields are errors, with
// their line.
func LoadTopology(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load topology: %w", err)
	}
	var t Topology
	if err := yaml.UnmarshalWithOptions(data, &t, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("load topology %s: %w", path, err)
	}
	return &t, nil
}

// Clients are SDK clients for this cloud, with static local credentials.
type Clients struct {
	EC2 *ec2.Client
	ASG *autoscaling.Client
	ELB *elb.Client
	// S3 addresses buckets path style (the SDK does so by itself for an
	// endpoint that is an IP address, as Endpoint is).
	S3 *s3.Client
	// CloudWatch speaks RPC v2 CBOR to the cloud (cloudwatch.go).
	CloudWatch *cloudwatch.Client
}

// Clients returns aws-sdk-go-v2 clients pointed at the cloud's endpoint.
func (c *Cloud) Clients(accessKey string) Clients {
	cfg := aws.Config{
		Region:      c.cfg.Region,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, "local", ""),
	}
	ep := aws.String(c.Endpoint())
	return Clients{
		EC2: ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = ep }),
		ASG: autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.BaseEndpoint = ep }),
		ELB: elb.NewFromConfig(cfg, func(o *elb.Options) { o.BaseEndpoint = ep }),
		S3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = ep; o.UsePathStyle = true }),

		CloudWatch: cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) { o.BaseEndpoint = ep }),
	}
}

// Bootstrap creates a topology: topo is a file path or a *Topology. It
// returns once every resource exists and the named instances are tagged;
// instances become healthy afterwards, as on AWS.
func (c *Cloud) Bootstrap(ctx context.Context, topo any) error {
	var t *Topology
	switch v := topo.(type) {
	case string:
		var err error
		if t, err = LoadTopology(v); err != nil {
			return err
		}
	case *Topology:
		t = v
	case Topology:
		t = &v
	default:
		return fmt.Errorf("bootstrap: topology must be a path or a *Topology, not %T", topo)
	}
	cl := c.Clients("bootstrap")
	tgARNs := map[string]string{}
	for _, lt := range t.LaunchTemplates {
		_, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(lt.Name),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
				ImageId:      aws.String(lt.ImageID),
				InstanceType: ec2types.InstanceType(lt.InstanceType),
				UserData:     aws.String(base64.StdEncoding.EncodeToString([]byte(lt.UserData))),
			},
		})
		if err != nil {
			return fmt.Errorf("bootstrap: launch template %s: %w", lt.Name, err)
		}
	}
	for _, lc := range t.LaunchConfigurations {
		_, err := cl.ASG.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{
			LaunchConfigurationName: aws.String(lc.Name),
			ImageId:                 aws.String(lc.ImageID),
			InstanceType:            aws.String(lc.InstanceType),
			UserData:                aws.String(base64.StdEncoding.EncodeToString([]byte(lc.UserData))),
		})
		if err != nil {
			return fmt.Errorf("bootstrap: launch configuration %s: %w", lc.Name, err)
		}
	}
	for _, tg := range t.TargetGroups {
		in := &elb.CreateTargetGroupInput{
			Name: aws.String(tg.Name), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(tg.Port),
			VpcId: aws.String("vpc-local"), TargetType: elbtypes.TargetTypeEnumInstance,
		}
		if tg.HealthCheckPath != "" {
			in.HealthCheckPath = aws.String(tg.HealthCheckPath)
		}
		if tg.HealthCheckIntervalSeconds > 0 {
			in.HealthCheckIntervalSeconds = aws.Int32(tg.HealthCheckIntervalSeconds)
		}
		if tg.HealthyThresholdCount > 0 {
			in.HealthyThresholdCount = aws.Int32(tg.HealthyThresholdCount)
		}
		if tg.UnhealthyThresholdCount > 0 {
			in.UnhealthyThresholdCount = aws.Int32(tg.UnhealthyThresholdCount)
		}
		out, err := cl.ELB.CreateTargetGroup(ctx, in)
		if err != nil {
			return fmt.Errorf("bootstrap: target group %s: %w", tg.Name, err)
		}
		arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
		tgARNs[tg.Name] = arn
		if tg.DeregistrationDelaySeconds != nil {
			_, err := cl.ELB.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
				TargetGroupArn: aws.String(arn),
				Attributes: []elbtypes.TargetGroupAttribute{{
					Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String(fmt.Sprint(*tg.DeregistrationDelaySeconds)),
				}},
			})
			if err != nil {
				return fmt.Errorf("bootstrap: target group %s attributes: %w", tg.Name, err)
			}
		}
	}
	for _, lb := range t.LoadBalancers {
		out, err := cl.ELB.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
			Name: aws.String(lb.Name), Subnets: []string{"subnet-local-a"}, Type: elbtypes.LoadBalancerTypeEnumApplication,
		})
		if err != nil {
			return fmt.Errorf("bootstrap: load balancer %s: %w", lb.Name, err)
		}
		for _, l := range lb.Listeners {
			arn, ok := tgARNs[l.TargetGroup]
			if !ok {
				return fmt.Errorf("bootstrap: load balancer %s: listener %d: unknown target group %q", lb.Name, l.Port, l.TargetGroup)
			}
			_, err := cl.ELB.CreateListener(ctx, &elb.CreateListenerInput{
				LoadBalancerArn: out.LoadBalancers[0].LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(l.Port),
				DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(arn)}},
			})
			if err != nil {
				return fmt.Errorf("bootstrap: load balancer %s: listener %d: %w", lb.Name, l.Port, err)
			}
		}
	}
	for _, g := range t.Groups {
		if err := c.bootstrapGroup(ctx, cl, g, tgARNs); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cloud) bootstrapGroup(ctx context.Context, cl Clients, g TopoGroup, tgARNs map[string]string) error {
	in := &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(g.Name),
		MinSize:              aws.Int32(g.Min), MaxSize: aws.Int32(g.Max), DesiredCapacity: aws.Int32(g.Desired),
		AvailabilityZones:   g.AvailabilityZones,
		TerminationPolicies: g.TerminationPolicies,
	}
	if len(in.AvailabilityZones) == 0 {
		in.AvailabilityZones = []string{c.cfg.Region + "a"}
	}
	switch {
	case g.LaunchConfiguration != "" && g.LaunchTemplate != "":
		return fmt.Errorf("bootstrap: group %s: give launchTemplate or launchConfiguration, not both", g.Name)
	case g.LaunchConfiguration != "":
		in.LaunchConfigurationName = aws.String(g.LaunchConfiguration)
	default:
		in.LaunchTemplate = &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(g.LaunchTemplate)}
		if g.Version != "" {
			in.LaunchTemplate.Version = aws.String(g.Version)
		}
	}
	if g.HealthCheckType != "" {
		in.HealthCheckType = aws.String(g.HealthCheckType)
		in.HealthCheckGracePeriod = aws.Int32(g.HealthCheckGracePeriod)
	}
	for _, name := range g.TargetGroups {
		arn, ok := tgARNs[name]
		if !ok {
			return fmt.Errorf("bootstrap: group %s: unknown target group %q", g.Name, name)
		}
		in.TargetGroupARNs = append(in.TargetGroupARNs, arn)
	}
	for _, k := range sortedKeys(g.Tags) {
		in.Tags = append(in.Tags, asgtypes.Tag{Key: aws.String(k), Value: aws.String(g.Tags[k]), PropagateAtLaunch: aws.Bool(true)})
	}
	for _, h := range g.LifecycleHooks {
		spec := asgtypes.LifecycleHookSpecification{LifecycleHookName: aws.String(h.Name), LifecycleTransition: aws.String(h.Transition)}
		if h.HeartbeatTimeout > 0 {
			spec.HeartbeatTimeout = aws.Int32(h.HeartbeatTimeout)
		}
		if h.DefaultResult != "" {
			spec.DefaultResult = aws.String(h.DefaultResult)
		}
		in.LifecycleHookSpecificationList = append(in.LifecycleHookSpecificationList, spec)
	}
	if _, err := cl.ASG.CreateAutoScalingGroup(ctx, in); err != nil {
		return fmt.Errorf("bootstrap: group %s: %w", g.Name, err)
	}
	if len(g.InstanceNames) == 0 {
		return nil
	}
	// Name the first instances as they appear, before they finish booting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{g.Name}})
		if err != nil {
			return fmt.Errorf("bootstrap: group %s: %w", g.Name, err)
		}
		if len(out.AutoScalingGroups) == 1 && len(out.AutoScalingGroups[0].Instances) >= min(len(g.InstanceNames), int(g.Desired)) {
			for i, inst := range out.AutoScalingGroups[0].Instances {
				if i >= len(g.InstanceNames) {
					break
				}
				_, err := cl.EC2.CreateTags(ctx, &ec2.CreateTagsInput{
					Resources: []string{aws.ToString(inst.InstanceId)},
					Tags:      []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(g.InstanceNames[i])}},
				})
				if err != nil {
					return fmt.Errorf("bootstrap: group %s: name %s: %w", g.Name, g.InstanceNames[i], err)
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("bootstrap: group " + g.Name + ": instances did not launch within 30s")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap: group %s: %w", g.Name, ctx.Err())
		case <-time.After(c.cfg.Tick / 2):
		}
	}
}

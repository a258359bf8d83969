package localcloud

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// TestErrorsThroughSDK checks that bad calls get the codes AWS gives, as
// the SDK parses them from each service's error document.
func TestErrorsThroughSDK(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	makeFleet(t, ctx, cl, "grp", "ami-sim", 1)
	lt := &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("grp")}
	for _, tc := range []struct {
		name string
		call func() error
		code string
	}{
		{"unknown instance", func() error {
			_, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
			return err
		}, "InvalidInstanceID.NotFound"},
		{"malformed instance id", func() error {
			_, err := cl.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{"web-1"}})
			return err
		}, "InvalidInstanceID.Malformed"},
		{"unknown launch template", func() error {
			_, err := cl.EC2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateName: aws.String("nope")})
			return err
		}, "InvalidLaunchTemplateName.NotFoundException"},
		{"duplicate launch template", func() error {
			_, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("grp"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-sim")}})
			return err
		}, "InvalidLaunchTemplateName.AlreadyExistsException"},
		{"unknown version", func() error {
			_, err := cl.EC2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateName: aws.String("grp"), DefaultVersion: aws.String("7")})
			return err
		}, "InvalidLaunchTemplateId.VersionNotFound"},
		{"unknown image", func() error {
			_, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-missing"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
			return err
		}, "InvalidAMIID.NotFound"},
		{"bad user data", func() error {
			_, err := cl.EC2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateName: aws.String("grp"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{UserData: aws.String("not base64!")}})
			return err
		}, "InvalidUserData.Malformed"},
		{"duplicate group", func() error {
			_, err := cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("grp"), LaunchTemplate: lt, MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: []string{"us-east-1a"}})
			return err
		}, "AlreadyExists"},
		{"group without zones", func() error {
			_, err := cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g2"), LaunchTemplate: lt, MinSize: aws.Int32(0), MaxSize: aws.Int32(1)})
			return err
		}, "ValidationError"},
		{"min above max", func() error {
			_, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("grp"), MinSize: aws.Int32(5), MaxSize: aws.Int32(2)})
			return err
		}, "ValidationError"},
		{"desired above max", func() error {
			_, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("grp"), DesiredCapacity: aws.Int32(99)})
			return err
		}, "ValidationError"},
		{"unknown group", func() error {
			_, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("nope"), DesiredCapacity: aws.Int32(1)})
			return err
		}, "ValidationError"},
		{"terminate unknown instance", func() error {
			_, err := cl.ASG.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: aws.String("i-0123456789abcdef0"), ShouldDecrementDesiredCapacity: aws.Bool(true)})
			return err
		}, "ValidationError"},
		{"heartbeat out of range", func() error {
			_, err := cl.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: aws.String("grp"), LifecycleHookName: aws.String("h"), LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"), HeartbeatTimeout: aws.Int32(5)})
			return err
		}, "ValidationError"},
		{"unknown target group", func() error {
			_, err := cl.ELB.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String("arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/x/0")})
			return err
		}, "TargetGroupNotFound"},
		{"bad attribute", func() error {
			out, _ := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"grp"}})
			_, err := cl.ELB.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: out.TargetGroups[0].TargetGroupArn, Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("9999")}}})
			return err
		}, "ValidationError"},
		{"register unknown instance", func() error {
			out, _ := cl.ELB.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"grp"}})
			_, err := cl.ELB.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: out.TargetGroups[0].TargetGroupArn, Targets: []elbtypes.TargetDescription{{Id: aws.String("i-0123456789abcdef0")}}})
			return err
		}, "InvalidTarget"},
		{"unknown load balancer", func() error {
			_, err := cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{"nope"}})
			return err
		}, "LoadBalancerNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if got := apiCode(err); got != tc.code {
				t.Fatalf("error %v: code %q, want %q", err, got, tc.code)
			}
		})
	}
}

// TestRawRequests sends what no SDK sends: unknown actions, missing
// actions, garbage forms, and checks each service's error document.
func TestRawRequests(t *testing.T) {
	c, _ := startCloud(t, fastConfig())
	post := func(auth, body string) (int, string) { return postForm(t, c.Endpoint(), auth, body) }
	sig := func(svc string) string {
		return "AWS4-HMAC-SHA256 Credential=AKIDRAW/20260101/us-east-1/" + svc + "/aws4_request, SignedHeaders=host, Signature=00"
	}
	for _, tc := range []struct {
		name, auth, body string
		status           int
		contains         []string
	}{
		{"ec2 unknown action", sig("ec2"), "Action=LaunchRocket&Version=2016-11-15", 400, []string{"<Response><Errors><Error><Code>InvalidAction</Code>", "<RequestID>"}},
		{"autoscaling unknown action", sig("autoscaling"), "Action=LaunchRocket&Version=2011-01-01", 400, []string{"<ErrorResponse", "<Code>InvalidAction</Code>", "<RequestId>"}},
		{"no action", sig("elasticloadbalancing"), "Version=2015-12-01", 400, []string{"<ErrorResponse", "MissingAction"}},
		{"bad form", sig("autoscaling"), "Action=%zz", 400, []string{"MalformedQueryString"}},
		{"routed by version", "", "Action=DescribeTags&Version=2016-11-15", 200, []string{"<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">", "<tagSet>"}},
		{"routed by action", "", "Action=DescribeLoadBalancers", 200, []string{"<DescribeLoadBalancersResult>", "<ResponseMetadata><RequestId>"}},
		{"ambiguous action", "", "Action=DescribeTags", 400, []string{"InvalidAction"}},
		{"missing parameter", sig("autoscaling"), "Action=SetDesiredCapacity&Version=2011-01-01", 400, []string{"MissingParameter"}},
		{"bad integer", sig("autoscaling"), "Action=SetDesiredCapacity&AutoScalingGroupName=x&DesiredCapacity=" + url.QueryEscape("1e99"), 400, []string{"ValidationError"}},
		// A hostile index allocates nothing and, as on AWS, is refused
		// rather than dropped (dropping it emptied the filter).
		{"huge index", sig("ec2"), "Action=DescribeInstances&InstanceId.99999999999=i-1", 400, []string{"InvalidParameterValue", "InstanceId.99999999999"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.auth, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q: %s", s, body)
				}
			}
		})
	}
}

// FuzzParseQuery feeds the request parser arbitrary forms and headers; it
// must answer with a request or an AWS error, never panic, and a parsed
// request always names a service and an action.
func FuzzParseQuery(f *testing.F) {
	f.Add("", "application/x-www-form-urlencoded", "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/ec2/aws4_request", []byte("Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-1&Filter.1.Name=tag:Name&Filter.1.Value.1=ws-*"))
	f.Add("Action=SetDesiredCapacity", "", "", []byte("AutoScalingGroupName=g&DesiredCapacity=3"))
	f.Add("", "text/plain", "Credential=/////", []byte("Action=CreateListener&DefaultActions.member.1.Type=forward"))
	f.Add("%", "", "", []byte("Tags.member.0.Key=&Tags.member.-1.Key=x&Action=CreateOrUpdateTags"))
	f.Fuzz(func(t *testing.T, rawQuery, contentType, auth string, body []byte) {
		defer failSlow(t, time.Now())
		req, e := parseQuery(rawQuery, contentType, auth, body)
		if (req == nil) == (e == nil) {
			t.Fatalf("parseQuery returned %v and %v", req, e)
		}
		if req != nil {
			if req.Action == "" || req.Service == "" {
				t.Fatalf("request without action or service: %+v", req)
			}
			// The helpers handlers use must not panic on any input either.
			for _, prefix := range []string{"InstanceId", "Tags.member", "Filter", "Targets.member"} {
				req.Params.list(prefix)
				for _, s := range req.Params.structs(prefix) {
					s.intOpt("Port")
					s.boolOpt("PropagateAtLaunch")
				}
			}
		}
	})
}

// FuzzAPI sends arbitrary bodies to every action of a live cloud: each must
// get an answer, never crash the handler (a panic would be a 500
// InternalFailure).
func FuzzAPI(f *testing.F) {
	c, err := Start(context.Background(), fastConfig())
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	var names []string
	for svc, m := range actions {
		for a := range m {
			names = append(names, svc+" "+a)
		}
	}
	sort.Strings(names)
	f.Add(0, "AutoScalingGroupName=g&MinSize=0&MaxSize=2&LaunchTemplate.LaunchTemplateName=x&AvailabilityZones.member.1=us-east-1a")
	f.Add(3, "Name=tg&Protocol=HTTP&Port=8080&HealthCheckIntervalSeconds=5&HealthCheckTimeoutSeconds=4")
	f.Add(7, "LaunchTemplateName=abc&LaunchTemplateData.ImageId=ami-sim&LaunchTemplateData.TagSpecification.1.ResourceType=instance&LaunchTemplateData.TagSpecification.1.Tag.1.Key=k")
	f.Add(11, "ImageId=ami-sim&MinCount=1&MaxCount=2&LaunchTemplate.Version=$Latest")
	for _, a := range []string{"SuspendProcesses", "ResumeProcesses"} {
		f.Add(sort.SearchStrings(names, svcASG+" "+a), "AutoScalingGroupName=g&ScalingProcesses.member.1=Launch&ScalingProcesses.member.3=Bogus")
	}
	for a, form := range map[string]string{
		"CreateLaunchConfiguration":    "LaunchConfigurationName=lc&ImageId=ami-sim&InstanceType=t3.micro&BlockDeviceMappings.member.1.Ebs.VolumeSize=8&MetadataOptions.HttpTokens=x",
		"DescribeLaunchConfigurations": "LaunchConfigurationNames.member.2=lc&MaxRecords=1&NextToken=1",
		"DeleteLaunchConfiguration":    "LaunchConfigurationName=lc",
	} {
		f.Add(sort.SearchStrings(names, svcASG+" "+a), form)
	}
	f.Fuzz(func(t *testing.T, which int, form string) {
		defer failSlow(t, time.Now())
		if which < 0 {
			which = -which
		}
		name := names[which%len(names)]
		svc, action, _ := strings.Cut(name, " ")
		req, _ := http.NewRequest(http.MethodPost, c.Endpoint(), strings.NewReader("Action="+action+"&"+form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKFUZZ/20260101/us-east-1/"+svc+"/aws4_request")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 && strings.Contains(string(b), "InternalFailure") {
			t.Fatalf("%s %q: %d %s", name, form, resp.StatusCode, b)
		}
	})
}

// failSlow fails a fuzz input that took longer than a second: a hang or
// a blow-up (make fuzz-long relies on it). Deferred with the start time.
func failSlow(t *testing.T, start time.Time) {
	t.Helper()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("input took %s, over the 1s bound", d)
	}
}

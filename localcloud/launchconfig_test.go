package localcloud

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// lcGroupInstances returns the group's live instances as
// "launch-configuration:image" strings, sorted, from
// DescribeAutoScalingGroups and DescribeInstances.
func lcGroupInstances(t *testing.T, ctx context.Context, cl Clients, group string) ([]string, asgtypes.AutoScalingGroup) {
	t.Helper()
	out, err := cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("describe group %s: %v %v", group, out, err)
	}
	g := out.AutoScalingGroups[0]
	var ids []string
	lcOf := map[string]string{}
	for _, in := range g.Instances {
		if in.LifecycleState == asgtypes.LifecycleStateInService || in.LifecycleState == asgtypes.LifecycleStatePending {
			ids = append(ids, aws.ToString(in.InstanceId))
			lcOf[aws.ToString(in.InstanceId)] = aws.ToString(in.LaunchConfigurationName)
		}
	}
	if len(ids) == 0 {
		return nil, g
	}
	di, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatalf("describe instances: %v", err)
	}
	var got []string
	for _, r := range di.Reservations {
		for _, in := range r.Instances {
			got = append(got, lcOf[aws.ToString(in.InstanceId)]+":"+aws.ToString(in.ImageId))
		}
	}
	sort.Strings(got)
	return got, g
}

// TestLaunchConfigurationsSDK drives launch configurations through
// aws-sdk-go-v2: a group created on one launches from it, a group moved to
// another launches from that one and scales in the older first, a group
// moves between a launch template and a configuration, and a configuration
// in use cannot be deleted.
func TestLaunchConfigurationsSDK(t *testing.T) {
	ctx := context.Background()
	_, cl := startCloud(t, fastConfig())
	mkLC := func(name, image string) error {
		_, err := cl.ASG.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{
			LaunchConfigurationName: aws.String(name), ImageId: aws.String(image), InstanceType: aws.String("c5.large"),
			UserData: aws.String("LS1hZG1pbi10b2tlbj14Cg=="), SecurityGroups: []string{"sg-1"},
		})
		return err
	}
	if err := mkLC("lc-a", "ami-sim"); err != nil {
		t.Fatal(err)
	}
	if err := mkLC("lc-a", "ami-sim2"); apiCode(err) != "AlreadyExists" {
		t.Errorf("second lc-a: %v, want AlreadyExists", err)
	}
	d, err := cl.ASG.DescribeLaunchConfigurations(ctx, &autoscaling.DescribeLaunchConfigurationsInput{LaunchConfigurationNames: []string{"lc-a"}})
	if err != nil || len(d.LaunchConfigurations) != 1 {
		t.Fatalf("describe lc-a: %v %v", d, err)
	}
	lc := d.LaunchConfigurations[0]
	if aws.ToString(lc.ImageId) != "ami-sim" || aws.ToString(lc.InstanceType) != "c5.large" || aws.ToString(lc.UserData) != "LS1hZG1pbi10b2tlbj14Cg==" ||
		len(lc.SecurityGroups) != 1 || !strings.Contains(aws.ToString(lc.LaunchConfigurationARN), ":launchConfigurationName/lc-a") ||
		lc.CreatedTime == nil || lc.InstanceMonitoring == nil || !aws.ToBool(lc.InstanceMonitoring.Enabled) {
		t.Errorf("lc-a reads back as %+v", lc)
	}

	_, err = cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("g"), LaunchConfigurationName: aws.String("lc-a"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(4), DesiredCapacity: aws.Int32(2), AvailabilityZones: []string{"us-east-1a"},
		TerminationPolicies: []string{"OldestLaunchConfiguration"},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "2 instances from lc-a", func() error {
		got, g := lcGroupInstances(t, ctx, cl, "g")
		if aws.ToString(g.LaunchConfigurationName) != "lc-a" || g.LaunchTemplate != nil {
			return fmt.Errorf("group on %q / %v", aws.ToString(g.LaunchConfigurationName), g.LaunchTemplate)
		}
		if fmt.Sprint(got) != "[lc-a:ami-sim lc-a:ami-sim]" {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	ai, err := cl.ASG.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{})
	if err != nil || len(ai.AutoScalingInstances) != 2 {
		t.Fatalf("DescribeAutoScalingInstances: %v %v", ai, err)
	}
	for _, in := range ai.AutoScalingInstances {
		if aws.ToString(in.LaunchConfigurationName) != "lc-a" || in.LaunchTemplate != nil {
			t.Errorf("DescribeAutoScalingInstances: %s on %q %v", aws.ToString(in.InstanceId), aws.ToString(in.LaunchConfigurationName), in.LaunchTemplate)
		}
	}
	if _, err := cl.ASG.DeleteLaunchConfiguration(ctx, &autoscaling.DeleteLaunchConfigurationInput{LaunchConfigurationName: aws.String("lc-a")}); apiCode(err) != "ResourceInUse" {
		t.Errorf("delete lc-a in use: %v, want ResourceInUse", err)
	}

	// Moved to lc-b: the next launch is on its image, and scale-in takes
	// the instances of the older configuration first.
	if err := mkLC("lc-b", "ami-sim2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), LaunchConfigurationName: aws.String("lc-b"), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "third instance from lc-b", func() error {
		if got, _ := lcGroupInstances(t, ctx, cl, "g"); fmt.Sprint(got) != "[lc-a:ami-sim lc-a:ami-sim lc-b:ami-sim2]" {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	if _, err := cl.ASG.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "scale-in keeps lc-b's", func() error {
		if got, _ := lcGroupInstances(t, ctx, cl, "g"); fmt.Sprint(got) != "[lc-b:ami-sim2]" {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	// lc-a is no group's now.
	if _, err := cl.ASG.DeleteLaunchConfiguration(ctx, &autoscaling.DeleteLaunchConfigurationInput{LaunchConfigurationName: aws.String("lc-a")}); err != nil {
		t.Errorf("delete lc-a unused: %v", err)
	}

	// To a launch template and back.
	if _, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("tpl"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-sim"), InstanceType: ec2types.InstanceTypeT3Micro}}); err != nil {
		t.Fatal(err)
	}
	both := &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), LaunchConfigurationName: aws.String("lc-b"),
		LaunchTemplate: &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("tpl")}}
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, both); apiCode(err) != "ValidationError" {
		t.Errorf("update with both a template and a configuration: %v, want ValidationError", err)
	}
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"),
		LaunchTemplate: &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("tpl"), Version: aws.String("$Latest")}, DesiredCapacity: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "second instance from the template", func() error {
		got, g := lcGroupInstances(t, ctx, cl, "g")
		if g.LaunchConfigurationName != nil || g.LaunchTemplate == nil || aws.ToString(g.LaunchTemplate.LaunchTemplateName) != "tpl" {
			return fmt.Errorf("group on %q / %v", aws.ToString(g.LaunchConfigurationName), g.LaunchTemplate)
		}
		if fmt.Sprint(got) != "[:ami-sim lc-b:ami-sim2]" {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	if _, err := cl.ASG.DeleteLaunchConfiguration(ctx, &autoscaling.DeleteLaunchConfigurationInput{LaunchConfigurationName: aws.String("lc-b")}); err != nil {
		t.Errorf("delete lc-b once the group left it (its instance still runs): %v", err)
	}
	if _, err := cl.ASG.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), LaunchConfigurationName: aws.String("lc-b")}); apiCode(err) != "ValidationError" {
		t.Errorf("update to a deleted configuration: %v, want ValidationError", err)
	}
	if _, err := cl.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g2"), LaunchConfigurationName: aws.String("nope"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: []string{"us-east-1a"}}); apiCode(err) != "ValidationError" {
		t.Errorf("group on a missing configuration: %v, want ValidationError", err)
	}
}

// TestLaunchConfigurationWire pins the Auto Scaling answers to launch
// configuration calls, good and bad, on the wire: codes and messages as
// the API reference and the service model give them (length 1 to 255,
// a required name, MaxRecords 1 to 100, at most 50 names).
func TestLaunchConfigurationWire(t *testing.T) {
	c, _ := startCloud(t, fastConfig())
	call := func(action, form string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, c.Endpoint(), strings.NewReader("Action="+action+"&Version="+asgVersion+"&"+form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDLC/20260101/us-east-1/autoscaling/aws4_request, SignedHeaders=host, Signature=00")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		field := func(name string) string {
			m := regexp.MustCompile("<" + name + ">([^<]*)</" + name + ">").FindStringSubmatch(string(b))
			if m == nil {
				return ""
			}
			return html.UnescapeString(m[1])
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("%d %s %s", resp.StatusCode, field("Code"), field("Message"))
		}
		return fmt.Sprintf("200 next=%s n=%d", field("NextToken"), strings.Count(string(b), "<LaunchConfigurationARN>"))
	}
	long := strings.Repeat("x", 255)
	for _, tc := range []struct{ action, form, want string }{
		{"CreateLaunchConfiguration", "ImageId=ami-sim&InstanceType=c5.large", "400 ValidationError 1 validation error detected: Value null at 'launchConfigurationName' failed to satisfy constraint: Member must not be null"},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=&ImageId=ami-sim&InstanceType=c5.large", "400 ValidationError 1 validation error detected: Value '' at 'launchConfigurationName' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=" + long + "y&ImageId=ami-sim&InstanceType=c5.large", "400 ValidationError 1 validation error detected: Value at 'launchConfigurationName' failed to satisfy constraint: Member must have length less than or equal to 255"},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=a%01b&ImageId=ami-sim&InstanceType=c5.large", `400 ValidationError 1 validation error detected: Value at 'launchConfigurationName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*`},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=x&InstanceType=c5.large", "400 ValidationError Valid requests must contain either the ImageId or the InstanceId parameter."},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=x&ImageId=ami-sim", "400 ValidationError Valid requests must contain either the InstanceType or the InstanceId parameter."},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=x&ImageId=ami-gone&InstanceType=c5.large", "400 ValidationError AMI ami-gone is invalid: The image id '[ami-gone]' does not exist"},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=" + long + "&ImageId=ami-sim&InstanceType=c5.large", "200 next= n=0"},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=" + long + "&ImageId=ami-sim&InstanceType=c5.large", "400 AlreadyExists Launch Configuration by this name already exists - A launch configuration already exists with the name " + long},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=b&ImageId=ami-sim&InstanceType=c5.large", "200 next= n=0"},
		{"CreateLaunchConfiguration", "LaunchConfigurationName=c&ImageId=ami-sim2&InstanceType=c5.large", "200 next= n=0"},
		{"DescribeLaunchConfigurations", "", "200 next= n=3"},
		{"DescribeLaunchConfigurations", "MaxRecords=2", "200 next=2 n=2"},
		{"DescribeLaunchConfigurations", "MaxRecords=2&NextToken=2", "200 next= n=1"},
		{"DescribeLaunchConfigurations", "LaunchConfigurationNames.member.1=c&LaunchConfigurationNames.member.2=nope", "200 next= n=1"},
		{"DescribeLaunchConfigurations", "MaxRecords=101", "400 ValidationError MaxRecords must be between 1 and 100"},
		{"DescribeLaunchConfigurations", "NextToken=9", `400 InvalidNextToken the NextToken "9" is not valid`},
		{"DescribeLaunchConfigurations", namesForm(51), "400 ValidationError 1 validation error detected: Value at 'launchConfigurationNames' failed to satisfy constraint: Member must have length less than or equal to 50"},
		{"DeleteLaunchConfiguration", "", "400 ValidationError 1 validation error detected: Value null at 'launchConfigurationName' failed to satisfy constraint: Member must not be null"},
		{"DeleteLaunchConfiguration", "LaunchConfigurationName=nope", "400 ValidationError Launch configuration name not found - Launch configuration nope not found"},
		{"CreateAutoScalingGroup", "AutoScalingGroupName=g&LaunchConfigurationName=b&MinSize=0&MaxSize=1&AvailabilityZones.member.1=us-east-1a", "200 next= n=0"},
		{"CreateAutoScalingGroup", "AutoScalingGroupName=g2&LaunchConfigurationName=b&LaunchTemplate.LaunchTemplateName=t&MinSize=0&MaxSize=1&AvailabilityZones.member.1=us-east-1a", "400 ValidationError Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter."},
		{"DeleteLaunchConfiguration", "LaunchConfigurationName=b", "400 ResourceInUse Cannot delete launch configuration b because it is attached to AutoScalingGroup g"},
		{"UpdateAutoScalingGroup", "AutoScalingGroupName=g&LaunchConfigurationName=c", "200 next= n=0"},
		{"DeleteLaunchConfiguration", "LaunchConfigurationName=b", "200 next= n=0"},
		{"DescribeLaunchConfigurations", "", "200 next= n=2"},
	} {
		if got := call(tc.action, tc.form); got != tc.want {
			t.Errorf("%s?%.80s\n got  %s\n want %s", tc.action, tc.form, got, tc.want)
		}
	}
}

// namesForm lists n launch configuration names in a Describe call.
func namesForm(n int) string {
	var parts []string
	for i := 1; i <= n; i++ {
		parts = append(parts, fmt.Sprintf("LaunchConfigurationNames.member.%d=n%d", i, i))
	}
	return strings.Join(parts, "&")
}

// TestAWSCLILaunchConfigurations drives launch configurations with the
// AWS CLI (botocore's serializers, its pagination over NextToken, and its
// base64 encoding of --user-data).
func TestAWSCLILaunchConfigurations(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the AWS CLI")
	}
	c, _ := startCloud(t, fastConfig())
	run, must := awsCLI(t, c.Endpoint(), "AKIDCLILC")
	for _, n := range []string{"cli-1", "cli-2"} {
		must("autoscaling", "create-launch-configuration", "--launch-configuration-name", n, "--image-id", "ami-sim",
			"--instance-type", "c5.large", "--user-data=--admin-token=x")
	}
	// Every attribute the CLI serializes, given back as given.
	must("autoscaling", "create-launch-configuration", "--launch-configuration-name", "cli-3", "--image-id", "ami-sim2",
		"--instance-type", "c5.large", "--key-name", "ops", "--security-groups", "sg-1", "sg-2", "--iam-instance-profile", "ws-node",
		"--instance-monitoring", "Enabled=false", "--ebs-optimized", "--no-associate-public-ip-address",
		"--block-device-mappings", `[{"DeviceName":"/dev/xvda","Ebs":{"VolumeSize":20,"VolumeType":"gp3","DeleteOnTermination":true}}]`,
		"--metadata-options", "HttpTokens=required,HttpPutResponseHopLimit=2")
	full := must("autoscaling", "describe-launch-configurations", "--launch-configuration-names", "cli-3")
	for path, want := range map[string]any{
		"ImageId": "ami-sim2", "KeyName": "ops", "IamInstanceProfile": "ws-node", "EbsOptimized": true, "AssociatePublicIpAddress": false,
		"InstanceMonitoring.Enabled": false, "SecurityGroups.1": "sg-2", "BlockDeviceMappings.0.DeviceName": "/dev/xvda",
		"BlockDeviceMappings.0.Ebs.VolumeSize": float64(20), "BlockDeviceMappings.0.Ebs.DeleteOnTermination": true,
		"MetadataOptions.HttpTokens": "required", "MetadataOptions.HttpPutResponseHopLimit": float64(2),
	} {
		keys := []any{"LaunchConfigurations", 0}
		for _, k := range strings.Split(path, ".") {
			if i, err := strconv.Atoi(k); err == nil {
				keys = append(keys, i)
			} else {
				keys = append(keys, k)
			}
		}
		if got := dig(full, keys...); got != want {
			t.Errorf("cli-3 %s = %v, want %v", path, got, want)
		}
	}
	if _, err := run("autoscaling", "create-launch-configuration", "--launch-configuration-name", "cli-1", "--image-id", "ami-sim", "--instance-type", "c5.large"); err == nil || !strings.Contains(err.Error(), "AlreadyExists") {
		t.Errorf("duplicate via CLI: %v", err)
	}
	// --page-size 1: the CLI follows NextToken through three pages.
	all := must("autoscaling", "describe-launch-configurations", "--page-size", "1")
	lcs, _ := all["LaunchConfigurations"].([]any)
	if len(lcs) != 3 || dig(all, "LaunchConfigurations", 2, "LaunchConfigurationName") != "cli-3" {
		t.Fatalf("describe-launch-configurations: %v", all)
	}
	// The CLI base64-encodes the user data; the API gives it back so.
	if ud := dig(all, "LaunchConfigurations", 0, "UserData"); ud != "LS1hZG1pbi10b2tlbj14" {
		t.Errorf("user data %v, want base64 of --admin-token=x", ud)
	}
	must("autoscaling", "create-auto-scaling-group", "--auto-scaling-group-name", "cli", "--launch-configuration-name", "cli-1",
		"--min-size", "0", "--max-size", "3", "--desired-capacity", "1", "--availability-zones", "us-east-1a")
	eventually(t, 10*time.Second, "instance from cli-1", func() error {
		g := must("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "cli")
		if dig(g, "AutoScalingGroups", 0, "LaunchConfigurationName") != "cli-1" || dig(g, "AutoScalingGroups", 0, "Instances", 0, "LaunchConfigurationName") != "cli-1" {
			return fmt.Errorf("%v", g)
		}
		ai := must("autoscaling", "describe-auto-scaling-instances")
		if dig(ai, "AutoScalingInstances", 0, "LaunchConfigurationName") != "cli-1" {
			return fmt.Errorf("%v", ai)
		}
		return nil
	})
	if _, err := run("autoscaling", "delete-launch-configuration", "--launch-configuration-name", "cli-1"); err == nil || !strings.Contains(err.Error(), "ResourceInUse") {
		t.Errorf("delete in use via CLI: %v", err)
	}
	must("autoscaling", "update-auto-scaling-group", "--auto-scaling-group-name", "cli", "--launch-configuration-name", "cli-2")
	if g := must("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "cli"); dig(g, "AutoScalingGroups", 0, "LaunchConfigurationName") != "cli-2" {
		t.Errorf("after update: %v", g)
	}
	must("autoscaling", "delete-launch-configuration", "--launch-configuration-name", "cli-1")
	if _, err := run("autoscaling", "delete-launch-configuration", "--launch-configuration-name", "cli-1"); err == nil || !strings.Contains(err.Error(), "ValidationError") {
		t.Errorf("delete twice via CLI: %v", err)
	}
}

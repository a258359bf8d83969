package aws

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"wsfleet/localcloud"
	"wsfleet/rollout"
)

func TestLCCopyName(t *testing.T) {
	long := strings.Repeat("n", 254)
	for _, tc := range []struct{ old, token, want string }{
		{"gitter-ws", "gitter-ws-new-ami", "gitter-ws-gitter-ws-new-ami"},
		{long, "chg", long[:251] + "-chg"},
		{"a", strings.Repeat("t", 300), "a-" + strings.Repeat("t", 126)},
	} {
		got := lcCopyName(tc.old, tc.token)
		if got != tc.want || len(got) > maxLCName {
			t.Errorf("lcCopyName(%.20s…, %.20s…) = %.40s… (%d), want %.40s…", tc.old, tc.token, got, len(got), tc.want)
		}
	}
}

// TestProviderLaunchConfiguration: on a group launched from a launch
// configuration, SetImage makes a copy with the new image named after the
// old one and the change, and points the group at it; repeated with the
// same token it makes nothing more and names the same previous one; the
// old one is kept, and SetTemplateVersion points the group back at it.
func TestProviderLaunchConfiguration(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := localcloud.Start(ctx, localcloud.Config{
		Listen: "127.0.0.1:0", Images: map[string]localcloud.Image{"ami-old": {Simulated: true}, "ami-new": {Simulated: true}},
		Tick: 20 * time.Millisecond, SimulatedBootTime: 50 * time.Millisecond, HealthCheckInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bootstrap(ctx, &localcloud.Topology{
		LaunchConfigurations: []localcloud.TopoLaunchConfiguration{{Name: "gitter-ws", ImageID: "ami-old", InstanceType: "c5.large", UserData: "--admin-token=t\n"}},
		Groups:               []localcloud.TopoGroup{{Name: "gitter-ws", LaunchConfiguration: "gitter-ws", Min: 2, Max: 4, Desired: 2, InstanceNames: []string{"ws-01", "ws-02"}}},
	}); err != nil {
		t.Fatal(err)
	}
	p, err := New(ctx, Config{Region: "us-east-1", Endpoint: c.Endpoint(), MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var g rollout.Group
	waitFor(t, "2 instances", func() error {
		g, err = p.Group(ctx, "gitter-ws")
		if err == nil && len(g.Instances) != 2 {
			err = rollout.ErrNotFound
		}
		return err
	})
	if g.Template != (rollout.TemplateRef{LaunchConfig: "gitter-ws"}) || g.Image != "ami-old" {
		t.Fatalf("group on %+v image %s", g.Template, g.Image)
	}
	for _, in := range g.Instances {
		if in.Launch != g.Template || in.Image != "ami-old" {
			t.Errorf("instance %s launched from %+v on %s", in.ID, in.Launch, in.Image)
		}
	}
	want := rollout.TemplateChange{Previous: rollout.TemplateRef{LaunchConfig: "gitter-ws"}, PreviousImage: "ami-old",
		New: rollout.TemplateRef{LaunchConfig: "gitter-ws-chg-1"}, NewImage: "ami-new"}
	for i := range 2 { // the second call is a repeat after a crash
		tc, err := p.SetImage(ctx, "gitter-ws", "ami-new", "chg-1")
		if err != nil {
			t.Fatalf("SetImage #%d: %v", i+1, err)
		}
		if tc != want {
			t.Errorf("SetImage #%d: %+v, want %+v", i+1, tc, want)
		}
	}
	asg := c.Clients("test").ASG
	lcs, err := asg.DescribeLaunchConfigurations(ctx, &autoscaling.DescribeLaunchConfigurationsInput{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, lc := range lcs.LaunchConfigurations {
		got[aws.ToString(lc.LaunchConfigurationName)] = aws.ToString(lc.ImageId) + " " + aws.ToString(lc.InstanceType) + " " + aws.ToString(lc.UserData)
	}
	if len(got) != 2 || got["gitter-ws"] != "ami-old c5.large LS1hZG1pbi10b2tlbj10Cg==" || got["gitter-ws-chg-1"] != "ami-new c5.large LS1hZG1pbi10b2tlbj10Cg==" {
		t.Errorf("launch configurations %v: want the old one kept and its copy with ami-new", got)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Template.LaunchConfig != "gitter-ws-chg-1" || g.Image != "ami-new" {
		t.Errorf("after SetImage the group is on %+v (%s)", g.Template, g.Image)
	}
	if err := p.SetTemplateVersion(ctx, "gitter-ws", want.Previous); err != nil {
		t.Fatal(err)
	}
	if g, _ = p.Group(ctx, "gitter-ws"); g.Template.LaunchConfig != "gitter-ws" || g.Image != "ami-old" {
		t.Errorf("after the rollback the group is on %+v (%s)", g.Template, g.Image)
	}
	// The copy exists with another image: refused, not overwritten.
	if _, err := p.SetImage(ctx, "gitter-ws", "ami-old", "chg-1"); err == nil || !strings.Contains(err.Error(), "already exists with image ami-new") {
		t.Errorf("SetImage onto a copy with another image: %v", err)
	}
	for ref, want := range map[rollout.TemplateRef]bool{{LaunchConfig: "gitter-ws-chg-1"}: true, {LaunchConfig: "nope"}: false} {
		if ok, err := p.LaunchRefExists(ctx, ref); ok != want || err != nil {
			t.Errorf("LaunchRefExists(%s) = %v, %v", ref.LaunchConfig, ok, err)
		}
	}

	// A configuration with every attribute the API takes: its copy has
	// them all, the image aside.
	full := &autoscaling.CreateLaunchConfigurationInput{
		LaunchConfigurationName: aws.String("full"), ImageId: aws.String("ami-old"), InstanceType: aws.String("c5.large"),
		KeyName: aws.String("ops"), SecurityGroups: []string{"sg-1", "sg-2"}, UserData: aws.String("LS1hZG1pbi10b2tlbj10Cg=="),
		IamInstanceProfile: aws.String("ws-node"), InstanceMonitoring: &asgtypes.InstanceMonitoring{Enabled: aws.Bool(false)},
		EbsOptimized: aws.Bool(true), AssociatePublicIpAddress: aws.Bool(false), PlacementTenancy: aws.String("default"),
		SpotPrice: aws.String("0.05"),
		BlockDeviceMappings: []asgtypes.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
			Ebs: &asgtypes.Ebs{VolumeSize: aws.Int32(20), VolumeType: aws.String("gp3"), DeleteOnTermination: aws.Bool(true), Encrypted: aws.Bool(true)}}},
		MetadataOptions: &asgtypes.InstanceMetadataOptions{HttpTokens: asgtypes.InstanceMetadataHttpTokensStateRequired, HttpPutResponseHopLimit: aws.Int32(2)},
	}
	if _, err := asg.CreateLaunchConfiguration(ctx, full); err != nil {
		t.Fatal(err)
	}
	if _, err := asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("gitter-ws"), LaunchConfigurationName: aws.String("full")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetImage(ctx, "gitter-ws", "ami-new", "chg-2"); err != nil {
		t.Fatal(err)
	}
	both, err := asg.DescribeLaunchConfigurations(ctx, &autoscaling.DescribeLaunchConfigurationsInput{LaunchConfigurationNames: []string{"full", "full-chg-2"}})
	if err != nil || len(both.LaunchConfigurations) != 2 {
		t.Fatalf("describe full and its copy: %v %v", both, err)
	}
	orig, cp := both.LaunchConfigurations[0], both.LaunchConfigurations[1]
	if aws.ToString(orig.ImageId) != "ami-old" || aws.ToString(cp.ImageId) != "ami-new" {
		t.Errorf("images %s and %s, want ami-old and its copy on ami-new", aws.ToString(orig.ImageId), aws.ToString(cp.ImageId))
	}
	norm := func(lc asgtypes.LaunchConfiguration) string {
		lc.LaunchConfigurationName, lc.LaunchConfigurationARN, lc.ImageId, lc.CreatedTime = nil, nil, nil, nil
		b, _ := json.Marshal(lc)
		return string(b)
	}
	if a, b := norm(orig), norm(cp); a != b {
		t.Errorf("the copy differs besides its name and image:\n orig %s\n copy %s", a, b)
	}
	if !strings.Contains(norm(orig), `"VolumeSize":20`) || !strings.Contains(norm(orig), `"HttpTokens":"required"`) || !strings.Contains(norm(orig), `"SpotPrice":"0.05"`) {
		t.Errorf("the local cloud does not give back what it was given: %s", norm(orig))
	}
}

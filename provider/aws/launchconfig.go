package aws

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"

	"wsfleet/rollout"
)

// Groups on a launch configuration. A launch configuration never changes
// once made, so a new image is a copy of the group's configuration with
// that image, named after the old one and the change; the old one is kept
// for the rollback, which points the group back at it.

var _ rollout.LaunchRefChecker = (*Provider)(nil)

// maxLCName is Auto Scaling's limit on a launch configuration's name.
const maxLCName = 255

// lcCopyName names the copy of launch configuration old that a change
// (token) makes: "<old>-<token>", the old name shortened when the two
// would pass AWS's 255 characters.
func lcCopyName(old, token string) string {
	suffix := "-" + token
	if len(suffix) >= maxLCName {
		suffix = suffix[:maxLCName/2]
	}
	if len(old)+len(suffix) > maxLCName {
		old = old[:maxLCName-len(suffix)]
	}
	return old + suffix
}

// describeLC reads one launch configuration; ok is false when it does not
// exist.
func (p *Provider) describeLC(ctx context.Context, name string) (asgtypes.LaunchConfiguration, bool, error) {
	out, err := p.asg.DescribeLaunchConfigurations(ctx, &autoscaling.DescribeLaunchConfigurationsInput{LaunchConfigurationNames: []string{name}})
	if err != nil {
		return asgtypes.LaunchConfiguration{}, false, fmt.Errorf("describe launch configuration %s: %w", name, err)
	}
	for _, lc := range out.LaunchConfigurations {
		if aws.ToString(lc.LaunchConfigurationName) == name {
			return lc, true, nil
		}
	}
	return asgtypes.LaunchConfiguration{}, false, nil
}

// lcImage is the AMI of a launch configuration; cached, since a launch
// configuration never changes (a name deleted and made again with another
// image is not seen: wsfleet never does that).
func (p *Provider) lcImage(ctx context.Context, name string) (string, error) {
	key := "lc:" + name
	p.mu.Lock()
	img, ok := p.images[key]
	p.mu.Unlock()
	if ok {
		return img, nil
	}
	lc, found, err := p.describeLC(ctx, name)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("launch configuration %s: %w", name, rollout.ErrNotFound)
	}
	img = aws.ToString(lc.ImageId)
	p.mu.Lock()
	p.images[key] = img
	p.mu.Unlock()
	return img, nil
}

// launchOf is what a group's instance was launched from.
func launchOf(in asgtypes.Instance) rollout.TemplateRef {
	if n := aws.ToString(in.LaunchConfigurationName); n != "" {
		return rollout.TemplateRef{LaunchConfig: n}
	}
	if lt := in.LaunchTemplate; lt != nil {
		return rollout.TemplateRef{ID: aws.ToString(lt.LaunchTemplateId), Name: aws.ToString(lt.LaunchTemplateName), Version: aws.ToString(lt.Version)}
	}
	return rollout.TemplateRef{}
}

// groupLC fills g's launch reference and image from the group's launch
// configuration; false when the group is not on one.
func (p *Provider) groupLC(ctx context.Context, ag asgtypes.AutoScalingGroup, g *rollout.Group) (bool, error) {
	name := aws.ToString(ag.LaunchConfigurationName)
	if name == "" {
		return false, nil
	}
	img, err := p.lcImage(ctx, name)
	if err != nil {
		return true, fmt.Errorf("group %s: %w", aws.ToString(ag.AutoScalingGroupName), err)
	}
	g.Template, g.Image = rollout.TemplateRef{LaunchConfig: name}, img
	return true, nil
}

// setImageLC makes (or finds) the copy of the group's launch configuration
// with image and points the group at it. Repeated with the same token
// after a crash, it finds the copy by its name, and the configuration the
// group ran before from the group's older instances.
func (p *Provider) setImageLC(ctx context.Context, ag asgtypes.AutoScalingGroup, image, token string) (rollout.TemplateChange, error) {
	group := aws.ToString(ag.AutoScalingGroupName)
	cur := aws.ToString(ag.LaunchConfigurationName)
	var tc rollout.TemplateChange
	prev := cur
	if strings.HasSuffix(cur, "-"+token) {
		// Already pointed at this change's copy (a call repeated after
		// a crash): the previous one is what the older instances run.
		if img, err := p.lcImage(ctx, cur); err == nil && img == image {
			prev = previousLC(ag, cur)
			if prev == "" {
				prev = strings.TrimSuffix(cur, "-"+token)
			}
		}
	}
	prevImg, err := p.lcImage(ctx, prev)
	if err != nil {
		return tc, fmt.Errorf("set image of %s: %w", group, err)
	}
	tc.Previous, tc.PreviousImage = rollout.TemplateRef{LaunchConfig: prev}, prevImg
	name := lcCopyName(prev, token)
	tc.New, tc.NewImage = rollout.TemplateRef{LaunchConfig: name}, image
	made, found, err := p.describeLC(ctx, name)
	if err != nil {
		return tc, fmt.Errorf("set image of %s: %w", group, err)
	}
	switch {
	case found && aws.ToString(made.ImageId) != image:
		return tc, fmt.Errorf("set image of %s: launch configuration %s already exists with image %s, not %s; delete it, or give the change another id", group, name, aws.ToString(made.ImageId), image)
	case !found:
		src, ok, err := p.describeLC(ctx, prev)
		if err != nil {
			return tc, fmt.Errorf("set image of %s: %w", group, err)
		}
		if !ok {
			return tc, fmt.Errorf("set image of %s: launch configuration %s: %w", group, prev, rollout.ErrNotFound)
		}
		in := lcCopy(src, name, image)
		if _, err := p.asg.CreateLaunchConfiguration(ctx, in); err != nil {
			var ae smithy.APIError
			// Made by an earlier call whose answer was lost: the
			// read above may not have seen it yet.
			if !errors.As(err, &ae) || ae.ErrorCode() != "AlreadyExists" {
				return tc, fmt.Errorf("set image of %s: create launch configuration %s: %w", group, name, err)
			}
		}
		if err := p.confirm(ctx, "launch configuration "+name, func(ctx context.Context) (bool, error) {
			lc, ok, err := p.describeLC(ctx, name)
			return ok && aws.ToString(lc.ImageId) == image, err
		}); err != nil {
			return tc, err
		}
	}
	if err := p.setLC(ctx, group, name); err != nil {
		return tc, err
	}
	return tc, nil
}

// lcCopy is the CreateLaunchConfiguration input that copies src under
// name with image: every attribute the API takes back, the image aside.
func lcCopy(src asgtypes.LaunchConfiguration, name, image string) *autoscaling.CreateLaunchConfigurationInput {
	in := &autoscaling.CreateLaunchConfigurationInput{
		LaunchConfigurationName:  aws.String(name),
		ImageId:                  aws.String(image),
		InstanceType:             src.InstanceType,
		SecurityGroups:           src.SecurityGroups,
		BlockDeviceMappings:      src.BlockDeviceMappings,
		InstanceMonitoring:       src.InstanceMonitoring,
		EbsOptimized:             src.EbsOptimized,
		AssociatePublicIpAddress: src.AssociatePublicIpAddress,
		MetadataOptions:          src.MetadataOptions,
	}
	// The API refuses empty strings (minimum length 1): only what is set.
	for _, f := range []struct {
		v   *string
		dst **string
	}{
		{src.KeyName, &in.KeyName}, {src.UserData, &in.UserData}, {src.KernelId, &in.KernelId},
		{src.RamdiskId, &in.RamdiskId}, {src.IamInstanceProfile, &in.IamInstanceProfile},
		{src.SpotPrice, &in.SpotPrice}, {src.PlacementTenancy, &in.PlacementTenancy},
		{src.ClassicLinkVPCId, &in.ClassicLinkVPCId},
	} {
		if aws.ToString(f.v) != "" {
			*f.dst = f.v
		}
	}
	if len(src.ClassicLinkVPCSecurityGroups) > 0 {
		in.ClassicLinkVPCSecurityGroups = src.ClassicLinkVPCSecurityGroups
	}
	return in
}

// previousLC is the launch configuration most of the group's live
// instances not on cur carry ("" when none does).
func previousLC(ag asgtypes.AutoScalingGroup, cur string) string {
	n := map[string]int{}
	for _, in := range ag.Instances {
		name := aws.ToString(in.LaunchConfigurationName)
		if name == "" || name == cur || strings.HasPrefix(string(in.LifecycleState), "Terminat") {
			continue
		}
		n[name]++
	}
	names := make([]string, 0, len(n))
	for k := range n {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if n[names[i]] != n[names[j]] {
			return n[names[i]] > n[names[j]]
		}
		return names[i] < names[j]
	})
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// setLC points the group at a launch configuration and reads it back.
func (p *Provider) setLC(ctx context.Context, group, name string) error {
	_, err := p.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group), LaunchConfigurationName: aws.String(name),
	})
	if err != nil {
		return fmt.Errorf("set launch configuration %s of %s: %w", name, group, err)
	}
	return p.confirmGroup(ctx, group, fmt.Sprintf("launch configuration %s of %s", name, group), func(g asgtypes.AutoScalingGroup) bool {
		return aws.ToString(g.LaunchConfigurationName) == name
	})
}

// LaunchRefExists reports whether a launch configuration, or a launch
// template version, still exists.
func (p *Provider) LaunchRefExists(ctx context.Context, ref rollout.TemplateRef) (bool, error) {
	if ref.IsLaunchConfig() {
		_, ok, err := p.describeLC(ctx, ref.LaunchConfig)
		return ok, err
	}
	_, _, err := p.resolveVersion(ctx, ref.ID, ref.Version)
	var ae smithy.APIError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, rollout.ErrNotFound), errors.As(err, &ae) && strings.HasPrefix(ae.ErrorCode(), "InvalidLaunchTemplate"):
		return false, nil
	}
	return false, err
}

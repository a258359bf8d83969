package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// launchConfiguration is aws_launch_configuration: immutable, so every
// argument forces a replacement (the example sets create_before_destroy,
// so the group moves to the new one before the old one is deleted).
type launchConfiguration struct{ base }

func newLaunchConfiguration() resource.Resource { return &launchConfiguration{} }

type lcModel struct {
	ID           types.String `tfsdk:"id"`
	ARN          types.String `tfsdk:"arn"`
	Name         types.String `tfsdk:"name"`
	NamePrefix   types.String `tfsdk:"name_prefix"`
	ImageID      types.String `tfsdk:"image_id"`
	InstanceType types.String `tfsdk:"instance_type"`
	UserData     types.String `tfsdk:"user_data"`
	KeyName      types.String `tfsdk:"key_name"`
}

func (r *launchConfiguration) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_launch_configuration"
}

func (r *launchConfiguration) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	computed := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{Attributes: map[string]schema.Attribute{
		"id":            schema.StringAttribute{Computed: true, PlanModifiers: computed},
		"arn":           schema.StringAttribute{Computed: true, PlanModifiers: computed},
		"name":          schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace(), stringplanmodifier.UseStateForUnknown()}},
		"name_prefix":   schema.StringAttribute{Optional: true, PlanModifiers: replace},
		"image_id":      schema.StringAttribute{Required: true, PlanModifiers: replace},
		"instance_type": schema.StringAttribute{Required: true, PlanModifiers: replace},
		"user_data":     schema.StringAttribute{Optional: true, PlanModifiers: replace},
		"key_name":      schema.StringAttribute{Optional: true, PlanModifiers: replace},
	}}
}

func (r *launchConfiguration) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m lcModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	if name == "" {
		name = uniqueName(m.NamePrefix.ValueString())
	}
	in := &autoscaling.CreateLaunchConfigurationInput{
		LaunchConfigurationName: aws.String(name),
		ImageId:                 aws.String(m.ImageID.ValueString()),
		InstanceType:            aws.String(m.InstanceType.ValueString()),
	}
	if ud := m.UserData.ValueString(); ud != "" {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(ud)))
	}
	if k := m.KeyName.ValueString(); k != "" {
		in.KeyName = aws.String(k)
	}
	if _, err := r.c.asg.CreateLaunchConfiguration(ctx, in); err != nil {
		resp.Diagnostics.AddError("creating Auto Scaling Launch Configuration ("+name+")", err.Error())
		return
	}
	m.Name, m.ID = types.StringValue(name), types.StringValue(name)
	if err := r.read(ctx, &m); err != nil {
		resp.Diagnostics.AddError("reading Auto Scaling Launch Configuration ("+name+")", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// read refreshes m from the API; errGone when it no longer exists.
func (r *launchConfiguration) read(ctx context.Context, m *lcModel) error {
	out, err := r.c.asg.DescribeLaunchConfigurations(ctx, &autoscaling.DescribeLaunchConfigurationsInput{
		LaunchConfigurationNames: []string{m.ID.ValueString()},
	})
	if err != nil {
		return err
	}
	if len(out.LaunchConfigurations) == 0 {
		return errGone
	}
	lc := out.LaunchConfigurations[0]
	m.ARN = types.StringPointerValue(lc.LaunchConfigurationARN)
	m.Name = types.StringPointerValue(lc.LaunchConfigurationName)
	m.ImageID = types.StringPointerValue(lc.ImageId)
	m.InstanceType = types.StringPointerValue(lc.InstanceType)
	if ud := aws.ToString(lc.UserData); ud != "" {
		if raw, err := base64.StdEncoding.DecodeString(ud); err == nil {
			m.UserData = types.StringValue(string(raw))
		}
	}
	if k := aws.ToString(lc.KeyName); k != "" {
		m.KeyName = types.StringValue(k)
	}
	return nil
}

func (r *launchConfiguration) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	refresh(ctx, req, resp, "Auto Scaling Launch Configuration", func(m *lcModel) string { return m.ID.ValueString() }, r.read)
}

// Update is never called with a change: every argument forces a new one.
func (r *launchConfiguration) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m lcModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *launchConfiguration) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	remove(ctx, req, resp, "Auto Scaling Launch Configuration", func(m *lcModel) string { return m.ID.ValueString() }, func(ctx context.Context, id string) error {
		_, err := r.c.asg.DeleteLaunchConfiguration(ctx, &autoscaling.DeleteLaunchConfigurationInput{LaunchConfigurationName: aws.String(id)})
		return err
	})
}

// uniqueName is prefix and a random suffix, as name_prefix promises.
func uniqueName(prefix string) string {
	if prefix == "" {
		prefix = "terraform-"
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("random name: %v", err))
	}
	return prefix + hex.EncodeToString(b[:])
}

package main

import (
	"context"
	"errors"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// launchTemplate is aws_launch_template: a change of its data is an
// update in place that makes a new version (latest_version), and the
// default version too with update_default_version.
type launchTemplate struct{ base }

func newLaunchTemplate() resource.Resource { return &launchTemplate{} }

type ltModel struct {
	ID                   types.String `tfsdk:"id"`
	Name                 types.String `tfsdk:"name"`
	NamePrefix           types.String `tfsdk:"name_prefix"`
	ImageID              types.String `tfsdk:"image_id"`
	InstanceType         types.String `tfsdk:"instance_type"`
	UserData             types.String `tfsdk:"user_data"`
	UpdateDefaultVersion types.Bool   `tfsdk:"update_default_version"`
	LatestVersion        types.Int64  `tfsdk:"latest_version"`
	DefaultVersion       types.Int64  `tfsdk:"default_version"`
}

func (r *launchTemplate) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_launch_template"
}

func (r *launchTemplate) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	replaceKeep := []planmodifier.String{stringplanmodifier.RequiresReplace(), stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{Attributes: map[string]schema.Attribute{
		"id":                     schema.StringAttribute{Computed: true, PlanModifiers: keep},
		"name":                   schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: replaceKeep},
		"name_prefix":            schema.StringAttribute{Optional: true, PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
		"image_id":               schema.StringAttribute{Optional: true},
		"instance_type":          schema.StringAttribute{Optional: true},
		"user_data":              schema.StringAttribute{Optional: true, Description: "Base64-encoded, as the API takes it."},
		"update_default_version": schema.BoolAttribute{Optional: true},
		"latest_version":         schema.Int64Attribute{Computed: true, PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}},
		"default_version":        schema.Int64Attribute{Computed: true, PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}},
	}}
}

// ModifyPlan marks latest_version (and default_version when it follows)
// unknown when the template's data changes: the update makes a version.
func (r *launchTemplate) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var st, pl ltModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	resp.Diagnostics.Append(req.Plan.Get(ctx, &pl)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if st.ImageID.Equal(pl.ImageID) && st.InstanceType.Equal(pl.InstanceType) && st.UserData.Equal(pl.UserData) {
		return
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("latest_version"), types.Int64Unknown())...)
	if pl.UpdateDefaultVersion.ValueBool() {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("default_version"), types.Int64Unknown())...)
	}
}

func (m *ltModel) data() *ec2types.RequestLaunchTemplateData {
	d := &ec2types.RequestLaunchTemplateData{}
	if v := m.ImageID.ValueString(); v != "" {
		d.ImageId = aws.String(v)
	}
	if v := m.InstanceType.ValueString(); v != "" {
		d.InstanceType = ec2types.InstanceType(v)
	}
	if v := m.UserData.ValueString(); v != "" {
		d.UserData = aws.String(v)
	}
	return d
}

func (r *launchTemplate) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m ltModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	if name == "" {
		name = uniqueName(m.NamePrefix.ValueString())
	}
	out, err := r.c.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: m.data(),
	})
	if err != nil {
		resp.Diagnostics.AddError("creating EC2 Launch Template ("+name+")", err.Error())
		return
	}
	m.ID = types.StringPointerValue(out.LaunchTemplate.LaunchTemplateId)
	if err := r.read(ctx, &m); err != nil {
		resp.Diagnostics.AddError("reading EC2 Launch Template ("+m.ID.ValueString()+")", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// read refreshes m from the template and its latest version.
func (r *launchTemplate) read(ctx context.Context, m *ltModel) error {
	out, err := r.c.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{m.ID.ValueString()}})
	if err != nil {
		var code interface{ ErrorCode() string }
		if errors.As(err, &code) && code.ErrorCode() == "InvalidLaunchTemplateId.NotFound" {
			return errGone
		}
		return err
	}
	if len(out.LaunchTemplates) == 0 {
		return errGone
	}
	lt := out.LaunchTemplates[0]
	m.Name = types.StringPointerValue(lt.LaunchTemplateName)
	m.LatestVersion = types.Int64PointerValue(lt.LatestVersionNumber)
	m.DefaultVersion = types.Int64PointerValue(lt.DefaultVersionNumber)
	vs, err := r.c.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: lt.LaunchTemplateId,
		Versions:         []string{strconv.FormatInt(aws.ToInt64(lt.LatestVersionNumber), 10)},
	})
	if err != nil {
		return err
	}
	if len(vs.LaunchTemplateVersions) == 0 || vs.LaunchTemplateVersions[0].LaunchTemplateData == nil {
		return errors.New("latest version not found")
	}
	d := vs.LaunchTemplateVersions[0].LaunchTemplateData
	m.ImageID = optString(d.ImageId)
	m.InstanceType = optString(aws.String(string(d.InstanceType)))
	m.UserData = optString(d.UserData)
	return nil
}

// optString is null for an empty or absent value, as an unset argument.
func optString(s *string) types.String {
	if aws.ToString(s) == "" {
		return types.StringNull()
	}
	return types.StringValue(*s)
}

func (r *launchTemplate) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	refresh(ctx, req, resp, "EC2 Launch Template", func(m *ltModel) string { return m.ID.ValueString() }, r.read)
}

func (r *launchTemplate) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, st ltModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.ID = st.ID
	if !(st.ImageID.Equal(m.ImageID) && st.InstanceType.Equal(m.InstanceType) && st.UserData.Equal(m.UserData)) {
		out, err := r.c.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
			LaunchTemplateId:   aws.String(m.ID.ValueString()),
			LaunchTemplateData: m.data(),
		})
		if err != nil {
			resp.Diagnostics.AddError("creating EC2 Launch Template ("+m.ID.ValueString()+") version", err.Error())
			return
		}
		if m.UpdateDefaultVersion.ValueBool() {
			v := strconv.FormatInt(aws.ToInt64(out.LaunchTemplateVersion.VersionNumber), 10)
			if _, err := r.c.ec2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{
				LaunchTemplateId: aws.String(m.ID.ValueString()), DefaultVersion: aws.String(v),
			}); err != nil {
				resp.Diagnostics.AddError("updating EC2 Launch Template ("+m.ID.ValueString()+") default version", err.Error())
				return
			}
		}
	}
	if err := r.read(ctx, &m); err != nil {
		resp.Diagnostics.AddError("reading EC2 Launch Template ("+m.ID.ValueString()+")", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *launchTemplate) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	remove(ctx, req, resp, "EC2 Launch Template", func(m *ltModel) string { return m.ID.ValueString() }, func(ctx context.Context, id string) error {
		_, err := r.c.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(id)})
		return err
	})
}

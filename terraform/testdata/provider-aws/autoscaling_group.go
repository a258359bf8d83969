package main

import (
	"context"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// group is aws_autoscaling_group: its launch configuration or template,
// sizes, zones or subnets, target groups and tags change in place; Read
// refreshes all of them from the API, so a change made outside Terraform
// shows as drift.
type group struct{ base }

func newGroup() resource.Resource { return &group{} }

type asgModel struct {
	ID                     types.String  `tfsdk:"id"`
	ARN                    types.String  `tfsdk:"arn"`
	Name                   types.String  `tfsdk:"name"`
	MinSize                types.Int64   `tfsdk:"min_size"`
	MaxSize                types.Int64   `tfsdk:"max_size"`
	DesiredCapacity        types.Int64   `tfsdk:"desired_capacity"`
	LaunchConfiguration    types.String  `tfsdk:"launch_configuration"`
	LaunchTemplate         []groupLTSpec `tfsdk:"launch_template"`
	AvailabilityZones      types.Set     `tfsdk:"availability_zones"`
	VPCZoneIdentifier      types.Set     `tfsdk:"vpc_zone_identifier"`
	TargetGroupARNs        types.Set     `tfsdk:"target_group_arns"`
	HealthCheckType        types.String  `tfsdk:"health_check_type"`
	HealthCheckGracePeriod types.Int64   `tfsdk:"health_check_grace_period"`
	Tag                    []groupTag    `tfsdk:"tag"`
}

type groupLTSpec struct {
	ID      types.String `tfsdk:"id"`
	Name    types.String `tfsdk:"name"`
	Version types.String `tfsdk:"version"`
}

type groupTag struct {
	Key               types.String `tfsdk:"key"`
	Value             types.String `tfsdk:"value"`
	PropagateAtLaunch types.Bool   `tfsdk:"propagate_at_launch"`
}

func (r *group) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_autoscaling_group"
}

func (r *group) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	keepSet := []planmodifier.Set{setplanmodifier.UseStateForUnknown()}
	keepInt := []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}
	strSet := func() schema.SetAttribute {
		return schema.SetAttribute{ElementType: types.StringType, Optional: true, Computed: true, PlanModifiers: keepSet}
	}
	resp.Schema = schema.Schema{
		Attributes: map[string]schema.Attribute{
			"id":                        schema.StringAttribute{Computed: true, PlanModifiers: keep},
			"arn":                       schema.StringAttribute{Computed: true, PlanModifiers: keep},
			"name":                      schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace(), stringplanmodifier.UseStateForUnknown()}},
			"min_size":                  schema.Int64Attribute{Required: true},
			"max_size":                  schema.Int64Attribute{Required: true},
			"desired_capacity":          schema.Int64Attribute{Optional: true, Computed: true, PlanModifiers: keepInt},
			"launch_configuration":      schema.StringAttribute{Optional: true},
			"availability_zones":        strSet(),
			"vpc_zone_identifier":       strSet(),
			"target_group_arns":         strSet(),
			"health_check_type":         schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: keep},
			"health_check_grace_period": schema.Int64Attribute{Optional: true, Computed: true, PlanModifiers: keepInt},
		},
		Blocks: map[string]schema.Block{
			"launch_template": schema.ListNestedBlock{NestedObject: schema.NestedBlockObject{Attributes: map[string]schema.Attribute{
				"id":      schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: keep},
				"name":    schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: keep},
				"version": schema.StringAttribute{Optional: true},
			}}},
			"tag": schema.SetNestedBlock{NestedObject: schema.NestedBlockObject{Attributes: map[string]schema.Attribute{
				"key":                 schema.StringAttribute{Required: true},
				"value":               schema.StringAttribute{Required: true},
				"propagate_at_launch": schema.BoolAttribute{Required: true},
			}}},
		},
	}
}

func setStrings(ctx context.Context, s types.Set, diags *diag.Diagnostics) []string {
	if s.IsNull() || s.IsUnknown() {
		return nil
	}
	var out []string
	diags.Append(s.ElementsAs(ctx, &out, false)...)
	sort.Strings(out)
	return out
}

func stringSet(v []string) types.Set {
	elems := make([]attr.Value, 0, len(v))
	for _, s := range v {
		elems = append(elems, types.StringValue(s))
	}
	return types.SetValueMust(types.StringType, elems)
}

func (m *asgModel) ltSpec() *asgtypes.LaunchTemplateSpecification {
	if len(m.LaunchTemplate) == 0 {
		return nil
	}
	lt := m.LaunchTemplate[0]
	spec := &asgtypes.LaunchTemplateSpecification{}
	if v := lt.ID.ValueString(); v != "" {
		spec.LaunchTemplateId = aws.String(v)
	} else if v := lt.Name.ValueString(); v != "" {
		spec.LaunchTemplateName = aws.String(v)
	}
	if v := lt.Version.ValueString(); v != "" {
		spec.Version = aws.String(v)
	}
	return spec
}

func (m *asgModel) tags(name string) []asgtypes.Tag {
	var out []asgtypes.Tag
	for _, t := range m.Tag {
		out = append(out, asgtypes.Tag{
			Key: aws.String(t.Key.ValueString()), Value: aws.String(t.Value.ValueString()),
			PropagateAtLaunch: aws.Bool(t.PropagateAtLaunch.ValueBool()),
			ResourceId:        aws.String(name), ResourceType: aws.String("auto-scaling-group"),
		})
	}
	return out
}

func int32Of(v types.Int64) *int32 {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	return aws.Int32(int32(v.ValueInt64()))
}

func (r *group) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m asgModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	if name == "" {
		name = uniqueName("terraform-")
	}
	in := &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName:   aws.String(name),
		MinSize:                int32Of(m.MinSize),
		MaxSize:                int32Of(m.MaxSize),
		DesiredCapacity:        int32Of(m.DesiredCapacity),
		LaunchTemplate:         m.ltSpec(),
		AvailabilityZones:      setStrings(ctx, m.AvailabilityZones, &resp.Diagnostics),
		TargetGroupARNs:        setStrings(ctx, m.TargetGroupARNs, &resp.Diagnostics),
		HealthCheckGracePeriod: int32Of(m.HealthCheckGracePeriod),
		Tags:                   m.tags(name),
	}
	if v := m.LaunchConfiguration.ValueString(); v != "" {
		in.LaunchConfigurationName = aws.String(v)
	}
	if subnets := setStrings(ctx, m.VPCZoneIdentifier, &resp.Diagnostics); len(subnets) > 0 {
		in.VPCZoneIdentifier = aws.String(strings.Join(subnets, ","))
	}
	if v := m.HealthCheckType.ValueString(); v != "" {
		in.HealthCheckType = aws.String(v)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	if _, err := r.c.asg.CreateAutoScalingGroup(ctx, in); err != nil {
		resp.Diagnostics.AddError("creating Auto Scaling Group ("+name+")", err.Error())
		return
	}
	m.ID = types.StringValue(name)
	planned := m
	if err := r.read(ctx, &m); err != nil {
		resp.Diagnostics.AddError("reading Auto Scaling Group ("+name+")", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, keepPlanned(planned, m))...)
}

// keepPlanned is the state after a create or an update: the planned
// values where the plan knew them (Terraform requires them back as they
// were, even if something else changed the group meanwhile: a rollout's
// lock tag, its capacity), and what the API says for the rest.
func keepPlanned(plan, api asgModel) *asgModel {
	out := plan
	pick := func(p, a types.String) types.String {
		if p.IsUnknown() {
			return a
		}
		return p
	}
	pickInt := func(p, a types.Int64) types.Int64 {
		if p.IsUnknown() {
			return a
		}
		return p
	}
	pickSet := func(p, a types.Set) types.Set {
		if p.IsUnknown() {
			return a
		}
		return p
	}
	out.ID, out.ARN, out.Name = pick(plan.ID, api.ID), pick(plan.ARN, api.ARN), pick(plan.Name, api.Name)
	out.DesiredCapacity = pickInt(plan.DesiredCapacity, api.DesiredCapacity)
	out.HealthCheckGracePeriod = pickInt(plan.HealthCheckGracePeriod, api.HealthCheckGracePeriod)
	out.HealthCheckType = pick(plan.HealthCheckType, api.HealthCheckType)
	out.AvailabilityZones = pickSet(plan.AvailabilityZones, api.AvailabilityZones)
	out.VPCZoneIdentifier = pickSet(plan.VPCZoneIdentifier, api.VPCZoneIdentifier)
	out.TargetGroupARNs = pickSet(plan.TargetGroupARNs, api.TargetGroupARNs)
	out.LaunchTemplate = nil
	for i, lt := range plan.LaunchTemplate {
		var a groupLTSpec
		if i < len(api.LaunchTemplate) {
			a = api.LaunchTemplate[i]
		}
		out.LaunchTemplate = append(out.LaunchTemplate, groupLTSpec{ID: pick(lt.ID, a.ID), Name: pick(lt.Name, a.Name), Version: pick(lt.Version, a.Version)})
	}
	if out.LaunchTemplate == nil {
		out.LaunchTemplate = []groupLTSpec{}
	}
	if out.Tag == nil {
		out.Tag = []groupTag{}
	}
	return &out
}

// read refreshes m from DescribeAutoScalingGroups; errGone when the
// group no longer exists.
func (r *group) read(ctx context.Context, m *asgModel) error {
	out, err := r.c.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{m.ID.ValueString()},
	})
	if err != nil {
		return err
	}
	if len(out.AutoScalingGroups) == 0 {
		return errGone
	}
	g := out.AutoScalingGroups[0]
	m.Name = types.StringPointerValue(g.AutoScalingGroupName)
	m.ARN = types.StringPointerValue(g.AutoScalingGroupARN)
	m.MinSize = types.Int64Value(int64(aws.ToInt32(g.MinSize)))
	m.MaxSize = types.Int64Value(int64(aws.ToInt32(g.MaxSize)))
	m.DesiredCapacity = types.Int64Value(int64(aws.ToInt32(g.DesiredCapacity)))
	m.LaunchConfiguration = optString(g.LaunchConfigurationName)
	m.LaunchTemplate = []groupLTSpec{}
	if lt := g.LaunchTemplate; lt != nil {
		m.LaunchTemplate = []groupLTSpec{{ID: optString(lt.LaunchTemplateId), Name: optString(lt.LaunchTemplateName), Version: optString(lt.Version)}}
	}
	m.AvailabilityZones = stringSet(g.AvailabilityZones)
	var subnets []string
	for _, s := range strings.Split(aws.ToString(g.VPCZoneIdentifier), ",") {
		if s = strings.TrimSpace(s); s != "" {
			subnets = append(subnets, s)
		}
	}
	m.VPCZoneIdentifier = stringSet(subnets)
	m.TargetGroupARNs = stringSet(g.TargetGroupARNs)
	m.HealthCheckType = types.StringPointerValue(g.HealthCheckType)
	m.HealthCheckGracePeriod = types.Int64Value(int64(aws.ToInt32(g.HealthCheckGracePeriod)))
	m.Tag = []groupTag{}
	for _, t := range g.Tags {
		if strings.HasPrefix(aws.ToString(t.Key), "aws:") {
			continue
		}
		m.Tag = append(m.Tag, groupTag{Key: types.StringPointerValue(t.Key), Value: types.StringPointerValue(t.Value), PropagateAtLaunch: types.BoolValue(aws.ToBool(t.PropagateAtLaunch))})
	}
	return nil
}

func (r *group) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	refresh(ctx, req, resp, "Auto Scaling Group", func(m *asgModel) string { return m.ID.ValueString() }, r.read)
}

func (r *group) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, st asgModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := st.ID.ValueString()
	m.ID = st.ID
	in := &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String(name)}
	changed := false
	setInt := func(dst **int32, plan, state types.Int64) {
		if !plan.IsUnknown() && !plan.Equal(state) {
			*dst, changed = int32Of(plan), true
		}
	}
	setInt(&in.MinSize, m.MinSize, st.MinSize)
	setInt(&in.MaxSize, m.MaxSize, st.MaxSize)
	setInt(&in.DesiredCapacity, m.DesiredCapacity, st.DesiredCapacity)
	setInt(&in.HealthCheckGracePeriod, m.HealthCheckGracePeriod, st.HealthCheckGracePeriod)
	if !m.LaunchConfiguration.Equal(st.LaunchConfiguration) && m.LaunchConfiguration.ValueString() != "" {
		in.LaunchConfigurationName, changed = aws.String(m.LaunchConfiguration.ValueString()), true
	}
	if spec := m.ltSpec(); spec != nil && !ltSpecEqual(m.LaunchTemplate, st.LaunchTemplate) {
		in.LaunchTemplate, changed = spec, true
	}
	if !m.HealthCheckType.IsUnknown() && !m.HealthCheckType.Equal(st.HealthCheckType) {
		in.HealthCheckType, changed = aws.String(m.HealthCheckType.ValueString()), true
	}
	if !m.AvailabilityZones.IsUnknown() && !m.AvailabilityZones.Equal(st.AvailabilityZones) {
		in.AvailabilityZones, changed = setStrings(ctx, m.AvailabilityZones, &resp.Diagnostics), true
	}
	if !m.VPCZoneIdentifier.IsUnknown() && !m.VPCZoneIdentifier.Equal(st.VPCZoneIdentifier) {
		in.VPCZoneIdentifier, changed = aws.String(strings.Join(setStrings(ctx, m.VPCZoneIdentifier, &resp.Diagnostics), ",")), true
	}
	if resp.Diagnostics.HasError() {
		return
	}
	if changed {
		if _, err := r.c.asg.UpdateAutoScalingGroup(ctx, in); err != nil {
			resp.Diagnostics.AddError("updating Auto Scaling Group ("+name+")", err.Error())
			return
		}
	}
	if !m.TargetGroupARNs.IsUnknown() && !m.TargetGroupARNs.Equal(st.TargetGroupARNs) {
		add, del := diffStrings(setStrings(ctx, st.TargetGroupARNs, &resp.Diagnostics), setStrings(ctx, m.TargetGroupARNs, &resp.Diagnostics))
		if len(add) > 0 {
			if _, err := r.c.asg.AttachLoadBalancerTargetGroups(ctx, &autoscaling.AttachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String(name), TargetGroupARNs: add}); err != nil {
				resp.Diagnostics.AddError("attaching target groups to Auto Scaling Group ("+name+")", err.Error())
				return
			}
		}
		if len(del) > 0 {
			if _, err := r.c.asg.DetachLoadBalancerTargetGroups(ctx, &autoscaling.DetachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String(name), TargetGroupARNs: del}); err != nil {
				resp.Diagnostics.AddError("detaching target groups from Auto Scaling Group ("+name+")", err.Error())
				return
			}
		}
	}
	if err := r.updateTags(ctx, name, st.Tag, m.Tag); err != nil {
		resp.Diagnostics.AddError("updating tags of Auto Scaling Group ("+name+")", err.Error())
		return
	}
	planned := m
	if err := r.read(ctx, &m); err != nil {
		resp.Diagnostics.AddError("reading Auto Scaling Group ("+name+")", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, keepPlanned(planned, m))...)
}

func ltSpecEqual(a, b []groupLTSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Version.Equal(b[i].Version) || (!a[i].ID.IsUnknown() && !a[i].ID.Equal(b[i].ID)) || (!a[i].Name.IsUnknown() && !a[i].Name.Equal(b[i].Name)) {
			return false
		}
	}
	return true
}

// updateTags deletes the tags no longer configured and creates or
// updates the others.
func (r *group) updateTags(ctx context.Context, name string, old, new []groupTag) error {
	key := func(t groupTag) string { return t.Key.ValueString() }
	want := map[string]groupTag{}
	for _, t := range new {
		want[key(t)] = t
	}
	var del []asgtypes.Tag
	for _, t := range old {
		if _, ok := want[key(t)]; !ok {
			del = append(del, asgtypes.Tag{Key: aws.String(key(t)), ResourceId: aws.String(name), ResourceType: aws.String("auto-scaling-group")})
		}
	}
	var put []asgtypes.Tag
	for _, t := range new {
		same := false
		for _, o := range old {
			if key(o) == key(t) && o.Value.Equal(t.Value) && o.PropagateAtLaunch.Equal(t.PropagateAtLaunch) {
				same = true
			}
		}
		if !same {
			put = append(put, (&asgModel{Tag: []groupTag{t}}).tags(name)...)
		}
	}
	if len(del) > 0 {
		if _, err := r.c.asg.DeleteTags(ctx, &autoscaling.DeleteTagsInput{Tags: del}); err != nil {
			return err
		}
	}
	if len(put) > 0 {
		if _, err := r.c.asg.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: put}); err != nil {
			return err
		}
	}
	return nil
}

// diffStrings returns what is in want and not in have, and the reverse.
func diffStrings(have, want []string) (add, del []string) {
	in := func(s string, list []string) bool {
		for _, v := range list {
			if v == s {
				return true
			}
		}
		return false
	}
	for _, w := range want {
		if !in(w, have) {
			add = append(add, w)
		}
	}
	for _, h := range have {
		if !in(h, want) {
			del = append(del, h)
		}
	}
	return add, del
}

func (r *group) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	remove(ctx, req, resp, "Auto Scaling Group", func(m *asgModel) string { return m.ID.ValueString() }, func(ctx context.Context, id string) error {
		_, err := r.c.asg.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String(id), ForceDelete: aws.Bool(true)})
		return err
	})
}

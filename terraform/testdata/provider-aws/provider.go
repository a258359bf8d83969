package main

import (
	"context"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// awsProvider configures the API clients the resources share.
type awsProvider struct{}

func newProvider() provider.Provider { return &awsProvider{} }

// clients is what Configure hands every resource.
type clients struct {
	region string
	asg    *autoscaling.Client
	ec2    *ec2.Client
}

type providerModel struct {
	Region                    types.String     `tfsdk:"region"`
	AccessKey                 types.String     `tfsdk:"access_key"`
	SecretKey                 types.String     `tfsdk:"secret_key"`
	Token                     types.String     `tfsdk:"token"`
	SkipCredentialsValidation types.Bool       `tfsdk:"skip_credentials_validation"`
	SkipRequestingAccountID   types.Bool       `tfsdk:"skip_requesting_account_id"`
	SkipRegionValidation      types.Bool       `tfsdk:"skip_region_validation"`
	Endpoints                 []endpointsModel `tfsdk:"endpoints"`
}

type endpointsModel struct {
	Autoscaling types.String `tfsdk:"autoscaling"`
	EC2         types.String `tfsdk:"ec2"`
}

func (p *awsProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "aws"
}

func (p *awsProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	opt := func(d string) schema.StringAttribute { return schema.StringAttribute{Optional: true, Description: d} }
	optBool := func(d string) schema.BoolAttribute { return schema.BoolAttribute{Optional: true, Description: d} }
	resp.Schema = schema.Schema{
		Description: "Stand-in for hashicorp/aws: launch configurations, launch templates and Auto Scaling groups only.",
		Attributes: map[string]schema.Attribute{
			"region":                      opt("AWS region; else AWS_REGION or AWS_DEFAULT_REGION."),
			"access_key":                  schema.StringAttribute{Optional: true, Sensitive: true, Description: "Static access key; else AWS_ACCESS_KEY_ID."},
			"secret_key":                  schema.StringAttribute{Optional: true, Sensitive: true, Description: "Static secret key; else AWS_SECRET_ACCESS_KEY."},
			"token":                       schema.StringAttribute{Optional: true, Sensitive: true, Description: "Session token."},
			"skip_credentials_validation": optBool("Accepted; the stand-in never validates credentials through STS."),
			"skip_requesting_account_id":  optBool("Accepted; the stand-in never requests the account id."),
			"skip_region_validation":      optBool("Accepted; the stand-in never validates the region name."),
		},
		Blocks: map[string]schema.Block{
			"endpoints": schema.ListNestedBlock{
				Description: "Custom service endpoints, one attribute per service.",
				NestedObject: schema.NestedBlockObject{Attributes: map[string]schema.Attribute{
					"autoscaling": opt("Endpoint of the Auto Scaling API."),
					"ec2":         opt("Endpoint of the EC2 API."),
				}},
			},
		},
	}
}

func (p *awsProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	region := firstNonEmpty(m.Region.ValueString(), os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	if region == "" {
		resp.Diagnostics.AddError("missing region", "set the provider's region, or AWS_REGION")
		return
	}
	key := firstNonEmpty(m.AccessKey.ValueString(), os.Getenv("AWS_ACCESS_KEY_ID"))
	secret := firstNonEmpty(m.SecretKey.ValueString(), os.Getenv("AWS_SECRET_ACCESS_KEY"))
	if key == "" || secret == "" {
		resp.Diagnostics.AddError("missing credentials", "the stand-in provider takes access_key and secret_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) only")
		return
	}
	cfg := aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, m.Token.ValueString()),
	}
	var ep endpointsModel
	if len(m.Endpoints) > 0 {
		ep = m.Endpoints[0]
	}
	c := &clients{
		region: region,
		asg: autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) {
			if u := ep.Autoscaling.ValueString(); u != "" {
				o.BaseEndpoint = aws.String(u)
			}
		}),
		ec2: ec2.NewFromConfig(cfg, func(o *ec2.Options) {
			if u := ep.EC2.ValueString(); u != "" {
				o.BaseEndpoint = aws.String(u)
			}
		}),
	}
	resp.ResourceData = c
	resp.DataSourceData = c
}

func (p *awsProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newLaunchConfiguration, newLaunchTemplate, newGroup}
}

func (p *awsProvider) DataSources(context.Context) []func() datasource.DataSource { return nil }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// configured takes the provider's clients in a resource's Configure.
func configured(data any, diags interface{ AddError(string, string) }) *clients {
	if data == nil {
		return nil // the provider is not configured yet (validation)
	}
	c, ok := data.(*clients)
	if !ok {
		diags.AddError("unexpected provider data", "the provider handed the resource something other than its clients")
	}
	return c
}

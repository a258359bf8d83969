package localcloud

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// TestDescribePagingAndFilters pins what the Describe actions answer to
// paging and filter parameters, good and bad, in each service's spelling
// (MaxRecords/NextToken, PageSize/Marker, MaxResults/NextToken): the
// page, the next token, and the error code and message, with which error
// wins when a request has two.
func TestDescribePagingAndFilters(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	for _, name := range []string{"pga", "pgb"} {
		makeFleet(t, ctx, cl, name, "ami-sim", 1)
		inService(t, ctx, cl, name, 1, 10*time.Second)
	}
	if _, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-sim"), MinCount: aws.Int32(5), MaxCount: aws.Int32(5)}); err != nil {
		t.Fatal(err)
	}
	if lbs, err := cl.ELB.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{}); err != nil || len(lbs.LoadBalancers) != 2 {
		t.Fatalf("load balancers: %v %v", lbs, err)
	}
	sig := func(svc string) string {
		return "AWS4-HMAC-SHA256 Credential=AKIDPAGE/20260101/us-east-1/" + svc + "/aws4_request, SignedHeaders=host, Signature=00"
	}
	field := func(body, name string) string {
		m := regexp.MustCompile("<" + name + ">([^<]*)</" + name + ">").FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return html.UnescapeString(m[1])
	}
	for _, tc := range []struct {
		svc, action, form string
		item              string // the element each listed item has once
		want              string // status code message; next=…; n=…
	}{
		{svcASG, "DescribeAutoScalingGroups", "", "AutoScalingGroupARN", "200 next= n=2"},
		{svcASG, "DescribeAutoScalingGroups", "MaxRecords=1", "AutoScalingGroupARN", "200 next=1 n=1"},
		{svcASG, "DescribeAutoScalingGroups", "MaxRecords=1&NextToken=1", "AutoScalingGroupARN", "200 next= n=1"},
		{svcASG, "DescribeAutoScalingGroups", "NextToken=2", "AutoScalingGroupARN", "200 next= n=0"},
		{svcASG, "DescribeAutoScalingGroups", "MaxRecords=0", "", `400 ValidationError MaxRecords must be between 1 and 100`},
		{svcASG, "DescribeAutoScalingGroups", "MaxRecords=101", "", `400 ValidationError MaxRecords must be between 1 and 100`},
		{svcASG, "DescribeAutoScalingGroups", "MaxRecords=x", "", `400 ValidationError value "x" at 'MaxRecords' is not a valid integer`},
		{svcASG, "DescribeAutoScalingGroups", "NextToken=3", "", `400 InvalidNextToken the NextToken "3" is not valid`},
		{svcASG, "DescribeAutoScalingGroups", "NextToken=-1&MaxRecords=0", "", `400 ValidationError MaxRecords must be between 1 and 100`},
		{svcASG, "DescribeAutoScalingGroups", "Filters.member.1.Name=bogus&Filters.member.1.Values.member.1=a&MaxRecords=0", "", `400 ValidationError Filter name bogus is not valid`},
		{svcASG, "DescribeAutoScalingGroups", "Filters.member.1.Name=bogus", "AutoScalingGroupARN", "200 next= n=0"},
		{svcASG, "DescribeAutoScalingGroups", "Filters.member.1.Name=tag:Name&Filters.member.1.Values.member.1=pgb", "AutoScalingGroupARN", "200 next= n=1"},
		{svcASG, "DescribeAutoScalingInstances", "MaxRecords=1", "InstanceId", "200 next=1 n=1"},
		{svcASG, "DescribeAutoScalingInstances", "MaxRecords=51", "", `400 ValidationError MaxRecords must be between 1 and 50`},
		{svcASG, "DescribeAutoScalingInstances", "NextToken=abc", "", `400 InvalidNextToken the NextToken "abc" is not valid`},
		{svcASG, "DescribeScalingActivities", "MaxRecords=1&AutoScalingGroupName=pga", "ActivityId", "200 next= n=1"},
		{svcASG, "DescribeScalingActivities", "MaxRecords=101", "", `400 ValidationError MaxRecords must be between 1 and 100`},
		{svcASG, "DescribeScalingActivities", "NextToken=zz", "", `400 InvalidNextToken the NextToken "zz" is not valid`},
		{svcASG, "DescribeTags", "MaxRecords=1", "Key", "200 next=1 n=1"},
		{svcASG, "DescribeTags", "MaxRecords=3&NextToken=3", "Key", "200 next= n=1"},
		{svcASG, "DescribeTags", "Filters.member.1.Name=key&Filters.member.1.Values.member.1=team", "Key", "200 next= n=2"},
		{svcASG, "DescribeTags", "Filters.member.1.Name=bogus&NextToken=x", "", `400 ValidationError Filter name bogus is not valid`},
		{svcASG, "DescribeTags", "MaxRecords=200&NextToken=x", "", `400 ValidationError MaxRecords must be between 1 and 100`},
		{svcELB, "DescribeLoadBalancers", "", "LoadBalancerArn", "200 next= n=2"},
		{svcELB, "DescribeLoadBalancers", "PageSize=1", "LoadBalancerArn", "200 next=1 n=1"},
		{svcELB, "DescribeLoadBalancers", "PageSize=1&Marker=1", "LoadBalancerArn", "200 next= n=1"},
		{svcELB, "DescribeLoadBalancers", "PageSize=0", "", `400 ValidationError PageSize must be between 1 and 400`},
		{svcELB, "DescribeLoadBalancers", "PageSize=401", "", `400 ValidationError PageSize must be between 1 and 400`},
		{svcELB, "DescribeLoadBalancers", "PageSize=x", "", `400 ValidationError value "x" at 'PageSize' is not a valid integer`},
		{svcELB, "DescribeLoadBalancers", "Marker=bad", "", `400 ValidationError The marker is not valid`},
		{svcELB, "DescribeLoadBalancers", "Marker=3", "", `400 ValidationError The marker is not valid`},
		{svcELB, "DescribeLoadBalancers", "Names.member.1=nope&PageSize=0", "", `400 LoadBalancerNotFound Load balancers '[nope]' not found`},
		{svcELB, "DescribeLoadBalancers", "LoadBalancerArns.member.1=arn:x", "", `400 LoadBalancerNotFound One or more load balancers not found`},
		{svcELB, "DescribeLoadBalancers", "Names.member.1=pgb&Names.member.2=pga", "LoadBalancerArn", "200 next= n=2"},
		{svcELB, "DescribeTargetGroups", "PageSize=1", "TargetGroupArn", "200 next=1 n=1"},
		{svcELB, "DescribeTargetGroups", "Marker=x", "", `400 ValidationError The marker is not valid`},
		{svcELB, "DescribeTargetGroups", "PageSize=500", "", `400 ValidationError PageSize must be between 1 and 400`},
		{svcELB, "DescribeTargetGroups", "Names.member.1=nope", "", `400 TargetGroupNotFound One or more target groups not found`},
		{svcELB, "DescribeTargetGroups", "TargetGroupArns.member.1=arn:x", "", `400 TargetGroupNotFound One or more target groups not found`},
		{svcELB, "DescribeTargetGroups", "LoadBalancerArn=arn:x", "", `400 LoadBalancerNotFound The load balancer 'arn:x' does not exist`},
		{svcELB, "DescribeTargetGroups", "Names.member.1=pga&LoadBalancerArn=arn:x", "TargetGroupArn", "200 next= n=1"},
		{svcEC2, "DescribeInstances", "", "instanceId", "200 next= n=7"},
		{svcEC2, "DescribeInstances", "MaxResults=5", "instanceId", "200 next=5 n=5"},
		{svcEC2, "DescribeInstances", "MaxResults=5&NextToken=5", "instanceId", "200 next= n=2"},
		{svcEC2, "DescribeInstances", "MaxResults=4", "", `400 InvalidParameterValue Value ( 4 ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`},
		{svcEC2, "DescribeInstances", "MaxResults=1001", "", `400 InvalidParameterValue Value ( 1001 ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`},
		{svcEC2, "DescribeInstances", "MaxResults=x&InstanceId.1=i-x", "", `400 ValidationError value "x" at 'MaxResults' is not a valid integer`},
		{svcEC2, "DescribeInstances", "MaxResults=4&InstanceId.1=i-x", "", `400 InvalidParameterCombination The parameter instancesSet cannot be used with the parameter maxResults`},
		{svcEC2, "DescribeInstances", "InstanceId.1=i-x&NextToken=bad", "", `400 InvalidInstanceID.NotFound The instance IDs 'i-x' do not exist`},
		{svcEC2, "DescribeInstances", "NextToken=8", "", `400 InvalidNextToken the NextToken "8" is not valid`},
		{svcEC2, "DescribeInstances", "Filter.1.Name=bogus&MaxResults=1", "", `400 InvalidParameterValue Value ( 1 ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`},
		{svcEC2, "DescribeInstances", "Filter.1.Name=bogus&NextToken=bad", "", `400 InvalidParameterValue The filter 'bogus' is invalid`},
		{svcEC2, "DescribeInstances", "Filter.1.Name=instance-state-name&Filter.1.Value.1=nope&Filter.2.Name=bogus", "instanceId", "200 next= n=0"},
		{svcEC2, "DescribeInstances", "Filter.1.Name=tag:Name&Filter.1.Value.1=pg?", "instanceId", "200 next= n=2"},
		{svcEC2, "DescribeTags", "MaxResults=1", "resourceId", "200 next=1 n=1"},
		// 2 group instances × 4 tags, and the wsfleet:admin tag of each
		// of the 7 simulated instances (simnode.go).
		{svcEC2, "DescribeTags", "MaxResults=0", "resourceId", "200 next= n=15"},
		{svcEC2, "DescribeTags", "MaxResults=-3&NextToken=6", "resourceId", "200 next= n=9"},
		{svcEC2, "DescribeTags", "Filter.1.Name=key&Filter.1.Value.1=wsfleet:admin", "resourceId", "200 next= n=7"},
		{svcEC2, "DescribeTags", "MaxResults=x&NextToken=bad", "", `400 ValidationError value "x" at 'MaxResults' is not a valid integer`},
		{svcEC2, "DescribeTags", "NextToken=bad", "", `400 InvalidNextToken the NextToken "bad" is not valid`},
		{svcEC2, "DescribeTags", "Filter.1.Name=key&Filter.1.Value.1=Name&Filter.2.Name=bogus", "", `400 InvalidParameterValue The filter 'bogus' is invalid`},
		{svcEC2, "DescribeTags", "Filter.1.Name=tag:Name&Filter.1.Value.1=pga", "resourceId", "200 next= n=1"},
		{svcEC2, "DescribeImages", "Filter.1.Name=image-id&Filter.1.Value.1=nope&Filter.2.Name=bogus", "", `400 InvalidParameterValue The filter 'bogus' is invalid`},
		{svcEC2, "DescribeImages", "Filter.1.Name=name&Filter.1.Value.1=ami-sim*", "imageId", "200 next= n=2"},
		{svcEC2, "DescribeLaunchTemplates", "Filter.1.Name=launch-template-name&Filter.1.Value.1=nope&Filter.2.Name=bogus", "", `400 InvalidParameterValue The filter 'bogus' is invalid`},
		{svcEC2, "DescribeLaunchTemplates", "Filter.1.Name=launch-template-name&Filter.1.Value.1=pg*", "launchTemplateId", "200 next= n=2"},
	} {
		t.Run(tc.action+"?"+tc.form, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, c.Endpoint(), strings.NewReader("Action="+tc.action+"&"+tc.form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", sig(tc.svc))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			got := fmt.Sprint(resp.StatusCode)
			if resp.StatusCode != http.StatusOK {
				got += " " + field(body, "Code") + " " + field(body, "Message")
			} else {
				next := field(body, "NextToken") + field(body, "NextMarker") + field(body, "nextToken")
				got += fmt.Sprintf(" next=%s n=%d", next, strings.Count(body, "<"+tc.item+">"))
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

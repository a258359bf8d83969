package localcloud

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestQueryListIndices: a list member numbered outside 1..N, or a gap in
// the numbering, is refused with AWS's validation error instead of being
// dropped. Dropping AutoScalingGroupNames.member.0 removed the filter,
// and DescribeAutoScalingGroups answered every group.
func TestQueryListIndices(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	makeFleet(t, ctx, cl, "grp-a", "ami-sim", 1)
	makeFleet(t, ctx, cl, "grp-b", "ami-sim", 1)
	post := func(svc, form string) (int, string) {
		return postForm(t, c.Endpoint(), "AWS4-HMAC-SHA256 Credential=AKTEST/20260101/us-east-1/"+svc+"/aws4_request, SignedHeaders=host, Signature=x", form)
	}
	const describe = "Action=DescribeAutoScalingGroups&Version=2011-01-01&"
	for _, tc := range []struct {
		name, svc, form string
		code            string // "" for success
		want, not       []string
	}{
		{name: "member.1 filters", svc: svcASG, form: describe + "AutoScalingGroupNames.member.1=grp-a",
			want: []string{"<AutoScalingGroupName>grp-a</AutoScalingGroupName>"}, not: []string{"grp-b"}},
		{name: "member.0", svc: svcASG, form: describe + "AutoScalingGroupNames.member.0=grp-a", code: "ValidationError",
			want: []string{"AutoScalingGroupNames.member.0", "<Type>Sender</Type>"}, not: []string{"<AutoScalingGroupName>"}},
		{name: "negative", svc: svcASG, form: describe + "AutoScalingGroupNames.member.-1=grp-a", code: "ValidationError"},
		{name: "leading zero", svc: svcASG, form: describe + "AutoScalingGroupNames.member.01=grp-a", code: "ValidationError"},
		{name: "past the largest list", svc: svcASG, form: describe + "AutoScalingGroupNames.member.10001=grp-a", code: "ValidationError"},
		{name: "not a number", svc: svcASG, form: describe + "AutoScalingGroupNames.member.x=grp-a", code: "ValidationError"},
		{name: "gap", svc: svcASG, form: describe + "AutoScalingGroupNames.member.2=grp-a", code: "ValidationError",
			want: []string{"Value null at &apos;AutoScalingGroupNames.member.1&apos;", "Member must not be null"}},
		{name: "gap inside a structure", svc: svcASG, form: "Action=DescribeAutoScalingGroups&Version=2011-01-01&Filters.member.1.Name=tag-key&Filters.member.1.Values.member.2=x", code: "ValidationError"},
		{name: "elbv2", svc: svcELB, form: "Action=DescribeTargetGroups&Version=2015-12-01&Names.member.0=tg", code: "ValidationError"},
		{name: "ec2 flattened", svc: svcEC2, form: "Action=DescribeInstances&Version=2016-11-15&InstanceId.0=i-0123456789abcdef0", code: "InvalidParameterValue"},
		{name: "ec2 nested", svc: svcEC2, form: "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag:Name&Filter.1.Value.0=x", code: "InvalidParameterValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.svc, tc.form)
			if tc.code == "" {
				if status != http.StatusOK {
					t.Fatalf("status %d: %s", status, body)
				}
			} else {
				if status != http.StatusBadRequest || !strings.Contains(body, "<Code>"+tc.code+"</Code>") {
					t.Fatalf("want 400 %s, got %d: %s", tc.code, status, body)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q: %s", w, body)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("body has %q: %s", n, body)
				}
			}
		})
	}
}

// postForm posts a Query form to the cloud, signed as auth says (no
// Authorization when empty), and returns the status and body.
func postForm(t *testing.T, endpoint, auth, form string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

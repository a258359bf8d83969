package localcloud

import (
	"testing"
	"time"
)

// TestBucketFigures: each EC2 action the engine calls draws from the
// bucket "Request throttling for the Amazon EC2 API" gives it (its
// category's, or its own row in the uncategorized table), and
// TerminateInstances and RunInstances also take one token per instance
// from their resource buckets.
func TestBucketFigures(t *testing.T) {
	cases := []struct {
		action string
		params params
		want   bucketSpec
	}{
		{"DescribeImages", params{"ImageId.1": "ami-1"}, bucketSpec{100, 20}},
		{"DescribeTags", params{}, bucketSpec{100, 20}}, // not in the unfiltered list
		{"DescribeInstances", params{"InstanceId.1": "i-1"}, bucketSpec{100, 20}},
		{"DescribeInstances", params{}, bucketSpec{50, 10}},
		{"CreateTags", params{}, bucketSpec{100, 10}},
		{"DeleteTags", params{}, bucketSpec{100, 10}},
		{"CreateLaunchTemplateVersion", params{}, bucketSpec{100, 5}},
		{"ModifyLaunchTemplate", params{}, bucketSpec{100, 5}},
		{"RunInstances", params{}, bucketSpec{5, 2}},
		{"TerminateInstances", params{}, bucketSpec{100, 5}},
		{"CreateLaunchTemplate", params{}, bucketSpec{50, 5}}, // mutating
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			_, got := bucketFor(&request{Service: svcEC2, Action: tc.action, Params: tc.params})
			if got != tc.want {
				t.Errorf("%s: bucket %+v, want %+v", tc.action, got, tc.want)
			}
		})
	}

	// 1,000 instances at once, then 20 a second.
	f := newInjector(Faults{Buckets: true})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	term := func(n int) *request {
		p := params{}
		for i := range n {
			p["InstanceId."+itoa(i+1)] = "i-" + itoa(i)
		}
		return &request{Service: svcEC2, Action: "TerminateInstances", Params: p}
	}
	for i := range 10 {
		if pl := f.plan(term(100), now); pl.err != nil {
			t.Fatalf("call %d of 100 instances: %v", i+1, pl.err.Code)
		}
	}
	if pl := f.plan(term(1), now); pl.err == nil || pl.err.Code != "RequestLimitExceeded" {
		t.Fatalf("instance 1,001: %v, want RequestLimitExceeded", pl.err)
	}
	if pl := f.plan(term(20), now.Add(time.Second)); pl.err != nil {
		t.Errorf("20 instances a second later: %v", pl.err.Code)
	}
	if pl := f.plan(term(5), now.Add(time.Second)); pl.err == nil {
		t.Errorf("5 more in the same second: not throttled")
	}
}

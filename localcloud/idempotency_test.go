package localcloud

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestClientToken retries each action that takes a ClientToken as EC2's
// "Ensuring idempotency" describes: the same token and parameters return
// the original result and create nothing; other parameters fail with
// IdempotentParameterMismatch; tokens are case-sensitive and bounded.
func TestClientToken(t *testing.T) {
	ctx := context.Background()
	c, cl := startCloud(t, fastConfig())
	lt, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("idem"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-sim")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ltID := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)

	// Each call returns what identifies its result: the reservation and
	// its instances, the template, the version.
	run := func(image string, n int32) func(tok string) (string, error) {
		return func(tok string) (string, error) {
			out, err := cl.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(n), ClientToken: tokenOf(tok)})
			return idOf(err, func() string {
				id := aws.ToString(out.ReservationId)
				for _, in := range out.Instances {
					id += " " + aws.ToString(in.InstanceId)
				}
				return id
			})
		}
	}
	createLT := func(name, image string) func(tok string) (string, error) {
		return func(tok string) (string, error) {
			out, err := cl.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
				LaunchTemplateName: aws.String(name), ClientToken: tokenOf(tok),
				LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(image)},
			})
			return idOf(err, func() string { return aws.ToString(out.LaunchTemplate.LaunchTemplateId) })
		}
	}
	createVersion := func(image string) func(tok string) (string, error) {
		return func(tok string) (string, error) {
			out, err := cl.EC2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
				LaunchTemplateId: aws.String(ltID), ClientToken: tokenOf(tok),
				LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(image)},
			})
			return idOf(err, func() string { return strconv.FormatInt(aws.ToInt64(out.LaunchTemplateVersion.VersionNumber), 10) })
		}
	}
	modify := func(version string) func(tok string) (string, error) {
		return func(tok string) (string, error) {
			out, err := cl.EC2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateId: aws.String(ltID), DefaultVersion: aws.String(version), ClientToken: tokenOf(tok)})
			return idOf(err, func() string { return strconv.FormatInt(aws.ToInt64(out.LaunchTemplate.DefaultVersionNumber), 10) })
		}
	}
	// created counts what a call may create: live instances, templates,
	// versions.
	created := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := c.alive + len(c.templates)
		for _, lt := range c.templates {
			n += len(lt.versions)
		}
		return n
	}

	for _, tc := range []struct {
		name         string
		token        string
		retryToken   string // "" means token
		first, retry func(tok string) (string, error)
		firstCode    string
		retryCode    string
		same         bool // the retry returns the first call's result
		more         int  // what the retry creates
	}{
		{name: "RunInstances retried", token: "run-1", first: run("ami-sim", 2), retry: run("ami-sim", 2), same: true},
		{name: "RunInstances with other parameters", token: "run-2", first: run("ami-sim", 1), retry: run("ami-sim", 2), retryCode: "IdempotentParameterMismatch"},
		{name: "RunInstances tokens are case-sensitive", token: "run-3", retryToken: "RUN-3", first: run("ami-sim", 1), retry: run("ami-sim", 1), more: 1},
		{name: "RunInstances token of 64 characters", token: strings.Repeat("a", 64), first: run("ami-sim", 1), retry: run("ami-sim", 1), same: true},
		{name: "RunInstances token of 65 characters", token: strings.Repeat("b", 65), first: run("ami-sim", 1), firstCode: "InvalidParameterValue"},
		{name: "RunInstances token not ASCII", token: "jeton-été", first: run("ami-sim", 1), firstCode: "InvalidParameterValue"},
		{name: "a failed call leaves its token unused", token: "run-4", first: run("ami-missing", 1), firstCode: "InvalidAMIID.NotFound", retry: run("ami-sim", 1), more: 1},
		{name: "CreateLaunchTemplate retried", token: "lt-1", first: createLT("idem-2", "ami-sim"), retry: createLT("idem-2", "ami-sim"), same: true},
		{name: "CreateLaunchTemplate with other data", token: "lt-2", first: createLT("idem-3", "ami-sim"), retry: createLT("idem-3", "ami-sim2"), retryCode: "IdempotentParameterMismatch"},
		{name: "CreateLaunchTemplate without a token twice", first: createLT("idem-4", "ami-sim"), retry: createLT("idem-4", "ami-sim"), retryCode: "InvalidLaunchTemplateName.AlreadyExistsException"},
		{name: "CreateLaunchTemplateVersion retried", token: "v-1", first: createVersion("ami-sim2"), retry: createVersion("ami-sim2"), same: true},
		{name: "CreateLaunchTemplateVersion with other data", token: "v-2", first: createVersion("ami-sim2"), retry: createVersion("ami-sim"), retryCode: "IdempotentParameterMismatch"},
		{name: "ModifyLaunchTemplate retried", token: "m-1", first: modify("2"), retry: modify("2"), same: true},
		{name: "ModifyLaunchTemplate with another default", token: "m-2", first: modify("2"), retry: modify("1"), retryCode: "IdempotentParameterMismatch"},
		{name: "ModifyLaunchTemplate token of 128 characters", token: strings.Repeat("c", 128), first: modify("2"), retry: modify("2"), same: true},
		{name: "ModifyLaunchTemplate token of 129 characters", token: strings.Repeat("d", 129), first: modify("2"), firstCode: "InvalidParameterValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := created()
			first, err := tc.first(tc.token)
			if got := apiCode(err); got != tc.firstCode {
				t.Fatalf("first call: %v, want code %q", err, tc.firstCode)
			}
			if tc.retry == nil {
				if n := created(); n != before {
					t.Errorf("a refused call created %d resources", n-before)
				}
				return
			}
			afterFirst := created()
			retryToken := tc.token
			if tc.retryToken != "" {
				retryToken = tc.retryToken
			}
			again, err := tc.retry(retryToken)
			if got := apiCode(err); got != tc.retryCode {
				t.Fatalf("retry: %v, want code %q", err, tc.retryCode)
			}
			if tc.same && again != first {
				t.Errorf("retry returned %q, want the first call's %q", again, first)
			}
			if !tc.same && err == nil && again == first {
				t.Errorf("retry returned the first call's result %q", first)
			}
			if n := created() - afterFirst; n != tc.more {
				t.Errorf("retry created %d resources, want %d", n, tc.more)
			}
		})
	}

	// The token is part of the instance, as DescribeInstances reports it.
	di, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("client-token"), Values: []string{"run-1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(di.Reservations) != 1 || len(di.Reservations[0].Instances) != 2 || aws.ToString(di.Reservations[0].Instances[0].ClientToken) != "run-1" {
		t.Errorf("instances of token run-1: %+v", di.Reservations)
	}
}

// tokenOf is the ClientToken of a call: none for "", so that the SDK fills
// in a random one, as it does for every caller that sets none.
func tokenOf(tok string) *string {
	if tok == "" {
		return nil
	}
	return &tok
}

// idOf is a call's result identity, or its error.
func idOf(err error, id func() string) (string, error) {
	if err != nil {
		return "", err
	}
	return id(), nil
}

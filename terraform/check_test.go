package terraform

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"
)

func loadPlan(t *testing.T, name string) *tfjson.Plan {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(plansDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var p tfjson.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &p
}

// TestCheckFixtures runs the check on saved plans the real Terraform
// made (TestMakePlanFixtures): the image change passes, anything more is
// refused with the resources' addresses, and drift is reported.
func TestCheckFixtures(t *testing.T) {
	tests := []struct {
		name    string
		changes []string // "address: action (attrs)"
		refused []string
		reason  string // part of the first refused change's reason
		drift   []string
	}{
		{name: "lt-noop"},
		{name: "lt-image", changes: []string{
			"aws_autoscaling_group.ws: update in place (launch_template)",
			"aws_launch_template.ws: update in place (image_id, latest_version)",
		}},
		{name: "lt-terraform-data", refused: []string{"terraform_data.x"}, reason: "not the group's launch configuration or template"},
		{name: "lt-tag", refused: []string{"aws_autoscaling_group.ws"}, reason: "not tag"},
		{name: "lt-drift", refused: []string{"aws_autoscaling_group.ws"}, reason: "not desired_capacity",
			drift: []string{"aws_autoscaling_group.ws: update in place (desired_capacity)"}},
		{name: "lc-noop"},
		{name: "lc-image", changes: []string{
			"aws_autoscaling_group.ws: update in place (launch_configuration)",
			"aws_launch_configuration.ws: replace (create before destroy) (arn, id, image_id, name)",
		}},
		{name: "lc-terraform-data", refused: []string{"terraform_data.x"}, reason: "not the group's launch configuration or template"},
		{name: "lc-tag", refused: []string{"aws_autoscaling_group.ws"}, reason: "not tag"},
		{name: "lc-no-cbd", refused: []string{"aws_launch_configuration.ws"}, reason: "create_before_destroy"},
		{name: "lc-drift", refused: []string{"aws_autoscaling_group.ws"}, reason: "not desired_capacity",
			drift: []string{"aws_autoscaling_group.ws: update in place (desired_capacity)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Check(loadPlan(t, tt.name))
			if tt.refused == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				var got []string
				for _, c := range s.Changes {
					got = append(got, c.String())
				}
				if !reflect.DeepEqual(got, tt.changes) {
					t.Errorf("changes = %q; want %q", got, tt.changes)
				}
			} else {
				var re *RefusedError
				if !errors.As(err, &re) {
					t.Fatalf("Check err = %v; want a *RefusedError", err)
				}
				if !reflect.DeepEqual(re.Addresses(), tt.refused) {
					t.Errorf("refused %q; want %q", re.Addresses(), tt.refused)
				}
				if !strings.Contains(re.Changes[0].Reason, tt.reason) {
					t.Errorf("reason %q; want one containing %q", re.Changes[0].Reason, tt.reason)
				}
				for _, d := range tt.drift {
					if !strings.Contains(err.Error(), "drift: "+strings.SplitN(d, ":", 2)[0]) {
						t.Errorf("error %q does not name the drift of %s", err, d)
					}
				}
				for _, a := range tt.refused {
					if !strings.Contains(err.Error(), a) {
						t.Errorf("error %q does not name %s", err, a)
					}
				}
			}
			var drift []string
			for _, c := range s.Drift {
				drift = append(drift, c.String())
			}
			if !reflect.DeepEqual(drift, tt.drift) {
				t.Errorf("drift = %q; want %q", drift, tt.drift)
			}
			if s.Variables["ami"] == "" {
				t.Errorf("variables = %v; want ami", s.Variables)
			}
		})
	}
}

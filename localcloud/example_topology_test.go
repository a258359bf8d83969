package localcloud

import "testing"

// TestTerraformExampleTopology: examples/terraform/local-cloud.yaml, the
// local cloud docs/terraform.md's walkthrough starts, has the seed's
// target group and load balancer and no group or launch configuration:
// `terraform apply` of examples/terraform creates those.
func TestTerraformExampleTopology(t *testing.T) {
	topo, err := LoadTopology("../examples/terraform/local-cloud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Groups) != 0 || len(topo.LaunchConfigurations) != 0 || len(topo.LaunchTemplates) != 0 {
		t.Errorf("groups %d, launch configurations %d, templates %d; want none (Terraform makes them)",
			len(topo.Groups), len(topo.LaunchConfigurations), len(topo.LaunchTemplates))
	}
	if len(topo.TargetGroups) != 1 || topo.TargetGroups[0].Name != "gitter-ws" || len(topo.LoadBalancers) != 1 {
		t.Errorf("target groups %+v, load balancers %+v; want the seed's gitter-ws and its load balancer", topo.TargetGroups, topo.LoadBalancers)
	}
}

// Command terraform-provider-aws is the tests' stand-in for the
// hashicorp/aws provider, which cannot be obtained on these machines.
// Terraform loads it through a dev_overrides block of its CLI config. It
// implements only aws_launch_configuration, aws_launch_template and
// aws_autoscaling_group, with the real provider's resource and attribute
// names for the attributes examples/terraform uses, and talks to the AWS
// API (the local cloud in the tests) through aws-sdk-go-v2. See
// docs/terraform.md for what differs from the real provider.
package main

import (
	"context"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
)

func main() {
	err := providerserver.Serve(context.Background(), newProvider, providerserver.ServeOpts{
		// Used by the framework only in debug (reattach) mode; Terraform
		// finds this binary through dev_overrides, not by this address.
		Address: "wsfleet.test/hashicorp/aws",
	})
	if err != nil {
		log.Fatal(err)
	}
}

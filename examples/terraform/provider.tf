# The provider for both variants of the module (launch-template/ links to
# this file).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

provider "aws" {
  region = var.region

  # Against the local cloud (`wsfleet cloud`, docs/cloud.md) every API the
  # module uses goes to local_endpoint, with fixed keys and no account or
  # credential look-ups; against AWS, the usual credential chain.
  access_key                  = var.local_endpoint == "" ? null : "local"
  secret_key                  = var.local_endpoint == "" ? null : "local"
  skip_credentials_validation = var.local_endpoint != ""
  skip_requesting_account_id  = var.local_endpoint != ""

  endpoints {
    autoscaling = var.local_endpoint == "" ? null : var.local_endpoint
    ec2         = var.local_endpoint == "" ? null : var.local_endpoint
  }
}

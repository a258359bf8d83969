# The module's other inputs, shared with launch-template/ (a link to this
# file); var.ami is in each folder's own variables.tf, the one file
# `wsfleet plan` edits.

variable "region" {
  type    = string
  default = "us-east-1"
}

# Empty: the real AWS endpoints. Set (e.g. http://127.0.0.1:4566) to run
# the module against the local cloud.
variable "local_endpoint" {
  type    = string
  default = ""
}

variable "group_name" {
  type    = string
  default = "gitter-ws"
}

variable "instance_type" {
  type    = string
  default = "c5.large"
}

# The node's `wsfleet serve` flags, one per line (docs/cloud.md).
variable "user_data" {
  type    = string
  default = "--admin-token=local-admin-token\n--nats=nats://127.0.0.1:4222\n"
}

# The load balancer's target group(s) the instances register with.
variable "target_group_arns" {
  type    = list(string)
  default = []
}

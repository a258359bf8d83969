# The gitter-ws image. Bumped by the change request.
variable "ami" {
  description = "AMI of the gitter-ws instances" # keep in sync with Packer
  type        = string
  default     = "ami-0123456789abcdef0" # built 2019-06
}

/* The region: not touched. */
variable "region" {
  type    = string
  default = "us-east-1"
}

# The image the group's instances run: the change request's new AMI.
variable "ami" {
  description = "AMI of the gitter-ws instances"
  type        = string
  default     = "ami-old"
}

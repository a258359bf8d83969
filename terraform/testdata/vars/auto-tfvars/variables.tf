variable "ami" {
  type    = string
  default = "ami-ignored"
}

variable "ami" {
  # no default yet: every run gave -var
  type    = string
  default = "ami-0123456789abcdef0"
}

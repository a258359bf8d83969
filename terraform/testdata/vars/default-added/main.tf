variable "ami" {
  # no default yet: every run gave -var
  type = string
}

variable "ami" {
  type = string
}

variable "region" {
  type = string
}

ami = "ami-from-terraform-tfvars"

// wins over terraform.tfvars: loaded after it
ami = "ami-old"

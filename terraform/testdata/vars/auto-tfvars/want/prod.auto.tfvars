// wins over terraform.tfvars: loaded after it
ami = "ami-0123456789abcdef0"

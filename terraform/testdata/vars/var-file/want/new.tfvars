ami = "ami-0123456789abcdef0"

# Production values.
region = "us-east-1"

# The image: see the change request.
ami = "ami-0123456789abcdef0" # the 2019-06 build

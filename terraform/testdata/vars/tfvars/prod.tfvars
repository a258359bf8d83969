# Production values.
region = "us-east-1"

# The image: see the change request.
ami = "ami-old" # the 2019-06 build

# Production: the image is set here, not in the default.
region = "us-east-1"
ami    = "ami-0123456789abcdef0"

# Production: the image is set here, not in the default.
region = "us-east-1"

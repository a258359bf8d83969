# The seed's gitter-ws group, owned by Terraform on a launch configuration
# (as the seed's was): `var.ami` is the image the change request updates.
# `wsfleet plan -f examples/gitter-ws-terraform.yaml` sets it, runs
# `terraform plan` and refuses any other change; see docs/terraform.md.
# The launch template variant is in launch-template/.

# Immutable: a new image means a new launch configuration. name_prefix and
# create_before_destroy let Terraform create the new one, move the group
# to it, and only then delete the old one.
resource "aws_launch_configuration" "ws" {
  name_prefix   = "gitter-ws-"
  image_id      = var.ami
  instance_type = var.instance_type
  user_data     = var.user_data

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_autoscaling_group" "ws" {
  name                 = var.group_name
  launch_configuration = aws_launch_configuration.ws.name

  min_size         = 8
  max_size         = 16
  desired_capacity = 8

  availability_zones        = ["us-east-1a", "us-east-1b"]
  target_group_arns         = var.target_group_arns
  health_check_type         = "ELB"
  health_check_grace_period = 60

  tag {
    key                 = "service"
    value               = "gitter-ws"
    propagate_at_launch = true
  }
}

output "launch_configuration" {
  value = aws_launch_configuration.ws.name
}

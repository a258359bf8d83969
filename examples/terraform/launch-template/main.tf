# The launch template variant of ../main.tf: the same gitter-ws group on a
# launch template. A new image is an update in place that makes a new
# template version, and the group follows latest_version. provider.tf and
# inputs.tf are links to the parent folder's; var.ami is in variables.tf.

resource "aws_launch_template" "ws" {
  name          = var.group_name
  image_id      = var.ami
  instance_type = var.instance_type
  user_data     = base64encode(var.user_data)
}

resource "aws_autoscaling_group" "ws" {
  name = var.group_name

  launch_template {
    id      = aws_launch_template.ws.id
    version = aws_launch_template.ws.latest_version
  }

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

output "launch_template_version" {
  value = aws_launch_template.ws.latest_version
}

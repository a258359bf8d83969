package main

// This file is the seam between `wsfleet serve` and AWS: configuring a node
// from the instance metadata service, and draining when the node's Auto
// Scaling lifecycle state becomes Terminating:Wait. serve.go calls
// addAWSFlags before parsing, configure after, and watchLifecycle once the
// node runs.

import (
	"context"
	"errors"
	"flag"
	"log/slog"

	"wsfleet/server"
)

// awsOptions are serve's AWS flags.
type awsOptions struct {
	fromIMDS  bool
	lifecycle bool
}

func addAWSFlags(fs *flag.FlagSet) *awsOptions {
	o := &awsOptions{}
	fs.BoolVar(&o.fromIMDS, "aws", false, "configure this node from the EC2 instance metadata service (listen address, node id, image, extra flags from user data)")
	fs.BoolVar(&o.lifecycle, "aws-lifecycle", false, "watch the Auto Scaling target lifecycle state and drain on Terminating:Wait, then complete the lifecycle action")
	return o
}

// drainer is what the lifecycle watcher needs of a node.
type drainer interface {
	Drain(ctx context.Context, o server.DrainOptions) error
}

// configure sets flags not given on the command line from instance metadata.
func (o *awsOptions) configure(ctx context.Context, fs *flag.FlagSet, log *slog.Logger) error {
	if !o.fromIMDS {
		return nil
	}
	return errors.New("--aws: not implemented yet")
}

// watchLifecycle drains node when the group moves its instance to
// Terminating:Wait. It returns when ctx ends.
func (o *awsOptions) watchLifecycle(ctx context.Context, node drainer, opts server.DrainOptions, log *slog.Logger) error {
	if !o.lifecycle {
		return nil
	}
	return errors.New("--aws-lifecycle: not implemented yet")
}

package main

// This file is the seam between `wsfleet serve` and AWS: configuring a node
// from the instance metadata service, and draining when the node's Auto
// Scaling group terminates its instance. serve.go calls addAWSFlags before
// parsing, configure after, and watchLifecycle once the node runs. The
// logic lives in package nodeaws; see docs/cloud.md for the user data
// format.

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"wsfleet/nodeaws"
	"wsfleet/server"
)

// awsOptions are serve's AWS flags.
type awsOptions struct {
	fromIMDS  bool
	lifecycle bool
	interval  time.Duration
	region    string // from IMDS when the environment has none
}

func addAWSFlags(fs *flag.FlagSet) *awsOptions {
	o := &awsOptions{}
	fs.BoolVar(&o.fromIMDS, "aws", false, "configure this node from the EC2 instance metadata service (listen address, node id, image, extra flags from user data)")
	fs.BoolVar(&o.lifecycle, "aws-lifecycle", false, "watch the Auto Scaling target lifecycle state and drain when the instance is being terminated, then complete the lifecycle action")
	fs.DurationVar(&o.interval, "aws-lifecycle-interval", 5*time.Second, "how often --aws-lifecycle polls the instance metadata service")
	return o
}

// drainer is what the lifecycle watcher needs of a node.
type drainer interface {
	Drain(ctx context.Context, o server.DrainOptions) error
}

// configure sets flags not given on the command line from instance
// metadata: user data lines first, then --listen, --node-id and --image.
func (o *awsOptions) configure(ctx context.Context, fs *flag.FlagSet, log *slog.Logger) error {
	if !o.fromIMDS {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	md, err := nodeaws.ReadMetadata(ctx, imds.New(imds.Options{}))
	if err != nil {
		return fmt.Errorf("--aws: %w", err)
	}
	if err := nodeaws.Configure(fs, md, log); err != nil {
		return fmt.Errorf("--aws: %w", err)
	}
	o.region = md.Region
	log.Info("configured from instance metadata", "instance", md.InstanceID, "ip", md.LocalIPv4, "image", md.ImageID, "name", md.Name)
	return nil
}

// watchLifecycle drains node when its group starts terminating the
// instance, then completes the termination lifecycle actions. It returns
// when that is done or ctx ends.
func (o *awsOptions) watchLifecycle(ctx context.Context, node drainer, opts server.DrainOptions, log *slog.Logger) error {
	if !o.lifecycle {
		return nil
	}
	if o.interval <= 0 {
		return fmt.Errorf("%w: --aws-lifecycle-interval must be positive", errUsage)
	}
	var loadOpts []func(*config.LoadOptions) error
	if o.region != "" {
		loadOpts = append(loadOpts, config.WithDefaultRegion(o.region))
	}
	// The Auto Scaling endpoint is the SDK's: AWS's, or AWS_ENDPOINT_URL,
	// which the local cloud sets for its instances.
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return fmt.Errorf("--aws-lifecycle: load AWS config: %w", err)
	}
	w := &nodeaws.Watcher{
		IMDS:     imds.New(imds.Options{}),
		ASG:      autoscaling.NewFromConfig(cfg),
		Interval: o.interval,
		Drain:    func(ctx context.Context) error { return node.Drain(ctx, opts) },
		Log:      log,
	}
	if err := w.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

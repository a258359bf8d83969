// Package simcloud starts, for tests, a local cloud in the test's process
// with an Auto Scaling group of simulated instances (localcloud's
// simulated images, which answer the node admin API from the cloud
// itself): a fleet of any size behind a load balancer in a second.
package simcloud

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"wsfleet/localcloud"
)

// Group is the simulated group a test asks for.
type Group struct {
	Names []string // the instances' Name tags, one instance each
	// Token is the admin token the nodes accept (in their user data).
	Token string
	// DeregistrationDelay is the target group's, in seconds.
	DeregistrationDelay int
	// S3Dir keeps the cloud's S3 objects; empty: a folder removed on Close.
	S3Dir string
	// Logger is the cloud's; nil: the cloud's default.
	Logger *slog.Logger
	// LaunchConfiguration puts the group on a launch configuration
	// named gitter-ws instead of a launch template.
	LaunchConfiguration bool
}

// Start starts the cloud with images ami-old and ami-new (both simulated)
// and the group gitter-ws of len(g.Names) instances on ami-old, behind the
// target group gitter-ws, and closes it when the test ends.
func Start(t testing.TB, ctx context.Context, g Group) *localcloud.Cloud {
	t.Helper()
	cfg := localcloud.Config{Listen: "127.0.0.1:0", Logger: g.Logger}
	cfg.Images = map[string]localcloud.Image{"ami-old": {Simulated: true}, "ami-new": {Simulated: true}}
	cfg.Tick = 50 * time.Millisecond
	cfg.SimulatedBootTime = 200 * time.Millisecond
	cfg.HealthCheckInterval = 100 * time.Millisecond
	cfg.S3Dir = g.S3Dir
	cloud, err := localcloud.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	n := int32(len(g.Names))
	delay := g.DeregistrationDelay
	launch := []localcloud.TopoLaunchTemplate{{Name: "gitter-ws", ImageID: "ami-old", InstanceType: "c5.large", UserData: "--admin-token=" + g.Token + "\n"}}
	topo := &localcloud.Topology{
		TargetGroups: []localcloud.TopoTargetGroup{{Name: "gitter-ws", Port: 8080, HealthCheckPath: "/readyz",
			HealthyThresholdCount: 2, UnhealthyThresholdCount: 2, DeregistrationDelaySeconds: &delay}},
		Groups: []localcloud.TopoGroup{{Name: "gitter-ws", Min: n, Max: 2 * n, Desired: n,
			AvailabilityZones: []string{"us-east-1a", "us-east-1b"}, TargetGroups: []string{"gitter-ws"},
			HealthCheckType: "ELB", HealthCheckGracePeriod: 60, InstanceNames: g.Names}},
	}
	if g.LaunchConfiguration {
		topo.LaunchConfigurations, topo.Groups[0].LaunchConfiguration = launch, "gitter-ws"
	} else {
		topo.LaunchTemplates, topo.Groups[0].LaunchTemplate, topo.Groups[0].Version = launch, "gitter-ws", "$Latest"
	}
	if err := cloud.Bootstrap(ctx, topo); err != nil {
		t.Fatal(err)
	}
	return cloud
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"wsfleet/broker"
	"wsfleet/localcloud"
)

func init() {
	register("cloud", "run the local cloud: EC2, Auto Scaling, ELBv2 and S3 on one AWS API endpoint, instances as local ws nodes",
		"wsfleet cloud --image ami-old=bin/wsfleet --image ami-new=bin/wsfleet --embedded-nats 127.0.0.1:4222 --bootstrap examples/seed-topology.yaml\nwsfleet cloud --image ami-old=simulated --image ami-new=simulated --fault-throttle 0.02", runCloud)
}

// imageFlags collects repeated --image ami-ID=COMMAND|simulated; COMMAND
// may be followed by arguments for serve, separated by spaces (a bad image
// for tests: "ami-bad=wsfleet --fault-delay 200ms").
type imageFlags map[string]localcloud.Image

func (f imageFlags) String() string {
	var parts []string
	for id, im := range f {
		cmd := strings.Join(append([]string{im.Command}, im.Args...), " ")
		if im.Simulated {
			cmd = "simulated"
		}
		parts = append(parts, id+"="+cmd)
	}
	return strings.Join(parts, ",")
}

func (f imageFlags) Set(s string) error {
	id, cmd, ok := strings.Cut(s, "=")
	fields := strings.Fields(cmd)
	if len(fields) > 0 {
		cmd = fields[0]
	}
	if !ok || !strings.HasPrefix(id, "ami-") || cmd == "" {
		return fmt.Errorf("want ami-ID=COMMAND or ami-ID=simulated, not %q", s)
	}
	if _, dup := f[id]; dup {
		return fmt.Errorf("image %s given twice", id)
	}
	if cmd == "simulated" {
		f[id] = localcloud.Image{Simulated: true}
		return nil
	}
	path, err := exec.LookPath(cmd)
	if err != nil {
		return fmt.Errorf("image %s: %w", id, err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return fmt.Errorf("image %s: %w", id, err)
	}
	f[id] = localcloud.Image{Command: path, Args: fields[1:]}
	return nil
}

// lbNodeCommand is the hidden `wsfleet cloud lb-node`: one load balancer
// node, run by a local cloud with --lb-nodes (or the demo at scale), which
// talks to it over its standard input and output (localcloud.RunLBNode).
const lbNodeCommand = "lb-node"

func runCloud(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == lbNodeCommand {
		return localcloud.RunLBNode(ctx, os.Stdin, stdout, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	fs := newFlagSet("cloud", stderr)
	images := imageFlags{}
	var cfg localcloud.Config
	var embeddedNATS, bootstrap, logLevel string
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:4566", "address of the AWS API endpoint (EC2, Auto Scaling, ELBv2 and S3)")
	fs.Var(images, "image", "ami-ID=COMMAND runs COMMAND serve --aws --aws-lifecycle as each instance of that image, with the arguments after COMMAND if any (e.g. 'ami-bad=wsfleet --fault-delay 200ms'); ami-ID=simulated runs nothing (repeatable)")
	fs.StringVar(&embeddedNATS, "embedded-nats", "", "host a NATS server with JetStream at this address for the nodes (user data: --nats=nats://ADDR)")
	var natsCluster int
	fs.IntVar(&natsCluster, "nats-cluster", 1, "with --embedded-nats HOST:PORT, run this many NATS servers in one JetStream cluster, on PORT, PORT+1, ... (3 for a cluster that survives a server's loss; user data: --nats= with every URL)")
	fs.StringVar(&bootstrap, "bootstrap", "", "create this topology file's resources at start (see examples/seed-topology.yaml)")
	fs.StringVar(&cfg.Region, "region", "us-east-1", "region reported in ARNs and instance metadata")
	fs.DurationVar(&cfg.Tick, "tick", 250*time.Millisecond, "how often groups are reconciled")
	fs.DurationVar(&cfg.BootTime, "boot-time", time.Second, "how long a process instance stays pending before its process starts")
	fs.DurationVar(&cfg.SimulatedBootTime, "sim-boot-time", 2*time.Second, "how long a simulated instance takes to boot")
	fs.Float64Var(&cfg.SimulatedFailureRate, "sim-failure-rate", 0, "probability that a simulated instance never becomes healthy")
	fs.DurationVar(&cfg.HealthCheckInterval, "health-check-interval", 0, "override every target group's health check interval (0 keeps theirs)")
	fs.DurationVar(&cfg.DeregistrationDelayMax, "deregistration-delay-max", 0, "shorten target groups' deregistration delays to at most this (0 keeps theirs)")
	fs.DurationVar(&cfg.KillGrace, "kill-grace", 30*time.Second, "time between SIGTERM and SIGKILL when an instance terminates")
	fs.IntVar(&cfg.LBNodes, "lb-nodes", 0, fmt.Sprintf("run each load balancer listener as this many node processes on 127.0.0.20, 127.0.0.21, ... at its port, as an ALB's DNS name resolves to several nodes (0: one, in this process on 127.0.0.1; at most %d)", localcloud.MaxLBNodes))
	fs.IntVar(&cfg.NodePort, "node-port", 8080, "port every process instance listens on, on its own 127.0.1.x address")
	fs.StringVar(&cfg.S3Dir, "s3-dir", "", "directory S3's buckets and objects are kept in, so that a restarted cloud still has them (default per --listen address under the state directory, see docs/cloud.md)")
	fs.Int64Var(&cfg.S3MaxObjectSize, "s3-max-object-size", localcloud.DefaultS3MaxObjectSize, "largest PutObject body in bytes; larger ones fail with EntityTooLarge")
	fs.StringVar(&cfg.LogDir, "log-dir", "", "directory for each instance's output, <instance-id>.log (default a temporary directory)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	var faults localcloud.Faults
	fs.Uint64Var(&faults.Seed, "fault-seed", 1, "seed of the injected faults' random source")
	fs.BoolVar(&faults.Buckets, "fault-buckets", false, "throttle with AWS's published request token buckets (EC2 per action, ELBv2 per class)")
	fs.Float64Var(&faults.Throttle, "fault-throttle", 0, "share of API calls throttled at random (RequestLimitExceeded on EC2, Throttling on Auto Scaling and ELBv2)")
	fs.Float64Var(&faults.Errors, "fault-5xx", 0, "share of API calls answered 500 InternalError/InternalFailure or 503 ServiceUnavailable")
	fs.Float64Var(&faults.Slow, "fault-slow", 0, "share of API calls answered after --fault-slow-delay")
	fs.DurationVar(&faults.SlowDelay, "fault-slow-delay", 2*time.Second, "delay of a slow answer")
	fs.Float64Var(&faults.Drop, "fault-drop", 0, "share of API calls whose connection is closed without an answer (half before, half after the effect)")
	fs.Float64Var(&faults.Stale, "fault-stale", 0, "share of launches and tag writes that reads see late")
	fs.DurationVar(&faults.StaleDelay, "fault-stale-delay", 2*time.Second, "longest delay before a late write is read back")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.LBNodes > 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable for --lb-nodes: %w", err)
		}
		cfg.LBNodeCommand = []string{exe, "cloud", lbNodeCommand}
	}
	if len(images) == 0 {
		return fmt.Errorf("%w: at least one --image ami-ID=COMMAND|simulated is needed", errUsage)
	}
	if err := faults.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.SimulatedFailureRate < 0 || cfg.SimulatedFailureRate > 1 {
		return fmt.Errorf("%w: --sim-failure-rate must be between 0 and 1", errUsage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Images = images
	cfg.Logger = log
	if cfg.S3Dir == "" {
		cfg.S3Dir = defaultS3Dir(cfg.Listen)
	}

	if natsCluster < 1 || natsCluster > 7 {
		return fmt.Errorf("%w: --nats-cluster must be between 1 and 7", errUsage)
	}
	if natsCluster > 1 && embeddedNATS == "" {
		return fmt.Errorf("%w: --nats-cluster needs --embedded-nats HOST:PORT", errUsage)
	}
	// stopNATS shuts an embedded NATS down, waiting up to 10 s.
	stopNATS := func(shutdown func(context.Context) error) {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown(sctx)
	}
	if natsCluster > 1 {
		nc, err := broker.StartEmbeddedCluster(natsCluster, embeddedNATS, log)
		if err != nil {
			return fmt.Errorf("embedded NATS cluster: %w", err)
		}
		defer stopNATS(nc.Shutdown)
		log.Info("embedded NATS cluster started", "urls", nc.URLs())
		fmt.Fprintf(stdout, "NATS cluster: --nats=%s\n", nc.URLs())
		embeddedNATS = ""
	}
	if embeddedNATS != "" {
		e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: embeddedNATS, Logger: log})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		defer stopNATS(e.Shutdown)
		log.Info("embedded NATS started", "url", e.ClientURL())
	}

	c, err := localcloud.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stdout, "local cloud: %s (instance logs in %s, S3 objects in %s)\n", c.Endpoint(), c.LogDir(), c.S3Dir())
	fmt.Fprintf(stdout, "  aws --endpoint-url %s autoscaling describe-auto-scaling-groups\n", c.Endpoint())
	if bootstrap != "" {
		if err := c.Bootstrap(ctx, bootstrap); err != nil {
			return err
		}
		topo, _ := localcloud.LoadTopology(bootstrap)
		for _, lb := range topo.LoadBalancers {
			fmt.Fprintf(stdout, "  load balancer %s: %s\n", lb.Name, c.LoadBalancerURL(lb.Name))
		}
	}
	// Faults start once the topology exists: the bootstrap is the
	// operator's setup, not the system under test.
	if faults != (localcloud.Faults{Seed: faults.Seed, SlowDelay: faults.SlowDelay, StaleDelay: faults.StaleDelay}) {
		c.SetFaults(faults)
	}
	fmt.Fprintf(stdout, "  faults: curl -X POST -d '{\"throttle\":0.02}' %s%s\n", c.Endpoint(), localcloud.FaultsPath)
	<-ctx.Done()
	log.Info("stopping: terminating every instance")
	return nil
}

var _ flag.Value = imageFlags{}

// defaultS3Dir is where a cloud listening on listen keeps S3's objects:
// one folder per address under the state directory, so that a cloud
// restarted on the same endpoint finds them and two clouds on two
// addresses never share a folder. A cloud on a port picked at random
// (port 0) cannot be found again, so it gets a temporary folder ("").
func defaultS3Dir(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	if host == "" {
		host = "all"
	}
	return filepath.Join(defaultStateDir(), "cloud-s3", strings.NewReplacer(":", "_", "[", "", "]", "").Replace(host)+"_"+port)
}

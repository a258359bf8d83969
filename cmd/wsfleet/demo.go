package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"time"

	"wsfleet/demo"
	"wsfleet/probe"
	"wsfleet/rollout"
	"wsfleet/ui"
)

func init() {
	register("demo", "run the seed's change end to end on a local cloud with chat clients, and report what they saw",
		"wsfleet demo --fast\nwsfleet demo --fast --naive --clients 500 --out /tmp/naive\nwsfleet demo --fast --ui 127.0.0.1:8090", runDemo)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "generator" {
		// Hidden: one of the demo's generator processes at scale, which
		// talks to the demo over its standard input and output.
		return demo.RunGenerator(ctx, os.Stdin, stdout, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	fs := newFlagSet("demo", stderr)
	var cfg demo.Config
	var verbose bool
	fs.IntVar(&cfg.Clients, "clients", 2000, "chat clients held through the load balancer")
	fs.BoolVar(&cfg.Fast, "fast", false, "shorten the plan's bakes, warm-up and drains (time scale 0.05) and the local cloud's health checks: under 3 minutes")
	fs.BoolVar(&cfg.Replay, "replay", false, "let the chat clients ask for what they missed, as the Go client can (default: behave like unmodified faye and halley clients)")
	fs.IntVar(&cfg.NATSCluster, "nats-cluster", 1, "run this many NATS servers in one JetStream cluster (3: the stream's leader is shut down for a few seconds mid-change)")
	fs.StringVar(&cfg.NATSURL, "nats", "", "use this NATS server (JetStream on, an empty store) instead of one embedded in the demo's process, e.g. nats://127.0.0.1:4222 for `nats-server -js -sd DIR`")
	fs.BoolVar(&cfg.Naive, "naive", false, "do the change the seed's way instead: terminate, then let the group replace, no drain")
	fs.StringVar(&cfg.Out, "out", "wsfleet-demo", "directory for report.md, events.jsonl, chart.svg and summary.json")
	fs.Float64Var(&cfg.Rate, "rate", 40, "chat messages published per second over all rooms")
	fs.Float64Var(&cfg.TimeScale, "time-scale", 0, "multiply the plan's waits by this (default 1, or 0.05 with --fast)")
	fs.BoolVar(&cfg.Prometheus, "prometheus", false, "run Debian's prometheus beside the demo, scraping every node (its files in OUT/prometheus; fails if it is not installed)")
	fs.IntVar(&cfg.ListGaps, "gaps", 0, "list the N longest client gaps with the change's phase and the nodes the client left and reached (report.md lists the 50 longest)")
	fs.IntVar(&cfg.Generators, "generators", 0, "run the chat clients as this many generator processes (0: in this process while the open-file limit allows three sockets a client, else one process per 12,000 clients)")
	fs.IntVar(&cfg.LBNodes, "lb-nodes", 0, "run the local cloud's load balancer as this many node processes, as an ALB's DNS name resolves to several nodes (0: in this process while the open-file limit allows, else one node per 8,000 clients)")
	fs.BoolVar(&verbose, "v", false, "log the local cloud's and the engine's warnings to stderr")
	uiAddr := fs.String("ui", "", "serve the live dashboard of the change on this address, e.g. 127.0.0.1:8090 (commands need $WSFLEET_ADMIN_TOKEN)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Clients < 1 {
		return fmt.Errorf("%w: --clients must be at least 1", errUsage)
	}
	if cfg.NATSURL != "" {
		u, err := url.Parse(cfg.NATSURL)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			return fmt.Errorf("%w: --nats %q: want nats://HOST:PORT", errUsage, cfg.NATSURL)
		}
		if cfg.NATSCluster > 1 {
			return fmt.Errorf("%w: --nats and --nats-cluster: the cluster is the demo's own; use one or the other", errUsage)
		}
	}
	if cfg.Generators < 0 || cfg.LBNodes < 0 {
		return fmt.Errorf("%w: --generators and --lb-nodes must not be negative", errUsage)
	}
	if cfg.TimeScale < 0 || cfg.Rate < 0 {
		return fmt.Errorf("%w: --time-scale and --rate must not be negative", errUsage)
	}
	level := slog.LevelError
	if verbose {
		level = slog.LevelWarn
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Progress = stdout
	cfg.TTY = isTerminal(stdout)
	var dash *uiServer
	if *uiAddr != "" {
		if !ui.Loopback(*uiAddr) && os.Getenv("WSFLEET_ADMIN_TOKEN") == "" {
			return fmt.Errorf("%w: --ui %s: listening beyond loopback needs the admin token ($WSFLEET_ADMIN_TOKEN)", errUsage, *uiAddr)
		}
		var werr error
		cfg.Watch = func(store rollout.Backend, eventLog string, clients func() (probe.Report, bool)) {
			dash, werr = startUI(ctx, *uiAddr, ui.Config{Store: store, EventLog: eventLog, Token: os.Getenv("WSFLEET_ADMIN_TOKEN"),
				Metrics: func() (ui.Metrics, bool) {
					r, ok := clients()
					return ui.Metrics{Reconnects: r.Reconnects, Delay: time.Duration(r.Latency.P99 * float64(time.Millisecond))}, ok
				}}, "WSFLEET_ADMIN_TOKEN", stderr)
			if werr != nil {
				fmt.Fprintf(stderr, "wsfleet demo: %v\n", werr)
			}
		}
	}
	sum, err := demo.Run(ctx, cfg)
	dash.stop()
	if sum != nil {
		sum.WriteText(stdout)
	}
	if errors.Is(err, demo.ErrNotClean) {
		return exitError{code: 1}
	}
	return err
}

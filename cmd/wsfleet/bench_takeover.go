package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"wsfleet/bench"
)

// runBenchTakeover is `wsfleet bench takeover`: how many clients moved from
// a draining node one node takes over per second, per core (docs/bench.md,
// "Take-overs per second").
func runBenchTakeover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench takeover", stderr)
	var o bench.TakeoverOptions
	fs.IntVar(&o.Clients, "clients", 3000, "clients moved in each step")
	fs.IntVar(&o.Channels, "channels", 50, "channels the clients are spread over, one each")
	fs.Float64Var(&o.MsgRate, "msg-rate", 50, "messages published per second over all channels during a step")
	rates := fs.String("rates", "100,200,400,800,all", "release rates to run, clients per second ('all': all at once)")
	noFresh := fs.Bool("no-fresh", false, "skip the fresh-handshake comparison")
	fs.IntVar(&o.ServerCPU, "server-cpu", 0, "core the receiving node is pinned to (-1: no pinning)")
	genCPU := fs.Int("generator-cpu", 1, "core this process, the draining node and nats-server are pinned to (-1: no pinning)")
	fs.StringVar(&o.NATSServer, "nats-server", "", "nats-server binary (default $WSFLEET_NATS_SERVER, PATH, /usr/sbin/nats-server)")
	binary := fs.String("wsfleet", "", "wsfleet binary the nodes run (default: this one)")
	jsonOut := fs.String("json", "bench-takeover.json", "write the results here as JSON (empty: don't)")
	logs := fs.String("logs", "", "append the nodes' and nats-server's logs to this file (default: discard)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.NoFresh = *noFresh
	for _, r := range splitList(*rates) {
		if r == "all" {
			o.Rates = append(o.Rates, 0)
			continue
		}
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("%w: --rates: bad rate %q", errUsage, r)
		}
		o.Rates = append(o.Rates, v)
	}
	if o.NATSServer == "" {
		p, err := bench.FindNATSServer()
		if err != nil {
			return fmt.Errorf("bench takeover: %w", err)
		}
		o.NATSServer = p
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench takeover: find own binary: %w", err)
	}
	if *binary == "" {
		*binary = self
	}
	o.Binary = *binary
	// The generator (and with it node A and nats-server, its children)
	// gets its own core: run this process again under taskset, once.
	if *genCPU >= 0 && os.Getenv(benchPinnedEnv) == "" {
		// Without taskset everything runs unpinned (RunTakeover says so
		// for node B, and reports the cores it had).
		if taskset, err := exec.LookPath("taskset"); err == nil {
			argv := append([]string{"taskset", "-c", strconv.Itoa(*genCPU), self, "bench", "takeover"}, args...)
			env := append(os.Environ(), benchPinnedEnv+"="+strconv.Itoa(*genCPU))
			if err := syscall.Exec(taskset, argv, env); err != nil {
				return fmt.Errorf("bench takeover: re-exec under taskset: %w", err)
			}
		}
		fmt.Fprintln(stderr, "bench takeover: no taskset: the generator runs unpinned")
	}
	o.Progress = stderr
	if *logs != "" {
		f, err := os.OpenFile(*logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("bench takeover: %w", err)
		}
		defer f.Close()
		o.Stderr = f
	}
	fmt.Fprintf(stderr, "bench takeover: node B on core %s, generator, node A and nats-server on core %s\n", orNone(pinnedCore(o.ServerCPU)), orNone(os.Getenv(benchPinnedEnv)))
	start := time.Now()
	res, err := bench.RunTakeover(ctx, o)
	if res != nil {
		bench.WriteTakeoverTable(stdout, res)
		if *jsonOut != "" {
			if werr := writeTakeoverJSON(*jsonOut, res); werr != nil {
				return fmt.Errorf("bench takeover: write %s: %w", *jsonOut, werr)
			}
		}
		fmt.Fprintf(stderr, "bench takeover: done in %.0fs\n", time.Since(start).Seconds())
	}
	return err
}

// pinnedCore is cpu as a core name, "" for none.
func pinnedCore(cpu int) string {
	if cpu < 0 {
		return ""
	}
	return strconv.Itoa(cpu)
}

// writeTakeoverJSON writes the run's JSON to path.
func writeTakeoverJSON(path string, res *bench.TakeoverResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = bench.WriteTakeoverJSON(f, res)
	return errors.Join(err, f.Close())
}

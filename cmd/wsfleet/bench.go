package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"wsfleet/bench"
)

func init() {
	register("bench", "benchmark the ws node against Faye's own Node.js server and Centrifugo",
		"wsfleet bench --quick\nwsfleet bench --servers wsfleet --scenarios fanout --rates 10000,50000\nwsfleet bench takeover --clients 1000 --rates 200,all\nwsfleet bench soak --duration 30m --out docs/soak --nats-server .cache/nats-server/v2.15.2/nats-server", runBench)
}

// benchPinnedEnv marks the re-executed, pinned generator process.
const benchPinnedEnv = "WSFLEET_BENCH_GENERATOR_CPU"

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) > 0 && args[0] == "soak":
		return runSoak(ctx, args[1:], stdout, stderr) // soak.go
	case len(args) > 0 && args[0] == "takeover":
		return runBenchTakeover(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("bench", stderr)
	var o bench.Options
	quick := fs.Bool("quick", false, "a scaled-down run (1,000 idle sessions, 500 subscribers, short steps)")
	jsonOut := fs.String("json", "bench-result.json", "write the results here as JSON (empty: don't)")
	fs.IntVar(&o.ServerCPU, "server-cpu", 0, "core the servers are pinned to (-1: no pinning)")
	genCPU := fs.Int("generator-cpu", 1, "core the load generator (this process) is pinned to (-1: no pinning)")
	servers := fs.String("servers", "wsfleet,faye,centrifugo,bare", "servers to run (bare: the bare-write limit, fan-out only)")
	scenarios := fs.String("scenarios", "idle,fanout,churn", "scenarios to run: idle (a), fanout (b), churn (c)")
	fs.IntVar(&o.IdleSessions, "idle-sessions", 0, "(a) idle sessions (default 10000, quick 1000)")
	fs.IntVar(&o.Subscribers, "subscribers", 0, "(b) subscribers (default 5000, quick 500)")
	fs.IntVar(&o.Channels, "channels", 0, "(b) channels (default 50, quick 10)")
	rates := fs.String("rates", "", "(b) comma-separated deliveries/s to try in order (default 10k…300k)")
	fixedRates := fs.String("fixed-rates", "", "(b) comma-separated deliveries/s to compare CPU per delivery at (default 20000,40000)")
	fs.IntVar(&o.FixedRounds, "fixed-rounds", 0, "(b) rounds of tries at the fixed rates, every server afresh each round; the figure is the median (default 3, quick 1)")
	steer := fs.Bool("steer-receive", true, "(b) also measure the fixed rates with loopback's receive steered off the servers' core (needs root; sets lo's rps_cpus during those steps only)")
	fs.IntVar(&o.Refine, "refine", 0, "(b) rates tried between the last sustained and the first failed rate (default 3, quick 2, -1: none)")
	fs.StringVar(&o.Centrifugo, "centrifugo", "", "centrifugo binary (default: built by scripts/build-centrifugo.sh into .cache/)")
	serveBare := fs.String("serve-bare", "", "internal: run the bare-write server on this address (the bench starts it)")
	fs.DurationVar(&o.Step, "step", 0, "(b) measuring time per rate (default 5s, quick 2s)")
	fs.DurationVar(&o.ChurnTime, "churn-time", 0, "(c) duration (default 10s, quick 3s)")
	fs.IntVar(&o.ChurnWorkers, "churn-workers", 0, "(c) concurrent connect-handshake-close loops (default 128, quick 32)")
	binary := fs.String("wsfleet", "", "wsfleet binary to run as the ws node (default: this one)")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's CPU profile here")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.Quick = *quick
	o.NoSteer = !*steer
	if o.FixedRounds < 0 || o.FixedRounds > 20 {
		return fmt.Errorf("%w: --fixed-rounds %d: want 1 to 20 (0: the default)", errUsage, o.FixedRounds)
	}
	o.Servers = splitList(*servers)
	o.Scenarios = splitList(*scenarios)
	if *serveBare != "" {
		// The bench's bare-write server, started pinned on the servers'
		// core; it runs until killed.
		return bench.ServeBare(ctx, *serveBare, os.Getenv("WSFLEET_ADMIN_TOKEN"), stdout)
	}
	var err error
	if o.Rates, err = parseRates("--rates", *rates); err != nil {
		return err
	}
	if o.FixedRates, err = parseRates("--fixed-rates", *fixedRates); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find own binary: %w", err)
	}
	if *binary == "" {
		*binary = self
	}
	o.Binary = *binary

	// The generator must have its own core: run this process again under
	// taskset, once.
	if *genCPU >= 0 && os.Getenv(benchPinnedEnv) == "" {
		taskset, err := exec.LookPath("taskset")
		if err != nil {
			return fmt.Errorf("bench: taskset not found (use --generator-cpu -1 --server-cpu -1 to run unpinned): %w", err)
		}
		argv := append([]string{"taskset", "-c", strconv.Itoa(*genCPU), self, "bench"}, args...)
		env := append(os.Environ(), benchPinnedEnv+"="+strconv.Itoa(*genCPU))
		if err := syscall.Exec(taskset, argv, env); err != nil {
			return fmt.Errorf("bench: re-exec under taskset: %w", err)
		}
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	o.Progress = stderr
	fmt.Fprintf(stderr, "bench: servers on core %d, generator on core %s; %s\n", o.ServerCPU, orNone(os.Getenv(benchPinnedEnv)), map[bool]string{true: "quick run", false: "full run"}[o.Quick])
	start := time.Now()
	res, err := bench.Run(ctx, o)
	if res != nil {
		if len(res.Table) > 0 {
			bench.WriteTable(stdout, res)
		}
		if *jsonOut != "" {
			f, ferr := os.Create(*jsonOut)
			if ferr != nil {
				return fmt.Errorf("bench: %w", ferr)
			}
			if werr := bench.WriteJSON(f, res); werr != nil {
				f.Close()
				return fmt.Errorf("bench: write %s: %w", *jsonOut, werr)
			}
			if cerr := f.Close(); cerr != nil {
				return fmt.Errorf("bench: write %s: %w", *jsonOut, cerr)
			}
			fmt.Fprintf(stderr, "bench: results in %s (%.0fs)\n", *jsonOut, time.Since(start).Seconds())
		}
	}
	return err
}

// parseRates reads a comma-separated list of positive rates.
func parseRates(flag, s string) ([]float64, error) {
	var out []float64
	for _, r := range splitList(s) {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%w: %s: bad rate %q", errUsage, flag, r)
		}
		out = append(out, v)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "unpinned"
	}
	return s
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"wsfleet/bench"
)

// runSoak is `wsfleet bench soak`: the soak of issue 22 (bench.RunSoak).
// It prints a line per sample on stderr and the verdict on stdout, writes
// soak.json and soak.svg into --out, and fails unless the run is flat
// with no error.
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench soak", stderr)
	var o bench.SoakOptions
	fs.DurationVar(&o.Duration, "duration", 30*time.Minute, "how long the sessions are held after they are all open")
	fs.IntVar(&o.Sessions, "sessions", 10000, "sessions held")
	fs.IntVar(&o.Channels, "channels", 100, "channels the sessions subscribe to (one each)")
	fs.Float64Var(&o.PublishRate, "publish-rate", 20, "messages published per second, round robin over the channels")
	fs.Float64Var(&o.ChurnRate, "churn-rate", 10, "sessions replaced per second (in turn: leave, drop the socket, reconnect with the old clientId)")
	fs.DurationVar(&o.ReconnectJitter, "reconnect-jitter", 250*time.Millisecond, "a reconnect with the old clientId waits a random time up to this (negative: none)")
	fs.DurationVar(&o.Interval, "interval", 5*time.Second, "how often the node is sampled")
	fs.Float64Var(&o.FlatLimitPct, "flat-limit", 5, "flat: the drift of RSS and goroutines over the second half of the hold within this % of their mean")
	fs.IntVar(&o.ServerCPU, "server-cpu", -1, "core the node is pinned to (-1: no pinning)")
	out := fs.String("out", "docs/soak", "directory soak.json and soak.svg are written to (empty: none)")
	natsServer := fs.String("nats-server", "", "nats-server binary the node joins (default: nats-server on PATH)")
	binary := fs.String("wsfleet", "", "wsfleet binary to run as the node (default: this one)")
	serverLog := fs.String("server-log", "", "append the node's and the nats-server's logs to this file (default: dropped)")
	judge := fs.String("judge", "", "judge a recorded run (its soak.json) again with this version's rule instead of running one: print its summary and rewrite --out's files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *judge != "" {
		return rejudgeSoak(*judge, *out, stdout, stderr)
	}
	if *binary == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("soak: find own binary: %w", err)
		}
		*binary = self
	}
	o.Binary = *binary
	if *natsServer == "" {
		p, err := bench.NATSServerPath()
		if err != nil {
			return err
		}
		*natsServer = p
	}
	o.NATSServer = *natsServer
	o.Progress, o.Stderr = stderr, io.Discard
	if *serverLog != "" {
		f, err := os.OpenFile(*serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("soak: %w", err)
		}
		defer f.Close()
		o.Stderr = f
	}
	fmt.Fprintf(stderr, "soak: %d sessions over %d channels for %s, %g messages/s, %g replaced/s\n",
		o.Sessions, o.Channels, o.Duration, o.PublishRate, o.ChurnRate)
	res, err := bench.RunSoak(ctx, o)
	if res == nil {
		return err
	}
	bench.WriteSoakSummary(stdout, res)
	if *out != "" {
		if werr := writeSoakFiles(*out, res); werr != nil {
			return werr
		}
		fmt.Fprintf(stderr, "soak: samples in %s, plot in %s\n", filepath.Join(*out, "soak.json"), filepath.Join(*out, "soak.svg"))
	}
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if !res.Pass {
		return fmt.Errorf("soak: %s", res.Verdict)
	}
	return nil
}

// rejudgeSoak is `bench soak --judge FILE`: a recorded run judged again
// (bench.Rejudge), its summary printed and, unless out is empty, its
// soak.json and soak.svg written there with the new verdict.
func rejudgeSoak(path, out string, stdout, stderr io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("soak --judge: %w", err)
	}
	res, err := bench.ReadSoakJSON(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("soak --judge %s: %w", path, err)
	}
	bench.Rejudge(res)
	bench.WriteSoakSummary(stdout, res)
	if out != "" {
		if err := writeSoakFiles(out, res); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "soak: judged again into %s\n", out)
	}
	if !res.Pass {
		return fmt.Errorf("soak: %s", res.Verdict)
	}
	return nil
}

// writeSoakFiles writes soak.json and soak.svg into dir.
func writeSoakFiles(dir string, res *bench.SoakResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	write := func(name string, f func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		fh, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("soak: %w", err)
		}
		if err := f(fh); err != nil {
			fh.Close()
			return fmt.Errorf("soak: write %s: %w", path, err)
		}
		if err := fh.Close(); err != nil {
			return fmt.Errorf("soak: write %s: %w", path, err)
		}
		return nil
	}
	if err := write("soak.json", func(w io.Writer) error { return bench.WriteSoakJSON(w, res) }); err != nil {
		return err
	}
	title := fmt.Sprintf("wsfleet soak %s: %v sessions, %s hold — %s",
		res.Started.Format("2006-01-02 15:04 UTC"), res.Settings["sessions"], time.Duration(res.Settings["duration_s"].(float64)*float64(time.Second)), res.Verdict)
	return write("soak.svg", func(w io.Writer) error { return bench.WriteSoakChart(w, title, res) })
}

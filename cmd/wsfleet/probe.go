package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"wsfleet/probe"
)

func init() {
	register("probe", "measure what chat clients experience: loss, gaps, latency",
		"wsfleet probe --url http://127.0.0.1:8080/bayeux --admin-token T --clients 1000 --channels 10 --rate 100 --duration 30s --json", runProbe)
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	var cfg probe.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8000/bayeux", "Bayeux endpoint")
	fs.StringVar(&cfg.PublishURL, "publish-url", "", "publish endpoint (default: the URL's origin + /publish)")
	fs.StringVar(&cfg.AdminToken, "admin-token", os.Getenv("WSFLEET_ADMIN_TOKEN"), "admin token for POST /publish (default $WSFLEET_ADMIN_TOKEN)")
	fs.StringVar(&cfg.TokenSecret, "token-secret", os.Getenv("WSFLEET_TOKEN_SECRET"), "HS256 secret to mint each client a JWT (default $WSFLEET_TOKEN_SECRET)")
	fs.IntVar(&cfg.Clients, "clients", 100, "subscriber clients")
	fs.IntVar(&cfg.Channels, "channels", 10, "channels the clients spread over")
	fs.StringVar(&cfg.ChannelPrefix, "channel-prefix", "/probe", "channel names: {id} is replaced by the channel number, else it is appended")
	fs.Float64Var(&cfg.Rate, "rate", 10, "messages published per second, over all channels")
	fs.StringVar(&cfg.Transport, "transport", "websocket", "websocket or long-polling")
	fs.BoolVar(&cfg.NoReplay, "no-replay", false, "never ask the server for missed messages (ext.since), as faye and halley do: measure what unmodified clients see")
	sources := fs.String("source-addrs", "", "comma-separated local IPs to spread connections over (default: 127.0.0.x for a loopback URL)")
	fs.DurationVar(&cfg.Grace, "grace", 2*time.Second, "wait this long for messages in flight at the end")
	duration := fs.Duration("duration", 30*time.Second, "how long to publish")
	asJSON := fs.Bool("json", false, "print the final report as one JSON object")
	maxLoss := fs.Int64("max-loss", 0, "exit 1 when more (message, subscriber) pairs than this are lost")
	maxGap := fs.Duration("max-gap", 0, "exit 1 when a client was disconnected longer than this (0: no limit)")
	verbose := fs.Bool("v", false, "log connection events to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sources != "" {
		cfg.SourceAddrs = strings.Split(*sources, ",")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	p, err := probe.Start(ctx, cfg)
	if err != nil {
		return err
	}
	tty := isTerminal(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(*duration)
	defer end.Stop()
run:
	for {
		select {
		case <-ctx.Done():
			break run
		case <-end.C:
			break run
		case <-tick.C:
			if tty {
				fmt.Fprintf(stdout, "\r\033[K%s", progressLine(p.Snapshot()))
			}
		}
	}
	if tty {
		fmt.Fprint(stdout, "\r\033[K")
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.Grace+30*time.Second)
	defer cancel()
	r := p.Stop(stopCtx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else {
		writeProbeReport(stdout, r)
	}
	var failed []string
	if r.ClientsSubscribed < r.Clients {
		failed = append(failed, fmt.Sprintf("%d of %d clients never subscribed (see errors)", r.Clients-r.ClientsSubscribed, r.Clients))
	}
	if cfg.Rate > 0 && r.Sent == 0 {
		failed = append(failed, "no publish was acknowledged (see errors; is --admin-token right?)")
	}
	if r.Lost > *maxLoss {
		failed = append(failed, fmt.Sprintf("lost %d > --max-loss %d", r.Lost, *maxLoss))
	}
	if *maxGap > 0 && r.Gap.Max > float64(*maxGap)/float64(time.Millisecond) {
		failed = append(failed, fmt.Sprintf("gap %.0fms > --max-gap %v", r.Gap.Max, *maxGap))
	}
	if len(failed) > 0 {
		return exitError{code: 1, msg: strings.Join(failed, "; ")}
	}
	return nil
}

// isTerminal reports whether w is a character device, where a progress
// line that rewrites itself makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func progressLine(r probe.Report) string {
	return fmt.Sprintf("%5.0fs  clients %d/%d  sent %d  delivered %d/%d  lost %d  dup %d  p99 %.1fms  gaps %d (max %.0fms)",
		r.ElapsedMs/1000, r.ClientsConnected, r.Clients, r.Sent, r.Delivered, r.Expected, r.Lost, r.Duplicated,
		r.Latency.P99, r.Gap.Count, r.Gap.Max)
}

func writeProbeReport(w io.Writer, r probe.Report) {
	fmt.Fprintf(w, "clients     %d (%d subscribed, %d connected at the end) over %d channels, %.1fs\n",
		r.Clients, r.ClientsSubscribed, r.ClientsConnected, r.Channels, r.ElapsedMs/1000)
	fmt.Fprintf(w, "messages    %d sent, %d publish failures\n", r.Sent, r.PublishFailed)
	fmt.Fprintf(w, "deliveries  %d expected, %d delivered, %d lost (%.4f%%), %d duplicated, %d out of order\n",
		r.Expected, r.Delivered, r.Lost, 100*r.LossRatio(), r.Duplicated, r.OutOfOrder)
	fmt.Fprintf(w, "latency     p50 %.1fms  p99 %.1fms  max %.1fms\n", r.Latency.P50, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(w, "gaps        %d  p50 %.0fms  p99 %.0fms  max %.0fms  (%d reconnects)\n", r.Gap.Count, r.Gap.P50, r.Gap.P99, r.Gap.Max, r.Reconnects)
	if len(r.Errors) > 0 {
		kinds := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		fmt.Fprintf(w, "errors      %s\n", strings.Join(parts, ", "))
	}
}

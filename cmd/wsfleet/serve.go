package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"wsfleet/broker"
	"wsfleet/server"
)

func init() {
	register("serve", "run a ws node: a Bayeux (Faye) server over websocket and long-polling",
		"wsfleet serve\nwsfleet serve --embedded-nats 127.0.0.1:4222 --listen :8081 --node-id ws-01 --admin-token T", runServe)
}

// serveFlags are serve's flags; secrets may also come from the environment
// so that they stay out of the process list.
type serveFlags struct {
	listen, mount, adminToken, authSecret, rules string
	maxMessageBytes, maxSubs, maxBatch, queue    int
	nodeID, image, natsURLs, embeddedNATS        string
	historyAge                                   time.Duration
	historyMaxMsgs                               int64
	natsReplicas                                 int
	natsInterest                                 bool
	natsInterestSettle                           time.Duration
	drain                                        server.DrainOptions
	timeout                                      time.Duration
	logLevel                                     string
	pprof                                        string
	gcPercent                                    int

	// limits (docs/server.md, "Limits and abuse")
	maxConns, wsSendBuffer, handshakeBurst int
	handshakeTimeout, readTimeout          time.Duration
	readHeaderTimeout, idleTimeout         time.Duration
	handshakesPerIP                        float64
	trustForwardedFor                      bool
	corsOrigins, metricsListen             string

	// test-only faults (server.Faults): the local cloud's bad images
	faults server.Faults
}

func addServeFlags(fs *flag.FlagSet) *serveFlags {
	f := &serveFlags{}
	host, _ := os.Hostname()
	fs.StringVar(&f.listen, "listen", ":8080", "address to listen on")
	fs.StringVar(&f.mount, "mount", "/bayeux", "path of the Bayeux endpoint")
	fs.StringVar(&f.adminToken, "admin-token", os.Getenv("WSFLEET_ADMIN_TOKEN"), "bearer token for /admin/* and /publish (default $WSFLEET_ADMIN_TOKEN; empty disables them)")
	fs.StringVar(&f.authSecret, "auth-secret", os.Getenv("WSFLEET_AUTH_SECRET"), "HS256 secret that client tokens are verified with (default $WSFLEET_AUTH_SECRET; empty allows anonymous clients everywhere)")
	fs.StringVar(&f.rules, "rules", "", "authorisation rules `FILE`: one rule a line, 'subscribe|publish|both PATTERN'; {sub} is the token's subject")
	fs.IntVar(&f.maxMessageBytes, "max-message-bytes", 64<<10, "largest websocket frame or HTTP request body")
	fs.IntVar(&f.maxSubs, "max-subscriptions", 100, "subscriptions per client")
	fs.IntVar(&f.maxBatch, "max-batch", 100, "messages per request")
	fs.IntVar(&f.queue, "queue-limit", 1000, "messages queued per client before it is disconnected as a slow consumer")
	fs.StringVar(&f.nodeID, "node-id", host, "node id reported in status and saved sessions")
	fs.StringVar(&f.image, "image", "", "machine image label reported in status")
	fs.StringVar(&f.natsURLs, "nats", "", "join a cluster through these NATS servers (comma-separated nats:// URLs)")
	fs.StringVar(&f.embeddedNATS, "embedded-nats", "", "host an in-process NATS server with JetStream at this address, which other nodes join with --nats")
	fs.BoolVar(&f.natsInterest, "nats-interest", true, "read from NATS only the channels this node's sessions subscribe to; false reads the whole stream (as before interest-based delivery)")
	fs.DurationVar(&f.natsInterestSettle, "nats-interest-settle", 2*time.Second, "while this node's channels grow fast (sessions arriving on channels new to it), read the whole NATS stream until no new channel came for this long, so that take-overs wait for no consumer switch (negative: off)")
	fs.IntVar(&f.natsReplicas, "nats-replicas", 0, "replicas of the message stream and the session bucket in a NATS cluster, 1..5 (default: 3 when the cluster has three or more servers, else 1)")
	fs.DurationVar(&f.historyAge, "history-age", 5*time.Minute, "how long published messages are kept for replay")
	fs.Int64Var(&f.historyMaxMsgs, "history-max-msgs", 100_000, "most published messages kept for replay")
	fs.DurationVar(&f.drain.Window, "drain-window", server.DefaultDrainOptions.Window, "drain on SIGTERM: spread client releases over this window")
	fs.Float64Var(&f.drain.MaxRate, "drain-max-rate", server.DefaultDrainOptions.MaxRate, "drain on SIGTERM: release at most this many clients per second")
	fs.DurationVar(&f.drain.Deadline, "drain-deadline", server.DefaultDrainOptions.Deadline, "drain on SIGTERM: close what is left after this long")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long a /meta/connect is held (advice.timeout)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&f.gcPercent, "gc-percent", 50, "Go GC target (as GOGC) for the node; $GOGC, when set, wins")
	fs.IntVar(&f.maxConns, "max-connections", 50_000, "most open websockets plus long-polling requests in flight; beyond it new ones get 503 (0: no cap)")
	fs.DurationVar(&f.handshakeTimeout, "handshake-timeout", 0, "close a websocket that carries no /meta/connect this long after its upgrade, and bound a long-polling request's body by it (0: the --timeout)")
	fs.DurationVar(&f.readTimeout, "read-timeout", 10*time.Second, "longest a request body may take to arrive")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 10*time.Second, "longest a request's headers may take to arrive")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 120*time.Second, "close a keep-alive HTTP connection idle this long between requests")
	fs.IntVar(&f.wsSendBuffer, "ws-send-buffer", 256<<10, "kernel send buffer (SO_SNDBUF) of every websocket, in `BYTES`; Linux doubles it and caps it at net.core.wmem_max (0: the kernel's autotuning, up to 4 MiB a socket)")
	fs.Float64Var(&f.handshakesPerIP, "max-handshakes-per-ip", 0, "most /meta/handshakes a second from one client address, in bursts of --handshake-burst (0: no limit; behind a load balancer only with --trust-forwarded-for)")
	fs.IntVar(&f.handshakeBurst, "handshake-burst", 20, "handshakes one client address may make at once under --max-handshakes-per-ip")
	fs.BoolVar(&f.trustForwardedFor, "trust-forwarded-for", false, "take a client's address from the last X-Forwarded-For entry, which the load balancer in front appends (set it only behind one)")
	fs.StringVar(&f.corsOrigins, "cors-origins", "", "comma-separated origins whose pages may use the node cross-origin (CORS, with credentials, as Faye's and CometD's cross-origin transports need); empty: any origin")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "serve /metrics on this `ADDR` only, not on --listen (empty: on --listen)")
	fs.Float64Var(&f.faults.HandshakeFailRate, "fault-handshake-fail-rate", 0, "TEST ONLY: fail this fraction (0 to 1) of /meta/handshakes with a server error, so that a canary analysis has a bad image to catch")
	fs.DurationVar(&f.faults.Delay, "fault-delay", 0, "TEST ONLY: wait this long before handling each Bayeux request and each websocket delivery (a slow image)")
	fs.StringVar(&f.pprof, "pprof", os.Getenv("WSFLEET_PPROF"), "debug: serve Go profiles (net/http/pprof) on this loopback `ADDR` (default $WSFLEET_PPROF; empty: off)")
	return f
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	f := addServeFlags(fs)
	aws := addAWSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := aws.configure(ctx, fs, log); err != nil {
		return fmt.Errorf("configure from AWS: %w", err)
	}
	if f.drain.Window < 0 || f.drain.MaxRate < 0 || f.drain.Deadline <= 0 {
		return fmt.Errorf("%w: drain window and rate must not be negative, deadline must be positive", errUsage)
	}

	var rules server.Rules
	if f.rules != "" {
		var err error
		if rules, err = server.LoadRules(f.rules); err != nil {
			return err
		}
	}

	// A node's heap is mostly long-lived per-connection state, and the
	// runtime lets the heap grow by GOGC percent of it (stacks included)
	// before collecting: at the default 100 an idle node's RSS was about
	// twice what its connections hold. The fan-out path allocates little,
	// so collecting at 50% costs little CPU.
	if os.Getenv("GOGC") == "" && f.gcPercent > 0 {
		debug.SetGCPercent(f.gcPercent)
	}
	if f.pprof != "" {
		stop, err := server.ServePprof(f.pprof, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	br, clustered, cleanup, err := openBroker(ctx, f, log)
	if err != nil {
		return err
	}
	defer cleanup()

	maxConns, sendBuf := f.maxConns, f.wsSendBuffer
	if maxConns == 0 {
		maxConns = -1
	}
	if sendBuf == 0 {
		sendBuf = -1
	}
	if maxConns < 0 || sendBuf < 0 || f.handshakesPerIP < 0 || f.handshakeTimeout < 0 || f.readTimeout < 0 || f.readHeaderTimeout < 0 || f.idleTimeout < 0 {
		return fmt.Errorf("%w: limits must not be negative", errUsage)
	}
	if !(f.faults.HandshakeFailRate >= 0 && f.faults.HandshakeFailRate <= 1) || f.faults.Delay < 0 {
		return fmt.Errorf("%w: --fault-handshake-fail-rate is 0 to 1, --fault-delay not negative", errUsage)
	}
	var corsOrigins []string
	for o := range strings.SplitSeq(f.corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			corsOrigins = append(corsOrigins, o)
		}
	}

	srv, err := server.New(server.Config{
		NodeID: f.nodeID, Version: version, Image: f.image, Mount: f.mount,
		AdminToken: f.adminToken, AuthSecret: []byte(f.authSecret), Rules: rules,
		MaxMessageBytes: f.maxMessageBytes, MaxSubscriptions: f.maxSubs, MaxBatch: f.maxBatch, QueueLimit: f.queue,
		Timeout: f.timeout, Broker: br, DrainDefaults: f.drain,
		MaxConnections: maxConns, HandshakeTimeout: f.handshakeTimeout, ReadTimeout: f.readTimeout,
		ReadHeaderTimeout: f.readHeaderTimeout, IdleTimeout: f.idleTimeout, WSSendBuffer: sendBuf,
		HandshakeRate: f.handshakesPerIP, HandshakeBurst: f.handshakeBurst, TrustForwardedFor: f.trustForwardedFor,
		CORSOrigins: corsOrigins, NoMetrics: f.metricsListen != "", Faults: f.faults,
		// in a cluster any node may get any request of a client
		SharedSessions: clustered,
	}, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	serveErr := make(chan error, 2)
	if f.metricsListen != "" {
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen for metrics: %w", err)
		}
		ms := &http.Server{Handler: metricsMux(srv.MetricsHandler()), ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErr <- fmt.Errorf("metrics: %w", ms.Serve(mln)) }()
		defer ms.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	hs := srv.NewHTTPServer()
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	go func() { serveErr <- hs.Serve(ln) }()
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go srv.Run(runCtx)
	// watchDone closes when the lifecycle watcher returns: at once when
	// --aws-lifecycle is off, after CompleteLifecycleAction when it is on.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := aws.watchLifecycle(runCtx, srv, f.drain, log); err != nil {
			log.Error("lifecycle watcher stopped", "err", err)
		}
	}()
	log.Info("listening", "addr", ln.Addr().String(), "mount", f.mount, "node", f.nodeID, "version", version)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-srv.Drained():
		// a drain asked through the admin API (or the lifecycle hook)
		// has finished: nothing is left to serve.
		// With --aws-lifecycle the group waits for this node to complete
		// its termination hook, which AWS accepts only once the hook is
		// waiting (after the deregistration delay): exiting now would
		// leave the hook to time out. So stay until the watcher is done
		// or the instance is stopped.
		select {
		case <-watchDone:
		case <-ctx.Done():
		}
		log.Info("drained: exiting")
	case <-ctx.Done():
		// SIGTERM: leave the load balancer, hand the sessions over, paced.
		log.Info("signal received: draining", "window", f.drain.Window, "max_rate", f.drain.MaxRate, "deadline", f.drain.Deadline)
		dctx, cancel := context.WithTimeout(context.Background(), f.drain.Deadline+5*time.Second)
		defer cancel()
		if err := srv.Drain(dctx, f.drain); err != nil {
			log.Warn("drain did not finish", "err", err)
		}
	}
	srv.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// metricsMux serves the metrics alone, at /metrics.
func metricsMux(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	return mux
}

// openBroker returns the node's broker: an embedded NATS server (which this
// node also joins), external NATS, or the memory broker when neither is
// asked for; and whether it is shared with other nodes.
func openBroker(ctx context.Context, f *serveFlags, log *slog.Logger) (broker.Broker, bool, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	urls := f.natsURLs
	if f.embeddedNATS != "" {
		e, err := broker.StartEmbeddedNATS(broker.EmbeddedOptions{Addr: f.embeddedNATS, Logger: log})
		if err != nil {
			return nil, false, cleanup, err
		}
		cleanups = append(cleanups, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e.Shutdown(sctx)
		})
		log.Info("embedded NATS started", "url", e.ClientURL())
		if urls == "" {
			urls = e.ClientURL()
		} else {
			urls = e.ClientURL() + "," + urls
		}
	}
	if f.natsReplicas < 0 || f.natsReplicas > broker.MaxReplicas {
		cleanup()
		return nil, false, func() {}, fmt.Errorf("--nats-replicas %d: want 1..%d", f.natsReplicas, broker.MaxReplicas)
	}
	if urls == "" {
		log.Info("no NATS: running alone on the memory broker")
		return broker.NewMemory(broker.MemoryOptions{HistoryAge: f.historyAge, HistoryMsgs: int(f.historyMaxMsgs)}), false, cleanup, nil
	}
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := broker.NewNATS(nctx, broker.NATSOptions{URLs: urls, Name: "wsfleet-" + f.nodeID,
		HistoryAge: f.historyAge, HistoryMsgs: f.historyMaxMsgs, Replicas: f.natsReplicas, WholeStream: !f.natsInterest,
		InterestSettle: f.natsInterestSettle, Logger: log})
	if err != nil {
		cleanup()
		return nil, false, func() {}, fmt.Errorf("connect to NATS %s: %w", strings.Split(urls, ",")[0], err)
	}
	cleanups = append(cleanups, func() { b.Close() })
	return b, true, cleanup, nil
}

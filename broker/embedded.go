package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure an in-process NATS server.
type EmbeddedOptions struct {
	// Addr is host:port to listen on for clients, e.g. "127.0.0.1:4222".
	// Port 0 picks a free port (see Embedded.ClientURL).
	Addr string
	// StoreDir is where JetStream keeps the stream and the session bucket.
	// Empty means a fresh temporary directory, removed on Shutdown.
	StoreDir string
	// ServerName names the server in the cluster's logs; default
	// "wsfleet-<port>".
	ServerName string
	// ReadyTimeout bounds how long Start waits for the listener; default 10s.
	ReadyTimeout time.Duration
	// ClusterName, ClusterAddr and Routes make the server one of a
	// JetStream cluster: it listens for the other servers on ClusterAddr
	// (host:port) and dials Routes (nats-route://host:port each, its own
	// included is fine). Empty: a server alone. See StartEmbeddedCluster.
	ClusterName string
	ClusterAddr string
	Routes      []string
	// Logger receives nats-server's own log lines, all at debug level
	// (they are chatty and a ws node's log is for the ws node). Nil drops
	// them.
	Logger *slog.Logger
}

// Embedded is a nats-server with JetStream running inside this process,
// which other nodes join through ClientURL. The local cloud and the demo
// use it so that a fleet needs no NATS install.
type Embedded struct {
	srv     *server.Server
	tempDir string // removed on Shutdown when we created it
}

// StartEmbeddedNATS starts a nats-server with JetStream on o.Addr and waits
// until it accepts clients.
func StartEmbeddedNATS(o EmbeddedOptions) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: addr %q: %w", o.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded nats: addr %q: bad port", o.Addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	e := &Embedded{}
	if o.StoreDir == "" {
		dir, err := os.MkdirTemp("", "wsfleet-nats-")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: store dir: %w", err)
		}
		o.StoreDir, e.tempDir = dir, dir
	}
	if o.ServerName == "" {
		o.ServerName = "wsfleet-" + portStr
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true, // the host process owns its signals
		NoLog:      o.Logger == nil,
	}
	if o.ClusterAddr != "" {
		chost, cport, err := net.SplitHostPort(o.ClusterAddr)
		if err != nil {
			e.cleanup()
			return nil, fmt.Errorf("embedded nats: cluster addr %q: %w", o.ClusterAddr, err)
		}
		opts.Cluster.Name = o.ClusterName
		opts.Cluster.Host = chost
		if opts.Cluster.Port, err = strconv.Atoi(cport); err != nil {
			e.cleanup()
			return nil, fmt.Errorf("embedded nats: cluster addr %q: bad port", o.ClusterAddr)
		}
		opts.Routes = server.RoutesFromStr(strings.Join(o.Routes, ","))
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(&natsLogger{log: o.Logger.With("component", "nats-server")},
			o.Logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		e.cleanup()
		return nil, fmt.Errorf("embedded nats: not ready on %s within %s", o.Addr, o.ReadyTimeout)
	}
	e.srv = srv
	return e, nil
}

// ClientURL is the nats:// URL that clients and other nodes connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Addr is the host:port the server listens on (the chosen port when the
// options asked for port 0).
func (e *Embedded) Addr() string { return e.srv.Addr().String() }

// Shutdown stops the server, waits until it has stopped, and removes the
// store directory if it was a temporary one. ctx bounds the wait.
func (e *Embedded) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("embedded nats: shutdown: %w", ctx.Err())
	}
	return e.cleanup()
}

func (e *Embedded) cleanup() error {
	if e.tempDir == "" {
		return nil
	}
	if err := os.RemoveAll(e.tempDir); err != nil {
		return fmt.Errorf("embedded nats: remove store dir: %w", err)
	}
	return nil
}

// natsLogger routes nats-server's logger onto slog at debug level.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "level", "error")
}
func (l *natsLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

// EmbeddedCluster is several in-process nats-servers forming one JetStream
// cluster on loopback, each with its own store directory, which a server
// keeps across Stop and Restart: the demo and `wsfleet cloud
// --nats-cluster` use it to show a fleet riding out a NATS server's loss.
type EmbeddedCluster struct {
	opts    []EmbeddedOptions
	servers []*Embedded // nil while stopped
	dir     string
}

// StartEmbeddedCluster starts n servers with JetStream in one cluster.
// Client addresses are host:port, host:port+1 and so on (port 0: free
// ports); route ports are free ports. It returns once every server
// accepts clients; JetStream elects its leaders shortly after.
func StartEmbeddedCluster(n int, addr string, logger *slog.Logger) (*EmbeddedCluster, error) {
	if n < 2 || n > 7 {
		return nil, fmt.Errorf("embedded nats cluster: %d servers: want 2..7", n)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats cluster: addr %q: %w", addr, err)
	}
	base, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats cluster: addr %q: bad port", addr)
	}
	dir, err := os.MkdirTemp("", "wsfleet-nats-cluster-")
	if err != nil {
		return nil, fmt.Errorf("embedded nats cluster: store dir: %w", err)
	}
	c := &EmbeddedCluster{dir: dir}
	routeAddrs, err := freeAddrs(host, n)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded nats cluster: %w", err)
	}
	clientAddrs := make([]string, n)
	if base == 0 {
		if clientAddrs, err = freeAddrs(host, n); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("embedded nats cluster: %w", err)
		}
	} else {
		for i := range clientAddrs {
			clientAddrs[i] = net.JoinHostPort(host, strconv.Itoa(base+i))
		}
	}
	var routes []string
	for _, r := range routeAddrs {
		routes = append(routes, "nats-route://"+r)
	}
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		o := EmbeddedOptions{Addr: clientAddrs[i], StoreDir: filepath.Join(dir, name), ServerName: name,
			ClusterName: "wsfleet", ClusterAddr: routeAddrs[i], Routes: routes}
		if logger != nil {
			o.Logger = logger.With("nats_server", name)
		}
		c.opts = append(c.opts, o)
		c.servers = append(c.servers, nil)
		if err := c.Restart(i); err != nil {
			c.Shutdown(context.Background())
			return nil, err
		}
	}
	return c, nil
}

// URLs is every server's client URL, comma-separated, as --nats takes them.
func (c *EmbeddedCluster) URLs() string {
	var u []string
	for _, o := range c.opts {
		u = append(u, "nats://"+o.Addr)
	}
	return strings.Join(u, ",")
}

// Len is the number of servers.
func (c *EmbeddedCluster) Len() int { return len(c.opts) }

// Name is server i's name, as JetStream reports a stream's leader.
func (c *EmbeddedCluster) Name(i int) string { return c.opts[i].ServerName }

// Stop shuts server i down (its store is kept for Restart).
func (c *EmbeddedCluster) Stop(ctx context.Context, i int) error {
	e := c.servers[i]
	if e == nil {
		return nil
	}
	c.servers[i] = nil
	return e.Shutdown(ctx)
}

// Restart starts the stopped server i again on its address and store.
func (c *EmbeddedCluster) Restart(i int) error {
	if c.servers[i] != nil {
		return nil
	}
	e, err := StartEmbeddedNATS(c.opts[i])
	if err != nil {
		return fmt.Errorf("embedded nats cluster: %s: %w", c.opts[i].ServerName, err)
	}
	c.servers[i] = e
	return nil
}

// Shutdown stops every server and removes their stores.
func (c *EmbeddedCluster) Shutdown(ctx context.Context) error {
	var errs []error
	for i := range c.servers {
		errs = append(errs, c.Stop(ctx, i))
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("embedded nats cluster: remove stores: %w", err))
	}
	return errors.Join(errs...)
}

// freeAddrs returns n host:port addresses that were free a moment ago.
func freeAddrs(host string, n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
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

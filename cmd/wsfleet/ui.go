package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"wsfleet/rollout"
	"wsfleet/ui"
)

// uiServer is a running dashboard (--ui ADDR).
type uiServer struct {
	srv    *ui.Server
	http   *http.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// startUI serves the dashboard of cfg on addr until stop. A non-loopback
// address needs cfg.Token. The token is never printed: the line says
// only which variable it comes from.
func startUI(ctx context.Context, addr string, cfg ui.Config, tokenFrom string, stderr io.Writer) (*uiServer, error) {
	ln, err := ui.Listen(addr, cfg.Token)
	if err != nil {
		if errors.Is(err, ui.ErrOpenAddr) {
			return nil, fmt.Errorf("%w: --ui %s: listening beyond loopback needs the admin token ($%s)", errUsage, addr, tokenFrom)
		}
		return nil, err
	}
	if cfg.Control == nil {
		cfg.Control = liveControl(cfg.Store)
	}
	cfg.LoopbackOnly = ui.Loopback(addr)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := ui.New(cfg)
	ctx, cancel := context.WithCancel(ctx)
	u := &uiServer{srv: srv, cancel: cancel, done: make(chan struct{}),
		http: &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	go srv.Run(ctx)
	go func() {
		defer close(u.done)
		if err := u.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Warn("dashboard stopped", "err", err)
		}
	}()
	controls := "commands need the admin token ($" + tokenFrom + ")"
	if cfg.Token == "" {
		controls = "commands are off: $" + tokenFrom + " is not set"
	}
	fmt.Fprintf(stderr, "dashboard: http://%s/ (%s)\n", ln.Addr(), controls)
	return u, nil
}

// stop shows the change's last state to the pages still open, then
// closes the server.
func (u *uiServer) stop() {
	if u == nil {
		return
	}
	u.srv.Poll()
	u.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u.http.Shutdown(ctx) // streams never end on their own: past the timeout, close them
	u.http.Close()
	<-u.done
}

// liveControl leaves a command for the change's running engine, as
// `wsfleet pause` and the others do; a change with no engine running is
// refused, since resuming or aborting one takes a process to run it.
func liveControl(store rollout.Backend) func(ctx context.Context, change, command string) error {
	return func(ctx context.Context, change, command string) error {
		st, err := store.Load(change)
		if err != nil {
			return err
		}
		if !engineAlive(st) {
			return fmt.Errorf("%s has no running engine (status %s): run `wsfleet resume`, `wsfleet rollback` or `wsfleet abort -c %s`", change, st.Status, change)
		}
		_, err = store.SetControl(change, command)
		return err
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"wsfleet/rollout"
	"wsfleet/ui"
)

func init() {
	register("status", "show rollouts, or one rollout's progress, fleet and lock",
		"wsfleet status\nwsfleet status -c gitter-ws-new-ami --state s3://team-state/wsfleet\nwsfleet status -c gitter-ws-new-ami --ui 127.0.0.1:8090", runStatus)
	register("pause", "pause a running rollout (it keeps its lock)",
		"wsfleet pause -c gitter-ws-new-ami", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runControl(ctx, "pause", args, stdout, stderr)
		})
	register("abort", "stop a rollout where it is, without rolling back, and free the group",
		"wsfleet abort -c gitter-ws-new-ami", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runControl(ctx, "abort", args, stdout, stderr)
		})
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	change := fs.String("c", "", "change id (default: list every rollout)")
	uiAddr := fs.String("ui", "", "serve the live dashboard of the change (-c, default the newest running) on this address, e.g. 127.0.0.1:8090, until interrupted")
	f, store, err := parseStoreArgs(ctx, fs, args)
	if err != nil {
		return err
	}
	if *uiAddr != "" {
		return statusUI(ctx, *uiAddr, *change, store, stderr)
	}
	if *change == "" {
		all, err := store.List()
		if err != nil {
			return err
		}
		if f.jsonOut {
			out := []map[string]any{}
			for _, st := range all {
				out = append(out, map[string]any{"change": st.Change, "group": st.Group, "status": st.Status, "started": st.Started, "owner": st.Owner})
			}
			return json.NewEncoder(stdout).Encode(out)
		}
		if len(all) == 0 {
			fmt.Fprintf(stdout, "no rollouts in %s\n", store.Location())
		}
		for _, st := range all {
			fmt.Fprintf(stdout, "%-28s %-14s %-16s started %s\n", st.Change, st.Status, st.Group, st.Started.UTC().Format(time.RFC3339))
		}
		return nil
	}
	st, err := store.Load(*change)
	if err != nil {
		return err
	}
	// The lock and the suspended processes as the group shows them.
	lock := ""
	var suspended []string
	if p, err := rollout.ParsePlan(st.PlanYAML); err == nil {
		if prov, err := roProvider(ctx, p, f, slog.New(slog.DiscardHandler)); err == nil {
			if g, err := prov.Group(ctx, st.Group); err == nil {
				lock = g.Tags[rollout.LockTag]
				suspended = g.Suspended
			} else {
				lock = "unknown: " + err.Error()
			}
		}
	}
	if f.jsonOut {
		return json.NewEncoder(stdout).Encode(map[string]any{"state": st, "lock": lock, "suspended_processes": suspended, "engine_alive": engineAlive(st), "resumable_from": st.NotBefore})
	}
	rollout.RenderView(stdout, st, time.Now())
	if lock == "" {
		lock = "(none)"
	}
	fmt.Fprintf(stdout, "lock: %s\nengine: %s (alive: %v)\n", lock, st.Owner, engineAlive(st))
	fmt.Fprintf(stdout, "state: %s; holder: %s\n", store.Location(), holderLine(st, time.Now()))
	if len(suspended) > 0 {
		fmt.Fprintf(stdout, "group's suspended processes now: %s\n", strings.Join(suspended, ", "))
	}
	if st.Control != "" {
		fmt.Fprintf(stdout, "pending command: %s\n", st.Control)
	}
	return nil
}

// engineAlive reports whether the process that last ran the rollout is
// still running: on this host, whether its process exists; on another,
// whether the lease it keeps in the state has not expired.
func engineAlive(st *rollout.State) bool {
	if st.Status.Final() || st.Owner == "" {
		return false
	}
	h, ok := st.Holder()
	if !ok {
		return false
	}
	me, _ := os.Hostname()
	if h.PID <= 0 || (h.Host != me && !time.Now().Before(st.Lease)) {
		return false // detached, or its lease ran out (an engine drops it when it stops)
	}
	if h.Host != me {
		return true
	}
	return h.PID == os.Getpid() || !errors.Is(syscall.Kill(h.PID, 0), syscall.ESRCH)
}

// runControl sends pause or abort to a running engine, or applies an abort
// to a rollout whose engine is gone.
func runControl(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	c, err := loadChange(ctx, cmd, args, stderr, false)
	if err != nil {
		return err
	}
	if engineAlive(c.state) {
		return c.ask(stdout, cmd, cmd)
	}
	if cmd == "pause" {
		return exitError{code: 1, msg: fmt.Sprintf("%s has no running engine (status %s); it is already stopped — resume continues it", c.change, c.state.Status)}
	}
	// Abort with no engine: become the engine for as long as it takes to
	// undo the change's hold on the group (the processes it suspended,
	// the nodes it drained) and free it.
	p, err := c.storedPlan()
	if err != nil {
		return err
	}
	if c.flags.lockTTL == 0 {
		c.flags.lockTTL = time.Minute
	}
	e, stop, err := roEngine(ctx, p, c.store, c.flags, io.Discard, stderr)
	if err != nil {
		return err
	}
	st, err := e.Abort(ctx, c.change)
	stop()
	if err != nil {
		return fmt.Errorf("abort %s: %w", c.change, err)
	}
	if line := st.Suspension.String(); line != "" {
		fmt.Fprintf(stdout, "%s: %s\n", c.change, line)
	}
	fmt.Fprintf(stdout, "%s: aborted; the group is left as it is\n", c.change)
	return nil
}

// statusUI follows a change run by another process (or by none) on the
// dashboard, reading its state and event log as status does, until
// interrupted. The admin token comes from the variable the change's
// plan names, else $WSFLEET_ADMIN_TOKEN.
func statusUI(ctx context.Context, addr, change string, store rollout.Backend, stderr io.Writer) error {
	env := "WSFLEET_ADMIN_TOKEN"
	if change != "" {
		st, err := store.Load(change)
		if err != nil {
			return err
		}
		if p, err := rollout.ParsePlan(st.PlanYAML); err == nil && p.Nodes.AdminTokenEnv != "" {
			env = p.Nodes.AdminTokenEnv
		}
	}
	dash, err := startUI(ctx, addr, ui.Config{Store: store, Change: change, Token: os.Getenv(env)}, env, stderr)
	if err != nil {
		return err
	}
	<-ctx.Done()
	dash.stop()
	return nil
}

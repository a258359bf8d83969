package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"wsfleet/rollout"
)

func init() {
	register("resume", "continue a rollout after a pause, a crash, an interrupt or --detach", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return runResume(ctx, "resume", args, stdout, stderr)
	})
	register("rollback", "roll a rollout back now: previous launch template, new-image instances replaced", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return runResume(ctx, "rollback", args, stdout, stderr)
	})
}

// runResume tells a live engine to continue (or roll back); with no live
// engine it becomes the engine, taking the lock over from a dead one.
func runResume(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(cmd, stderr)
	change := fs.String("c", "", "change id")
	f := addRolloutFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *change == "" {
		return fmt.Errorf("%w: -c CHANGE is required", errUsage)
	}
	store, err := roStore(ctx, f, nil)
	if err != nil {
		return err
	}
	st, err := store.Load(*change)
	if err != nil {
		return err
	}
	if st.Status.Final() {
		return exitError{code: 1, msg: fmt.Sprintf("%s is already %s", st.Change, st.Status)}
	}
	if h, _ := st.Holder(); engineAlive(st) && !f.force && cmd == "resume" && st.Status != rollout.StatusPaused && h.Host != hostname() {
		// Another machine's engine runs it: refused, naming it.
		return exitError{code: 1, msg: fmt.Sprintf("%s is %s, held by the engine %s; nothing to resume (pause, abort and rollback reach it through %s)", st.Change, st.Status, holderLine(st, time.Now()), store.Location())}
	}
	if engineAlive(st) && !f.force {
		control := "run"
		if cmd == "rollback" {
			control = "rollback"
		}
		if _, err := store.SetControl(*change, control); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: asked the engine (%s) to %s\n", *change, st.Owner, cmd)
		return nil
	}
	p, err := rollout.ParsePlan(st.PlanYAML)
	if err != nil {
		return fmt.Errorf("stored plan: %w", err)
	}
	e, stop, err := roEngine(ctx, p, store, f, stdout, stderr)
	if err != nil {
		return err
	}
	st2, err := e.Resume(ctx, *change, cmd == "rollback")
	stop()
	if errors.Is(err, rollout.ErrHeld) {
		return exitError{code: 1, msg: err.Error()}
	}
	if st2 == nil {
		st2 = st
	}
	return roFinish(st2, err, store, f, stdout)
}

// hostname is this machine's name as engines record it.
func hostname() string {
	h, _ := os.Hostname()
	return h
}

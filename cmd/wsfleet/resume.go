package main

import (
	"context"
	"fmt"
	"io"

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
	store := &rollout.Store{Dir: f.stateDir}
	st, err := store.Load(*change)
	if err != nil {
		return err
	}
	if st.Status.Final() {
		return exitError{code: 1, msg: fmt.Sprintf("%s is already %s", st.Change, st.Status)}
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
	e, stop, err := roEngine(ctx, p, f, stdout, stderr)
	if err != nil {
		return err
	}
	st2, err := e.Resume(ctx, *change, cmd == "rollback")
	stop()
	if st2 == nil {
		st2 = st
	}
	return roFinish(st2, err, f, stdout)
}

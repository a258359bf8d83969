package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"wsfleet/rollout"
)

func init() {
	register("resume", "continue a rollout after a pause, a crash, an interrupt or --detach",
		"wsfleet resume -c gitter-ws-new-ami\nwsfleet resume -c gitter-ws-new-ami --state s3://team-state/wsfleet", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runResume(ctx, "resume", args, stdout, stderr)
		})
	register("rollback", "roll a rollout back now: previous launch template, new-image instances replaced",
		"wsfleet rollback -c gitter-ws-new-ami\nwsfleet rollback -c gitter-ws-new-ami --state s3://team-state/wsfleet", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runResume(ctx, "rollback", args, stdout, stderr)
		})
}

// changeArgs is what a command about one stored rollout (resume,
// rollback, pause, abort) gets from its arguments: the change id, the
// store, the change's state, and the rollout flags.
type changeArgs struct {
	change string
	store  rollout.Backend
	state  *rollout.State
	flags  *roFlags
}

// loadChange adds -c and the rollout flags (the engine's too, with engine)
// to a new flag set for cmd, parses args, and loads the change's state; a
// change that has already finished is an exit status 1.
func loadChange(ctx context.Context, cmd string, args []string, stderr io.Writer, engine bool) (*changeArgs, error) {
	fs := newFlagSet(cmd, stderr)
	change := fs.String("c", "", "change id")
	f := addRolloutFlags(fs, engine)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if *change == "" {
		return nil, fmt.Errorf("%w: -c CHANGE is required", errUsage)
	}
	store, err := roStore(ctx, f, nil)
	if err != nil {
		return nil, err
	}
	st, err := store.Load(*change)
	if err != nil {
		return nil, err
	}
	if st.Status.Final() {
		return nil, exitError{code: 1, msg: fmt.Sprintf("%s is already %s", st.Change, st.Status)}
	}
	return &changeArgs{change: *change, store: store, state: st, flags: f}, nil
}

// ask leaves control for the change's live engine to act on, and says so
// on stdout in terms of cmd.
func (c *changeArgs) ask(stdout io.Writer, control, cmd string) error {
	if _, err := c.store.SetControl(c.change, control); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: asked the engine (%s) to %s\n", c.change, c.state.Owner, cmd)
	return nil
}

// storedPlan parses the plan the change was started with.
func (c *changeArgs) storedPlan() (*rollout.Plan, error) {
	p, err := rollout.ParsePlan(c.state.PlanYAML)
	if err != nil {
		return nil, fmt.Errorf("stored plan: %w", err)
	}
	return p, nil
}

// runResume tells a live engine to continue (or roll back); with no live
// engine it becomes the engine, taking the lock over from a dead one.
func runResume(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	c, err := loadChange(ctx, cmd, args, stderr, true)
	if err != nil {
		return err
	}
	if engineAlive(c.state) && !c.flags.force && cmd == "resume" && c.state.Status != rollout.StatusPaused {
		// Another engine runs it, on this host or another: refused,
		// naming it, as the claim refuses a resume that read the state
		// before that engine's claim.
		return exitError{code: 1, msg: fmt.Sprintf("%s is %s, held by the engine %s; nothing to resume (pause, abort and rollback reach it through %s)", c.change, c.state.Status, holderLine(c.state, time.Now()), c.store.Location())}
	}
	if engineAlive(c.state) && !c.flags.force {
		control := "run"
		if cmd == "rollback" {
			control = "rollback"
		}
		return c.ask(stdout, control, cmd)
	}
	p, err := c.storedPlan()
	if err != nil {
		return err
	}
	e, stop, err := roEngine(ctx, p, c.store, c.flags, stdout, stderr)
	if err != nil {
		return err
	}
	st, err := e.Resume(ctx, c.change, cmd == "rollback")
	stop()
	if errors.Is(err, rollout.ErrHeld) {
		return exitError{code: 1, msg: err.Error()}
	}
	if st == nil {
		st = c.state
	}
	return roFinish(st, err, c.store, c.flags, stdout)
}

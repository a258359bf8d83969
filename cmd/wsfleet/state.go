package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

func init() {
	register("changes", "list the changes in a state location (--state s3://BUCKET/PREFIX or the state directory) with their status",
		"wsfleet changes\nwsfleet changes --state s3://team-state/wsfleet --json", runChanges)
	register("state", "state push -c CHANGE --to s3://BUCKET/PREFIX: move a local change's state, event log and report to S3",
		"wsfleet state push -c gitter-ws-new-ami --to s3://team-state/wsfleet", runState)
}

// roStore opens where the changes live: --state, else the plan's state:
// key (p may be nil for commands given only a change id), else
// --state-dir.
func roStore(ctx context.Context, f *roFlags, p *rollout.Plan) (rollout.Backend, error) {
	loc := f.state
	if loc == "" && p != nil {
		loc = p.State
	}
	if loc == "" {
		return &rollout.Store{Dir: f.stateDir}, nil
	}
	u, err := rollout.ParseStateURL(loc)
	if err != nil {
		return nil, fmt.Errorf("%w: --state: %v", errUsage, err)
	}
	return storeAt(ctx, u, f, p)
}

// storeAt opens u. An S3 prefix is reached with the standard credential
// chain, in the region and at the endpoint of --region/--endpoint, else
// of the plan's aws block, else of the environment (AWS_REGION,
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL); an endpoint means path-style
// addressing.
func storeAt(ctx context.Context, u rollout.StateURL, f *roFlags, p *rollout.Plan) (rollout.Backend, error) {
	if !u.S3() {
		return &rollout.Store{Dir: u.Dir}, nil
	}
	cfg := awsprov.Config{}
	if p != nil {
		cfg.Region, cfg.Endpoint = p.AWS.Region, p.AWS.Endpoint
	}
	if f.region != "" {
		cfg.Region = f.region
	}
	if f.endpoint != "" {
		cfg.Endpoint = f.endpoint
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	objs, err := awsprov.NewObjects(ctx, cfg, u.Bucket)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", u, err)
	}
	return rollout.NewObjectStore(objs, u), nil
}

// parseStoreArgs adds the rollout flags to fs, which holds the command's
// own, parses args and opens the state location they name.
func parseStoreArgs(ctx context.Context, fs *flag.FlagSet, args []string) (*roFlags, rollout.Backend, error) {
	f := addRolloutFlags(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	store, err := roStore(ctx, f, nil)
	if err != nil {
		return nil, nil, err
	}
	return f, store, nil
}

func runChanges(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, store, err := parseStoreArgs(ctx, newFlagSet("changes", stderr), args)
	if err != nil {
		return err
	}
	all, err := store.List()
	if err != nil {
		return err
	}
	now := time.Now()
	if f.jsonOut {
		out := []map[string]any{}
		for _, st := range all {
			out = append(out, map[string]any{"change": st.Change, "group": st.Group, "status": st.Status, "started": st.Started,
				"owner": st.Owner, "lease": st.Lease, "not_before": st.NotBefore, "engine_alive": engineAlive(st)})
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	if len(all) == 0 {
		fmt.Fprintf(stdout, "no changes in %s\n", store.Location())
		return nil
	}
	fmt.Fprintf(stdout, "%-28s %-15s %-16s %-20s %s\n", "CHANGE", "STATUS", "GROUP", "STARTED", "ENGINE")
	for _, st := range all {
		fmt.Fprintf(stdout, "%-28s %-15s %-16s %-20s %s\n", st.Change, st.Status, st.Group, st.Started.UTC().Format(time.RFC3339), holderLine(st, now))
	}
	return nil
}

// holderLine says who holds a change, or when it may be resumed.
func holderLine(st *rollout.State, now time.Time) string {
	switch {
	case st.Status.Final():
		return "-"
	case st.Status == rollout.StatusWaiting && !st.NotBefore.IsZero():
		if now.Before(st.NotBefore) {
			return fmt.Sprintf("none; anyone may resume it from %s (in %s)", st.NotBefore.UTC().Format(time.RFC3339), st.NotBefore.Sub(now).Round(time.Second))
		}
		return fmt.Sprintf("none; its window opened at %s: anyone may resume it now", st.NotBefore.UTC().Format(time.RFC3339))
	case engineAlive(st):
		if st.Lease.IsZero() {
			return st.Owner + " (running)"
		}
		return fmt.Sprintf("%s (lease until %s)", st.Owner, st.Lease.UTC().Format(time.RFC3339))
	case st.Owner != "":
		return fmt.Sprintf("none (last %s); resume takes it", st.Owner)
	}
	return "none"
}

func runState(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		args = append([]string{"push"}, args...) // push is state's one subcommand: show its flags
	}
	if len(args) == 0 || args[0] != "push" {
		return fmt.Errorf("%w: wsfleet state push -c CHANGE --to s3://BUCKET/PREFIX", errUsage)
	}
	fs := newFlagSet("state push", stderr)
	change := fs.String("c", "", "change id")
	to := fs.String("to", "", "where to move it: s3://BUCKET/PREFIX")
	f := addRolloutFlags(fs, false)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *change == "" || *to == "" {
		return fmt.Errorf("%w: -c CHANGE and --to s3://BUCKET/PREFIX are required", errUsage)
	}
	u, err := rollout.ParseStateURL(*to)
	if err != nil || !u.S3() {
		return fmt.Errorf("%w: --to: give s3://BUCKET/PREFIX (%v)", errUsage, err)
	}
	local := &rollout.Store{Dir: f.stateDir}
	st, err := local.Load(*change)
	if err != nil {
		return err
	}
	if engineAlive(st) {
		return exitError{code: 1, msg: fmt.Sprintf("%s is run by an engine (%s); pause or stop it first, then push", *change, st.Owner)}
	}
	p, _ := rollout.ParsePlan(st.PlanYAML) // for its aws block; the plan was valid when it started
	dst, err := storeAt(ctx, u, f, p)
	if err != nil {
		return err
	}
	events, err := local.ReadEvents(*change)
	if err != nil {
		return fmt.Errorf("read the event log: %w", err)
	}
	report, err := local.ReadReport(*change)
	if err != nil {
		return fmt.Errorf("read the report: %w", err)
	}
	if err := dst.(*rollout.ObjectStore).Push(st, events, report); err != nil {
		return err
	}
	if err := local.Delete(*change); err != nil {
		return fmt.Errorf("pushed, but the local copy stays: %w", err)
	}
	fmt.Fprintf(stdout, "%s: moved to %s (status %s); use --state %s from now on\n", *change, u, st.Status, u)
	return nil
}

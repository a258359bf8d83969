package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"wsfleet/rollout"
)

func init() {
	register("plan", "validate a plan file and print the steps a rollout would take on the group now (changes nothing)",
		"wsfleet plan -f examples/gitter-ws-new-ami.yaml\nwsfleet plan --offline -f examples/gitter-ws-new-ami.yaml", runPlan)
}

// planArgs is what a command that reads a plan file (plan, rollout) gets
// from its arguments: the file, its bytes, the plan, and the rollout flags.
type planArgs struct {
	file  string
	data  []byte
	plan  *rollout.Plan
	flags *roFlags
}

// parsePlanArgs adds -f and the rollout flags (the engine's too, with
// engine) to fs, which holds the command's own, parses args, and reads and
// parses the plan file; the plan's problems come back prefixed with the
// file name (planError).
func parsePlanArgs(fs *flag.FlagSet, args []string, engine bool) (*planArgs, error) {
	file := fs.String("f", "", "plan file (YAML)")
	f := addRolloutFlags(fs, engine)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if *file == "" {
		return nil, fmt.Errorf("%w: -f FILE is required", errUsage)
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return nil, err
	}
	p, err := rollout.ParsePlan(data)
	if err == nil {
		err = p.CheckCredentials()
	}
	if err != nil {
		return nil, planError(*file, err)
	}
	return &planArgs{file: *file, data: data, plan: p, flags: f}, nil
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", stderr)
	offline := fs.Bool("offline", false, "only validate the file; do not read the group")
	a, err := parsePlanArgs(fs, args, false)
	if err != nil {
		return err
	}
	p := a.plan
	if *offline {
		fmt.Fprintf(stdout, "%s: valid (%d phases, %d checks)\n", a.file, len(p.Phases), len(p.Checks))
		return nil
	}
	prov, err := roProvider(ctx, p, a.flags, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	p, g, steps, err := rollout.Prepare(ctx, prov, a.data)
	if err != nil {
		return planError(a.file, err)
	}
	if p.Image.AMI == "" {
		// image: current names no AMI: the group's own is checked by AWS.
	} else if ok, err := prov.ImageExists(ctx, p.Image.AMI); err != nil {
		return err
	} else if !ok {
		return planError(a.file, rollout.PlanErrors{{Key: "image", Line: p.Line("image"), Msg: fmt.Sprintf("no image %q exists in the region; give an AMI id the account can launch", p.Image.AMI)}})
	}
	if p.Image.Terraform != nil {
		if err := tfPlan(ctx, p, prov, a.flags, stdout, stderr); err != nil { // terraform.go
			return planError(a.file, err)
		}
	}
	if h, ok := rollout.ParseLock(g.Tags[rollout.LockTag]); ok {
		fmt.Fprintf(stdout, "note: the group is locked by %s\n", h)
	}
	nodes := &rollout.HTTPNodes{Port: p.Nodes.AdminPort, Token: os.Getenv(p.Nodes.AdminTokenEnv)}
	for _, w := range rollout.NodeVersionWarnings(ctx, nodes, g) {
		fmt.Fprintln(stderr, "warning:", w)
	}
	rollout.RenderPlan(stdout, p, g, steps)
	pl, reason := rollout.PlacementSupport(ctx, prov, nodes, p, g)
	pl.Reason = reason
	fmt.Fprintln(stdout, rollout.PlacementLine(pl))
	// The pre-checks judge the world as it is now, as a rollout would
	// before its first change: one that fails makes plan fail too.
	image, ref, err := p.Target(g)
	if err != nil {
		return planError(a.file, err)
	}
	env := rollout.PhaseEnv{Checker: &rollout.Checker{}, Image: image, Ref: ref, Group: g, Now: time.Now(),
		LoadBalancerURL: func(ctx context.Context) (string, error) { return prov.LoadBalancerURL(ctx, p.Group) }}
	pre, err := rollout.PreCheck(ctx, p, env)
	for _, r := range pre {
		res := "pass"
		if !r.Pass {
			res = "FAIL"
		}
		fmt.Fprintf(stdout, "pre-check %s: %s: %s\n", r.Name, res, r.Detail)
	}
	return err
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"wsfleet/rollout"
)

func init() {
	register("plan", "validate a plan file and print the steps a rollout would take on the group now (changes nothing)", runPlan)
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", stderr)
	file := fs.String("f", "", "plan file (YAML)")
	offline := fs.Bool("offline", false, "only validate the file; do not read the group")
	f := addRolloutFlags(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: -f FILE is required", errUsage)
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	p, err := rollout.ParsePlan(data)
	if err != nil {
		return planError(*file, err)
	}
	if *offline {
		fmt.Fprintf(stdout, "%s: valid (%d phases, %d checks)\n", *file, len(p.Phases), len(p.Checks))
		return nil
	}
	prov, err := roProvider(ctx, p, f, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	p, g, steps, err := rollout.Prepare(ctx, prov, data)
	if err != nil {
		return planError(*file, err)
	}
	if ok, err := prov.ImageExists(ctx, p.Image); err != nil {
		return err
	} else if !ok {
		return planError(*file, rollout.PlanErrors{{Key: "image", Line: p.Line("image"), Msg: fmt.Sprintf("no image %q exists in the region; give an AMI id the account can launch", p.Image)}})
	}
	if h, ok := rollout.ParseLock(g.Tags[rollout.LockTag]); ok {
		fmt.Fprintf(stdout, "note: the group is locked by %s\n", h)
	}
	nodes := &rollout.HTTPNodes{Port: p.Nodes.AdminPort, Token: os.Getenv(p.Nodes.AdminTokenEnv)}
	for _, w := range rollout.NodeVersionWarnings(ctx, nodes, g) {
		fmt.Fprintln(stderr, "warning:", w)
	}
	rollout.RenderPlan(stdout, p, g, steps)
	return nil
}

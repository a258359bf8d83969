package demo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"wsfleet/examples"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

// runNaive is the seed's change request done literally, as its operator did
// it by hand: terraform apply (a new launch configuration with the new
// AMI), one more instance ws-09 with the old ones protected from scale-in,
// a bake, then "terminating ws-09 and returning the desired capacity to
// 8, terminating ws-01 - ws-04, wait for 4 new instances to spin up", then
// the same for ws-05..ws-08. No node is drained: each terminated instance leaves the
// load balancer and its connections are cut when the deregistration delay
// ends, as on AWS. It uses the same provider calls the engine uses.
func (d *run) runNaive(ctx context.Context) changeResult {
	var res changeResult
	plan, err := rollout.ParsePlan(examples.NewAMIPlan)
	if err != nil {
		res.err = fmt.Errorf("plan: %w", err)
		return res
	}
	bake := time.Duration(float64(plan.Phases[0].Bake.D()) * d.cfg.TimeScale)
	prov, err := awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: d.cloud.Endpoint(), MaxBackoff: time.Second, Logger: d.log.With("part", "naive-provider")})
	if err != nil {
		res.err = err
		return res
	}
	defer func() { res.calls = prov.APICalls() }()
	g, err := prov.Group(ctx, groupName)
	if err != nil {
		res.err = err
		return res
	}
	old := map[string]string{} // name → instance id
	var oldIDs []string
	for _, in := range g.Instances {
		if in.Live() {
			old[in.Name] = in.ID
			oldIDs = append(oldIDs, in.ID)
		}
	}
	d.say("changing to %s the seed's way: terminate, then let the group replace, no drain", newImage)

	phase := func(name string, body func() error) bool {
		ps := PhaseSummary{Name: name, Start: d.since()}
		d.phase.set(name, "")
		d.event("naive", "phase started", "phase", name)
		err := body()
		ps.End = d.since()
		ps.Status = "done"
		if err != nil {
			ps.Status = "failed"
			res.err = fmt.Errorf("%s: %w", name, err)
		}
		d.event("naive", "phase ended", "phase", name, "status", ps.Status, "took", ps.End-ps.Start, "err", err)
		res.phases = append(res.phases, ps)
		return err == nil
	}
	canaryID := ""
	ok := phase("canary", func() error {
		// terraform apply: the launch configuration now names the new AMI.
		if _, err := prov.SetImage(ctx, groupName, newImage, "wsfleet-demo-naive"); err != nil {
			return err
		}
		// "use Scale in protection so we won't accidentally terminate old instances"
		if err := prov.SetProtection(ctx, groupName, oldIDs, true); err != nil {
			return err
		}
		if err := prov.SetDesired(ctx, groupName, 9); err != nil {
			return err
		}
		ids, err := d.waitNamed(ctx, prov, []string{"ws-09"}, 9)
		if err != nil {
			return err
		}
		canaryID = ids[0]
		d.phase.set("canary", "bake")
		d.sleep(ctx, bake)
		return ctx.Err()
	})
	ok = ok && phase("first half", func() error {
		if err := prov.Terminate(ctx, groupName, canaryID, true); err != nil && !errors.Is(err, rollout.ErrNotFound) {
			return err
		}
		if err := prov.SetProtection(ctx, groupName, oldIDs, false); err != nil {
			return err
		}
		return d.terminateAndWait(ctx, prov, old, []string{"ws-01", "ws-02", "ws-03", "ws-04"})
	})
	_ = ok && phase("second half", func() error {
		return d.terminateAndWait(ctx, prov, old, []string{"ws-05", "ws-06", "ws-07", "ws-08"})
	})
	res.status = "succeeded"
	if res.err != nil {
		res.status = "failed"
	}
	return res
}

// terminateAndWait terminates the named old instances, keeping the desired
// capacity, and waits for the group's replacements, naming them as the
// operator's tagging did.
func (d *run) terminateAndWait(ctx context.Context, prov *awsprov.Provider, old map[string]string, names []string) error {
	for _, n := range names {
		id, ok := old[n]
		if !ok {
			return fmt.Errorf("no old instance named %s", n)
		}
		if err := prov.Terminate(ctx, groupName, id, false); err != nil && !errors.Is(err, rollout.ErrNotFound) {
			return fmt.Errorf("terminate %s (%s): %w", n, id, err)
		}
		d.event("naive", "terminated", "name", n, "id", id)
	}
	if _, err := d.waitNamed(ctx, prov, names, 8); err != nil {
		return err
	}
	// The operator checks that the old instances are gone before closing
	// the window; it is also when their clients were cut off.
	deadline := d.cfg.Now().Add(3 * time.Minute)
	for {
		g, err := prov.Group(ctx, groupName)
		if err != nil {
			return err
		}
		left := 0
		for _, n := range names {
			if in, ok := g.Instance(old[n]); ok && in.Lifecycle != "Terminated" {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		d.phase.set(d.phaseName(), fmt.Sprintf("%d old instances terminating", left))
		if d.cfg.Now().After(deadline) {
			return fmt.Errorf("%d of %v not terminated after 3m", left, names)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitNamed gives the group's new, unnamed instances the names in turn and
// waits until each name is carried by a healthy, ready new-image instance
// and the group has total live instances in service. It returns their ids.
func (d *run) waitNamed(ctx context.Context, prov *awsprov.Provider, names []string, total int) ([]string, error) {
	deadline := d.cfg.Now().Add(3 * time.Minute)
	for {
		g, err := prov.Group(ctx, groupName)
		if err != nil {
			return nil, err
		}
		have := map[string]string{}
		for _, in := range g.Instances {
			if in.Live() && in.Image == newImage && in.Name != "" {
				have[in.Name] = in.ID
			}
		}
		for _, in := range g.Instances {
			if !in.Live() || in.Image != newImage || in.Name != "" {
				continue
			}
			for _, n := range names {
				if _, taken := have[n]; !taken {
					if err := prov.TagInstance(ctx, in.ID, "Name", n); err != nil {
						return nil, err
					}
					have[n] = in.ID
					break
				}
			}
		}
		ready, inService := 0, 0
		var ids []string
		for _, n := range names {
			id, ok := have[n]
			if !ok {
				continue
			}
			in, _ := g.Instance(id)
			if in.Lifecycle == "InService" && in.Health == "healthy" {
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				st, err := d.nodes.Status(sctx, in)
				cancel()
				if err == nil && st.State == "ready" {
					ready++
					ids = append(ids, id)
				}
			}
		}
		for _, in := range g.Instances {
			if in.Live() && in.Lifecycle == "InService" {
				inService++
			}
		}
		d.phase.set(d.phaseName(), fmt.Sprintf("%d of %d new up", ready, len(names)))
		if ready == len(names) && inService == total {
			return ids, nil
		}
		if d.cfg.Now().After(deadline) {
			return nil, fmt.Errorf("replacements %v: %d ready, %d in service after 3m", names, ready, inService)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *run) phaseName() string {
	n, _ := d.phase.get()
	return n
}

package aws

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"wsfleet/localcloud"
	"wsfleet/rollout"
)

// TestEffectsUnderFaults: with 5 % of the calls throttled, 5 % answered
// 5xx, 5 % dropped (half of those after their effect) and every write
// read back late, each effect the provider reports done is
// visible to the very next read, and repeating one changes nothing.
func TestEffectsUnderFaults(t *testing.T) {
	c, p := startLocal(t, 3)
	ctx := context.Background()
	g, err := p.Group(ctx, "gitter-ws")
	if err != nil {
		t.Fatal(err)
	}
	first := g.Instances[0].ID
	c.SetFaults(localcloud.Faults{Seed: 5, Throttle: 0.05, Errors: 0.05, Drop: 0.05, Stale: 1, StaleDelay: 500 * time.Millisecond})

	if err := p.TagGroup(ctx, "gitter-ws", rollout.LockTag, "x@h:1 until 2030-01-01T00:00:00Z"); err != nil {
		t.Fatal(err)
	}
	if g, err = p.Group(ctx, "gitter-ws"); err != nil || g.Tags[rollout.LockTag] == "" {
		t.Errorf("group tag not read back after TagGroup returned: %v %v", g.Tags, err)
	}
	if err := p.TagInstance(ctx, first, "Name", "renamed"); err != nil {
		t.Fatal(err)
	}
	if g, err = p.Group(ctx, "gitter-ws"); err != nil || instance(g, first).Tags["Name"] != "renamed" {
		t.Errorf("instance tag not read back after TagInstance returned: %v", err)
	}
	if err := p.SetProtection(ctx, "gitter-ws", []string{first}, true); err != nil {
		t.Fatal(err)
	}
	if err := p.SetDesired(ctx, "gitter-ws", 4); err != nil {
		t.Fatal(err)
	}
	if g, err = p.Group(ctx, "gitter-ws"); err != nil || g.Desired != 4 || !instance(g, first).Protected {
		t.Errorf("after SetDesired and SetProtection: desired %d, protected %v, %v", g.Desired, instance(g, first).Protected, err)
	}
	victim := g.Instances[0].ID
	if victim == first {
		victim = g.Instances[1].ID
	}
	if err := p.Terminate(ctx, "gitter-ws", victim, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, "gitter-ws", victim, true); !errors.Is(err, rollout.ErrNotFound) {
		t.Errorf("second termination: %v, want ErrNotFound (never twice)", err)
	}
	if g, err = p.Group(ctx, "gitter-ws"); err != nil || g.Desired != 3 {
		t.Errorf("desired %d after one decrementing termination from 4: %v", g.Desired, err)
	}
	if err := p.TagGroup(ctx, "gitter-ws", rollout.LockTag, ""); err != nil {
		t.Fatal(err)
	}
	if g, err = p.Group(ctx, "gitter-ws"); err != nil || g.Tags[rollout.LockTag] != "" {
		t.Errorf("deleted tag read back: %q %v", g.Tags[rollout.LockTag], err)
	}
	n := c.FaultCounts()
	t.Logf("faults met: %v; calls %v", n, p.APICalls())
	if n["throttle autoscaling"]+n["5xx autoscaling"]+n["drop autoscaling"] == 0 || n["stale tag"] == 0 {
		t.Errorf("the faults did not happen: %v", n)
	}
}

// TestUnavailable: a call the cloud keeps refusing through the bounded
// retries, and an effect that does not read back in time, are
// rollout.ErrUnavailable with the AWS error; a client error is not.
func TestUnavailable(t *testing.T) {
	c, _ := startLocal(t, 1)
	ctx := context.Background()
	p, err := New(ctx, Config{Region: "us-east-1", Endpoint: c.Endpoint(), MaxAttempts: 2, MaxBackoff: 10 * time.Millisecond, ConfirmTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.SetFaults(localcloud.Faults{Errors: 1})
	_, err = p.Group(ctx, "gitter-ws")
	if !errors.Is(err, rollout.ErrUnavailable) || !strings.Contains(err.Error(), "exceeded maximum number of attempts, 2") {
		t.Errorf("5xx throughout: %v", err)
	}
	c.SetFaults(localcloud.Faults{Throttle: 1})
	err = p.SetDesired(ctx, "gitter-ws", 1)
	if !errors.Is(err, rollout.ErrUnavailable) || !strings.Contains(err.Error(), "Throttling") {
		t.Errorf("throttled throughout: %v", err)
	}
	c.SetFaults(localcloud.Faults{Stale: 1, StaleDelay: 5 * time.Second})
	err = p.TagGroup(ctx, "gitter-ws", "k", "v")
	if !errors.Is(err, rollout.ErrUnavailable) || !strings.Contains(err.Error(), "not read back within") {
		t.Errorf("write not visible in time: %v", err)
	}
	c.SetFaults(localcloud.Faults{})
	err = p.SetTemplateVersion(ctx, "no-such-group", rollout.TemplateRef{ID: "lt-0", Version: "1"})
	if err == nil || errors.Is(err, rollout.ErrUnavailable) {
		t.Errorf("client error: %v, want an error that is not ErrUnavailable", err)
	}
}

// instance is the group's instance id (zero when it is not there).
func instance(g rollout.Group, id string) rollout.Instance {
	in, _ := g.Instance(id)
	return in
}

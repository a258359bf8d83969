package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeTerraform stands in for package terraform on the in-memory cloud:
// Apply makes the new launch template version as Terraform would, Revert
// a newer one with the old image.
type fakeTerraform struct {
	c               *memCloud
	applies, revert int
	applyErr        error
}

func (f *fakeTerraform) Apply(ctx context.Context) error {
	if f.applyErr != nil {
		return f.applyErr
	}
	f.applies++
	_, err := f.c.SetImage(ctx, "gitter-ws", "ami-new", "terraform-apply")
	return err
}

func (f *fakeTerraform) Revert(ctx context.Context) error {
	f.revert++
	_, err := f.c.SetImage(ctx, "gitter-ws", "ami-old", "terraform-revert")
	return err
}

func (f *fakeTerraform) String() string {
	return `variables.tf: var.ami default "ami-old" -> "ami-new"`
}

func terraformPlan(url string) []byte {
	return []byte(strings.Replace(string(seedPlan(url, "launch-before-terminate")), "image: ami-new",
		"image: {terraform: {dir: tf, var: ami, value: ami-new}}", 1))
}

// TestEngineTerraformForm: the set-image step applies the Terraform
// change once (not the API's SetImage), and the rollout completes.
func TestEngineTerraformForm(t *testing.T) {
	h := newHarness(t)
	e := h.engine()
	tf := &fakeTerraform{c: h.cloud}
	e.Terraform = tf
	st, err := e.Start(context.Background(), terraformPlan(h.site.URL))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("err %v status %s", err, st.Status)
	}
	if tf.applies != 1 || tf.revert != 0 {
		t.Errorf("applies %d, reverts %d; want 1, 0", tf.applies, tf.revert)
	}
	if st.Template == nil || st.Template.Terraform != tf.String() || st.Template.NewImage != "ami-new" || st.OldImage != "ami-old" {
		t.Errorf("template change %+v, old image %s", st.Template, st.OldImage)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	h.checkInvariants()
}

// TestEngineTerraformRollback: a failing rollout reverts through
// Terraform (once: the restore step is done when the group runs the old
// image again on the new version Terraform made) and keeps the old
// instances.
func TestEngineTerraformRollback(t *testing.T) {
	h := newHarness(t)
	h.cloud.unhealthy["ami-new"] = true
	e := h.engine()
	tf := &fakeTerraform{c: h.cloud}
	e.Terraform = tf
	plan := strings.Replace(string(terraformPlan(h.site.URL)), "warm_up: 30s", "warm_up: 30s\nhealthy_timeout: 3m", 1)
	st, err := e.Start(context.Background(), []byte(plan))
	if !errors.Is(err, ErrFailed) || st.Status != StatusRolledBack {
		t.Fatalf("err %v status %s", err, st.Status)
	}
	if tf.applies != 1 || tf.revert != 1 {
		t.Errorf("applies %d, reverts %d; want 1, 1", tf.applies, tf.revert)
	}
	if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-old"), " "); got != want {
		t.Errorf("fleet\n got %s\nwant %s", got, want)
	}
	for _, in := range h.cloud.inst {
		if in.image == "ami-old" && in.lifecycle != "InService" {
			t.Errorf("old instance %s %s: rollback should reuse it", in.name, in.lifecycle)
		}
	}
	if line := st.Template.outsideLine(st); !strings.Contains(line, "reverts it through Terraform") {
		t.Errorf("status line %q", line)
	}
	h.checkInvariants()
}

// TestTerraformSetImageAgain: run again after a crash that followed the
// apply, the set-image effect does not apply again (Terraform would
// refuse the now stale plan) and records the change; an apply error is
// returned as it is.
func TestTerraformSetImageAgain(t *testing.T) {
	h := newHarness(t)
	e := h.engine()
	tf := &fakeTerraform{c: h.cloud}
	e.Terraform = tf
	st := &State{Group: "gitter-ws", OldImage: "ami-old"}
	ctx := context.Background()
	if _, err := e.terraformSetImage(ctx, st, "ami-new"); err != nil {
		t.Fatal(err)
	}
	tc, err := e.terraformSetImage(ctx, st, "ami-new")
	if err != nil || tf.applies != 1 || tc.NewImage != "ami-new" || tc.PreviousImage != "ami-old" {
		t.Fatalf("second set-image: %+v, %v, %d applies", tc, err, tf.applies)
	}
	h2 := newHarness(t)
	e2 := h2.engine()
	e2.Terraform = &fakeTerraform{c: h2.cloud, applyErr: errors.New("saved plan is stale")}
	if _, err := e2.terraformSetImage(ctx, st, "ami-new"); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("apply error: %v", err)
	}
}

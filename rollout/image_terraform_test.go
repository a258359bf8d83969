package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeTerraform stands in for package terraform on the in-memory cloud:
// Apply makes the new launch template version as Terraform would, Revert
// a newer one with the old image.
type fakeTerraform struct {
	c               *memCloud
	applies, revert int
	applyErr        error
	revertImage     string // the image Revert gives the group (default ami-old)
}

func (f *fakeTerraform) Apply(ctx context.Context) error {
	if f.applyErr != nil {
		return f.applyErr
	}
	if f.applies > 0 {
		return errors.New("saved plan is stale") // as Terraform answers a second apply
	}
	f.applies++
	_, err := f.c.SetImage(ctx, "gitter-ws", "ami-new", "terraform-apply")
	return err
}

func (f *fakeTerraform) Revert(ctx context.Context) error {
	f.revert++
	image := "ami-old"
	if f.revertImage != "" {
		image = f.revertImage
	}
	_, err := f.c.SetImage(ctx, "gitter-ws", image, "terraform-revert")
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
	// Rolled back: the line says it was reverted (docs/terraform.md), not
	// that it will be.
	if line := st.Template.outsideLine(st); !strings.Contains(line, "reverted through Terraform") {
		t.Errorf("status line %q", line)
	}
	// The restore step names what Terraform's revert makes, not the
	// previous configuration it deleted.
	for _, s := range st.RollbackSteps {
		if s.Kind == StepRestoreImage && !strings.Contains(s.Note, "revert through Terraform: the group on a new launch template version with image ami-old") {
			t.Errorf("restore-image note %q", s.Note)
		}
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

// TestEngineTerraformCrash crashes the engine at each point up to the end
// of the set-image step (after Terraform applied, before the journal
// recorded it, included) and resumes: the saved plan is applied once,
// and the change completes.
func TestEngineTerraformCrash(t *testing.T) {
	var points []string
	{
		h := newHarness(t)
		e := h.engine()
		e.Terraform = &fakeTerraform{c: h.cloud}
		e.Crash = func(p string) bool { points = append(points, p); return false }
		if _, err := e.Start(context.Background(), terraformPlan(h.site.URL)); err != nil {
			t.Fatal(err)
		}
	}
	last := -1 // the last point of the set-image effect
	for k, p := range points {
		if strings.Contains(p, "set-image") {
			last = k
		}
	}
	if last < 0 {
		t.Fatalf("no set-image crash point in %v", points)
	}
	for k := 0; k <= last+1; k++ {
		t.Run(fmt.Sprintf("%02d-%s", k, points[k]), func(t *testing.T) {
			h := newHarness(t)
			tf := &fakeTerraform{c: h.cloud}
			e := h.engine()
			e.Terraform = tf
			n := 0
			e.Crash = func(string) bool { n++; return n == k+1 }
			if _, err := e.Start(context.Background(), terraformPlan(h.site.URL)); !errors.Is(err, ErrCrashed) {
				t.Fatalf("first run: %v, want a crash", err)
			}
			e2 := h.engine()
			e2.Terraform = tf
			st, err := e2.Resume(context.Background(), "gitter-ws-new-ami", false)
			if err != nil || st == nil || st.Status != StatusSucceeded {
				t.Fatalf("resume: %v", err)
			}
			if tf.applies != 1 || st.Template == nil || st.Template.Terraform == "" || st.OldImage != "ami-old" {
				t.Errorf("applies %d, template %+v, old image %s", tf.applies, st.Template, st.OldImage)
			}
			if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
				t.Errorf("fleet\n got %s\nwant %s", got, want)
			}
			h.checkInvariants()
		})
	}
}

// TestEngineTerraformRevertWrongImage: a Terraform revert that leaves the
// group on another image than the old one (the variable's file edited
// since the plan) fails the rollback, naming the image, instead of
// waiting for the old image forever.
func TestEngineTerraformRevertWrongImage(t *testing.T) {
	h := newHarness(t)
	h.cloud.unhealthy["ami-new"] = true
	e := h.engine()
	tf := &fakeTerraform{c: h.cloud, revertImage: "ami-other"}
	e.Terraform = tf
	plan := strings.Replace(string(terraformPlan(h.site.URL)), "warm_up: 30s", "warm_up: 30s\nhealthy_timeout: 3m", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := e.Start(ctx, []byte(plan))
	if ctx.Err() != nil {
		t.Fatalf("the rollback waited for an image the revert did not give: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), "image ami-other, not ami-old") || st.Status != StatusRollbackFailed {
		t.Fatalf("err %v status %s; want the rollback failed naming ami-other", err, st.Status)
	}
}

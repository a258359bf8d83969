package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Record is what `wsfleet plan` leaves for `wsfleet rollout`: the saved
// plan file to apply, the variable edit (what a rollback sets back) and
// what the plan does. It is kept as JSON beside the plan file.
type Record struct {
	Change   string    `json:"change"`
	Spec     Spec      `json:"spec"`
	PlanFile string    `json:"plan_file"`
	Edit     VarEdit   `json:"edit"`
	Summary  Summary   `json:"summary"`
	Planned  time.Time `json:"planned"`
	// Applied is set once the plan was applied (by the rollout).
	Applied bool `json:"applied,omitempty"`
}

// ErrNoRecord is returned when `wsfleet rollout` finds no saved plan:
// `wsfleet plan` makes it.
var ErrNoRecord = errors.New("no saved Terraform plan for this change")

// Files returns where change's saved plan and record live under dir.
func Files(dir, change string) (planFile, record string) {
	base := filepath.Join(dir, safeName(change))
	return base + ".tfplan", base + ".json"
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// LoadRecord reads change's record from dir.
func LoadRecord(dir, change string) (*Record, error) {
	_, path := Files(dir, change)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s): run wsfleet plan -f … first", ErrNoRecord, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &r, nil
}

func (r *Record) save(dir string) error {
	_, path := Files(dir, r.Change)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode terraform record: %w", err)
	}
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PlanChange is `wsfleet plan` for the terraform form: it sets the
// variable, saves a checked plan under dir and records it for the
// rollout. Planning again keeps the value the variable had before the
// first plan (what a rollback sets back). A plan with no change at all
// is an error: the group's configuration already has that value.
func (r *Runner) PlanChange(ctx context.Context, dir, change string, now time.Time) (*Record, error) {
	// The record keeps the plan file's absolute path: the rollout may run
	// from another working folder.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("terraform plan dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("terraform plan dir: %w", err)
	}
	planFile, _ := Files(dir, change)
	prev, _ := LoadRecord(dir, change)
	p, err := r.Plan(ctx, planFile)
	if err != nil {
		return nil, err
	}
	edit := p.Edit
	if prev != nil && !prev.Applied && prev.Edit.File == edit.File && prev.Edit.Name == edit.Name &&
		edit.HadOld && edit.Old == prev.Edit.New {
		// Planned again (with the same value or another) while the file
		// still has the earlier plan's value, never applied: what a
		// rollback sets back is the value before the first plan.
		edit.Old, edit.HadOld = prev.Edit.Old, prev.Edit.HadOld
	}
	if len(p.Summary.Changes) == 0 {
		os.Remove(planFile)
		if edit.Old != edit.New {
			if rerr := edit.Revert(); rerr != nil {
				return nil, fmt.Errorf("put var.%s back: %w", edit.Name, rerr)
			}
		}
		return nil, fmt.Errorf("terraform plan in %s: no changes with var.%s = %q: the group's configuration already has it (use image: current to cycle the instances)", r.Spec.Dir, r.Spec.Var, r.Spec.Value)
	}
	rec := &Record{Change: change, Spec: r.Spec, PlanFile: planFile, Edit: edit, Summary: p.Summary, Planned: now}
	if err := rec.save(dir); err != nil {
		return nil, err
	}
	return rec, nil
}

// Rollout is the terraform form's change for the rollout engine: apply
// the recorded plan, or revert it through Terraform.
type Rollout struct {
	Runner *Runner
	Record *Record
	// Dir is where the record lives (and the revert's plan is saved).
	Dir string
}

// String names the Terraform change for the report and status.
func (c *Rollout) String() string {
	var addrs []string
	for _, ch := range c.Record.Summary.Changes {
		addrs = append(addrs, ch.Address+" "+ch.Action())
	}
	return fmt.Sprintf("%s (%s)", c.Record.Edit, strings.Join(addrs, ", "))
}

// Apply applies exactly the plan `wsfleet plan` saved, once.
func (c *Rollout) Apply(ctx context.Context) error {
	if c.Record.Applied {
		return fmt.Errorf("terraform apply %s: %w: an earlier rollout applied it; run wsfleet plan again", c.Record.PlanFile, ErrStalePlan)
	}
	if err := c.Runner.Apply(ctx, c.Record.PlanFile); err != nil {
		if errors.Is(err, ErrStalePlan) {
			// Terraform refused the plan before changing anything: the
			// variable goes back, so that the folder agrees with what is
			// deployed (wsfleet plan sets it again).
			if rerr := c.Record.Edit.Revert(); rerr != nil {
				return errors.Join(err, fmt.Errorf("put var.%s back: %w", c.Record.Edit.Name, rerr))
			}
			return fmt.Errorf("%w (var.%s put back to its value before wsfleet plan)", err, c.Record.Edit.Name)
		}
		return err
	}
	c.Record.Applied = true
	return c.Record.save(c.Dir)
}

// Revert sets the variable back to its value before the change, plans,
// checks that the plan is the reverse change only (the same resources,
// the variable at its old value) and applies it. Reverting again when
// Terraform already agrees is a no-op.
func (c *Rollout) Revert(ctx context.Context) error {
	planFile := strings.TrimSuffix(c.Record.PlanFile, ".tfplan") + ".revert.tfplan"
	p, err := c.Runner.Revert(ctx, planFile, c.Record.Edit)
	if err != nil {
		return fmt.Errorf("revert %s: %w", c.Record.Edit, err)
	}
	if len(p.Summary.Changes) == 0 {
		os.Remove(planFile)
		return nil
	}
	var forward []string
	for _, ch := range c.Record.Summary.Changes {
		forward = append(forward, ch.Address)
	}
	var extra []string
	for _, ch := range p.Summary.Changes {
		if !slices.Contains(forward, ch.Address) {
			extra = append(extra, ch.Address)
		}
	}
	if len(extra) > 0 {
		if rerr := p.Edit.Revert(); rerr != nil {
			err = rerr
		}
		os.Remove(planFile)
		return errors.Join(fmt.Errorf("revert %s: the plan changes %s, which the change did not: not the reverse change; revert by hand", c.Record.Edit, strings.Join(extra, ", ")), err)
	}
	if err := c.Runner.Apply(ctx, planFile); err != nil {
		return fmt.Errorf("revert %s: %w", c.Record.Edit, err)
	}
	os.Remove(planFile)
	return nil
}

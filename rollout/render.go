package rollout

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// RenderPlan writes the steps a rollout of p would take on g, as
// `wsfleet plan` prints them.
func RenderPlan(w io.Writer, p *Plan, g Group, steps []Step) {
	live := 0
	for _, in := range g.Instances {
		if in.Live() {
			live++
		}
	}
	if p.Image.Current {
		fmt.Fprintf(w, "change %s on group %s: %d instances, desired %d, now on %s (image %s); image current: cycle every instance not launched from it\n",
			p.Change, p.Group, live, g.Desired, launchString(g.Template), g.Image)
	} else {
		fmt.Fprintf(w, "change %s on group %s: %d instances, desired %d, %s, image %s -> %s\n",
			p.Change, p.Group, live, g.Desired, launchString(g.Template), g.Image, p.Image)
	}
	fmt.Fprintf(w, "strategy %s; warm-up %s; drain window %s, at most %g reconnects/s fleet-wide, deadline %s\n",
		p.Strategy, p.WarmUp.D(), p.Drain.Window.D(), p.Drain.MaxRate, p.Drain.Deadline.D())
	if len(p.Checks) > 0 {
		fmt.Fprintln(w, "checks (after each phase, and every interval while it runs):")
		for _, c := range p.Checks {
			fmt.Fprintf(w, "  - %s: %s\n", c.Name, c.Describe())
		}
	}
	if effects := p.Notify.Describe(); len(effects) > 0 {
		fmt.Fprintln(w, "notify:")
		for _, line := range effects {
			fmt.Fprintf(w, "  - %s\n", line)
		}
	}
	phase := -2
	for i, s := range steps {
		if s.Phase != phase {
			phase = s.Phase
			if phase < 0 && i > 0 {
				fmt.Fprintln(w, "\nend")
			} else if phase < 0 {
				fmt.Fprintln(w, "\nsetup")
			} else {
				ph := p.Phases[phase]
				extra := ""
				if ph.Deadline > 0 {
					extra = fmt.Sprintf(" (deadline %s)", ph.Deadline.D())
				}
				fmt.Fprintf(w, "\nphase %d: %s%s\n", phase+1, ph.Name, extra)
			}
		}
		fmt.Fprintf(w, "  %2d. %-9s %s\n", i+1, s.Kind, s.Note)
	}
	fmt.Fprintln(w)
	switch p.Rollback.OnFailure {
	case "auto":
		back, oldImage, newOnes := g.Template, g.Image, p.Image.String()
		revert := ""
		if p.Image.Current {
			if tc, err := currentChange(p, g); err == nil {
				back, oldImage, revert = tc.Previous, tc.PreviousImage, "; "+tc.revertNote()
				newOnes = refName(tc.New)
			}
		}
		if p.Image.Terraform != nil {
			fmt.Fprintln(w, terraformRollbackLine(p, g)) // image_terraform.go
			break
		}
		fmt.Fprintf(w, "on failure: roll back at once: %s back to %s, every %s instance replaced by one on %s (same drain), old instances still there reused%s\n",
			refKind(back), refName(back), newOnes, oldImage, revert)
	default:
		fmt.Fprintln(w, "on failure: stop and wait for `wsfleet rollback` or `wsfleet abort`")
	}
}

// RenderView writes the live terminal view: where the rollout is, every
// instance with its node's state and connections, and the latest checks.
func RenderView(w io.Writer, st *State, now time.Time) {
	steps, cur := st.current()
	where := "done"
	if *cur < len(steps) {
		s := steps[*cur]
		where = fmt.Sprintf("step %d/%d %s: %s", *cur+1, len(steps), s.Kind, s.Note)
	}
	mode := ""
	if st.Rollback {
		mode = " (rollback)"
	}
	fmt.Fprintf(w, "%s  %s%s  %s  elapsed %s\n", st.Change, st.Status, mode, st.Group, now.Sub(st.Started).Round(time.Second))
	fmt.Fprintf(w, "%s\n", where)
	if st.Waiting != "" {
		fmt.Fprintf(w, "waiting: %s\n", st.Waiting)
	}
	if st.Failure != "" {
		fmt.Fprintf(w, "failure: %s\n", st.Failure)
	}
	if line := st.Suspension.String(); line != "" {
		fmt.Fprintf(w, "processes: %s\n", line)
	}
	if line := st.Template.outsideLine(st); line != "" {
		fmt.Fprintln(w, line)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tINSTANCE\tIMAGE\tLIFECYCLE\tHEALTH\tNODE\tCONNS\t")
	nodes := make([]Node, 0, len(st.Nodes))
	total := 0
	for _, n := range st.Nodes {
		nodes = append(nodes, n)
		total += n.Connections
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].Name != nodes[j].Name {
			return nameLess(nodes[i].Name, nodes[j].Name)
		}
		return nodes[i].ID < nodes[j].ID
	})
	for _, n := range nodes {
		lc := n.Lifecycle
		if n.Protected {
			lc += " (protected)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", orDash(n.Name), n.ID, n.Image, lc, orDash(n.Health), orDash(n.State), n.Connections)
	}
	fmt.Fprintf(tw, "\t\t\t\t\ttotal\t%d\t\n", total)
	tw.Flush()
	for _, ph := range st.Phases {
		if ph.Status == "pending" {
			continue
		}
		var cs []string
		for _, c := range ph.Checks {
			mark := "ok"
			if !c.Pass {
				mark = "FAIL"
			}
			cs = append(cs, fmt.Sprintf("%s %s", c.Name, mark))
		}
		fmt.Fprintf(w, "phase %-12s %-8s %s\n", ph.Name, ph.Status, strings.Join(cs, ", "))
	}
}

// Waits is the time a phase spent on what the plan itself imposes: the
// replacements' boot and warm-up, the drains, the bakes and the windows.
// The rest of a phase's time is the engine's overhead.
type Waits struct {
	Boot, WarmUp, Drain, Bake, Window time.Duration
}

// Total sums the waits.
func (w Waits) Total() time.Duration { return w.Boot + w.WarmUp + w.Drain + w.Bake + w.Window }

// phaseWaits measures the waits of the steps of phase p (-1 with the
// rollback steps for the rollback). Within a batch the replacements boot
// in parallel and the targets drain in parallel, so each counts once, by
// its longest member.
func phaseWaits(st *State, steps []Step, p int) Waits {
	var w Waits
	scale := st.TimeScale
	if scale <= 0 {
		scale = 1
	}
	plan, _ := ParsePlan(st.PlanYAML)
	for _, s := range steps {
		if s.Phase != p {
			continue
		}
		switch s.Kind {
		case StepWindow:
			if !s.Ended.IsZero() && s.Ended.After(s.Started) {
				w.Window += s.Ended.Sub(s.Started)
			}
		case StepBake:
			w.Bake += time.Duration(float64(s.Duration) * scale)
		case StepBatch:
			var boot, drain time.Duration
			for _, a := range s.Adopted {
				if hs, ok := s.HealthySince[a.ID]; ok && hs.After(a.At) {
					boot = max(boot, hs.Sub(a.At))
				}
			}
			for id, at := range s.Drains {
				if end, ok := s.Terminated[id]; ok && end.After(at) {
					drain = max(drain, end.Sub(at))
				}
			}
			w.Boot += boot
			w.Drain += drain
			if len(s.Adopted) > 0 && plan != nil {
				w.WarmUp += time.Duration(float64(plan.WarmUp) * scale)
			}
		}
	}
	return w
}

// WriteReport writes the Markdown report of a rollout.
func WriteReport(w io.Writer, st *State) {
	end := st.Ended
	if end.IsZero() {
		end = time.Now()
	}
	total := end.Sub(st.Started)
	fmt.Fprintf(w, "# Rollout %s: %s\n\n", st.Change, st.Status)
	newImage := ""
	if p, err := ParsePlan(st.PlanYAML); err == nil {
		newImage = st.NewImage(p)
	}
	fmt.Fprintf(w, "- group: %s (desired %d at the start)\n", st.Group, st.InitialDesired)
	fmt.Fprintf(w, "- image: %s -> %s\n", st.OldImage, newImage)
	if st.Template != nil {
		fmt.Fprintf(w, "- %s: %s -> %s\n", refKind(st.Template.New), refName(st.Template.Previous), refName(st.Template.New))
		if line := st.Template.outsideLine(st); line != "" {
			fmt.Fprintf(w, "- %s\n", line)
		}
	}
	fmt.Fprintf(w, "- started %s, ended %s, took %s\n", st.Started.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), total.Round(time.Millisecond))
	if st.TimeScale > 0 && st.TimeScale != 1 {
		fmt.Fprintf(w, "- time scale %g: bakes, warm-up and drains ran at that fraction of the plan's values\n", st.TimeScale)
	}
	if st.Failure != "" {
		fmt.Fprintf(w, "- failure: %s\n", st.Failure)
	}
	if line := st.Suspension.String(); line != "" {
		fmt.Fprintf(w, "- group processes: %s\n", line)
	}

	fmt.Fprintf(w, "\n## Phases\n\n| phase | status | took | boot | warm-up | drain | bake | window | engine |\n|---|---|---|---|---|---|---|---|---|\n")
	var sumWaits, sumPhases time.Duration
	for i, ph := range st.Phases {
		var wt Waits
		if ph.Name == "rollback" {
			wt = phaseWaits(st, st.RollbackSteps, -1)
		} else {
			wt = phaseWaits(st, st.Steps, i)
		}
		took := time.Duration(0)
		if !ph.Started.IsZero() && !ph.Ended.IsZero() {
			took = ph.Ended.Sub(ph.Started)
		}
		sumWaits += wt.Total()
		sumPhases += took
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", ph.Name, ph.Status, rd(took), rd(wt.Boot), rd(wt.WarmUp), rd(wt.Drain), rd(wt.Bake), rd(wt.Window), rd(max(took-wt.Total(), 0)))
	}
	overhead := max(total-sumWaits, 0)
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(overhead) / float64(total)
	}
	fmt.Fprintf(w, "\nTotal %s; waits the plan imposes %s; engine overhead %s (%.1f%%).\n", rd(total), rd(sumWaits), rd(overhead), pct)

	fmt.Fprintf(w, "\n## Checks\n\n| phase | check | result | detail |\n|---|---|---|---|\n")
	for _, ph := range st.Phases {
		for _, c := range ph.Checks {
			res := "pass"
			if !c.Pass {
				res = "**FAIL**"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", ph.Name, c.Name, res, strings.ReplaceAll(c.Detail, "|", "\\|"))
		}
	}
	for _, ph := range st.Phases {
		for _, c := range ph.Checks {
			if c.Analysis != nil {
				fmt.Fprintf(w, "\n### Canary analysis: %s, phase %s\n\n", c.Name, ph.Name)
				canaryTable(w, c.Analysis)
			}
		}
	}

	fmt.Fprintf(w, "\n## Connections\n\n")
	if len(st.Peak) > 0 {
		fmt.Fprintf(w, "Peak connections seen: fleet %d", st.Peak["(fleet)"])
		var names []string
		for n := range st.Peak {
			if n != "(fleet)" {
				names = append(names, n)
			}
		}
		sort.Slice(names, func(i, j int) bool { return nameLess(names[i], names[j]) })
		for _, n := range names {
			fmt.Fprintf(w, "; %s %d", n, st.Peak[n])
		}
		fmt.Fprintln(w, ".")
	}
	probes := false
	for _, ph := range st.Phases {
		if ph.Probe != nil {
			if !probes {
				fmt.Fprintf(w, "\n| phase | probe clients | sent | delivered | lost | gap p99 | gap max | reconnects |\n|---|---|---|---|---|---|---|---|\n")
				probes = true
			}
			r := ph.Probe
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %s | %s | %d |\n", ph.Name, r.Clients, r.Sent, r.Delivered, r.Lost, rd(r.GapP99), rd(r.GapMax), r.Reconnect)
		}
	}

	var replaced []string
	for _, ph := range st.Phases {
		for _, r := range ph.Replaced {
			replaced = append(replaced, fmt.Sprintf("- %s: %s", ph.Name, r))
		}
	}
	if len(replaced) > 0 {
		fmt.Fprintf(w, "\n## Replacements\n\n%s\n", strings.Join(replaced, "\n"))
	}

	writePlacement(w, st) // placement.go

	fmt.Fprintf(w, "\n## Drains and terminations\n\n")
	for _, list := range [][]Step{st.Steps, st.RollbackSteps} {
		for _, s := range list {
			if s.Kind != StepBatch || len(s.Drains) == 0 {
				continue
			}
			ids := make([]string, 0, len(s.Drains))
			for id := range s.Drains {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				name := id
				for i, t := range s.Targets {
					if t == id && i < len(s.TargetNames) {
						name = s.TargetNames[i] + " (" + id + ")"
					}
				}
				took := "(not terminated)"
				if end, ok := s.Terminated[id]; ok {
					took = end.Sub(s.Drains[id]).Round(time.Millisecond).String()
				}
				fmt.Fprintf(w, "- %s: drained and terminated after %s\n", name, took)
			}
		}
	}

	fmt.Fprintf(w, "\n## AWS API calls\n\n")
	if len(st.Calls) == 0 {
		fmt.Fprintln(w, "not counted by this provider")
	} else {
		ops := make([]string, 0, len(st.Calls))
		sum := 0
		for op, n := range st.Calls {
			ops = append(ops, op)
			sum += n
		}
		sort.Strings(ops)
		fmt.Fprintf(w, "%d in all.\n\n| operation | calls |\n|---|---|\n", sum)
		for _, op := range ops {
			fmt.Fprintf(w, "| %s | %d |\n", op, st.Calls[op])
		}
	}
}

// rd rounds a duration for a report.
func rd(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

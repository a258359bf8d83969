package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Notifications: what the people and services around a change are told
// while it runs. The engine tells its notifiers of the rollout's
// milestones (its start, each phase's start and end, a failure, a
// rollback, an abort, its end), in order, from the events it writes; a
// notifier makes its effect outside the fleet (a PagerDuty maintenance
// window, a comment on the change's GitLab issue, a Slack message). A
// notifier that fails is logged and told again at the next milestone: a
// notification never stops or fails a rollout.

// Notifier is told of a rollout's milestones.
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}

// Notice is one milestone of a rollout.
type Notice struct {
	// Type is the event's: start, resume, phase, fail, rollback, abort,
	// stop, detach, end.
	Type string
	Msg  string
	// Phase is the phase a phase notice is about, or the one open.
	Phase string
	// Started says a phase notice is the phase's start, not its end.
	Started bool
	At      time.Time
	// State is the rollout as it is now; a notifier reads it during
	// Notify only.
	State *State
}

// noticeTypes are the event types that are milestones.
var noticeTypes = map[string]bool{"start": true, "resume": true, "phase": true, "fail": true, "rollback": true, "abort": true, "stop": true, "detach": true, "end": true}

// notifyTimeout bounds one notifier's handling of a notice, retries
// included.
const notifyTimeout = time.Minute

// notify tells the notifiers of an event that is a milestone. The plan's
// notifiers are made from the state's plan the first time.
func (e *Engine) notify(st *State, typ, msg string, kv ...any) {
	if !noticeTypes[typ] || e.notifying {
		return
	}
	if e.notifyChange != st.Change {
		e.notifyChange, e.planNotifiers = st.Change, nil
		if p, err := ParsePlan(st.PlanYAML); err == nil {
			e.planNotifiers = p.Notify.notifiers(e.Checker)
		}
	}
	all := append(append([]Notifier(nil), e.Notifiers...), e.planNotifiers...)
	if len(all) == 0 {
		return
	}
	n := Notice{Type: typ, Msg: msg, At: e.Now(), State: st}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, _ := kv[i].(string); k == "phase" {
			n.Phase = fmt.Sprint(kv[i+1])
		}
	}
	if typ == "phase" {
		n.Started = msg == "phase started"
	} else if e.phaseOpen {
		n.Phase = e.phaseRecord(st, e.phase).Name
	}
	base := e.ctx
	if base == nil {
		base = context.Background()
	}
	e.notifying = true
	defer func() { e.notifying = false }()
	for _, nf := range all {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(base), notifyTimeout)
		err := nf.Notify(ctx, n)
		cancel()
		if err != nil {
			e.Log.Warn("notification failed", "change", st.Change, "notifier", fmt.Sprintf("%T", nf), "event", typ, "err", err)
			if e.Events != nil {
				e.Events.Write(e.Now(), st.Change, "notify", "notification failed", "notifier", fmt.Sprintf("%T", nf), "event", typ, "err", err.Error())
			}
		}
	}
}

// NotifySpec is the plan's notify section: the effects outside the fleet
// that follow the rollout. Each is optional.
type NotifySpec struct {
	PagerDuty *PagerDutyMaintenance `yaml:"pagerduty_maintenance" json:"pagerduty_maintenance,omitempty"`
	GitLab    *GitLabIssueNotes     `yaml:"gitlab_issue" json:"gitlab_issue,omitempty"`
	Slack     *SlackWebhook         `yaml:"slack" json:"slack,omitempty"`
}

// validate checks each effect's keys; at reports under notify.
func (n *NotifySpec) validate(at func(key, format string, args ...any)) {
	sub := func(prefix string) func(key, format string, args ...any) {
		return func(key, format string, args ...any) {
			if key != "" {
				key = prefix + "." + key
			} else {
				key = prefix
			}
			at(key, format, args...)
		}
	}
	if n.PagerDuty != nil {
		n.PagerDuty.validate(sub("pagerduty_maintenance"))
	}
	if n.GitLab != nil {
		n.GitLab.validate(sub("gitlab_issue"))
	}
	if n.Slack != nil {
		n.Slack.validate(sub("slack"))
	}
}

// notifiers makes the notifiers of the plan's effects.
func (n NotifySpec) notifiers(c *Checker) []Notifier {
	var out []Notifier
	if n.PagerDuty != nil {
		out = append(out, &maintenanceNotifier{spec: n.PagerDuty, checker: c})
	}
	if n.GitLab != nil {
		out = append(out, &gitlabNotifier{spec: n.GitLab, checker: c})
	}
	if n.Slack != nil {
		out = append(out, &slackNotifier{spec: n.Slack, checker: c})
	}
	return out
}

// Describe lists the effects, for the rendered plan.
func (n NotifySpec) Describe() []string {
	var out []string
	if p := n.PagerDuty; p != nil {
		out = append(out, fmt.Sprintf("PagerDuty maintenance window on %s through each phase (at most %s each)", strings.Join(p.Services, ", "), p.MaxDuration.D()))
	}
	if g := n.GitLab; g != nil {
		out = append(out, fmt.Sprintf("progress comment on GitLab issue %s#%d, kept up to date, and the report at the end", g.Project, g.Issue))
	}
	if n.Slack != nil {
		out = append(out, "Slack messages at the start, each phase, a failure, a rollback and the end")
	}
	return out
}

// checksLine writes a phase's check results on one line.
func checksLine(rs []CheckResult) string {
	if len(rs) == 0 {
		return "no checks"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		res := "pass"
		if !r.Pass {
			res = "FAIL"
		}
		parts[i] = fmt.Sprintf("%s %s (%s)", r.Name, res, r.Detail)
	}
	return strings.Join(parts, "; ")
}

// phaseOf returns the record of the phase named name, or nil.
func phaseOf(st *State, name string) *PhaseRecord {
	for i := range st.Phases {
		if st.Phases[i].Name == name {
			return &st.Phases[i]
		}
	}
	return nil
}

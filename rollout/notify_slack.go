package rollout

import (
	"context"
	"fmt"

	"github.com/slack-go/slack"
)

// SlackWebhook posts the rollout's milestones to a Slack channel through
// an incoming webhook. The webhook's URL is its credential: it comes from
// the environment variable URLEnv names.
type SlackWebhook struct {
	URLEnv string `yaml:"webhook_url_env" json:"webhook_url_env"`
}

func (s *SlackWebhook) validate(at func(key, format string, args ...any)) {
	secretEnv(at, "webhook_url_env", s.URLEnv, true)
}

type slackNotifier struct {
	spec    *SlackWebhook
	checker *Checker
}

func (s *slackNotifier) Notify(ctx context.Context, n Notice) error {
	text := slackText(n)
	if text == "" {
		return nil
	}
	u := secret(s.spec.URLEnv)
	err := slack.PostWebhookCustomHTTPContext(ctx, u, s.checker.vendorClient(), &slack.WebhookMessage{Text: text})
	if err != nil {
		return redactErr(fmt.Errorf("post to Slack: %w", err), u)
	}
	return nil
}

// slackText is the message for a milestone, "" for none.
func slackText(n Notice) string {
	st := n.State
	head := "wsfleet " + st.Change + ": "
	switch n.Type {
	case "start":
		return head + fmt.Sprintf("rollout started on group %s (from image %s, %d phases)", st.Group, st.OldImage, len(st.Phases))
	case "resume":
		return head + "rollout resumed"
	case "phase":
		if n.Started {
			return head + "phase " + n.Phase + " started"
		}
		rec := phaseOf(st, n.Phase)
		if rec == nil {
			return head + "phase " + n.Phase + " ended"
		}
		return head + fmt.Sprintf("phase %s %s: %s", n.Phase, rec.Status, checksLine(rec.Checks))
	case "fail":
		return head + "FAILED: " + n.Msg
	case "rollback":
		return head + "rolling back: " + st.Failure
	case "abort":
		return head + n.Msg
	case "stop":
		return head + "stopped (" + n.Msg + "); resume continues it"
	case "end":
		text := head + "rollout ended " + string(st.Status)
		if st.Failure != "" {
			text += ": " + st.Failure
		}
		for _, ph := range st.Phases {
			text += fmt.Sprintf("\n- %s %s: %s", ph.Name, ph.Status, checksLine(ph.Checks))
		}
		return text
	}
	return ""
}

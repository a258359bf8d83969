package rollout

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// GitLabIssueNotes follows the rollout on the change's GitLab issue: one
// progress comment, made at the start and edited in place at every
// milestone, and the report as a comment of its own at the end.
type GitLabIssueNotes struct {
	// URL is the GitLab instance; default https://gitlab.com.
	URL      string `yaml:"url" json:"url,omitempty"`
	TokenEnv string `yaml:"token_env" json:"token_env"`
	// Project is the issue's project: its id or its path.
	Project string `yaml:"project" json:"project"`
	// Issue is the issue's number in the project (its iid).
	Issue int64 `yaml:"issue" json:"issue"`
}

func (g *GitLabIssueNotes) validate(at func(key, format string, args ...any)) {
	serviceKeys(at, &g.URL, gitlabURL, "token_env", g.TokenEnv)
	if g.Project == "" {
		at("project", "missing; give the issue's project, e.g. gitlab-com/gl-infra/production")
	}
	if g.Issue <= 0 {
		outOfRange(at, "issue", g.Issue, "the issue's number in its project (1 or more)")
	}
}

// gitlabNotifier keeps the progress comment; it finds it again on resume
// by the marker its body starts with.
type gitlabNotifier struct {
	spec    *GitLabIssueNotes
	checker *Checker
	noteID  int64 // the progress comment, once found or made
}

// Markers start the bodies of the comments the notifier writes (as HTML
// comments, which GitLab does not show).
func progressMarker(change string) string { return "<!-- wsfleet:progress change=" + change + " -->" }
func reportMarker(change string) string   { return "<!-- wsfleet:report change=" + change + " -->" }

func (g *gitlabNotifier) Notify(ctx context.Context, n Notice) error {
	token := secret(g.spec.TokenEnv)
	cl, err := gitlabClient(g.spec.URL, token, g.checker)
	if err != nil {
		return redactErr(err, token)
	}
	err = g.progress(ctx, cl, n)
	if err == nil && (n.Type == "end" || n.Type == "abort" && n.State.Status == StatusAborted) {
		err = g.report(ctx, cl, n)
	}
	return redactErr(err, token)
}

// progress makes or edits the progress comment.
func (g *gitlabNotifier) progress(ctx context.Context, cl *gitlab.Client, n Notice) error {
	body := progressBody(n)
	if g.noteID == 0 {
		note, err := g.find(ctx, cl, progressMarker(n.State.Change))
		if err != nil {
			return err
		}
		if note != nil {
			g.noteID = note.ID
		}
	}
	if g.noteID != 0 {
		_, _, err := cl.Notes.UpdateIssueNote(g.spec.Project, g.spec.Issue, g.noteID, &gitlab.UpdateIssueNoteOptions{Body: gitlab.Ptr(body)}, gitlab.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("edit the progress comment %d on %s#%d: %w", g.noteID, g.spec.Project, g.spec.Issue, err)
		}
		return nil
	}
	note, _, err := cl.Notes.CreateIssueNote(g.spec.Project, g.spec.Issue, &gitlab.CreateIssueNoteOptions{Body: gitlab.Ptr(body)}, gitlab.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("comment on %s#%d: %w", g.spec.Project, g.spec.Issue, err)
	}
	g.noteID = note.ID
	return nil
}

// report posts the report once: a resumed end finds it there.
func (g *gitlabNotifier) report(ctx context.Context, cl *gitlab.Client, n Notice) error {
	marker := reportMarker(n.State.Change)
	if note, err := g.find(ctx, cl, marker); err != nil || note != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString(marker + "\n")
	WriteReport(&b, n.State)
	_, _, err := cl.Notes.CreateIssueNote(g.spec.Project, g.spec.Issue, &gitlab.CreateIssueNoteOptions{Body: gitlab.Ptr(b.String())}, gitlab.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("post the report on %s#%d: %w", g.spec.Project, g.spec.Issue, err)
	}
	return nil
}

// find returns the issue's comment whose body starts with marker, page
// by page, or nil.
func (g *gitlabNotifier) find(ctx context.Context, cl *gitlab.Client, marker string) (*gitlab.Note, error) {
	opts := &gitlab.ListIssueNotesOptions{ListOptions: gitlab.ListOptions{PerPage: gitlabPerPage, Page: 1}}
	for pages := 0; pages < 100; pages++ {
		notes, resp, err := cl.Notes.ListIssueNotes(g.spec.Project, g.spec.Issue, opts, gitlab.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list the comments of %s#%d: %w", g.spec.Project, g.spec.Issue, err)
		}
		for _, note := range notes {
			if strings.HasPrefix(note.Body, marker) {
				return note, nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return nil, nil
		}
		opts.Page = resp.NextPage
	}
	return nil, nil
}

// progressBody is the progress comment: where the rollout is and every
// phase's result so far.
func progressBody(n Notice) string {
	st := n.State
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n**wsfleet rollout %s**: %s\n\n", progressMarker(st.Change), st.Change, st.Status)
	fmt.Fprintf(&b, "Group %s, from image %s; started %s.\n\n", st.Group, st.OldImage, st.Started.UTC().Format(time.RFC3339))
	b.WriteString("| phase | status | started | ended | checks |\n|---|---|---|---|---|\n")
	for _, ph := range st.Phases {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", ph.Name, ph.Status, clock(ph.Started), clock(ph.Ended), strings.ReplaceAll(checksLine(ph.Checks), "|", "\\|"))
	}
	if st.Failure != "" {
		fmt.Fprintf(&b, "\nFailure: %s\n", st.Failure)
	}
	fmt.Fprintf(&b, "\nLast: %s at %s.\n", noticeLine(n), n.At.UTC().Format(time.RFC3339))
	return b.String()
}

func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("15:04:05")
}

// noticeLine says what a notice is, in a few words.
func noticeLine(n Notice) string {
	switch {
	case n.Type == "phase" && n.Started:
		return "phase " + n.Phase + " started"
	case n.Type == "phase":
		return "phase " + n.Phase + " ended"
	case n.Type == "fail":
		return "failed: " + n.Msg
	case n.Type == "rollback":
		return "rolling back"
	case n.Type == "end":
		return "ended " + string(n.State.Status)
	default:
		return n.Msg
	}
}

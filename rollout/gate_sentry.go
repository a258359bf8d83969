package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// sentryKind is the sentry check: new events and new issues of a project
// (and of a release, if given) since the phase began, through Sentry's
// web API with net/http (Sentry publishes no Go client for it).
var sentryKind = GateKind{Key: "sentry", Spec: func() GateSpec { return &SentryCheck{} }}

// SentryCheck passes while the project has at most MaxEvents events and
// MaxNewIssues issues first seen since the phase began.
type SentryCheck struct {
	// URL is the Sentry instance; default https://sentry.io.
	URL          string `yaml:"url" json:"url,omitempty"`
	TokenEnv     string `yaml:"token_env" json:"token_env"`
	Organization string `yaml:"organization" json:"organization"`
	Project      string `yaml:"project" json:"project"`
	Release      string `yaml:"release" json:"release,omitempty"`
	MaxEvents    int    `yaml:"max_events" json:"max_events,omitempty"`
	MaxNewIssues int    `yaml:"max_new_issues" json:"max_new_issues,omitempty"`
}

// Validate wants the token's variable set, the organization and project.
func (s *SentryCheck) Validate(at func(key, format string, args ...any)) {
	serviceKeys(at, &s.URL, "https://sentry.io", "token_env", s.TokenEnv)
	if s.Organization == "" {
		at("organization", "missing; give the organization's slug")
	}
	if s.Project == "" {
		at("project", "missing; give the project's slug")
	}
	if s.MaxEvents < 0 || s.MaxEvents > vendorMaxCount {
		outOfRange(at, "max_events", s.MaxEvents, fmt.Sprintf("0 to %d events", vendorMaxCount))
	}
	if s.MaxNewIssues < 0 || s.MaxNewIssues > vendorMaxCount {
		outOfRange(at, "max_new_issues", s.MaxNewIssues, fmt.Sprintf("0 to %d issues", vendorMaxCount))
	}
}

// Describe says what the check asks.
func (s *SentryCheck) Describe() string {
	of := s.Organization + "/" + s.Project
	if s.Release != "" {
		of += " release " + s.Release
	}
	return fmt.Sprintf("at most %d Sentry events and %d new issues in %s since the phase began", s.MaxEvents, s.MaxNewIssues, of)
}

// Gate returns the phase's gate; it keeps when the phase began.
func (s *SentryCheck) Gate() Gate { return &sentryGate{spec: s} }

type sentryGate struct {
	phaseStart
	spec *SentryCheck
}

// sentryMaxPages bounds the pages a count follows.
const sentryMaxPages = 20

func (g *sentryGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	token := secret(g.spec.TokenEnv)
	hc := env.Checker.vendorClient()
	base := strings.TrimSuffix(g.spec.URL, "/") + "/api/0/projects/" + url.PathEscape(g.spec.Organization) + "/" + url.PathEscape(g.spec.Project)
	since := g.since(env.Now).UTC()

	// Events since the phase began, of the release if given (an event
	// carries its release as a tag).
	q := url.Values{"start": {since.Format(time.RFC3339)}, "end": {env.Now.Add(time.Second).UTC().Format(time.RFC3339)}}
	events, first, err := sentryCount(ctx, hc, token, base+"/events/?"+q.Encode(), g.spec.MaxEvents+1, func(raw json.RawMessage) (string, bool) {
		var ev struct {
			EventID string `json:"eventID"`
			Title   string `json:"title"`
			Tags    []struct{ Key, Value string }
		}
		if json.Unmarshal(raw, &ev) != nil || g.spec.Release != "" && !hasTag(ev.Tags, "release", g.spec.Release) {
			return "", false
		}
		return fmt.Sprintf("%s %q", ev.EventID, ev.Title), true
	})
	if err != nil {
		return GateResult{Detail: sentryFailure("events", err, token)}
	}
	if events > g.spec.MaxEvents {
		return GateResult{Detail: fmt.Sprintf("%s Sentry events in %s since the phase began (first %s); allowed at most %d", atLeast(events, g.spec.MaxEvents+1), g.spec.Project, first, g.spec.MaxEvents)}
	}

	// Issues first seen since the phase began.
	query := "firstSeen:>=" + since.Format(time.RFC3339)
	if g.spec.Release != "" {
		query += " release:" + g.spec.Release
	}
	issues, first, err := sentryCount(ctx, hc, token, base+"/issues/?"+url.Values{"query": {query}, "statsPeriod": {""}}.Encode(), g.spec.MaxNewIssues+1, func(raw json.RawMessage) (string, bool) {
		var is struct{ ShortID, Title string }
		if json.Unmarshal(raw, &is) != nil {
			return "", false
		}
		return fmt.Sprintf("%s %q", is.ShortID, is.Title), true
	})
	if err != nil {
		return GateResult{Detail: sentryFailure("issues", err, token)}
	}
	if issues > g.spec.MaxNewIssues {
		return GateResult{Detail: fmt.Sprintf("%s new Sentry issues in %s since the phase began (first %s); allowed at most %d", atLeast(issues, g.spec.MaxNewIssues+1), g.spec.Project, first, g.spec.MaxNewIssues)}
	}
	return GateResult{Pass: true, Detail: fmt.Sprintf("%d Sentry events, %d new issues since the phase began (allowed %d, %d)", events, issues, g.spec.MaxEvents, g.spec.MaxNewIssues)}
}

// atLeast writes n, with "at least" when counting stopped at enough.
func atLeast(n, enough int) string {
	if n >= enough {
		return fmt.Sprintf("at least %d", n)
	}
	return fmt.Sprint(n)
}

func hasTag(tags []struct{ Key, Value string }, k, v string) bool {
	for _, t := range tags {
		if t.Key == k && t.Value == v {
			return true
		}
	}
	return false
}

// sentryCount counts the items of a list that label keeps, up to
// enough, and returns the first one's label.
func sentryCount(ctx context.Context, hc *http.Client, token, u string, enough int, label func(json.RawMessage) (string, bool)) (n int, first string, err error) {
	err = sentryList(ctx, hc, token, u, enough, func(raw json.RawMessage) bool {
		l, ok := label(raw)
		if ok && first == "" {
			first = l
		}
		if ok {
			n++
		}
		return ok
	})
	return n, first, err
}

// sentryList GETs a list and the pages its Link header names (Sentry's
// cursor pagination), giving each item to count, until enough items
// counted or no page has results. Only pages on the same host are
// followed: the token goes nowhere else.
func sentryList(ctx context.Context, hc *http.Client, token, u string, enough int, count func(json.RawMessage) bool) error {
	start, err := url.Parse(u)
	if err != nil {
		return err
	}
	n := 0
	for page := 0; page < sentryMaxPages && u != ""; page++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", req.URL.Path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d: %s", req.URL.Path, resp.StatusCode, sentryDetail(body))
		}
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return fmt.Errorf("GET %s: not a list: %w", req.URL.Path, err)
		}
		for _, it := range items {
			if count(it) {
				n++
			}
			if n >= enough {
				return nil
			}
		}
		u = nextLink(resp.Header.Values("Link"))
		if next, err := url.Parse(u); u != "" && (err != nil || next.Host != start.Host || next.Scheme != start.Scheme) {
			return fmt.Errorf("GET %s: next page on another host: refused", req.URL.Path)
		}
	}
	if u != "" {
		return fmt.Errorf("%w: more than %d pages since the phase began, %d counted", errSentryUncounted, sentryMaxPages, n)
	}
	return nil
}

// errSentryUncounted is a list longer than the pages a count follows: the
// count is not known, and the check fails rather than pass on part of it.
var errSentryUncounted = errors.New("too many to count")

// sentryFailure is the detail of a count that failed: the list too long
// to count, or the service that could not be asked.
func sentryFailure(what string, err error, token string) string {
	if errors.Is(err, errSentryUncounted) {
		return fmt.Sprintf("Sentry %s could not be counted (the check fails): %v", what, redactErr(err, token))
	}
	return unreachable("Sentry ("+what+")", err, token)
}

// sentryDetail is the "detail" of a Sentry error answer, or its start.
func sentryDetail(body []byte) string {
	var e struct{ Detail string }
	if json.Unmarshal(body, &e) == nil && e.Detail != "" {
		return e.Detail
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// nextLink returns the URL of the Link header's rel="next" part when it
// says results="true", and "" otherwise.
func nextLink(headers []string) string {
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			part = strings.TrimSpace(part)
			if !strings.Contains(part, `rel="next"`) || !strings.Contains(part, `results="true"`) {
				continue
			}
			if i, j := strings.Index(part, "<"), strings.Index(part, ">"); i >= 0 && j > i {
				return part[i+1 : j]
			}
		}
	}
	return ""
}

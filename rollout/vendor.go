package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// What the hosted-service checks and effects (Datadog, Sentry, PagerDuty,
// GitLab, Slack) share: credentials read from environment variables that
// the plan names, an HTTP client that retries rate limits and server
// errors with a bounded backoff, and errors with every secret taken out.

// secretEnv checks, with the other keys, that a plan names a credential's
// environment variable properly. Whether the variable is set is checked
// by (*Plan).CheckCredentials, when a plan is about to be used (plan,
// rollout, resume), not when a stored plan is only read (status, report).
// The value is read again when the check runs (secret), never kept in
// the plan, the state or the events.
func secretEnv(at func(key, format string, args ...any), key, name string, required bool) {
	switch {
	case name == "" && required:
		at(key, "missing; name the environment variable that holds the credential")
	case name == "":
	case !envName.MatchString(name):
		at(key, "%q is not an environment variable name", name)
	}
}

// credVar is a plan key that names a credential's environment variable.
type credVar struct{ key, name string }

// credentialed is a spec that reads credentials from the environment.
type credentialed interface{ credentialVars() []credVar }

// CheckCredentials reports each credential variable the plan names that
// is not set in this process's environment, at its key and line: what
// `plan` and `rollout` refuse a plan for, before anything else.
func (p *Plan) CheckCredentials() error {
	var errs PlanErrors
	check := func(prefix string, spec any) {
		c, ok := spec.(credentialed)
		if !ok {
			return
		}
		for _, v := range c.credentialVars() {
			if v.name != "" && os.Getenv(v.name) == "" {
				errs = append(errs, p.errAt(prefix+"."+v.key, "environment variable %s is not set (it holds the credential; the plan names it, never the value)", v.name))
			}
		}
	}
	for i, c := range p.Checks {
		check(fmt.Sprintf("checks[%d].%s", i, c.Kind), c.Spec)
	}
	if p.Notify.PagerDuty != nil {
		check("notify.pagerduty_maintenance", p.Notify.PagerDuty)
	}
	if p.Notify.GitLab != nil {
		check("notify.gitlab_issue", p.Notify.GitLab)
	}
	if p.Notify.Slack != nil {
		check("notify.slack", p.Notify.Slack)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func (d *DatadogCheck) credentialVars() []credVar {
	return []credVar{{"api_key_env", d.APIKeyEnv}, {"app_key_env", d.AppKeyEnv}}
}
func (s *SentryCheck) credentialVars() []credVar    { return []credVar{{"token_env", s.TokenEnv}} }
func (p *PagerDutyCheck) credentialVars() []credVar { return []credVar{{"token_env", p.TokenEnv}} }
func (c *GitLabDeploymentsCheck) credentialVars() []credVar {
	return []credVar{{"token_env", c.TokenEnv}}
}
func (p *PagerDutyMaintenance) credentialVars() []credVar {
	return []credVar{{"token_env", p.TokenEnv}}
}
func (g *GitLabIssueNotes) credentialVars() []credVar { return []credVar{{"token_env", g.TokenEnv}} }
func (s *SlackWebhook) credentialVars() []credVar     { return []credVar{{"webhook_url_env", s.URLEnv}} }

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// secret returns the value of the environment variable name ("" for none).
func secret(name string) string {
	if name == "" {
		return ""
	}
	return os.Getenv(name)
}

// redact replaces every secret in s by "[redacted]", also where it is
// written as a URL's query or path escapes it, as %q quotes it or as JSON
// encodes it (a webhook URL inside a *url.Error, a token a service
// echoes); short values (under 4 characters) are left, as they would
// blank out ordinary words.
func redact(s string, secrets ...string) string {
	for _, v := range secrets {
		if len(v) < 4 {
			continue
		}
		for _, form := range secretForms(v) {
			s = strings.ReplaceAll(s, form, "[redacted]")
		}
	}
	return s
}

// secretForms is v and the ways a message may write it, longest first
// so that a form is not left half replaced by a shorter one inside it.
func secretForms(v string) []string {
	forms := []string{v, url.QueryEscape(v), url.PathEscape(v), (&url.URL{Path: v}).EscapedPath()}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" {
		forms = append(forms, u.String(), u.Redacted())
	}
	if q := strconv.Quote(v); len(q) > 2 {
		forms = append(forms, q[1:len(q)-1])
	}
	if q := strconv.QuoteToASCII(v); len(q) > 2 {
		forms = append(forms, q[1:len(q)-1])
	}
	if j, err := json.Marshal(v); err == nil && len(j) > 2 {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return slices.Compact(forms)
}

// redactErr is err with its secrets taken out of its message.
func redactErr(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := redact(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// validURL reports at key a base URL that is not http(s).
func validURL(at func(key, format string, args ...any), key, u string) {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		at(key, "%q; want an http:// or https:// URL", u)
	}
}

// Retry bounds of the hosted services' client: a 429 or 5xx answer, or a
// connection that fails, is tried again up to vendorAttempts times in
// all, waiting what Retry-After or the service's rate-limit reset header
// asks (rateLimitWait; at most vendorMaxWait) or a doubling
// backoff from vendorBackoff.
const (
	vendorAttempts = 4
	vendorBackoff  = 200 * time.Millisecond
	vendorMaxWait  = 10 * time.Second
	vendorTimeout  = 15 * time.Second
)

// vendorMaxCount bounds the counts a plan allows (max_events,
// max_new_issues, max_incidents, max_alerting): a bound above what the
// pages a check follows can hold (Sentry's 20 pages) could never be
// exceeded, and the check could never fail.
const vendorMaxCount = 1000

// errVendorUnreachable marks a service that did not answer usefully after the
// retries: its check fails, and says so.
var errVendorUnreachable = errors.New("unreachable")

// retryTransport retries rate limits (429), server errors (5xx) and
// failed connections, honouring Retry-After. After the last attempt it
// gives the last answer to the client, or an error wrapping
// errVendorUnreachable.
type retryTransport struct {
	base  http.RoundTripper
	sleep func(ctx context.Context, d time.Duration) error
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	wait := vendorBackoff
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && req.Body != nil && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(req.Context())
			r.Body = body
		}
		resp, err := base.RoundTrip(r)
		retry := err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if !retry {
			return resp, nil
		}
		if req.Body != nil && req.GetBody == nil {
			retry = false // a body that cannot be sent again
		}
		if attempt >= vendorAttempts || !retry || req.Context().Err() != nil {
			if err != nil {
				return nil, fmt.Errorf("%w after %d attempts: %w", errVendorUnreachable, attempt, err)
			}
			return resp, nil
		}
		d := wait
		if err == nil {
			if ra, ok := rateLimitWait(resp, time.Now()); ok {
				d = ra
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
		}
		d = min(d, vendorMaxWait)
		if err := t.sleep(req.Context(), d); err != nil {
			return nil, err
		}
		wait *= 2
	}
}

// rateLimitWait is how long an answer asks to wait before the next
// attempt: its Retry-After, or on a 429 without one the seconds until the
// limit resets that the service's own header gives (Datadog's
// X-RateLimit-Reset, PagerDuty's ratelimit-reset).
func rateLimitWait(resp *http.Response, now time.Time) (time.Duration, bool) {
	if d, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
		return d, true
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	for _, h := range []string{"X-RateLimit-Reset", "RateLimit-Reset"} {
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get(h))); err == nil && s >= 0 {
			return time.Duration(s) * time.Second, true
		}
	}
	return 0, false
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// vendorClient is the HTTP client of the hosted services: c's transport
// under the retries, with a timeout per request.
func (c *Checker) vendorClient() *http.Client {
	var base http.RoundTripper
	if c != nil && c.HTTP != nil && c.HTTP.Transport != nil {
		base = c.HTTP.Transport
	}
	sleep := Sleep
	if c != nil && c.Sleep != nil {
		sleep = c.Sleep
	}
	return &http.Client{Timeout: vendorTimeout, Transport: &retryTransport{base: base, sleep: sleep}}
}

// phaseStart is what the hosted services' gates keep of their phase:
// when it began, the start of "since the phase began".
type phaseStart struct{ begun time.Time }

func (p *phaseStart) Begin(_ context.Context, env PhaseEnv) error {
	p.begun = env.Now
	return nil
}

func (*phaseStart) End(context.Context, PhaseEnv) *GateResult { return nil }

// since is when the phase began, less a second for the services' whole
// seconds; now for a gate that was not begun.
func (p *phaseStart) since(now time.Time) time.Time {
	if p.begun.IsZero() {
		return now.Add(-time.Second)
	}
	return p.begun.Add(-time.Second)
}

// serviceKeys validates the keys every hosted service shares: its base
// URL (def when absent) and the variable of its credential.
func serviceKeys(at func(key, format string, args ...any), u *string, def, envKey, env string) {
	if *u == "" {
		*u = def
	}
	validURL(at, "url", *u)
	secretEnv(at, envKey, env, true)
}

// unreachable says that service could not be asked, in a gate's detail:
// the gate fails with it, it never passes by default.
func unreachable(service string, err error, secrets ...string) string {
	return fmt.Sprintf("%s could not be asked (the check fails until it answers): %v", service, redactErr(err, secrets...))
}

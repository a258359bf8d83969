package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty"
)

// pagerdutyKind is the pagerduty check: no incident triggered or
// acknowledged on the named services since the phase began, through
// PagerDuty's Go client.
var pagerdutyKind = GateKind{Key: "pagerduty", Spec: func() GateSpec { return &PagerDutyCheck{} }}

// PagerDutyCheck passes while at most MaxIncidents incidents created since
// the phase began on Services are triggered or acknowledged.
type PagerDutyCheck struct {
	// URL is the REST API's base URL; default https://api.pagerduty.com.
	URL          string   `yaml:"url" json:"url,omitempty"`
	TokenEnv     string   `yaml:"token_env" json:"token_env"`
	Services     []string `yaml:"services" json:"services"`
	MaxIncidents int      `yaml:"max_incidents" json:"max_incidents,omitempty"`
}

// Validate wants the token's variable set and at least one service id.
func (p *PagerDutyCheck) Validate(at func(key, format string, args ...any)) {
	serviceKeys(at, &p.URL, pagerdutyURL, "token_env", p.TokenEnv)
	if len(p.Services) == 0 {
		at("services", "missing; list the PagerDuty service ids to watch, e.g. [PXXXXXX]")
	}
	if p.MaxIncidents < 0 || p.MaxIncidents > vendorMaxCount {
		outOfRange(at, "max_incidents", p.MaxIncidents, fmt.Sprintf("0 to %d incidents", vendorMaxCount))
	}
}

const pagerdutyURL = "https://api.pagerduty.com"

// Describe says what the check asks.
func (p *PagerDutyCheck) Describe() string {
	return fmt.Sprintf("at most %d PagerDuty incidents triggered or acknowledged on %s since the phase began", p.MaxIncidents, strings.Join(p.Services, ", "))
}

// Gate returns the phase's gate; it keeps when the phase began.
func (p *PagerDutyCheck) Gate() Gate { return &pagerdutyGate{spec: p} }

type pagerdutyGate struct {
	phaseStart
	spec *PagerDutyCheck
}

// pagerdutyPage is how many incidents a page of the list asks for (the
// API's most).
const pagerdutyPage = 100

func (g *pagerdutyGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	token := secret(g.spec.TokenEnv)
	cl := pagerdutyClient(g.spec.URL, token, env.Checker)
	opts := pagerduty.ListIncidentsOptions{
		Limit:      pagerdutyPage,
		Since:      g.since(env.Now).UTC().Format(time.RFC3339),
		Until:      env.Now.Add(time.Second).UTC().Format(time.RFC3339),
		Statuses:   []string{"triggered", "acknowledged"},
		ServiceIDs: g.spec.Services,
	}
	var open []string
	for pages := 0; pages < 100; pages++ {
		resp, err := cl.ListIncidentsWithContext(ctx, opts)
		if err != nil {
			return GateResult{Detail: unreachable("PagerDuty (incidents)", err, token)}
		}
		for _, in := range resp.Incidents {
			open = append(open, fmt.Sprintf("#%d %s (%s on %s)", in.IncidentNumber, in.Title, in.Status, in.Service.ID))
		}
		if !resp.More {
			break
		}
		opts.Offset += pagerdutyPage
	}
	if len(open) > g.spec.MaxIncidents {
		return GateResult{Detail: fmt.Sprintf("%d PagerDuty incidents triggered or acknowledged since the phase began: %s; allowed at most %d", len(open), strings.Join(open, ", "), g.spec.MaxIncidents)}
	}
	return GateResult{Pass: true, Detail: fmt.Sprintf("%d PagerDuty incidents triggered or acknowledged since the phase began (allowed at most %d)", len(open), g.spec.MaxIncidents)}
}

// pagerdutyClient is PagerDuty's client on url with the checker's
// retrying HTTP client.
func pagerdutyClient(url, token string, c *Checker) *pagerduty.Client {
	cl := pagerduty.NewClient(token, pagerduty.WithAPIEndpoint(strings.TrimSuffix(url, "/")))
	cl.HTTPClient = c.vendorClient()
	return cl
}

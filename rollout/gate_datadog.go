package rollout

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
)

// datadogKind is the datadog check: a metrics query against a threshold
// over the phase so far, and the monitors in Alert for a tag, through
// Datadog's API client (the v1 timeseries query and monitor list).
var datadogKind = GateKind{Key: "datadog", Spec: func() GateSpec { return &DatadogCheck{} }}

// DatadogCheck passes while no point of Query since the phase began is
// above Max, and at most MaxAlerting monitors tagged MonitorTag are in
// Alert. Either Query or MonitorTag, or both.
type DatadogCheck struct {
	// URL is the API's base URL for the account's site; default
	// https://api.datadoghq.com.
	URL         string   `yaml:"url" json:"url,omitempty"`
	APIKeyEnv   string   `yaml:"api_key_env" json:"api_key_env"`
	AppKeyEnv   string   `yaml:"app_key_env" json:"app_key_env"`
	Query       string   `yaml:"query" json:"query,omitempty"`
	Max         *float64 `yaml:"max" json:"max,omitempty"`
	MonitorTag  string   `yaml:"monitor_tag" json:"monitor_tag,omitempty"`
	MaxAlerting int      `yaml:"max_alerting" json:"max_alerting,omitempty"`
}

// Validate wants the two key variables set, and a query with its max or
// a monitor tag.
func (d *DatadogCheck) Validate(at func(key, format string, args ...any)) {
	serviceKeys(at, &d.URL, "https://api.datadoghq.com", "api_key_env", d.APIKeyEnv)
	secretEnv(at, "app_key_env", d.AppKeyEnv, true)
	switch {
	case d.Query == "" && d.MonitorTag == "":
		at("", "give query (with max) or monitor_tag, or both")
	case d.Query != "" && d.Max == nil:
		at("max", "missing; give the highest value the query may reach during a phase")
	case d.Query == "" && d.Max != nil:
		at("query", "missing; max bounds a query")
	}
	if d.Max != nil && (math.IsNaN(*d.Max) || math.IsInf(*d.Max, 0)) {
		outOfRange(at, "max", *d.Max, "a finite number")
	}
	if d.MaxAlerting < 0 || d.MaxAlerting > vendorMaxCount {
		outOfRange(at, "max_alerting", d.MaxAlerting, fmt.Sprintf("0 to %d monitors in Alert", vendorMaxCount))
	}
}

// Describe says what the check asks.
func (d *DatadogCheck) Describe() string {
	var parts []string
	if d.Query != "" {
		parts = append(parts, fmt.Sprintf("Datadog %q stays at most %g", d.Query, *d.Max))
	}
	if d.MonitorTag != "" {
		parts = append(parts, fmt.Sprintf("at most %d Datadog monitors tagged %s in Alert", d.MaxAlerting, d.MonitorTag))
	}
	return strings.Join(parts, "; ")
}

// Gate returns the phase's gate; it keeps when the phase began.
func (d *DatadogCheck) Gate() Gate { return &datadogGate{spec: d} }

type datadogGate struct {
	phaseStart
	spec *DatadogCheck
}

func (g *datadogGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	api, ctx := g.client(ctx, env.Checker)
	var details []string
	if g.spec.Query != "" {
		d, err := g.query(ctx, api, env.Now)
		if err != nil {
			return GateResult{Detail: err.Error()}
		}
		details = append(details, d)
	}
	if g.spec.MonitorTag != "" {
		d, err := g.monitors(ctx, api)
		if err != nil {
			return GateResult{Detail: err.Error()}
		}
		details = append(details, d)
	}
	return GateResult{Pass: true, Detail: strings.Join(details, "; ")}
}

// datadogAPI is the part of the client the gate uses.
type datadogAPI struct {
	metrics  *datadogV1.MetricsApi
	monitors *datadogV1.MonitorsApi
}

func (g *datadogGate) client(ctx context.Context, c *Checker) (datadogAPI, context.Context) {
	cfg := datadog.NewConfiguration()
	cfg.HTTPClient = c.vendorClient()
	cfg.Servers = datadog.ServerConfigurations{{URL: strings.TrimSuffix(g.spec.URL, "/")}}
	cfg.OperationServers = nil
	cl := datadog.NewAPIClient(cfg)
	ctx = context.WithValue(ctx, datadog.ContextAPIKeys, map[string]datadog.APIKey{
		"apiKeyAuth": {Key: secret(g.spec.APIKeyEnv)},
		"appKeyAuth": {Key: secret(g.spec.AppKeyEnv)},
	})
	return datadogAPI{metrics: datadogV1.NewMetricsApi(cl), monitors: datadogV1.NewMonitorsApi(cl)}, ctx
}

func (g *datadogGate) secrets() []string {
	return []string{secret(g.spec.APIKeyEnv), secret(g.spec.AppKeyEnv)}
}

// query reads the query's points from when the phase began to now and
// fails on the highest above max.
func (g *datadogGate) query(ctx context.Context, api datadogAPI, now time.Time) (string, error) {
	from := g.since(now).Unix()
	resp, _, err := api.metrics.QueryMetrics(ctx, from, now.Unix(), g.spec.Query)
	if err != nil {
		return "", fmt.Errorf("%s", unreachable("Datadog (metrics query)", err, g.secrets()...))
	}
	if resp.Status != nil && *resp.Status == "error" {
		msg := ""
		if resp.Error != nil {
			msg = *resp.Error
		}
		return "", fmt.Errorf("Datadog query %q failed: %s", g.spec.Query, msg)
	}
	peak, points := math.Inf(-1), 0
	var scope string
	for _, s := range resp.Series {
		for _, p := range s.Pointlist {
			if len(p) < 2 || p[1] == nil {
				continue
			}
			points++
			if *p[1] > peak {
				peak, scope = *p[1], s.GetScope()
			}
		}
	}
	if points == 0 {
		return fmt.Sprintf("%q: no points since the phase began (allowed at most %g)", g.spec.Query, *g.spec.Max), nil
	}
	if peak > *g.spec.Max {
		return "", fmt.Errorf("Datadog %q reached %g (%s) since the phase began; allowed at most %g", g.spec.Query, peak, scope, *g.spec.Max)
	}
	return fmt.Sprintf("%q peaked at %g over %d points (allowed at most %g)", g.spec.Query, peak, points, *g.spec.Max), nil
}

// datadogPageSize is how many monitors a page of the list asks for.
const datadogPageSize = 100

// monitors counts the monitors tagged MonitorTag whose overall state is
// Alert, page by page.
func (g *datadogGate) monitors(ctx context.Context, api datadogAPI) (string, error) {
	var alerting []string
	total := 0
	for page := int64(0); page < 100; page++ {
		ms, _, err := api.monitors.ListMonitors(ctx, *datadogV1.NewListMonitorsOptionalParameters().
			WithMonitorTags(g.spec.MonitorTag).WithPage(page).WithPageSize(datadogPageSize))
		if err != nil {
			return "", fmt.Errorf("%s", unreachable("Datadog (monitors)", err, g.secrets()...))
		}
		total += len(ms)
		for _, m := range ms {
			if m.GetOverallState() == datadogV1.MONITOROVERALLSTATES_ALERT {
				alerting = append(alerting, fmt.Sprintf("%s (%d)", m.GetName(), m.GetId()))
			}
		}
		if len(ms) < datadogPageSize {
			break
		}
	}
	if len(alerting) > g.spec.MaxAlerting {
		return "", fmt.Errorf("%d Datadog monitors tagged %s in Alert: %s; allowed at most %d", len(alerting), g.spec.MonitorTag, strings.Join(alerting, ", "), g.spec.MaxAlerting)
	}
	return fmt.Sprintf("%d of %d monitors tagged %s in Alert (allowed at most %d)", len(alerting), total, g.spec.MonitorTag, g.spec.MaxAlerting), nil
}

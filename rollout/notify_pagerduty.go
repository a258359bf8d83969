package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty"
)

// PagerDutyMaintenance puts Services in a PagerDuty maintenance window
// through each phase (the seed's "set the override in PagerDuty"): the
// window opens when the phase starts and is ended when the phase ends,
// fails, rolls back or is aborted. A window lasts at most MaxDuration, so
// that one left by a rollout that died ends by itself.
type PagerDutyMaintenance struct {
	// URL is the REST API's base URL; default https://api.pagerduty.com.
	URL      string   `yaml:"url" json:"url,omitempty"`
	TokenEnv string   `yaml:"token_env" json:"token_env"`
	Services []string `yaml:"services" json:"services"`
	// From is the email of the PagerDuty user the windows are made as
	// (the API's From header).
	From        string   `yaml:"from" json:"from"`
	MaxDuration Duration `yaml:"max_duration" json:"max_duration,omitempty"`
}

// maxMaintenance bounds a window's length.
const maxMaintenance = 7 * 24 * time.Hour

func (p *PagerDutyMaintenance) validate(at func(key, format string, args ...any)) {
	serviceKeys(at, &p.URL, pagerdutyURL, "token_env", p.TokenEnv)
	if len(p.Services) == 0 {
		at("services", "missing; list the PagerDuty service ids to put in maintenance")
	}
	if _, err := mail.ParseAddress(p.From); err != nil {
		at("from", "%q; give the email of the PagerDuty user the windows are made as", p.From)
	}
	if d := p.MaxDuration.D(); d < 0 || d != 0 && d < time.Minute || d > maxMaintenance {
		outOfRange(at, "max_duration", p.MaxDuration.D(), "1m to "+maxMaintenance.String()+" (0 or absent: 2h)")
	}
	if p.MaxDuration == 0 {
		p.MaxDuration = Duration(2 * time.Hour)
	}
}

// maintenanceNotifier keeps one maintenance window open per open phase.
// It finds its windows by their description, so a resumed rollout reuses
// the window its phase already has and ends those it left.
type maintenanceNotifier struct {
	spec    *PagerDutyMaintenance
	checker *Checker
}

// MaintenanceDescription is the description of a change's window for a
// phase: how the windows are found again.
func MaintenanceDescription(change, phase string) string {
	return maintenancePrefix(change) + phase
}

func maintenancePrefix(change string) string { return "wsfleet change " + change + " phase " }

func (m *maintenanceNotifier) Notify(ctx context.Context, n Notice) error {
	token := secret(m.spec.TokenEnv)
	cl := pagerdutyClient(m.spec.URL, token, m.checker)
	var err error
	switch {
	case n.Type == "phase" && n.Started:
		err = m.open(ctx, cl, n)
	case n.Type == "phase", n.Type == "fail", n.Type == "rollback", n.Type == "abort", n.Type == "stop", n.Type == "detach", n.Type == "end":
		err = m.endAll(ctx, cl, n.State.Change, "")
	default:
		return nil
	}
	return redactErr(err, token)
}

// ongoing lists the change's windows on the services that have not
// ended: PagerDuty's "open" filter, ongoing and future ones, because a
// window made from a clock ahead of PagerDuty's starts in its future and
// must still be found by a resume and ended with its phase.
func (m *maintenanceNotifier) ongoing(ctx context.Context, cl *pagerduty.Client, change string) ([]pagerduty.MaintenanceWindow, error) {
	opts := pagerduty.ListMaintenanceWindowsOptions{Limit: 100, Query: maintenancePrefix(change), ServiceIDs: m.spec.Services, Filter: "open"}
	var out []pagerduty.MaintenanceWindow
	for pages := 0; pages < 100; pages++ {
		resp, err := cl.ListMaintenanceWindowsWithContext(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list maintenance windows: %w", err)
		}
		for _, w := range resp.MaintenanceWindows {
			if strings.HasPrefix(w.Description, maintenancePrefix(change)) {
				out = append(out, w)
			}
		}
		if !resp.More {
			break
		}
		opts.Offset += opts.Limit
	}
	return out, nil
}

// open ends the change's windows of other phases and makes sure the
// phase has one.
func (m *maintenanceNotifier) open(ctx context.Context, cl *pagerduty.Client, n Notice) error {
	desc := MaintenanceDescription(n.State.Change, n.Phase)
	ws, err := m.ongoing(ctx, cl, n.State.Change)
	if err != nil {
		return err
	}
	have := false
	var errs []error
	for _, w := range ws {
		if w.Description == desc {
			have = true
			continue
		}
		if err := m.end(ctx, cl, w); err != nil {
			errs = append(errs, err)
		}
	}
	if have {
		return errors.Join(errs...)
	}
	svcs := make([]pagerduty.APIObject, len(m.spec.Services))
	for i, s := range m.spec.Services {
		svcs[i] = pagerduty.APIObject{ID: s, Type: "service_reference"}
	}
	start := n.At.UTC()
	_, err = cl.CreateMaintenanceWindowWithContext(ctx, m.spec.From, pagerduty.MaintenanceWindow{
		StartTime:   start.Format(time.RFC3339),
		EndTime:     start.Add(m.spec.MaxDuration.D()).Format(time.RFC3339),
		Description: desc,
		Services:    svcs,
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("create maintenance window %q: %w", desc, err))
	}
	return errors.Join(errs...)
}

// endAll ends the change's ongoing windows but keep's.
func (m *maintenanceNotifier) endAll(ctx context.Context, cl *pagerduty.Client, change, keep string) error {
	ws, err := m.ongoing(ctx, cl, change)
	if err != nil {
		return err
	}
	var errs []error
	for _, w := range ws {
		if w.Description != keep {
			errs = append(errs, m.end(ctx, cl, w))
		}
	}
	return errors.Join(errs...)
}

// end ends an open window: PagerDuty's DELETE of a window that has
// begun ends it now (one in the future is deleted).
func (m *maintenanceNotifier) end(ctx context.Context, cl *pagerduty.Client, w pagerduty.MaintenanceWindow) error {
	if err := cl.DeleteMaintenanceWindowWithContext(ctx, w.ID); err != nil {
		return fmt.Errorf("end maintenance window %s %q: %w", w.ID, w.Description, err)
	}
	return nil
}

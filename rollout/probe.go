package rollout

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"wsfleet/probe"
)

// LibProber runs probe checks with the probe library: real Bayeux clients
// through the load balancer, publishing through a node's /publish.
type LibProber struct {
	AdminToken string // authorizes /publish; never logged
	Logger     *slog.Logger
}

var _ Prober = (*LibProber)(nil)

// Start opens the clients and starts publishing.
func (l *LibProber) Start(ctx context.Context, spec ProbeSpec) (ProbeRun, error) {
	p, err := probe.Start(ctx, probe.Config{
		URL:        bayeuxURL(spec.URL),
		AdminToken: l.AdminToken,
		Clients:    spec.Clients,
		Channels:   max(spec.Channels, 1),
		Rate:       spec.Rate,
		Logger:     l.Logger,
	})
	if err != nil {
		return nil, err
	}
	return libRun{p}, nil
}

// bayeuxURL adds the Bayeux path to a bare load balancer URL.
func bayeuxURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return s
	}
	return strings.TrimRight(s, "/") + "/bayeux"
}

type libRun struct{ p *probe.Probe }

func (r libRun) Snapshot() ProbeResult                { return fromReport(r.p.Snapshot()) }
func (r libRun) Stop(ctx context.Context) ProbeResult { return fromReport(r.p.Stop(ctx)) }

func fromReport(r probe.Report) ProbeResult {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	return ProbeResult{
		Clients: r.Clients, Sent: r.Sent, Expected: r.Expected, Delivered: r.Delivered, Lost: r.Lost,
		GapP99: ms(r.Gap.P99), GapMax: ms(r.Gap.Max), Reconnect: r.Reconnects, PublishFailed: r.PublishFailed,
		Connected: r.ClientsConnected, Pending: r.Pending,
	}
}

package demo

import (
	"fmt"
	"io"
	"strings"
)

// budgetNote is " (budget N/s)" after a peak reconnect rate, when the
// plan sets drain.max_rate.
func (pl Placement) budgetNote() string {
	if pl.ReconnectBudget <= 0 {
		return ""
	}
	return fmt.Sprintf(" (budget %.0f/s)", pl.ReconnectBudget)
}

func pct(f float64) string { return fmt.Sprintf("%.0f %%", f*100) }

// histogramText is "0: 3, 1: 1480, 2: 510, 3+: 7".
func histogramText(h [4]int) string {
	return fmt.Sprintf("0: %d, 1: %d, 2: %d, 3+: %d", h[0], h[1], h[2], h[3])
}

// writeText writes the placement lines of the one-screen summary.
func (pl Placement) writeText(w io.Writer) {
	if cs := pl.CanaryShare; cs != nil {
		fmt.Fprintf(w, "  canary:    %s held min %s, mean %s of its fair share through its %s (%s, %d samples)\n",
			strings.Join(cs.Canaries, ", "), pct(cs.Min), pct(cs.Mean), cs.Window, rd(cs.To-cs.From), cs.Samples)
	} else {
		fmt.Fprintf(w, "  canary:    none sampled\n")
	}
	m := pl.Moves
	fmt.Fprintf(w, "  moves:     %.2f per client (%s), reconnects %.2f per client; outside the canary share %.2f per client; %d clients moved by the canary share, %d over their allowance\n",
		m.PerClient, histogramText(m.Histogram), pl.ReconnectsPerClient, m.OutsidePerClient, m.CanaryShareClients, m.OverAllowance)
	if b := pl.EndBalance; b != nil {
		fmt.Fprintf(w, "  balance:   %d new instances at the end, mean %.0f connections, max deviation %.1f %%\n",
			len(b.Instances), b.Mean, b.MaxDeviation)
	} else {
		fmt.Fprintf(w, "  balance:   no new instance at the end\n")
	}
}

// writeMarkdown writes the report's section on where the clients went.
func (pl Placement) writeMarkdown(w io.Writer, peak float64, shareChart bool) {
	fmt.Fprintf(w, "\n## Where the clients went\n\n")
	fmt.Fprintf(w, "Measured from the demo's own clients (each websocket's node, as the load balancer routed it) and from every node's `/admin/status`, sampled twice a second.\n\n")

	fmt.Fprintf(w, "### The canary's share\n\n")
	if cs := pl.CanaryShare; cs != nil {
		fmt.Fprintf(w, "The canary's connections over its fair share (the fleet's connections / the live instances, old and canaries), sampled through its %s (%s to %s, %d samples): **min %s, mean %s**. Canary: %s.\n\n",
			cs.Window, rd(cs.From), rd(cs.To), cs.Samples, pct(cs.Min), pct(cs.Mean), strings.Join(cs.Canaries, ", "))
		if shareChart {
			fmt.Fprintf(w, "![the canary's share of its fair share](share.svg)\n\n")
		}
	} else {
		fmt.Fprintf(w, "No canary instance was sampled during a canary phase.\n\n")
	}

	m := pl.Moves
	fmt.Fprintf(w, "### Moves per client\n\nA move is a websocket that landed on another node than the client's previous one. A client whose first move landed on a canary during the canary phase was moved by the canary share and may move once more.\n\n")
	fmt.Fprintf(w, "| moves | clients | of which moved by the canary share |\n|---|---|---|\n")
	for i, label := range []string{"0", "1", "2", "3 or more"} {
		fmt.Fprintf(w, "| %s | %d | %d |\n", label, m.Histogram[i], m.CanaryHistogram[i])
	}
	fmt.Fprintf(w, "\n![moves per client](moves.svg)\n\n")
	rows := [][2]string{
		{"clients counted", fmt.Sprint(m.Clients)},
		{"websockets counted", fmt.Sprint(m.Connections)},
		{"moves", fmt.Sprint(m.Total)},
		{"moves per client", fmt.Sprintf("%.2f", m.PerClient)},
		{"reconnects per client (the clients' own count; a reconnect to the same node is no move)", fmt.Sprintf("%.2f", pl.ReconnectsPerClient)},
		{"clients moved by the canary share", fmt.Sprint(m.CanaryShareClients)},
		{"**moves outside the canary share, per client**", fmt.Sprintf("**%.2f**", m.OutsidePerClient)},
		{"clients moved more than allowed (once; twice for the canary share's)", fmt.Sprint(m.OverAllowance)},
	}
	if m.Unrouted > 0 {
		rows = append(rows, [2]string{"clients never seen on a node", fmt.Sprint(m.Unrouted)})
	}
	if m.UnknownTargets > 0 {
		rows = append(rows, [2]string{"websockets to an address no sampled instance had", fmt.Sprint(m.UnknownTargets)})
	}
	fmt.Fprintf(w, "| figure | value |\n|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", r[0], r[1])
	}

	fmt.Fprintf(w, "\n### The end balance\n\n")
	if b := pl.EndBalance; b != nil {
		fmt.Fprintf(w, "Connections per new instance at %s (the last sample): mean %.0f, **max deviation %.1f %%**.\n\n| instance | connections | vs the mean |\n|---|---|---|\n",
			rd(b.At), b.Mean, b.MaxDeviation)
		for _, in := range b.Instances {
			dev := 0.0
			if b.Mean > 0 {
				dev = (float64(in.Connections) - b.Mean) / b.Mean * 100
			}
			fmt.Fprintf(w, "| %s (%s) | %d | %+.1f %% |\n", in.Name, in.ID, in.Connections, dev)
		}
	} else {
		fmt.Fprintf(w, "No new instance held connections at the end.\n")
	}
	fmt.Fprintf(w, "\n### Reconnect rate\n\nPeak %.0f reconnects/s over the busiest second", peak)
	if pl.ReconnectBudget > 0 {
		fmt.Fprintf(w, "; the plan's budget (drain.max_rate) is %.0f/s", pl.ReconnectBudget)
	}
	fmt.Fprintf(w, ".\n")
}

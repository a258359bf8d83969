package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"wsfleet/probe"
)

// Summary is what a demo run shows at its end and writes as summary.json
// (durations in nanoseconds, as encoding/json writes a time.Duration).
type Summary struct {
	// Mode is "rollout" (the engine) or "naive" (the seed's hand steps).
	Mode      string  `json:"mode"`
	Status    string  `json:"status"` // the change's outcome
	Clients   int     `json:"clients"`
	Channels  int     `json:"channels"`
	Rate      float64 `json:"rate"`
	TimeScale float64 `json:"time_scale"`

	Total    time.Duration  `json:"total"`  // the whole demo, setup included
	Change   time.Duration  `json:"change"` // the change itself
	Phases   []PhaseSummary `json:"phases"`
	Replaced []Replacement  `json:"replaced"`
	Fleet    []FleetMember  `json:"fleet"` // live instances at the end

	// Messages, over (message, subscriber) pairs as the probe counts them;
	// Published are the publishes the fleet acknowledged.
	Published     int64 `json:"published"`
	PublishFailed int64 `json:"publish_failed"`
	Expected      int64 `json:"expected"`
	Delivered     int64 `json:"delivered"`
	Lost          int64 `json:"lost"`
	Duplicated    int64 `json:"duplicated"`
	// Gaps: how long clients were without a working subscription.
	Gaps       int64         `json:"gaps"`
	GapP50     time.Duration `json:"gap_p50"`
	GapP99     time.Duration `json:"gap_p99"`
	GapMax     time.Duration `json:"gap_max"`
	LatencyP99 time.Duration `json:"latency_p99"`
	Reconnects int64         `json:"reconnects"`
	// PeakReconnectRate is reconnects per second over the busiest second.
	PeakReconnectRate float64        `json:"peak_reconnect_rate"`
	APICalls          map[string]int `json:"api_calls,omitempty"`
	// Placement is where the clients' connections went (placement.go):
	// measured and shown, never a reason for a non-zero exit.
	Placement Placement `json:"placement"`
	// TailGaps are the longest client gaps, longest first, with what the
	// change was doing when each began (gaps.go).
	TailGaps []TailGap `json:"tail_gaps,omitempty"`
	listGaps int       // how many of them WriteText lists
	// Scale is how a run split over processes was split and what its
	// processes used (scale.go); absent when everything ran in the
	// demo's process.
	Scale *Scale `json:"scale,omitempty"`

	Problems []string `json:"problems,omitempty"`
	Files    Files    `json:"files"`
}

// PhaseSummary is one phase of the change, on the demo's clock.
type PhaseSummary struct {
	Name   string        `json:"name"`
	Status string        `json:"status"`
	Start  time.Duration `json:"start"`
	End    time.Duration `json:"end"`
}

// FleetMember is a live instance at the end: the image the cloud says it
// runs, and the one its node reports about itself.
type FleetMember struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Lifecycle string `json:"lifecycle"`
	Image     string `json:"image"`
	NodeImage string `json:"node_image"`
}

// Files are where the demo wrote its output.
type Files struct {
	Dir       string `json:"dir"`
	Report    string `json:"report"`
	Events    string `json:"events"`
	Chart     string `json:"chart"`
	ChartData string `json:"chart_data"`
	Summary   string `json:"summary"`
	// ShareChart is the canary's share through its bake (absent when
	// no canary was sampled), MovesChart the moves-per-client histogram.
	ShareChart string `json:"share_chart,omitempty"`
	MovesChart string `json:"moves_chart"`
}

// ChartData is chart.json: what chart.svg was drawn from.
type ChartData struct {
	Title    string      `json:"title"`
	NewImage string      `json:"new_image"`
	Samples  []Sample    `json:"samples"`
	Phases   []PhaseMark `json:"phases"`
	// Canaries are the canary instances' ids (their lines are drawn
	// thicker); Share is the canary's share of its fair share over the
	// canary phase (share.svg).
	Canaries []string     `json:"canaries,omitempty"`
	Share    []SharePoint `json:"share,omitempty"`
}

// OK reports whether the demo kept its promise: every instance on the new
// image (by the cloud and by the node itself), and, in the normal mode,
// the change succeeded with no message lost.
func (s *Summary) OK() bool { return len(s.Problems) == 0 }

func (d *run) summarize(mode string, res changeResult, rep probe.Report, fleet []FleetMember, changeStart, changeEnd time.Duration) *Summary {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	_, replaced, peak, _ := d.samp.result()
	if len(res.replaced) > 0 {
		replaced = res.replaced // the engine's own record, when it ran
	}
	s := &Summary{
		Mode: mode, Status: res.status, Clients: d.cfg.Clients, Channels: d.cfg.Channels, Rate: d.cfg.Rate, TimeScale: d.cfg.TimeScale,
		Total: d.since(), Change: changeEnd - changeStart, Phases: res.phases, Replaced: replaced, Fleet: fleet,
		Published: rep.Sent, PublishFailed: rep.PublishFailed, Expected: rep.Expected, Delivered: rep.Delivered,
		Lost: rep.Lost, Duplicated: rep.Duplicated, Gaps: rep.Gap.Count, GapP50: ms(rep.Gap.P50), GapP99: ms(rep.Gap.P99), GapMax: ms(rep.Gap.Max),
		LatencyP99: ms(rep.Latency.P99), Reconnects: rep.Reconnects, PeakReconnectRate: peak, APICalls: res.calls,
	}
	s.Placement = d.placement(res.phases, replaced)
	s.TailGaps = tailGaps(d.tail, d.start, changeStart, d.phase.timeline(), d.gapAt)
	s.listGaps = d.cfg.ListGaps
	if s.Clients > 0 {
		s.Placement.ReconnectsPerClient = float64(s.Reconnects) / float64(s.Clients)
	}
	if res.err != nil {
		s.Problems = append(s.Problems, "the change: "+res.err.Error())
	} else if res.status != "succeeded" {
		s.Problems = append(s.Problems, "the change ended "+res.status)
	}
	if n := rep.Errors["generator_failed"]; n > 0 {
		s.Problems = append(s.Problems, fmt.Sprintf("%d generator processes gave no figures (their logs: nodes/generator-*.log)", n))
	}
	if mode == "rollout" && s.Lost > 0 {
		s.Problems = append(s.Problems, fmt.Sprintf("%d messages lost", s.Lost))
	}
	if rep.ClientsSubscribed < d.cfg.Clients {
		s.Problems = append(s.Problems, fmt.Sprintf("only %d of %d clients ever subscribed", rep.ClientsSubscribed, d.cfg.Clients))
	}
	var notNew []string
	for _, m := range fleet {
		if m.Image != newImage || m.NodeImage != newImage {
			notNew = append(notNew, fmt.Sprintf("%s (%s: cloud %s, node %s)", orDash(m.Name), m.ID, m.Image, m.NodeImage))
		}
	}
	if len(notNew) > 0 {
		s.Problems = append(s.Problems, "not on "+newImage+": "+strings.Join(notNew, ", "))
	}
	if len(fleet) != 8 {
		s.Problems = append(s.Problems, fmt.Sprintf("%d live instances at the end, want 8", len(fleet)))
	}
	return s
}

// writeFiles writes report.md, chart.svg and summary.json into Out (the
// event log is already there).
func (d *run) writeFiles(s *Summary, res changeResult) error {
	dir := d.cfg.Out
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	s.Files = Files{Dir: abs, Report: filepath.Join(abs, "report.md"), Events: filepath.Join(abs, "events.jsonl"),
		Chart: filepath.Join(abs, "chart.svg"), ChartData: filepath.Join(abs, "chart.json"), Summary: filepath.Join(abs, "summary.json"),
		MovesChart: filepath.Join(abs, "moves.svg")}

	samples, _, _, _ := d.samp.result()
	var marks []PhaseMark
	for _, ph := range s.Phases {
		marks = append(marks, PhaseMark{Name: ph.Name, Start: ph.Start, End: ph.End})
	}
	var chart bytes.Buffer
	title := fmt.Sprintf("wsfleet demo (%s): connections per instance, %s -> %s, %d clients", s.Mode, oldImage, newImage, s.Clients)
	data := ChartData{Title: title, NewImage: newImage, Samples: samples, Phases: marks}
	if cs := s.Placement.CanaryShare; cs != nil {
		data.Canaries, data.Share = cs.canaryIDs, cs.Points
	}
	if err := WriteChartData(&chart, "svg", data); err != nil {
		return err
	}
	if err := os.WriteFile(s.Files.Chart, chart.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := s.writePlacementCharts(); err != nil {
		return err
	}
	// The chart's data, so that it can be drawn again (another size, PNG).
	cd, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("chart data: %w", err)
	}
	if err := os.WriteFile(s.Files.ChartData, cd, 0o644); err != nil {
		return fmt.Errorf("write chart data: %w", err)
	}

	var rep bytes.Buffer
	s.WriteMarkdown(&rep)
	if len(res.report) > 0 {
		rep.WriteString("\n## The engine's report\n\n")
		// The engine's headings move one level down under the demo's.
		for _, line := range strings.SplitAfter(string(res.report), "\n") {
			if strings.HasPrefix(line, "#") {
				line = "##" + line
			}
			rep.WriteString(line)
		}
	}
	if err := os.WriteFile(s.Files.Report, rep.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := os.WriteFile(s.Files.Summary, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

func rd(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// WriteText writes the summary a person reads at the end of the run.
func (s *Summary) WriteText(w io.Writer) {
	verdict := "OK"
	if !s.OK() {
		verdict = "NOT OK"
	}
	how := "the rollout engine (launch before terminate, paced drain)"
	if s.Mode == "naive" {
		how = "the seed's hand steps (terminate, then let the group replace; no drain)"
	}
	fmt.Fprintf(w, "\nwsfleet demo: %s -> %s on group %s, by %s: %s (change %s)\n", oldImage, newImage, groupName, how, s.Status, verdict)
	fmt.Fprintf(w, "  phases:")
	for _, ph := range s.Phases {
		fmt.Fprintf(w, "  %s %s (%s)", ph.Name, rd(ph.End-ph.Start), ph.Status)
	}
	fmt.Fprintf(w, "\n  took:      change %s, whole demo %s (time scale %g)\n", rd(s.Change), rd(s.Total), s.TimeScale)
	var repl []string
	for _, r := range s.Replaced {
		if len(r.Old) > 0 && len(r.New) > 0 {
			repl = append(repl, r.Name)
		}
	}
	fmt.Fprintf(w, "  replaced:  %d instances (%s); fleet now %s\n", len(repl), strings.Join(repl, " "), fleetLine(s.Fleet))
	fmt.Fprintf(w, "  messages:  %d published (%d refused), %d of %d deliveries made, %d lost, %d duplicates dropped\n",
		s.Published, s.PublishFailed, s.Delivered, s.Expected, s.Lost, s.Duplicated)
	fmt.Fprintf(w, "  clients:   %d over %d rooms; gaps p50 %s, p99 %s, max %s (%d gaps); %d reconnects, peak %.0f/s%s; delivery p99 %s\n",
		s.Clients, s.Channels, rd(s.GapP50), rd(s.GapP99), rd(s.GapMax), s.Gaps, s.Reconnects, s.PeakReconnectRate, s.Placement.budgetNote(), rd(s.LatencyP99))
	s.Placement.writeText(w)
	s.writeTailText(w, s.listGaps)
	s.Scale.writeText(w, s.Change)
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  problem:   %s\n", p)
	}
	share := ""
	if s.Files.ShareChart != "" {
		share = ", share.svg"
	}
	fmt.Fprintf(w, "  files:     %s (report.md, events.jsonl, chart.svg%s, moves.svg, chart.json, summary.json)\n", s.Files.Dir, share)
}

// fleetLine counts live instances per image, by the nodes' own word.
func fleetLine(f []FleetMember) string {
	n := map[string]int{}
	for _, m := range f {
		n[m.NodeImage]++
	}
	var keys []string
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d on %s", n[k], k))
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// WriteMarkdown writes the demo's report.
func (s *Summary) WriteMarkdown(w io.Writer) {
	title := "the rollout engine"
	if s.Mode == "naive" {
		title = "the seed's hand steps (naive)"
	}
	fmt.Fprintf(w, "# wsfleet demo: %s -> %s by %s\n\n", oldImage, newImage, title)
	verdict := "every instance on the new image"
	if s.Mode == "rollout" {
		verdict += ", no message lost"
	}
	if s.OK() {
		fmt.Fprintf(w, "**Result: %s; %s.**\n\n", s.Status, verdict)
		if s.Mode == "naive" {
			fmt.Fprintf(w, "What the seed's way cost the chat clients: %d deliveries lost, every client cut off (gap p99 %s, max %s), %.0f reconnects per second at the peak.\n\n",
				s.Lost, rd(s.GapP99), rd(s.GapMax), s.PeakReconnectRate)
		}
	} else {
		fmt.Fprintf(w, "**Result: %s; not clean:**\n\n", s.Status)
		for _, p := range s.Problems {
			fmt.Fprintf(w, "- %s\n", p)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d chat clients over %d rooms (`/api/v1/rooms/{id}/chatMessages`) through the load balancer, %g messages per second published; plan waits at time scale %g.\n\n",
		s.Clients, s.Channels, s.Rate, s.TimeScale)
	fmt.Fprintf(w, "![connections per instance](chart.svg)\n\n")
	fmt.Fprintf(w, "## Phases\n\n| phase | status | from | to | took |\n|---|---|---|---|---|\n")
	for _, ph := range s.Phases {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", ph.Name, ph.Status, rd(ph.Start), rd(ph.End), rd(ph.End-ph.Start))
	}
	fmt.Fprintf(w, "\nThe change took %s; the whole demo (fleet start, clients, change, settling) %s.\n\n", rd(s.Change), rd(s.Total))
	fmt.Fprintf(w, "## What the clients saw\n\n| figure | value |\n|---|---|\n")
	rows := [][2]string{
		{"messages published (acknowledged)", fmt.Sprint(s.Published)},
		{"publishes refused or unanswered", fmt.Sprint(s.PublishFailed)},
		{"deliveries expected", fmt.Sprint(s.Expected)},
		{"deliveries made", fmt.Sprint(s.Delivered)},
		{"**deliveries lost**", fmt.Sprintf("**%d**", s.Lost)},
		{"duplicates (dropped by sequence number)", fmt.Sprint(s.Duplicated)},
		{"client gaps", fmt.Sprint(s.Gaps)},
		{"gap p50", rd(s.GapP50)},
		{"gap p99", rd(s.GapP99)},
		{"gap max", rd(s.GapMax)},
		{"reconnects", fmt.Sprint(s.Reconnects)},
		{"peak reconnect rate", fmt.Sprintf("%.0f/s%s", s.PeakReconnectRate, s.Placement.budgetNote())},
		{"delivery latency p99", rd(s.LatencyP99)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", r[0], r[1])
	}
	s.Placement.writeMarkdown(w, s.PeakReconnectRate, s.Files.ShareChart != "")
	s.writeTailMarkdown(w)
	if s.Scale != nil {
		fmt.Fprintf(w, "\n## Processes\n\n```\n")
		s.Scale.writeText(w, s.Change)
		fmt.Fprintf(w, "```\n")
	}
	fmt.Fprintf(w, "\n## Instances\n\n| name | old instance(s) | new instance(s) |\n|---|---|---|\n")
	for _, r := range s.Replaced {
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.Name, orDash(strings.Join(r.Old, ", ")), orDash(strings.Join(r.New, ", ")))
	}
	fmt.Fprintf(w, "\nAt the end: %s (each node's own /admin/status).\n", fleetLine(s.Fleet))
	if len(s.APICalls) > 0 {
		var keys []string
		total := 0
		for k, v := range s.APICalls {
			keys = append(keys, k)
			total += v
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.APICalls[k]))
		}
		fmt.Fprintf(w, "\nAWS API calls by the change: %d (%s).\n", total, strings.Join(parts, ", "))
	}
}

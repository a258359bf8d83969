package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// WriteSoakJSON writes a soak's result, samples included, as indented
// JSON.
func WriteSoakJSON(w io.Writer, r *SoakResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSoakSummary prints a soak's verdict, its flatness checks and its
// totals.
func WriteSoakSummary(w io.Writer, r *SoakResult) {
	fmt.Fprintf(w, "soak: %v sessions, %v channels, %gs hold after a %.0fs ramp, %v messages/s (%v deliveries/s), %v sessions replaced/s; load %.1f → %.1f\n",
		r.Settings["sessions"], r.Settings["channels"], r.Settings["duration_s"], r.RampSeconds,
		r.Settings["publish_per_s"], r.Settings["deliveries_per_s"], r.Settings["churn_per_s"], r.Load1Start, r.Load1End)
	for _, f := range r.Flat {
		verdict := "flat"
		if !f.Flat {
			verdict = "NOT flat"
		}
		limit := fmt.Sprintf("±%g%%", f.LimitPct)
		if f.Floor > 0 {
			limit += fmt.Sprintf(" or ±%g", f.Floor)
		}
		fmt.Fprintf(w, "  %-10s %s: median %.0f (mean %.0f), Theil–Sen slope %+.1f/min, drift %+.0f (%+.2f%% of the median, limit %s) over %.0f–%.0fs, %d samples%s\n",
			f.Series, verdict, f.Median, f.Mean, f.SlopePerMin, f.Drift, f.DriftPct, limit, f.From, f.To, f.Samples, note(f.Note))
	}
	t := r.Totals
	fmt.Fprintf(w, "  published %d (failed %d), delivered %d; replaced %d (left %d, dropped %d, reconnected with the old clientId %d)\n",
		t.Published, t.PublishFail, t.Delivered, t.Churned, t.Left, t.Abandoned, t.Reconnected)
	fmt.Fprintf(w, "  lost %d, duplicated %d, without the last message %d; open failed %d, reconnect failed %d, closed by the node %d\n",
		t.Lost, t.Duplicated, t.TailMissing, t.OpenFailed, t.ReconnectFailed, t.Closed)
	var ne []string
	for _, name := range nodeErrorMetrics {
		ne = append(ne, fmt.Sprintf("%s %.0f", name, t.NodeErrors[name]))
	}
	for _, series := range slices.Sorted(maps.Keys(t.NodeErrors)) {
		if !slices.Contains(nodeErrorMetrics, series) {
			ne = append(ne, fmt.Sprintf("%s %.0f", series, t.NodeErrors[series]))
		}
	}
	fmt.Fprintf(w, "  node errors: %s\n", strings.Join(ne, ", "))
	if t.FirstFailure != "" {
		fmt.Fprintf(w, "  first failure: %s\n", t.FirstFailure)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	fmt.Fprintf(w, "verdict: %s\n", r.Verdict)
}

func note(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// ReadSoakJSON reads a soak's result as WriteSoakJSON wrote it.
func ReadSoakJSON(r io.Reader) (*SoakResult, error) {
	var res SoakResult
	dec := json.NewDecoder(r)
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("read soak result: %w", err)
	}
	if len(res.Samples) == 0 {
		return nil, fmt.Errorf("read soak result: no samples")
	}
	return &res, nil
}

// Rejudge judges a recorded soak again with this version's rule (its
// flatness checks, errors and verdict replaced), at the flat limit the run
// was made with (5 % when it recorded none).
func Rejudge(res *SoakResult) {
	limit := 5.0
	if v, ok := res.Settings["flat_limit_pct"].(float64); ok && v > 0 && v <= 100 {
		limit = v
	}
	res.Flat, res.Errors, res.Pass, res.Verdict = nil, nil, false, ""
	judgeSoak(res, limit)
}

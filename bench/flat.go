package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// FlatCheck is the flatness of one series over the second half of a
// soak's hold.
//
// The rule: fit a line through the samples taken in the second half of
// the hold (time on x) by the Theil–Sen estimator (the median of the
// slopes between every pair of samples), take its drift (the slope times
// the window's length: how far the line climbs or falls across the
// window), and call the series flat when |drift| ≤ LimitPct % of the
// series' median over the window, or ≤ Floor when that is more (a count
// as small as the node's 20-odd goroutines moves by one or two with any
// burst of work; a leak of one per replaced session is thousands). The
// first half is warm-up (the heap reaching its working size, the
// abandoned sessions of the first minute expiring); a leak shows as a
// steady climb in the second half however noisy the samples, while a
// sawtooth (garbage collection, churn) fits a level line. Theil–Sen and
// not least squares: the goroutines of a node under churn sit at their
// level in most samples and jump a hundredfold in a few (a burst of
// reconnects caught by the sample); least squares lets where those few
// fall tilt the line (the first 30-minute soak, with the machine's load
// rising from 0 to 35, read +45 % on goroutines whose median was 23
// from the first window to the last), the median of pairwise slopes
// ignores up to some 29 % of such samples. At least four samples are
// needed, else the check is not flat.
type FlatCheck struct {
	Series string `json:"series"`
	// From and To are the window (seconds since the start); Samples how
	// many fell in it.
	From    float64 `json:"from_s"`
	To      float64 `json:"to_s"`
	Samples int     `json:"samples"`
	Mean    float64 `json:"mean"`
	Median  float64 `json:"median"`
	// SlopePerMin is the fitted line's slope per minute; Drift its rise
	// over the window; DriftPct that in percent of Median.
	SlopePerMin float64 `json:"slope_per_min"`
	Drift       float64 `json:"drift"`
	DriftPct    float64 `json:"drift_pct"`
	LimitPct    float64 `json:"limit_pct"`
	Floor       float64 `json:"floor,omitempty"`
	Flat        bool    `json:"flat"`
	Note        string  `json:"note,omitempty"`
}

// minFlatSamples is the fewest samples a window is judged on.
const minFlatSamples = 4

// Flatness applies the rule of FlatCheck to a series ys sampled at times
// ts (seconds, ascending): the window is the second half of [ts[0],
// ts[last]].
func Flatness(series string, ts, ys []float64, limitPct, floor float64) FlatCheck {
	fc := FlatCheck{Series: series, LimitPct: limitPct, Floor: floor}
	if len(ts) == 0 || len(ts) != len(ys) {
		fc.Note = "no samples"
		return fc
	}
	mid := (ts[0] + ts[len(ts)-1]) / 2
	var wt, wy []float64
	for i, t := range ts {
		if t >= mid {
			wt = append(wt, t)
			wy = append(wy, ys[i])
		}
	}
	fc.Samples = len(wt)
	if len(wt) > 0 {
		fc.From, fc.To = wt[0], wt[len(wt)-1]
	}
	if len(wt) < minFlatSamples {
		fc.Note = fmt.Sprintf("%d samples in the second half, fewer than %d", len(wt), minFlatSamples)
		return fc
	}
	slope := theilSen(wt, wy)
	_, fc.Mean = linearSlope(wt, wy)
	fc.Median = median(slices.Clone(wy))
	fc.SlopePerMin = slope * 60
	fc.Drift = slope * (fc.To - fc.From)
	if fc.Median == 0 {
		fc.Note = "median is zero"
		return fc
	}
	fc.DriftPct = 100 * fc.Drift / fc.Median
	fc.Flat = math.Abs(fc.Drift) <= max(limitPct/100*math.Abs(fc.Median), floor)
	return fc
}

// maxTheilSen bounds the samples theilSen pairs (n² / 2 slopes): a longer
// series is thinned evenly to this many first.
const maxTheilSen = 1000

// theilSen returns the Theil–Sen slope of ys over xs: the median of the
// slopes of every pair of samples with distinct x; 0 when there is none.
func theilSen(xs, ys []float64) float64 {
	if n := len(xs); n > maxTheilSen {
		tx, ty := make([]float64, maxTheilSen), make([]float64, maxTheilSen)
		for i := range tx {
			j := i * (n - 1) / (maxTheilSen - 1)
			tx[i], ty[i] = xs[j], ys[j]
		}
		xs, ys = tx, ty
	}
	slopes := make([]float64, 0, len(xs)*(len(xs)-1)/2)
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if dx := xs[j] - xs[i]; dx != 0 {
				slopes = append(slopes, (ys[j]-ys[i])/dx)
			}
		}
	}
	if len(slopes) == 0 {
		return 0
	}
	return median(slopes) // sorts slopes, ours
}

// linearSlope returns the least-squares slope of ys over xs and the mean
// of ys; the slope is 0 when every x is the same.
func linearSlope(xs, ys []float64) (slope, meanY float64) {
	n := float64(len(xs))
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx float64
	for i := range xs {
		dx := xs[i] - mx
		sxy += dx * (ys[i] - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0, my
	}
	return sxy / sxx, my
}

// parseMetrics reads the Prometheus text format and returns every
// series' value by its name, summed over its labels, and by the series
// with its labels as written ("name{label=\"v\"}").
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, series, rest, err := splitSeries(line)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: value of %q: %w", line, err)
		}
		out[name] += v
		if series != name {
			out[series] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// splitSeries splits a sample line into its metric name, its series (the
// name and labels as written) and what follows (value, timestamp). Label
// values are quoted and may hold spaces, braces and escaped quotes.
func splitSeries(line string) (name, series, rest string, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", "", "", fmt.Errorf("metrics: no value in %q", line)
	}
	name = line[:i]
	if line[i] != '{' {
		return name, name, line[i:], nil
	}
	inQuote := false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case inQuote && c == '\\':
			j++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return name, line[:j+1], line[j+1:], nil
		}
	}
	return "", "", "", fmt.Errorf("metrics: unterminated labels in %q", line)
}

// nodeErrorMetrics are the node's counters that must stay at zero in a
// soak: errors answered to clients, slow consumers cut off, broker
// failures, failed handshakes, requests a limit refused, replays refused.
var nodeErrorMetrics = []string{
	"wsfleet_errors_total",
	"wsfleet_slow_consumers_total",
	"wsfleet_broker_errors_total",
	`wsfleet_handshakes_total{outcome="failed"}`,
	"wsfleet_limited_total",
	"wsfleet_replays_over_limit_total",
}

// nodeErrors picks the node's error counters out of its metrics (nil:
// none read): each of nodeErrorMetrics, and the labelled series of those
// that are not zero (which code, which limit).
func nodeErrors(m map[string]float64) map[string]float64 {
	if m == nil {
		return nil
	}
	out := map[string]float64{}
	for _, name := range nodeErrorMetrics {
		out[name] = m[name]
	}
	for series, v := range m {
		name, _, labelled := strings.Cut(series, "{")
		if !labelled || v == 0 || out[series] != 0 {
			continue
		}
		if _, judged := out[name]; judged {
			out[series] = v
		}
	}
	return out
}

// nodeErrorSum is the sum of the node's error counters in e (the judged
// names only, not their labelled series twice).
func nodeErrorSum(e map[string]float64) float64 {
	var n float64
	for _, name := range nodeErrorMetrics {
		n += e[name]
	}
	return n
}

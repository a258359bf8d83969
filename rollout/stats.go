package rollout

import (
	"math"
	"sort"
)

// MannWhitney is the outcome of a two-sided Mann-Whitney U test of two
// samples, the rank test Kayenta's judge compares a canary's metric with
// its baseline's by: it asks whether one sample tends to be larger than
// the other, with no assumption about their distributions.
type MannWhitney struct {
	// U is the statistic of the first sample: the number of pairs (x, y)
	// with x > y, ties counting one half.
	U float64
	// Z is the normal approximation's standard score of U, after the
	// continuity correction; P the two-sided p-value.
	Z, P float64
	// Shift is the Hodges-Lehmann estimate of how much larger the first
	// sample is than the second: the median of every difference x - y.
	Shift float64
}

// MannWhitneyU tests x against y with the normal approximation, a
// correction for ties (every group of t equal values takes t³-t out of
// the variance) and a continuity correction of one half, as SciPy's
// mannwhitneyu(x, y, method="asymptotic") does. With no variance left
// (every value equal) the samples cannot be told apart: P is 1. Either
// sample empty gives P 1 and U 0.
func MannWhitneyU(x, y []float64) MannWhitney {
	n1, n2 := float64(len(x)), float64(len(y))
	if len(x) == 0 || len(y) == 0 {
		return MannWhitney{P: 1}
	}
	type obs struct {
		v     float64
		first bool
	}
	all := make([]obs, 0, len(x)+len(y))
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var r1, ties float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		// positions i..j-1 share the mean of ranks i+1..j
		rank := float64(i+1+j) / 2
		for k := i; k < j; k++ {
			if all[k].first {
				r1 += rank
			}
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
	}
	n := n1 + n2
	u1 := r1 - n1*(n1+1)/2
	mu := n1 * n2 / 2
	variance := n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1)))
	out := MannWhitney{U: u1, P: 1, Shift: hodgesLehmann(x, y)}
	if variance <= 0 {
		return out
	}
	u := math.Max(u1, n1*n2-u1)
	out.Z = (u - mu - 0.5) / math.Sqrt(variance)
	out.P = math.Min(1, math.Erfc(out.Z/math.Sqrt2)) // 2 × the normal's upper tail
	if u1 < mu {
		out.Z = -out.Z
	}
	return out
}

// hodgesLehmann is the median of x[i] - y[j] over every pair.
func hodgesLehmann(x, y []float64) float64 {
	d := make([]float64, 0, len(x)*len(y))
	for _, a := range x {
		for _, b := range y {
			d = append(d, a-b)
		}
	}
	return median(d)
}

// median of v (sorted in place); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

// mean of v; 0 for none.
func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// mannWhitneyBestP is the smallest two-sided p-value MannWhitneyU can give
// samples of n1 and n2 values (every one of the first above every one of
// the second, no ties): when it is not below a test's alpha, the samples
// are too few for the test to tell them apart whatever they hold.
func mannWhitneyBestP(n1, n2 int) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	a, b := float64(n1), float64(n2)
	z := (a*b/2 - 0.5) / math.Sqrt(a*b*(a+b+1)/12)
	return math.Min(1, math.Erfc(z/math.Sqrt2))
}

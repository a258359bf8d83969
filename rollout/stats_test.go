package rollout

import (
	"math"
	"testing"
)

// TestMannWhitneyU checks the test against values known independently of
// this code: SciPy's documented example, and a sample with ties worked
// out by hand below.
func TestMannWhitneyU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		x, y    []float64
		u, z, p float64
		shift   float64
	}{
		// SciPy's mannwhitneyu documentation: the ages of males and
		// females; method="asymptotic" gives U1 = 17 and p =
		// 0.11134688653314041. By hand: no ties, mu = 5·4/2 = 10,
		// sigma = sqrt(5·4·10/12) = 4.0825, z = (17-10-0.5)/4.0825.
		{name: "scipy example", x: []float64{19, 22, 16, 29, 24}, y: []float64{20, 11, 17, 12},
			u: 17, z: 1.5921683328090657, p: 0.11134688653314041, shift: 7},
		// By hand, with ties. Ranks: 1→1; 2,2,2→3; 3×5→7; 4×3→11;
		// 5×3→14. R1 = 1+3+3+7+7+7+11 = 39, U1 = 39 - 7·8/2 = 11,
		// U2 = 56-11 = 45. Ties: 3 groups of 3 (24 each) and one of 5
		// (120): 192. Var = 7·8/12 · (16 - 192/(15·14)) = 70.4.
		// z = (45 - 28 - 0.5)/sqrt(70.4) = 1.9665, p = erfc(z/√2).
		{name: "ties by hand", x: []float64{1, 2, 2, 3, 3, 3, 4}, y: []float64{2, 3, 3, 4, 4, 5, 5, 5},
			u: 11, z: -1.966516590319034, p: 0.04923896783855342, shift: -1},
		// Mostly ties (a counter at 0 on every old node): the canary's
		// few positive values still stand out.
		{name: "zeros against a few failures", x: []float64{0, 0, 0, 1, 2, 0, 1, 3, 0, 2}, y: make([]float64, 20),
			u: 150, z: 3.355749377221999, p: 0.0007915026085146216, shift: 0.5},
		// Every value equal: no variance, nothing to tell apart.
		{name: "all equal", x: []float64{1, 1, 1}, y: []float64{1, 1}, u: 3, z: 0, p: 1},
		{name: "empty", x: nil, y: []float64{1}, u: 0, z: 0, p: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := MannWhitneyU(tc.x, tc.y)
			near := func(what string, g, w float64) {
				if math.Abs(g-w) > 1e-12*math.Max(1, math.Abs(w)) {
					t.Errorf("%s = %.17g, want %.17g", what, g, w)
				}
			}
			near("U", got.U, tc.u)
			near("Z", got.Z, tc.z)
			near("P", got.P, tc.p)
			near("Shift", got.Shift, tc.shift)
		})
	}
}

// TestMannWhitneySymmetric: swapping the samples gives the other U, the
// same p, and the opposite shift.
func TestMannWhitneySymmetric(t *testing.T) {
	x, y := []float64{3, 1, 4, 1, 5, 9, 2, 6}, []float64{2, 7, 1, 8, 2, 8}
	a, b := MannWhitneyU(x, y), MannWhitneyU(y, x)
	if a.U+b.U != float64(len(x)*len(y)) || math.Abs(a.P-b.P) > 1e-15 || a.Shift != -b.Shift || a.Z != -b.Z {
		t.Errorf("x,y %+v; y,x %+v", a, b)
	}
}

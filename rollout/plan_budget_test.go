package rollout

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDrainMaxRateDefault checks that a plan without drain.max_rate (or
// with 0) gets the default reconnect budget the take-over benchmark
// supports, that a plan's own figure stays, and that `plan` prints the
// budget in force.
func TestDrainMaxRateDefault(t *testing.T) {
	for _, c := range []struct {
		name, drain string
		want        float64
	}{
		{"absent", "", DefaultDrainMaxRate},
		{"no max_rate", "drain: {window: 30s, deadline: 30s}\n", DefaultDrainMaxRate},
		{"zero", "drain: {window: 30s, max_rate: 0, deadline: 30s}\n", DefaultDrainMaxRate},
		{"given", "drain: {window: 30s, max_rate: 200, deadline: 30s}\n", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := []byte("change: c\ngroup: gitter-ws\nimage: ami-new\n" + c.drain + "phases:\n  - {name: all, replace: rest}\n")
			p, err := ParsePlan(data)
			if err != nil {
				t.Fatal(err)
			}
			if p.Drain.MaxRate != c.want {
				t.Fatalf("drain.max_rate = %v, want %v", p.Drain.MaxRate, c.want)
			}
			cloud := newMemCloud(func() time.Time { return t0 }, 4, "ami-old")
			p, g, steps, err := Prepare(context.Background(), cloud, data)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			RenderPlan(&buf, p, g, steps)
			if want := fmt.Sprintf("at most %g reconnects/s fleet-wide", c.want); !strings.Contains(buf.String(), want) {
				t.Errorf("plan output lacks %q:\n%s", want, buf.String())
			}
		})
	}
}

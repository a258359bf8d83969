package demo

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/plotter"
)

func TestWriteChart(t *testing.T) {
	var samples []Sample
	for i := 0; i < 60; i++ {
		at := time.Duration(i) * time.Second
		old := 100 - i
		if old < 0 {
			old = 0
		}
		samples = append(samples, Sample{At: at, Instances: []InstanceSample{
			{ID: "i-1", Name: "ws-01", Image: "ami-old", Connections: old},
			{ID: "i-2", Name: "ws-01", Image: "ami-new", Connections: 100 - old},
		}})
	}
	var buf bytes.Buffer
	err := WriteChart(&buf, "test", "ami-new", samples, []PhaseMark{{Name: "canary", Start: 0, End: 20 * time.Second}, {Name: "first half", Start: 20 * time.Second, End: 60 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	for _, want := range []string{"<svg", "canary", "first half", "ws-01 ami-old", "ws-01 ami-new"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if os.Getenv("WSFLEET_KEEP_CHART") != "" {
		os.WriteFile(os.Getenv("WSFLEET_KEEP_CHART"), buf.Bytes(), 0o644)
	}
}

// TestRenderChartData draws a demo's chart.json again beside it, for a
// look at a real run's chart: WSFLEET_CHART_DATA=path/chart.json, and
// WSFLEET_CHART_FORMAT=svg|png (default png).
func TestRenderChartData(t *testing.T) {
	path := os.Getenv("WSFLEET_CHART_DATA")
	if path == "" {
		t.Skip("set WSFLEET_CHART_DATA to a demo's chart.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cd ChartData
	if err := json.Unmarshal(b, &cd); err != nil {
		t.Fatal(err)
	}
	format := os.Getenv("WSFLEET_CHART_FORMAT") // default png
	if format == "" {
		format = "png"
	}
	f, err := os.Create(strings.TrimSuffix(path, ".json") + "." + format)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteChartAs(f, format, cd.Title, cd.NewImage, cd.Samples, cd.Phases); err != nil {
		t.Fatal(err)
	}
}

func TestFlatten(t *testing.T) {
	in := plotter.XYs{{X: 0, Y: 5}, {X: 1, Y: 5}, {X: 2, Y: 5}, {X: 3, Y: 4}, {X: 4, Y: 0}, {X: 5, Y: 0}, {X: 6, Y: 0}}
	got := flatten(in)
	want := plotter.XYs{{X: 0, Y: 5}, {X: 2, Y: 5}, {X: 3, Y: 4}, {X: 4, Y: 0}, {X: 6, Y: 0}}
	if len(got) != len(want) {
		t.Fatalf("flatten: %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("flatten: %v, want %v", got, want)
		}
	}
}

// TestWriteChartCanary: the canary's line is labelled and drawn thicker
// than the others, so that an empty canary is seen to be empty.
func TestWriteChartCanary(t *testing.T) {
	var samples []Sample
	for i := range 10 {
		samples = append(samples, Sample{At: time.Duration(i) * time.Second, Instances: []InstanceSample{
			{ID: "i-1", Name: "ws-01", Image: "ami-old", Connections: 50},
			{ID: "i-9", Name: "canary", Image: "ami-new", Connections: i},
		}})
	}
	draw := func(canaries []string) string {
		var buf bytes.Buffer
		if err := WriteChartData(&buf, "svg", ChartData{Title: "t", NewImage: "ami-new", Samples: samples, Canaries: canaries}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	plain, marked := draw(nil), draw([]string{"i-9"})
	if strings.Contains(plain, "(canary)") || !strings.Contains(marked, "canary ami-new (canary)") {
		t.Errorf("canary label: without canaries %v, with %v", strings.Contains(plain, "(canary)"), strings.Contains(marked, "canary ami-new (canary)"))
	}
	// 3 points is what the canary's stroke is drawn with.
	if strings.Contains(plain, "stroke-width:3") || !strings.Contains(marked, "stroke-width:3") {
		t.Error("the canary's line is not the only thick one")
	}
}

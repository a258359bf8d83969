package demo

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
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

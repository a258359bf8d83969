package demo

import (
	"fmt"
	"image/color"
	"io"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Sample is the fleet's connection count per instance at one moment.
type Sample struct {
	At        time.Duration // since the demo started
	Instances []InstanceSample
}

// InstanceSample is one instance's state in a Sample.
type InstanceSample struct {
	ID          string
	Name        string
	Image       string
	Connections int
	// Gone is set on an instance's last sample, once the group no longer
	// lists it or it is terminated: it no longer counts as live.
	Gone bool `json:",omitempty"`
	// Unread is set when the node did not answer its status read: its
	// Connections (0) are unknown, not zero.
	Unread bool `json:",omitempty"`
}

// PhaseMark is a phase of the change on the chart's time axis.
type PhaseMark struct {
	Name       string
	Start, End time.Duration
}

// WriteChart renders connections per instance over time as SVG, one line
// per instance (keyed by instance id, since a replacement takes over its
// predecessor's name), old-image instances in cool colours and new-image
// ones in warm colours, with each phase shaded and labelled, so that a
// reader sees the clients move from old nodes to new ones.
func WriteChart(w io.Writer, title, newImage string, samples []Sample, phases []PhaseMark) error {
	return WriteChartAs(w, "svg", title, newImage, samples, phases)
}

// WriteChartAs is WriteChart in another format gonum/plot knows ("png",
// "pdf"…): a PNG is what a terminal image viewer or a review tool shows.
func WriteChartAs(w io.Writer, format, title, newImage string, samples []Sample, phases []PhaseMark) error {
	return WriteChartData(w, format, ChartData{Title: title, NewImage: newImage, Samples: samples, Phases: phases})
}

// WriteChartData draws chart.json's data: WriteChartAs, with the canary
// instances (cd.Canaries) drawn thicker and labelled, so that a canary
// holding no clients is seen to hold none.
func WriteChartData(w io.Writer, format string, cd ChartData) error {
	title, newImage, samples, phases := cd.Title, cd.NewImage, cd.Samples, cd.Phases
	canary := map[string]bool{}
	for _, id := range cd.Canaries {
		canary[id] = true
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since start"
	p.Y.Label.Text = "open connections"
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid())

	type series struct {
		label  string
		image  string
		first  time.Duration
		canary bool
		xys    plotter.XYs
	}
	byID := map[string]*series{}
	ymax := 1.0
	for _, s := range samples {
		for _, in := range s.Instances {
			sr := byID[in.ID]
			if sr == nil {
				sr = &series{label: fmt.Sprintf("%s %s", in.Name, in.Image), image: in.Image, first: s.At, canary: canary[in.ID]}
				if sr.canary {
					sr.label += " (canary)"
				}
				byID[in.ID] = sr
			}
			sr.xys = append(sr.xys, plotter.XY{X: s.At.Seconds(), Y: float64(in.Connections)})
			ymax = max(ymax, float64(in.Connections))
		}
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := byID[ids[i]], byID[ids[j]]
		if a.first != b.first {
			return a.first < b.first
		}
		return a.label < b.label
	})

	// Phases first, so the lines draw over the shading.
	for i, ph := range phases {
		shade := color.RGBA{R: 230, G: 230, B: 240, A: 255}
		if i%2 == 1 {
			shade = color.RGBA{R: 240, G: 240, B: 225, A: 255}
		}
		poly, err := plotter.NewPolygon(plotter.XYs{
			{X: ph.Start.Seconds(), Y: 0}, {X: ph.End.Seconds(), Y: 0},
			{X: ph.End.Seconds(), Y: ymax * 1.15}, {X: ph.Start.Seconds(), Y: ymax * 1.15},
		})
		if err != nil {
			return fmt.Errorf("chart phase %q: %w", ph.Name, err)
		}
		poly.Color = shade
		poly.LineStyle.Width = 0
		p.Add(poly)
		lx := ph.Start.Seconds()
		if len(samples) > 0 {
			lx = max(lx, samples[0].At.Seconds()) // inside the axis
		}
		lbl, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    []plotter.XY{{X: lx, Y: ymax * 1.1}},
			Labels: []string{ph.Name},
		})
		if err != nil {
			return fmt.Errorf("chart phase label %q: %w", ph.Name, err)
		}
		p.Add(lbl)
	}

	var oldN, newN int
	for _, id := range ids {
		sr := byID[id]
		l, err := plotter.NewLine(flatten(sr.xys))
		if err != nil {
			return fmt.Errorf("chart line %s: %w", sr.label, err)
		}
		l.LineStyle.Width = vg.Points(1.5)
		if sr.image == newImage {
			l.LineStyle.Color = warm[newN%len(warm)]
			newN++
		} else {
			l.LineStyle.Color = cool[oldN%len(cool)]
			l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			oldN++
		}
		if sr.canary {
			l.LineStyle.Width = vg.Points(3)
		}
		p.Add(l)
		p.Legend.Add(sr.label, l)
	}
	p.Y.Min = 0
	p.Y.Max = ymax * 1.2
	// Room on the right for the legend, so it does not hide the lines'
	// ends, where the new instances hold every client.
	if n := len(samples); n > 0 {
		first, last := samples[0].At.Seconds(), samples[n-1].At.Seconds()
		p.X.Min = first
		p.X.Max = last + (last-first)*0.22
	}
	p.Legend.TextStyle.Font.Size = vg.Points(7)
	p.Legend.ThumbnailWidth = vg.Points(14)
	p.Legend.Padding = vg.Points(1)
	wt, err := p.WriterTo(28*vg.Centimeter, 14*vg.Centimeter, format)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("chart: write %s: %w", format, err)
	}
	return nil
}

var (
	cool = []color.Color{
		color.RGBA{31, 119, 180, 255}, color.RGBA{23, 190, 207, 255}, color.RGBA{44, 160, 44, 255},
		color.RGBA{148, 103, 189, 255}, color.RGBA{127, 127, 127, 255}, color.RGBA{70, 70, 160, 255},
		color.RGBA{0, 128, 128, 255}, color.RGBA{100, 149, 237, 255},
	}
	warm = []color.Color{
		color.RGBA{214, 39, 40, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{188, 189, 34, 255},
		color.RGBA{227, 119, 194, 255}, color.RGBA{140, 86, 75, 255}, color.RGBA{200, 80, 0, 255},
		color.RGBA{180, 0, 90, 255}, color.RGBA{230, 170, 0, 255}, color.RGBA{160, 40, 40, 255},
	}
)

// flatten drops the inner points of runs of equal values, which draw the
// same line: a bake of minutes is one segment, not hundreds, and the SVG
// stays small enough to commit.
func flatten(xys plotter.XYs) plotter.XYs {
	if len(xys) < 3 {
		return xys
	}
	out := plotter.XYs{xys[0]}
	for i := 1; i < len(xys)-1; i++ {
		if xys[i].Y != xys[i-1].Y || xys[i].Y != xys[i+1].Y {
			out = append(out, xys[i])
		}
	}
	return append(out, xys[len(xys)-1])
}

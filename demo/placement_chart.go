package demo

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// WriteShareChart renders the canary's share of its fair share over the
// canary phase as SVG: 100 % is exactly its fair share, the dashed line at
// 80 % is what issue 16 asks it to hold, and the shaded span is the
// window the summary's min and mean are taken over (its bake).
func WriteShareChart(w io.Writer, title string, cs *CanaryShare) error {
	p, err := sharePlot(title, cs)
	if err != nil {
		return err
	}
	return writePlot(w, "svg", p, 20*vg.Centimeter, 9*vg.Centimeter, "share chart")
}

func sharePlot(title string, cs *CanaryShare) (*plot.Plot, error) {
	if cs == nil || len(cs.Points) == 0 {
		return nil, errors.New("share chart: no canary samples")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since start"
	p.Y.Label.Text = "canary connections, % of its fair share"

	line := make(plotter.XYs, 0, len(cs.Points))
	ymax := 120.0
	for _, pt := range cs.Points {
		line = append(line, plotter.XY{X: pt.At.Seconds(), Y: pt.Share * 100})
		ymax = max(ymax, pt.Share*100*1.1)
	}
	x0, x1 := line[0].X, line[len(line)-1].X
	if x1 <= x0 {
		x1 = x0 + 1
	}

	// The measured window first, so that the lines draw over it.
	if cs.To > cs.From {
		poly, err := plotter.NewPolygon(plotter.XYs{
			{X: cs.From.Seconds(), Y: 0}, {X: cs.To.Seconds(), Y: 0},
			{X: cs.To.Seconds(), Y: ymax}, {X: cs.From.Seconds(), Y: ymax},
		})
		if err != nil {
			return nil, fmt.Errorf("share chart window: %w", err)
		}
		poly.Color = color.RGBA{R: 230, G: 230, B: 240, A: 255}
		poly.LineStyle.Width = 0
		p.Add(poly)
		lbl, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    []plotter.XY{{X: max(cs.From.Seconds(), x0), Y: ymax * 0.95}},
			Labels: []string{cs.Window},
		})
		if err != nil {
			return nil, fmt.Errorf("share chart window label: %w", err)
		}
		p.Add(lbl)
	}
	p.Add(plotter.NewGrid())
	for _, ref := range []struct {
		y     float64
		label string
		c     color.Color
	}{
		{100, "fair share (100 %)", color.RGBA{R: 44, G: 160, B: 44, A: 255}},
		{80, "80 % of it", color.RGBA{R: 214, G: 39, B: 40, A: 255}},
	} {
		l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: ref.y}, {X: x1, Y: ref.y}})
		if err != nil {
			return nil, fmt.Errorf("share chart reference: %w", err)
		}
		l.LineStyle.Color = ref.c
		l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		p.Add(l)
		p.Legend.Add(ref.label, l)
	}
	l, err := plotter.NewLine(flatten(line))
	if err != nil {
		return nil, fmt.Errorf("share chart line: %w", err)
	}
	l.LineStyle.Width = vg.Points(2)
	l.LineStyle.Color = warm[0]
	p.Add(l)
	p.Legend.Add("canary", l)
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(7)
	p.Y.Min, p.Y.Max = 0, ymax
	p.X.Min, p.X.Max = x0, x1
	return p, nil
}

// WriteMovesChart renders the moves-per-client histogram as SVG: one bar
// per count (0, 1, 2, 3 or more moves), the canary share's clients
// stacked on the others, since they may move twice.
func WriteMovesChart(w io.Writer, title string, m MoveFigures) error {
	p, err := movesPlot(title, m)
	if err != nil {
		return err
	}
	return writePlot(w, "svg", p, 14*vg.Centimeter, 9*vg.Centimeter, "moves chart")
}

func movesPlot(title string, m MoveFigures) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "moves (websockets that landed on another node)"
	p.Y.Label.Text = "clients"
	p.Add(plotter.NewGrid())

	var others, share plotter.Values
	ymax := 1.0
	for i := range m.Histogram {
		others = append(others, float64(m.Histogram[i]-m.CanaryHistogram[i]))
		share = append(share, float64(m.CanaryHistogram[i]))
		ymax = max(ymax, float64(m.Histogram[i]))
	}
	width := vg.Points(40)
	b1, err := plotter.NewBarChart(others, width)
	if err != nil {
		return nil, fmt.Errorf("moves chart: %w", err)
	}
	b1.Color = cool[0]
	b1.LineStyle.Width = 0
	b2, err := plotter.NewBarChart(share, width)
	if err != nil {
		return nil, fmt.Errorf("moves chart: %w", err)
	}
	b2.Color = warm[1]
	b2.LineStyle.Width = 0
	b2.StackOn(b1)
	p.Add(b1, b2)
	p.Legend.Add("other clients", b1)
	p.Legend.Add("canary share's clients", b2)
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(7)

	var xys plotter.XYs
	var labels []string
	for i, n := range m.Histogram {
		xys = append(xys, plotter.XY{X: float64(i), Y: float64(n) + ymax*0.03})
		labels = append(labels, fmt.Sprint(n))
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, fmt.Errorf("moves chart labels: %w", err)
	}
	for i := range lbl.TextStyle {
		lbl.TextStyle[i].XAlign = draw.XCenter
	}
	p.Add(lbl)
	p.NominalX("0", "1", "2", "3+")
	p.Y.Min, p.Y.Max = 0, ymax*1.25
	return p, nil
}

// writePlot writes a plot in a format gonum/plot knows: "svg" is a
// self-contained SVG (no script, fonts embedded by name).
func writePlot(w io.Writer, format string, p *plot.Plot, width, height vg.Length, what string) error {
	wt, err := p.WriterTo(width, height, format)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("%s: write: %w", what, err)
	}
	return nil
}

// writePlacementCharts writes moves.svg and, when a canary was sampled,
// share.svg beside the summary's other files.
func (s *Summary) writePlacementCharts() error {
	var buf bytes.Buffer
	m := s.Placement.Moves
	title := fmt.Sprintf("wsfleet demo (%s): moves per client, %d clients, %.2f moves each", s.Mode, m.Clients, m.PerClient)
	if err := WriteMovesChart(&buf, title, m); err != nil {
		return err
	}
	if err := os.WriteFile(s.Files.MovesChart, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write moves chart: %w", err)
	}
	cs := s.Placement.CanaryShare
	if cs == nil {
		return nil
	}
	buf.Reset()
	title = fmt.Sprintf("wsfleet demo (%s): the canary's share of its fair share (%s: min %.0f %%, mean %.0f %%)", s.Mode, cs.Window, cs.Min*100, cs.Mean*100)
	if err := WriteShareChart(&buf, title, cs); err != nil {
		return err
	}
	s.Files.ShareChart = filepath.Join(s.Files.Dir, "share.svg")
	if err := os.WriteFile(s.Files.ShareChart, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write share chart: %w", err)
	}
	return nil
}

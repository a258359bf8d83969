package bench

import (
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteSoakChart draws a soak as one self-contained SVG: the node's RSS,
// its goroutines, and the sessions held, each over minutes since the
// start, one panel above the other, with the judged window (the second
// half of the hold) marked by dashed lines in the first two.
func WriteSoakChart(w io.Writer, title string, res *SoakResult) error {
	var win *FlatCheck
	if len(res.Flat) > 0 && res.Flat[0].Samples > 0 {
		win = &res.Flat[0]
	}
	type panel struct {
		ylabel string
		series []string
		y      []func(SoakSample) float64
		mark   bool
	}
	panels := []panel{
		{ylabel: "RSS (MiB)", series: []string{"node", "nats-server"}, mark: true,
			y: []func(SoakSample) float64{
				func(s SoakSample) float64 { return float64(s.RSSKiB) / 1024 },
				func(s SoakSample) float64 { return float64(s.NATSRSSKiB) / 1024 },
			}},
		{ylabel: "goroutines", series: []string{"node"}, mark: true,
			y: []func(SoakSample) float64{func(s SoakSample) float64 { return s.Goroutines }}},
		{ylabel: "sessions", series: []string{"held by the node", "open in the generator"},
			y: []func(SoakSample) float64{
				func(s SoakSample) float64 { return s.Sessions },
				func(s SoakSample) float64 { return float64(s.Live) },
			}},
	}
	colors := []color.Color{color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}}
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		if i == 0 {
			p.Title.Text = title
		}
		if i == len(panels)-1 {
			p.X.Label.Text = "minutes since the start"
		}
		p.Y.Label.Text = pn.ylabel
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.TextStyle.Font.Size = vg.Points(7)
		p.Add(plotter.NewGrid())
		ymax := 0.0
		for k, f := range pn.y {
			xys := make(plotter.XYs, 0, len(res.Samples))
			for _, s := range res.Samples {
				v := f(s)
				xys = append(xys, plotter.XY{X: s.T / 60, Y: v})
				ymax = max(ymax, v)
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("soak chart: %w", err)
			}
			l.LineStyle.Color = colors[k%len(colors)]
			l.LineStyle.Width = vg.Points(1.2)
			p.Add(l)
			p.Legend.Add(pn.series[k], l)
		}
		p.Y.Min, p.Y.Max = 0, max(ymax*1.25, 1)
		if pn.mark && win != nil {
			for _, x := range []float64{win.From / 60, win.To / 60} {
				l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: p.Y.Max}})
				if err != nil {
					return fmt.Errorf("soak chart: %w", err)
				}
				l.LineStyle.Color = color.Gray{Y: 110}
				l.LineStyle.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
				p.Add(l)
				if x == win.From/60 {
					p.Legend.Add("judged window", l)
				}
			}
		}
		plots[i] = []*plot.Plot{p}
	}
	width, height := 26*vg.Centimeter, 24*vg.Centimeter
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	t := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(6)}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("soak chart: write: %w", err)
	}
	return nil
}

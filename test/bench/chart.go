package bench

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

const (
	chartWidth  = 9 * vg.Inch
	chartHeight = 4.5 * vg.Inch
	groupWidth  = 0.8 // of the space between two groups' centres, in data units
)

// group is one bar group of a chart: a path, with one summary per series (stream count).
type group struct {
	name   string
	values []Summary // index = series; N == 0: no bar
}

// WriteCharts writes throughput.svg, cpu.svg (when a userspace backend was measured) and
// scale.svg (when the scale test ran) into dir.
func WriteCharts(res *Results, dir string) error {
	return writeCharts(res, dir, ".svg")
}

// writeCharts writes the charts in the format the extension names (.svg, .png, .pdf).
func writeCharts(res *Results, dir, ext string) error {
	name := func(svg string) string { return filepath.Join(dir, strings.TrimSuffix(svg, ".svg")+ext) }
	var errs []error
	series := make([]string, len(res.Options.Streams))
	for i, s := range res.Options.Streams {
		series[i] = fmt.Sprintf("%d stream(s)", s)
	}
	var tput, cpu []group
	for _, p := range res.Paths {
		if p.Skipped != "" || len(p.Throughput) == 0 {
			continue
		}
		tg, cg := group{name: p.Name}, group{name: p.Name}
		for _, s := range res.Options.Streams {
			var t, c Summary
			if tp := p.throughput(s); tp != nil {
				t = tp.Gbps
				if tp.CPUPerGB != nil {
					c = *tp.CPUPerGB
				}
			}
			tg.values, cg.values = append(tg.values, t), append(cg.values, c)
		}
		tput = append(tput, tg)
		if p.Userspace {
			cpu = append(cpu, cg)
		}
	}
	if len(tput) > 0 {
		title := fmt.Sprintf("TCP throughput: underlay node to node, backends pod to pod (iperf3, median of %d x %gs; bars: min-max)",
			res.Options.Reps, res.Options.DurationS)
		if err := barChart(name(ThroughputSVG), title, "Gbit/s", series, tput); err != nil {
			errs = append(errs, err)
		}
	}
	if len(cpu) > 0 {
		title := "weftd CPU seconds per GB received (both ends; median, bars: min-max)"
		if err := barChart(name(CPUSVG), title, "CPU s / GB", series, cpu); err != nil {
			errs = append(errs, err)
		}
	}
	if res.Scale != nil && len(res.Scale.Progress) > 1 {
		if err := scaleChart(name(ScaleSVG), res.Scale); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// barChart draws a grouped bar chart: one group per path, one bar per series, with the
// median as the bar, the min-max as an error bar and the median written above it.
func barChart(path, title, yLabel string, series []string, groups []group) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Legend.Top = true
	n := len(series)
	slot := groupWidth / float64(n) // data units per bar
	// The bar width is given in points: the drawing area is about 85% of the chart.
	barWidth := vg.Length(float64(chartWidth) * 0.85 / float64(len(groups)) * slot * 0.9)
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.name
	}
	for si := range series {
		vals := make(plotter.Values, len(groups))
		var errPts errPoints
		var labels plotter.XYLabels
		for gi, g := range groups {
			s := g.values[si]
			vals[gi] = s.Median
			if s.N == 0 {
				continue
			}
			x := float64(gi) - groupWidth/2 + slot*(float64(si)+0.5)
			errPts = append(errPts, errPoint{x: x, y: s.Median, low: s.Median - s.Min, high: s.Max - s.Median})
			labels.XYs = append(labels.XYs, plotter.XY{X: x, Y: s.Max})
			labels.Labels = append(labels.Labels, fmt.Sprintf("%.2f", s.Median))
		}
		bars, err := plotter.NewBarChart(vals, barWidth)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		bars.XMin = -groupWidth/2 + slot*(float64(si)+0.5)
		bars.Color = plotutil.Color(si)
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(series[si], bars)
		if len(errPts) > 0 {
			eb, err := plotter.NewYErrorBars(errPts)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			p.Add(eb)
			lb, err := plotter.NewLabels(labels)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			lb.Offset = vg.Point{Y: vg.Points(3)}
			for i := range lb.TextStyle {
				lb.TextStyle[i].Font.Size = vg.Points(7)
				lb.TextStyle[i].XAlign = text.XCenter
			}
			p.Add(lb)
		}
	}
	p.NominalX(names...)
	// Room at the sides for the outer bars and above for the labels and the legend.
	p.X.Min, p.X.Max = -0.6, float64(len(groups))-0.4
	top := 0.0
	for _, g := range groups {
		for _, s := range g.values {
			top = max(top, s.Max)
		}
	}
	if top > 0 {
		p.Y.Max = top * 1.25
	}
	if err := p.Save(chartWidth, chartHeight, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// errPoint is one error bar: the median with its distance to min and max.
type errPoint struct{ x, y, low, high float64 }

type errPoints []errPoint

func (e errPoints) Len() int                        { return len(e) }
func (e errPoints) XY(i int) (float64, float64)     { return e[i].x, e[i].y }
func (e errPoints) YError(i int) (float64, float64) { return e[i].low, e[i].high }

// scaleChart draws weft_peers and the route count against time while programming.
func scaleChart(path string, s *Scale) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("One weftd (vxlan) programming %d peers written to etcd at t=0", s.Peers)
	p.X.Label.Text = "seconds since the first lease was written"
	p.Y.Label.Text = "peers"
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Max = float64(s.Peers) * 1.1
	p.Legend.Top = false // bottom right: under the rising curves
	peers, routes := make(plotter.XYs, len(s.Progress)), make(plotter.XYs, len(s.Progress))
	for i, smp := range s.Progress {
		peers[i] = plotter.XY{X: smp.S, Y: float64(smp.Peers)}
		routes[i] = plotter.XY{X: smp.S, Y: float64(smp.Routes)}
	}
	if err := plotutil.AddLines(p, "weft_peers (known)", peers, "routes on flannel.1 (kernel)", routes); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := p.Save(chartWidth, chartHeight, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

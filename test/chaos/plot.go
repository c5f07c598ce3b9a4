package chaos

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Series is one client's calls in a run.
type Series struct {
	Client string
	Calls  Calls
}

// Window is a span of a run to shade (a fault), with its label.
type Window struct {
	From, To time.Time
	Label    string
}

// bucketWidth is the time resolution of PlotRun's pictures: at the long
// run's 200 calls/s a bucket holds ~20 calls, enough for counts and a p99
// that follow a fault as it happens, and the picture holds one point per
// bucket instead of one per call, which keeps an SVG in tens of KB.
const bucketWidth = 100 * time.Millisecond

// bucket is what the calls that started in one bucketWidth of a run did.
type bucket struct {
	ok, failed int
	p99        time.Duration // 0 if no call started in the bucket
}

// buckets splits cs by start time into n buckets of width from origin:
// bucket i holds the calls that started in [origin+i*width,
// origin+(i+1)*width). Calls outside the n buckets are left out.
func buckets(cs Calls, origin time.Time, width time.Duration, n int) []bucket {
	in := make([]Calls, n)
	for _, c := range cs {
		d := c.Start.Sub(origin)
		if d < 0 {
			continue
		}
		if i := int(d / width); i < n {
			in[i] = append(in[i], c)
		}
	}
	out := make([]bucket, n)
	for i, b := range in {
		failed := len(b.Failed())
		out[i] = bucket{ok: len(b) - failed, failed: failed, p99: b.Quantile(0.99)}
	}
	return out
}

// Picture geometry, in the SVG's points.
const (
	plotWidth   = 10 * vg.Inch
	panelHeight = 3 * vg.Inch
	legendGap   = vg.Length(12) // between the bottom panel and the legend
	margin      = vg.Length(8)  // right of the panels and above them
)

// shade is the translucent fill of a fault window, drawn under the lines:
// grey, a colour no series has.
var shade = color.NRGBA{R: 96, G: 96, B: 96, A: 40}

// PlotRun writes an SVG of the run to path (creating its directory): calls per 100 ms
// (ok and failed) and p99 per 100 ms, per series, windows shaded. The time axis is seconds
// since the earliest call start.
//
// Each series has its own colour in both panels: in the top one its
// successful calls are a solid line and its failed ones a dashed line; in
// the bottom one its p99 is on a log scale (a fault turns a few ms into
// seconds) and broken where no call of the series started. A window is
// labelled in the top panel, the labels of successive windows one line
// lower each, so that adjacent windows stay readable.
func PlotRun(path, title string, series []Series, windows []Window) error {
	if err := plotRun(path, title, series, windows); err != nil {
		return fmt.Errorf("plot run %q to %s: %w", title, path, err)
	}
	return nil
}

func plotRun(path, title string, series []Series, windows []Window) error {
	origin, last, ok := span(series)
	if !ok {
		return errors.New("no calls to draw")
	}
	// The last bucket, cut short by the end of the run, is left out: its
	// count would read as a drop.
	n := max(1, int(last.Sub(origin)/bucketWidth))
	end := (time.Duration(n) * bucketWidth).Seconds()

	counts, p99s := newPanels(title, end)
	for i, w := range windows {
		from, to := w.From.Sub(origin).Seconds(), w.To.Sub(origin).Seconds()
		counts.Add(band{from: from, to: to, label: w.Label, row: i})
		p99s.Add(band{from: from, to: to})
	}

	legend := plot.NewLegend()
	legend.Left, legend.Top = true, true
	lo, hi := math.Inf(1), math.Inf(-1)
	var failedLines []plot.Plotter
	for i, s := range series {
		col := plotutil.DarkColors[i%len(plotutil.DarkColors)]
		okXY, failedXY, p99Runs := points(buckets(s.Calls, origin, bucketWidth, n))
		okLine, err := line(okXY, col, false)
		if err != nil {
			return err
		}
		failedLine, err := line(failedXY, col, true)
		if err != nil {
			return err
		}
		counts.Add(okLine)
		failedLines = append(failedLines, failedLine)
		for _, run := range p99Runs {
			l, err := line(run, col, false)
			if err != nil {
				return err
			}
			p99s.Add(l)
			for _, p := range run {
				lo, hi = min(lo, p.Y), max(hi, p.Y)
			}
		}
		legend.Add(s.Client, okLine)
	}
	// Failures over successes: a client failing every call must not hide
	// under the others' steady successes at the same count.
	counts.Add(failedLines...)
	// Headroom, so that a steady count runs neither along the frame nor
	// through the windows' labels.
	counts.Y.Max *= 1.1 + 0.08*float64(len(windows))
	// Whole decades at both ends, so that the log axis labels both.
	p99s.Y.Min, p99s.Y.Max = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	p99s.Y.Max = max(p99s.Y.Max, 10*p99s.Y.Min)
	solid, err := line(nil, color.Black, false)
	if err != nil {
		return err
	}
	dashed, err := line(nil, color.Black, true)
	if err != nil {
		return err
	}
	legend.Add("successful calls (top), p99 of all calls (bottom)", solid)
	legend.Add("failed calls (top)", dashed)
	if len(windows) > 0 {
		legend.Add("shaded: fault window", shadeThumb{})
	}
	return write(path, counts, p99s, legend)
}

// newPanels makes the two panels of a run of end seconds, with their
// axes and no data: calls per bucket above, p99 per bucket below.
func newPanels(title string, end float64) (counts, p99s *plot.Plot) {
	counts, p99s = plot.New(), plot.New()
	counts.Title.Text = wrap(counts.Title.TextStyle, title, plotWidth-4*margin)
	counts.Y.Label.Text = "calls per 100 ms"
	counts.Y.Min = 0
	counts.Y.Tick.Marker = plot.TickerFunc(linearTicks)
	p99s.X.Label.Text = "seconds since the first call"
	p99s.Y.Label.Text = "p99 per 100 ms"
	p99s.Y.Scale = plot.LogScale{}
	p99s.Y.Tick.Marker = plot.TickerFunc(msDecades)
	for _, p := range []*plot.Plot{counts, p99s} {
		p.X.Min, p.X.Max = 0, end
		p.X.Tick.Marker = plot.TickerFunc(linearTicks)
		p.Add(plotter.NewGrid())
	}
	return counts, p99s
}

// minP99 is the floor of the p99 axis, in ms: a microsecond.
const minP99 = 1e-3

// linearTicks marks a linear axis with at most 8 labelled ticks at a round
// step (1, 2 or 5 x a power of ten), labelled with as many decimals as the
// step needs ("5", "0.2"), and a minor tick halfway between. (plot's
// DefaultTicks may label a 0-30 s axis "0.00" and "25.00" alone.)
func linearTicks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', -1, 64)}}
	}
	raw := (hi - lo) / 8
	unit := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * unit
	for _, m := range []float64{1, 2, 5} {
		if m*unit >= raw {
			step = m * unit
			break
		}
	}
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi; i++ {
		v := i * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
		if v+step/2 <= hi {
			ticks = append(ticks, plot.Tick{Value: v + step/2})
		}
	}
	return ticks
}

// msDecades marks a log axis of milliseconds whose ends are powers of ten:
// a labelled tick at each power, as a duration ("0.1 ms", "10 ms", "1 s"),
// minor ticks between. (plot.LogTicks rounds log10 of the low end toward
// zero, which loses the lowest label under 1 ms.)
func msDecades(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	last := math.Round(math.Log10(hi))
	for e := math.Round(math.Log10(lo)); e <= last; e++ {
		v := math.Pow(10, e)
		ticks = append(ticks, plot.Tick{Value: v, Label: msLabel(v)})
		for k := 2.0; k < 10 && e < last; k++ {
			ticks = append(ticks, plot.Tick{Value: k * v})
		}
	}
	return ticks
}

// msLabel writes a latency in ms as the reader expects it: seconds from 1 s.
func msLabel(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'g', -1, 64) + " s"
	}
	return strconv.FormatFloat(ms, 'g', -1, 64) + " ms"
}

// span returns the earliest and the latest call start of all series, and
// false if they hold no call.
func span(series []Series) (first, last time.Time, ok bool) {
	for _, s := range series {
		for _, c := range s.Calls {
			if !ok || c.Start.Before(first) {
				first = c.Start
			}
			if !ok || c.Start.After(last) {
				last = c.Start
			}
			ok = true
		}
	}
	return first, last, ok
}

// points turns buckets into the lines PlotRun draws, each point at the
// middle of its bucket: ok and failed counts, and the p99 in ms as runs of
// consecutive buckets with calls (a log scale has no 0 to draw an empty
// bucket at, so a p99 under minP99 is drawn at minP99).
func points(bs []bucket) (ok, failed plotter.XYs, p99 []plotter.XYs) {
	ok, failed = make(plotter.XYs, len(bs)), make(plotter.XYs, len(bs))
	var run plotter.XYs
	for i, b := range bs {
		x := (time.Duration(i)*bucketWidth + bucketWidth/2).Seconds()
		ok[i] = plotter.XY{X: x, Y: float64(b.ok)}
		failed[i] = plotter.XY{X: x, Y: float64(b.failed)}
		if b.ok+b.failed == 0 {
			if len(run) > 0 {
				p99 = append(p99, run)
			}
			run = nil
			continue
		}
		run = append(run, plotter.XY{X: x, Y: max(float64(b.p99)/float64(time.Millisecond), minP99)})
	}
	if len(run) > 0 {
		p99 = append(p99, run)
	}
	return ok, failed, p99
}

// line draws xys in col; a line of failed calls is dashed, and thicker:
// it is what a reader looks for, and it often runs along another client's
// successes.
func line(xys plotter.XYs, col color.Color, failed bool) (*plotter.Line, error) {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = col, vg.Points(1.2)
	if failed {
		l.Dashes, l.Width = []vg.Length{vg.Points(5), vg.Points(3)}, vg.Points(2)
	}
	return l, nil
}

// wrap breaks s into lines no wider than width in sty, at spaces.
func wrap(sty text.Style, s string, width vg.Length) string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		next := strings.TrimSpace(cur + " " + w)
		if cur != "" && sty.Width(next) > width {
			lines, cur = append(lines, cur), w
			continue
		}
		cur = next
	}
	return strings.Join(append(lines, cur), "\n")
}

// write lays the two panels out one above the other with their data areas
// aligned (the same time on the same vertical), the legend below them,
// and writes the SVG.
func write(path string, counts, p99s *plot.Plot, legend plot.Legend) error {
	probe := draw.New(vgsvg.New(plotWidth, panelHeight))
	legendHeight := legend.Rectangle(probe).Size().Y + legendGap
	height := 2*panelHeight + legendHeight
	canvas := vgsvg.New(plotWidth, height)
	dc := draw.New(canvas)
	// Opaque, so that the black text reads on a page in dark mode too.
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
	plots := []*plot.Plot{counts, p99s}
	cells := []draw.Canvas{
		draw.Crop(dc, 0, -margin, legendHeight+panelHeight, -margin),
		draw.Crop(dc, 0, -margin, legendHeight, -panelHeight),
	}
	// The panels' axes differ in width (tick labels "20" and "1000 ms"):
	// pad each data area to the widest.
	var left, right vg.Length
	for i, p := range plots {
		d := p.DataCanvas(cells[i])
		left, right = max(left, d.Min.X-cells[i].Min.X), max(right, cells[i].Max.X-d.Max.X)
	}
	for i, p := range plots {
		d := p.DataCanvas(cells[i])
		cells[i] = draw.Crop(cells[i], left-(d.Min.X-cells[i].Min.X), (cells[i].Max.X-d.Max.X)-right, 0, 0)
		p.Draw(cells[i])
	}
	legend.XOffs = p99s.DataCanvas(cells[1]).Min.X
	legend.Draw(draw.Crop(dc, 0, 0, 0, -(height - legendHeight + legendGap)))

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = canvas.WriteTo(f)
	return errors.Join(err, f.Close())
}

// band shades a window of a panel over its full height, and in the top
// panel writes its label; it has no data range, so it leaves the axes as
// the calls make them.
type band struct {
	from, to float64 // seconds since the first call
	label    string
	row      int // the label's line, from the top
}

// Plot implements plot.Plotter.
func (b band) Plot(c draw.Canvas, p *plot.Plot) {
	tx, _ := p.Transforms(&c)
	x0, x1 := max(tx(b.from), c.Min.X), min(tx(b.to), c.Max.X)
	if x1 < x0 {
		return
	}
	// A window shorter than a pixel still shows.
	x1 = max(x1, x0+1)
	c.FillPolygon(shade, []vg.Point{{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y}})
	if b.label == "" {
		return
	}
	sty := text.Style{Font: font.From(plot.DefaultFont, 9), Handler: plot.DefaultTextHandler, YAlign: draw.YTop}
	y := c.Max.Y - 2 - vg.Length(b.row)*sty.Height(b.label)
	c.FillText(sty, vg.Point{X: x0 + 2, Y: y}, b.label)
}

// shadeThumb is a fault window's swatch in the legend.
type shadeThumb struct{}

// Thumbnail implements plot.Thumbnailer.
func (shadeThumb) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(shade, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
}

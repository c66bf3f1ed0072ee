// This file owns the compare section's chart: a small SVG writer (elements
// with escaped attributes and text, nothing more) and the drawing, one
// panel per way: p50 and p99 latency per time bucket on a log scale against
// time since the load began, a dashed vertical line where each deploy
// began and a shaded band until it returned, and strips marking the
// buckets that held failed, stale or mixed answers.

package main

import (
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// svgWriter writes an SVG document. Attributes are given as name, value
// pairs; values and text are XML-escaped.
type svgWriter struct {
	b strings.Builder
}

func newSVG(width, height float64) *svgWriter {
	w := &svgWriter{}
	w.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.open("svg", "xmlns", "http://www.w3.org/2000/svg", "width", num(width), "height", num(height),
		"viewBox", "0 0 "+num(width)+" "+num(height), "font-family", "sans-serif", "font-size", "12")
	return w
}

func (w *svgWriter) start(name string, attrs []string) {
	w.b.WriteString("<" + name)
	for i := 0; i+1 < len(attrs); i += 2 {
		w.b.WriteString(" " + attrs[i] + `="`)
		xml.EscapeText(&w.b, []byte(attrs[i+1]))
		w.b.WriteString(`"`)
	}
}

// open starts an element that close ends.
func (w *svgWriter) open(name string, attrs ...string) {
	w.start(name, attrs)
	w.b.WriteString(">\n")
}

func (w *svgWriter) close(name string) { w.b.WriteString("</" + name + ">\n") }

// elem writes an empty element.
func (w *svgWriter) elem(name string, attrs ...string) {
	w.start(name, attrs)
	w.b.WriteString("/>\n")
}

// text writes a text element.
func (w *svgWriter) text(x, y float64, s string, attrs ...string) {
	w.start("text", append([]string{"x", num(x), "y", num(y)}, attrs...))
	w.b.WriteString(">")
	xml.EscapeText(&w.b, []byte(s))
	w.b.WriteString("</text>\n")
}

func (w *svgWriter) line(x1, y1, x2, y2 float64, attrs ...string) {
	w.elem("line", append([]string{"x1", num(x1), "y1", num(y1), "x2", num(x2), "y2", num(y2)}, attrs...)...)
}

func (w *svgWriter) rect(x, y, width, height float64, attrs ...string) {
	w.elem("rect", append([]string{"x", num(x), "y", num(y), "width", num(width), "height", num(height)}, attrs...)...)
}

// polyline writes one polyline per run of points; a NaN y breaks the line.
func (w *svgWriter) polyline(xs, ys []float64, attrs ...string) {
	var pts []string
	flush := func() {
		if len(pts) > 1 {
			w.elem("polyline", append([]string{"points", strings.Join(pts, " "), "fill", "none"}, attrs...)...)
		}
		pts = pts[:0]
	}
	for i := range xs {
		if math.IsNaN(ys[i]) {
			flush()
			continue
		}
		pts = append(pts, num(xs[i])+","+num(ys[i]))
	}
	flush()
}

// bytes ends the document and returns it.
func (w *svgWriter) bytes() []byte {
	w.close("svg")
	return []byte(w.b.String())
}

// num formats a coordinate with one decimal, without a trailing ".0".
func num(x float64) string {
	return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64)
}

// chartBin is one time bucket of a way's requests.
type chartBin struct {
	n, failed, mixed, stale int
	p50, p99                time.Duration
}

// chartPanel is one way.
type chartPanel struct {
	title   string
	deploys [][2]time.Duration // when each deploy began and returned, from the load's start
	bins    []chartBin         // from the load's start, one bucket apart
}

// Chart layout, in pixels.
const (
	chartWidth   = 960.0
	chartLeft    = 64.0 // room for the y labels
	chartRight   = 16.0 // margin
	chartTop     = 56.0 // title and legend
	panelHead    = 22.0 // panel title
	stripPitch   = 8.0
	panelStrips  = 3*stripPitch + 6 // failed, stale, mixed, and a gap
	panelPlot    = 150.0            // the latency plot
	panelGap     = 26.0
	chartBottom  = 40.0 // x labels
	stripHeight  = 5.0
	colourFailed = "#d62728"
	colourStale  = "#ff7f0e"
	colourMixed  = "#9467bd"
	colourP99    = "#1f77b4"
	colourP50    = "#9aa5b1"
)

// drawChart draws the panels one above the other over a common time axis
// of span and a common log latency axis, from 1 ms to the decade above
// the largest p99 (at least 100 ms).
func drawChart(panels []chartPanel, span, bin time.Duration) []byte {
	panelH := panelHead + panelStrips + panelPlot + panelGap
	height := chartTop + float64(len(panels))*panelH + chartBottom
	plotW := chartWidth - chartLeft - chartRight
	w := newSVG(chartWidth, height)
	w.rect(0, 0, chartWidth, height, "fill", "#ffffff")

	maxMS := 100.0
	for _, p := range panels {
		for _, b := range p.bins {
			maxMS = max(maxMS, ms(b.p99))
		}
	}
	top := math.Pow(10, math.Ceil(math.Log10(maxMS)))
	decades := math.Log10(top) // from 1 ms
	x := func(d time.Duration) float64 { return chartLeft + plotW*d.Seconds()/math.Max(span.Seconds(), 1e-9) }

	w.text(chartLeft, 20, "Latency over the run, log scale. Dashed line: a deploy began; grey band: until it returned", "font-size", "14", "font-weight", "bold")
	legend := []struct{ colour, label string }{
		{colourP99, fmt.Sprintf("p99 per %v", bin)}, {colourP50, fmt.Sprintf("p50 per %v", bin)},
		{colourFailed, "failed"}, {colourStale, "stale"}, {colourMixed, "mixed"},
	}
	lx := chartLeft
	for i, l := range legend {
		if i < 2 {
			w.line(lx, 38, lx+18, 38, "stroke", l.colour, "stroke-width", "2")
		} else {
			w.rect(lx, 35, 18, stripHeight, "fill", l.colour)
		}
		w.text(lx+24, 42, l.label)
		lx += 24 + 8*float64(len(l.label)) + 20
	}

	for i, p := range panels {
		y0 := chartTop + float64(i)*panelH
		stripsY := y0 + panelHead
		plotY := stripsY + panelStrips
		yOf := func(d time.Duration) float64 {
			v := math.Max(ms(d), 1)
			return plotY + panelPlot - panelPlot*math.Log10(v)/decades
		}
		w.open("g", "class", "panel")
		w.text(chartLeft, y0+14, p.title, "font-weight", "bold")
		w.rect(chartLeft, plotY, plotW, panelPlot, "fill", "#f7f7f7", "stroke", "#cccccc")
		for dec := 0.0; dec <= decades; dec++ {
			v := math.Pow(10, dec)
			yy := plotY + panelPlot - panelPlot*dec/decades
			w.line(chartLeft, yy, chartLeft+plotW, yy, "stroke", "#dddddd")
			w.text(chartLeft-6, yy+4, msLabel(v), "text-anchor", "end", "font-size", "10")
		}
		for k, what := range []string{"failed", "stale", "mixed"} {
			w.text(chartLeft-6, stripsY+float64(k)*stripPitch+5, what, "text-anchor", "end", "font-size", "8")
		}
		for _, d := range p.deploys {
			w.rect(x(d[0]), plotY, math.Max(x(d[1])-x(d[0]), 1), panelPlot, "fill", "#e3e3e3")
		}
		binW := x(bin) - x(0)
		var xs, p50, p99 []float64
		for k, b := range p.bins {
			bx := x(time.Duration(k) * bin)
			for s, c := range []struct {
				n      int
				colour string
			}{{b.failed, colourFailed}, {b.stale, colourStale}, {b.mixed, colourMixed}} {
				if c.n > 0 {
					share := float64(c.n) / float64(b.n)
					w.rect(bx, stripsY+float64(s)*stripPitch, math.Max(binW, 1), stripHeight, "fill", c.colour,
						"fill-opacity", num(0.3+0.7*share), "class", "mark")
				}
			}
			xs = append(xs, bx+binW/2)
			if b.n == 0 {
				p50, p99 = append(p50, math.NaN()), append(p99, math.NaN())
				continue
			}
			p50, p99 = append(p50, yOf(b.p50)), append(p99, yOf(b.p99))
		}
		for _, d := range p.deploys {
			dx := x(d[0])
			w.line(dx, stripsY, dx, plotY+panelPlot, "class", "deploy", "stroke", "#555555", "stroke-dasharray", "4 3")
		}
		w.polyline(xs, p50, "stroke", colourP50, "stroke-width", "1.2")
		w.polyline(xs, p99, "stroke", colourP99, "stroke-width", "1.5", "class", "p99")
		w.close("g")
	}

	axisY := chartTop + float64(len(panels))*panelH - panelGap + 4
	step := 5 * time.Second
	if span <= 10*time.Second {
		step = time.Second
	}
	for t := time.Duration(0); t <= span; t += step {
		w.line(x(t), axisY-4, x(t), axisY, "stroke", "#555555")
		w.text(x(t), axisY+12, fmt.Sprintf("%g s", t.Seconds()), "text-anchor", "middle", "font-size", "10")
	}
	w.text(chartLeft+plotW/2, axisY+28, "time since the measured load began", "text-anchor", "middle")
	return w.bytes()
}

// msLabel writes a decade of milliseconds: 1 ms, 10 ms, 100 ms, 1 s, 10 s.
func msLabel(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%g s", v/1000)
	}
	return fmt.Sprintf("%g ms", v)
}

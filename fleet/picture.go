package fleet

// This file owns the picture of one rollout: each host over time, on the
// release it served, with the batch records marked, drawn as SVG from what
// fleet status reads (the hosts' own switch timestamps).

import (
	"bytes"
	"fmt"
	"html"
	"time"
)

// Picture draws st's rollout: one row per host of the rollout, the
// previous release until the host's switch and the new one after, a line
// at each batch record. An error when st has no rollout.
func Picture(st Status) ([]byte, error) {
	ro := st.Rollout
	if ro == nil {
		return nil, fmt.Errorf("draw rollout of app %s: no rollout", st.App)
	}
	hosts := hostMap(st.Hosts)
	start := ro.Started
	end := ro.Updated
	for _, b := range st.Batches {
		end = later(end, b.At)
	}
	for _, h := range ro.Hosts {
		for _, s := range hosts[h].Switches {
			if s.Rollout == ro.Key {
				end = later(end, s.At)
			}
		}
	}
	// Begin shortly before the first batch: the prepare is one bar.
	if len(st.Batches) > 0 {
		start = later(start, st.Batches[0].At.Add(-end.Sub(st.Batches[0].At)/4))
	}
	span := max(end.Sub(start), time.Millisecond)
	span += span / 10
	const left, width, rowH, top = 90.0, 640.0, 28.0, 40.0
	x := func(t time.Time) float64 { return left + width*float64(t.Sub(start))/float64(span) }
	height := top + rowH*float64(len(ro.Hosts)) + 70
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", left+width+20, height)
	fmt.Fprintf(&b, `<text x="10" y="20" font-weight="bold">rollout of %s (from %s), %s: %d hosts, %d batches</text>`+"\n",
		html.EscapeString(ro.ID), html.EscapeString(orNone(ro.Previous.Release)), html.EscapeString(ro.State), len(ro.Hosts), len(st.Batches))
	for i, h := range ro.Hosts {
		y := top + rowH*float64(i)
		fmt.Fprintf(&b, `<text x="10" y="%.1f">%s</text>`+"\n", y+17, html.EscapeString(h))
		sw, switched := Switch{}, false
		for _, s := range hosts[h].Switches {
			if s.Rollout == ro.Key && s.Release == ro.ID {
				sw, switched = s, true
			}
		}
		cut := left + width
		if switched {
			cut = x(sw.At)
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="20" fill="#9ab"><title>%s</title></rect>`+"\n", left, y+4, cut-left, html.EscapeString(orNone(ro.Previous.Release)))
		if switched {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="20" fill="#3a7"><title>%s from %s (batch %d)</title></rect>`+"\n",
				cut, y+4, left+width-cut, html.EscapeString(ro.ID), sw.At.Format("15:04:05.000000"), sw.Batch)
		}
	}
	for _, bt := range st.Batches {
		bx := x(bt.At)
		label := fmt.Sprintf("batch %d", bt.N)
		if first, last, n := Spread(hosts, ro.Key, bt.N); n > 1 {
			label += fmt.Sprintf(" (%s)", last.Sub(first).Round(10*time.Microsecond))
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c33" stroke-dasharray="4,3"/>`+"\n", bx, top-5, bx, height-60)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c33" transform="rotate(30 %.1f %.1f)">%s</text>`+"\n", bx+2, height-52, bx+2, height-52, html.EscapeString(label))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#555">%s shown from %s (hosts' clocks)</text>`+"\n", left+width-260, height-5,
		span.Round(time.Millisecond), start.Format("15:04:05.000"))
	b.WriteString("</svg>\n")
	return b.Bytes(), nil
}

func hostMap(hs []HostRecord) map[string]HostRecord {
	m := make(map[string]HostRecord, len(hs))
	for _, h := range hs {
		m[h.Host] = h
	}
	return m
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

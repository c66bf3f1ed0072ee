// This file owns the output format: each section as a Markdown table that
// can be pasted into README.md as it is, followed by notes.

package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// table is one section's result.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string // lines printed under the table
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// addSpread adds a row of name, the median of xs and their "min / max",
// each figure in format f (both empty for no xs), then rest.
func (t *table) addSpread(name string, xs []float64, f string, rest ...string) {
	med, minMax := "", ""
	if len(xs) > 0 {
		med, minMax = fmt.Sprintf(f, median(xs)), fmt.Sprintf(f+" / "+f, slices.Min(xs), slices.Max(xs))
	}
	t.add(append([]string{name, med, minMax}, rest...)...)
}

func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// markdown renders the table with its columns padded to a common width, so
// it reads in a terminal as well as rendered. A row shorter than the header
// is padded with empty cells; a pipe inside a cell is escaped.
func (t *table) markdown() string {
	width := make([]int, len(t.header))
	cell := func(row []string, i int) string {
		if i < len(row) {
			return strings.ReplaceAll(row[i], "|", `\|`)
		}
		return ""
	}
	for i := range t.header {
		width[i] = max(3, utf8.RuneCountInString(cell(t.header, i)))
		for _, r := range t.rows {
			width[i] = max(width[i], utf8.RuneCountInString(cell(r, i)))
		}
	}
	var b strings.Builder
	line := func(row []string, fill func(i int) string) {
		b.WriteString("|")
		for i := range t.header {
			s := fill(i)
			b.WriteString(" " + s + strings.Repeat(" ", width[i]-utf8.RuneCountInString(s)) + " |")
		}
		b.WriteString("\n")
	}
	if t.title != "" {
		b.WriteString("### " + t.title + "\n\n")
	}
	line(t.header, func(i int) string { return cell(t.header, i) })
	line(nil, func(i int) string { return strings.Repeat("-", width[i]) })
	for _, r := range t.rows {
		line(r, func(i int) string { return cell(r, i) })
	}
	if len(t.notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.notes {
			b.WriteString(n + "\n")
		}
	}
	return b.String()
}

// The cell formats, one per kind of figure.

func fmtRate(x float64) string { return fmt.Sprintf("%.0f", x) }
func fmtMS(x float64) string   { return fmt.Sprintf("%.2f", x) }
func fmtRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", x)
}
func fmtDiffMS(x float64) string { return fmt.Sprintf("%+.2f ms", x) }

// met answers the "met?" column.
func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// Tests of the pure parts: percentiles and medians, the table format, and
// the flags. None needs nginx or php-fpm, and none asserts on timing.

package main

import (
	"io"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	seq := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i + 1)
		}
		return s
	}
	tests := []struct {
		name string
		in   []time.Duration
		pct  float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", []time.Duration{7}, 99, 7},
		{"p50 of 100", seq(100), 50, 50},
		{"p99 of 100", seq(100), 99, 99},
		{"p100 of 100", seq(100), 100, 100},
		{"p99 of 1000", seq(1000), 99, 990},
		{"p99 of 10 is the largest", seq(10), 99, 10},
		{"p50 of 4 is the second", seq(4), 50, 2},
		{"p50 of 5 is the third", seq(5), 50, 3},
		{"p0 is the smallest", seq(5), 0, 1},
		{"p99.9 of 1000", seq(1000), 99.9, 999},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.pct); got != tt.want {
				t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.in), tt.pct, got, tt.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3,1,2 = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4,1,3,2 = %v, want 2.5", got)
	}
	xs := []float64{3, 1, 2}
	median(xs)
	if xs[0] != 3 {
		t.Errorf("median sorted its argument: %v", xs)
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := &table{title: "hello", header: []string{"metric", "direct", "fpmux"}}
	tb.add("requests/s", "1000", "990")
	tb.add("a|b", "1")
	tb.note("note %d", 1)
	want := "### hello\n\n" +
		"| metric     | direct | fpmux |\n" +
		"| ---------- | ------ | ----- |\n" +
		"| requests/s | 1000   | 990   |\n" +
		"| a\\|b       | 1      |       |\n" +
		"\nnote 1\n"
	if got := tb.markdown(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestTableMarkdownWideRunes(t *testing.T) {
	tb := &table{header: []string{"m", "v"}}
	tb.add("deploy→active", "1")
	want := "| m             | v   |\n" +
		"| ------------- | --- |\n" +
		"| deploy→active | 1   |\n"
	if got := tb.markdown(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-rounds", "2", "-only", "hello, rate"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 2 || o.duration != 2*time.Second || o.deploys != 20 {
		t.Errorf("-quick -rounds 2: rounds %d duration %v deploys %d, want 2 2s 20", o.rounds, o.duration, o.deploys)
	}
	if !o.only["hello"] || !o.only["rate"] || len(o.only) != 2 {
		t.Errorf("only = %v", o.only)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 3 || o.duration != 5*time.Second || len(o.only) != len(defaultSections) || o.only["compare"] {
		t.Errorf("defaults: rounds %d duration %v only %v", o.rounds, o.duration, o.only)
	}
	for _, bad := range [][]string{{"-only", "nope"}, {"-rounds", "0"}, {"-only", ","}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error", bad)
		}
	}
}

func TestSplitAroundAndAfterDeploys(t *testing.T) {
	start := time.Unix(1000, 0)
	ms := time.Millisecond
	samples := []sample{
		{intended: 0, lat: 1 * ms},                       // before any deploy: steady
		{intended: 1000 * ms, lat: 50 * ms},              // at the deploy: during, bin 0
		{intended: 1150 * ms, lat: 40 * ms},              // bin 1
		{intended: 2999 * ms, lat: 2 * ms},               // last instant of the 2 s window
		{intended: 3000 * ms, lat: 3 * ms, failed: true}, // window over: steady
	}
	deploys := []time.Time{start.Add(1000 * ms)}
	a := splitAround(start, samples, deploys, 2*time.Second)
	if len(a.during) != 3 || len(a.steady) != 2 || a.failSteady != 1 || a.failDuring != 0 {
		t.Errorf("during %v steady %v failed %d/%d", a.during, a.steady, a.failDuring, a.failSteady)
	}
	if a.during[0] != 2*ms || a.steady[1] != 3*ms {
		t.Errorf("not sorted: during %v steady %v", a.during, a.steady)
	}
	bins := afterDeploys(start, samples, deploys, 100*ms, 2500*ms)
	if len(bins) != 25 || len(bins[0]) != 1 || len(bins[1]) != 1 || len(bins[19]) != 1 || len(bins[20]) != 1 {
		t.Errorf("bins: %v", bins)
	}
}

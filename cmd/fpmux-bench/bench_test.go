// Tests of the pure parts: percentiles and medians, the table format, the
// FastCGI record encoding and decoding, and the flags. None needs nginx or
// php-fpm, and none asserts on timing.

package main

import (
	"bytes"
	"io"
	"strings"
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

func TestAppendRecord(t *testing.T) {
	tests := []struct {
		name    string
		typ     uint8
		id      uint16
		content []byte
		want    []byte
	}{
		{"empty params", fcgiParams, 1, nil, []byte{1, 4, 0, 1, 0, 0, 0, 0}},
		{"padded to 8", fcgiStdout, 0x0102, []byte("hello"),
			[]byte{1, 6, 1, 2, 0, 5, 3, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0}},
		{"no padding at 8", fcgiStdin, 1, []byte("12345678"),
			[]byte{1, 5, 0, 1, 0, 8, 0, 0, '1', '2', '3', '4', '5', '6', '7', '8'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appendRecord(nil, tt.typ, tt.id, tt.content); !bytes.Equal(got, tt.want) {
				t.Errorf("appendRecord = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEncodeParams(t *testing.T) {
	got := encodeParams([][2]string{{"A", "bc"}})
	if want := []byte{1, 2, 'A', 'b', 'c'}; !bytes.Equal(got, want) {
		t.Errorf("short pair = %v, want %v", got, want)
	}
	long := strings.Repeat("x", 200)
	got = encodeParams([][2]string{{"K", long}})
	want := append([]byte{1, 0x80, 0, 0, 200, 'K'}, long...)
	if !bytes.Equal(got, want) {
		t.Errorf("long value: header %v, want %v", got[:6], want[:6])
	}
	got = encodeParams([][2]string{{"E", ""}})
	if want := []byte{1, 0, 'E'}; !bytes.Equal(got, want) {
		t.Errorf("empty value = %v, want %v", got, want)
	}
}

func TestEncodeRequest(t *testing.T) {
	got := encodeRequest(1, [][2]string{{"A", "b"}}, true)
	want := []byte{
		1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, // BEGIN_REQUEST responder, keep-conn
		1, 4, 0, 1, 0, 4, 4, 0, 1, 1, 'A', 'b', 0, 0, 0, 0, // PARAMS
		1, 4, 0, 1, 0, 0, 0, 0, // end of PARAMS
		1, 5, 0, 1, 0, 0, 0, 0, // end of STDIN
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encodeRequest =\n%v\nwant\n%v", got, want)
	}
	if got := encodeRequest(1, nil, false); got[10] != 0 {
		t.Errorf("flags without keep-conn = %d, want 0", got[10])
	}
}

// TestEncodeRequestSplitsParams checks that params over 65535 bytes go in
// more than one record, which a reader reassembles.
func TestEncodeRequestSplitsParams(t *testing.T) {
	big := strings.Repeat("v", 70000)
	req := encodeRequest(3, [][2]string{{"BIG", big}}, true)
	r := bytes.NewReader(req[16:]) // after BEGIN_REQUEST
	var params []byte
	records := 0
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		n, pad := int(hdr[4])<<8|int(hdr[5]), int(hdr[6])
		body := make([]byte, n+pad)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		if hdr[1] != fcgiParams || n == 0 {
			break
		}
		records++
		params = append(params, body[:n]...)
	}
	if records != 2 {
		t.Errorf("params went in %d records, want 2", records)
	}
	if want := encodeParams([][2]string{{"BIG", big}}); !bytes.Equal(params, want) {
		t.Errorf("reassembled params differ (%d bytes, want %d)", len(params), len(want))
	}
}

func TestReadResponse(t *testing.T) {
	var stream []byte
	stream = appendRecord(stream, fcgiStdout, 1, []byte("Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nno"))
	stream = appendRecord(stream, fcgiStderr, 1, []byte("Primary script unknown"))
	stream = appendRecord(stream, fcgiStdout, 1, []byte(" such page"))
	stream = appendRecord(stream, fcgiStdout, 1, nil)
	stream = appendRecord(stream, fcgiEndRequest, 1, []byte{0, 0, 0, 7, 0, 0, 0, 0})
	stream = append(stream, "next"...) // must stay unread
	r := bytes.NewReader(stream)
	resp, err := readResponse(r, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.body()); got != "no such page" {
		t.Errorf("body = %q", got)
	}
	if resp.httpStatus() != 404 || resp.appStatus != 7 || string(resp.stderr) != "Primary script unknown" {
		t.Errorf("status %d, app status %d, stderr %q", resp.httpStatus(), resp.appStatus, resp.stderr)
	}
	if r.Len() != 4 {
		t.Errorf("%d bytes left after END_REQUEST, want 4", r.Len())
	}
}

func TestReadResponseErrors(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
	}{
		{"other request id", appendRecord(nil, fcgiStdout, 2, []byte("x"))},
		{"short END_REQUEST", appendRecord(nil, fcgiEndRequest, 1, []byte{0, 0})},
		{"truncated", appendRecord(nil, fcgiStdout, 1, []byte("hello"))[:10]},
		{"bad version", []byte{2, 6, 0, 1, 0, 0, 0, 0}},
		{"no END_REQUEST", appendRecord(nil, fcgiStdout, 1, []byte("x"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readResponse(bytes.NewReader(tt.stream), 1); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		stdout string
		want   int
	}{
		{"Content-type: text/html\r\n\r\nhello\n", 200},
		{"Status: 503 Service Unavailable\r\n\r\nbusy", 503},
		{"status:404\r\n\r\n", 404},
		{"Status: nonsense\r\n\r\n", 0},
	}
	for _, tt := range tests {
		if got := (fcgiResponse{stdout: []byte(tt.stdout)}).httpStatus(); got != tt.want {
			t.Errorf("httpStatus(%q) = %d, want %d", tt.stdout, got, tt.want)
		}
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

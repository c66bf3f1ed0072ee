// Tests of the compare section's pure parts: reading an answer, judging a
// request (failed, mixed, stale), the percentiles and the after-a-deploy
// window, the chart's buckets, the SVG, the symlink swap and pruning, and
// the nginx config of each way. None starts a process.

package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNamedReleases(t *testing.T) {
	tests := []struct {
		name           string
		body           string
		oldest, newest int
		ok             bool
	}{
		{"one release, no param", "param= files=a@r2,b@r2,late@r2\n", 2, 2, true},
		{"fpmux's param agrees", "param=r3 files=a@r3,b@r3,late@r3\n", 3, 3, true},
		{"files of two releases", "param= files=a@r2,b@r3,late@r3\n", 2, 3, true},
		{"param disagrees with the files", "param=r4 files=a@r3,b@r3,late@r3\n", 3, 4, true},
		{"two-digit releases compare as numbers", "param= files=a@r9,b@r10,late@r10\n", 9, 10, true},
		{"empty", "", 0, 0, false},
		{"nginx's 404", "File not found.\n", 0, 0, false},
		{"no newline", "param= files=a@r2,b@r2,late@r2", 0, 0, false},
		{"part without a release", "param= files=a@r2,b,late@r2\n", 0, 0, false},
		{"release not rN", "param= files=a@x2,b@r2,late@r2\n", 0, 0, false},
		{"release r0", "param= files=a@r0,b@r0,late@r0\n", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldest, newest, ok := namedReleases(tt.body)
			if oldest != tt.oldest || newest != tt.newest || ok != tt.ok {
				t.Errorf("namedReleases(%q) = %d, %d, %v; want %d, %d, %v", tt.body, oldest, newest, ok, tt.oldest, tt.newest, tt.ok)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// r2 switched from 1000 to 1001 ms, r3 from 2000 to 2300 ms.
	deploys := []deployMark{
		{release: 2, began: at(1000), returned: at(1001)},
		{release: 3, began: at(2000), returned: at(2300)},
	}
	ok := func(sentMS int, body string) reqRecord { return reqRecord{sent: at(sentMS), status: 200, body: body} }
	tests := []struct {
		name string
		r    reqRecord
		want verdict
	}{
		{"before any deploy, r1", ok(500, "param= files=a@r1,b@r1,late@r1\n"), verdict{oldest: 1, newest: 1}},
		{"after r2 returned, r2", ok(1500, "param= files=a@r2,b@r2,late@r2\n"), verdict{oldest: 2, newest: 2}},
		{"after r2 returned, still r1", ok(1500, "param= files=a@r1,b@r1,late@r1\n"), verdict{stale: true, oldest: 1, newest: 1}},
		{"at the very instant r2 returned, r1", ok(1001, "param= files=a@r1,b@r1,late@r1\n"), verdict{oldest: 1, newest: 1}},
		{"while r3 was being deployed, r2", ok(2100, "param=r2 files=a@r2,b@r2,late@r2\n"), verdict{oldest: 2, newest: 2}},
		{"after r3 returned, r2", ok(2400, "param=r2 files=a@r2,b@r2,late@r2\n"), verdict{stale: true, oldest: 2, newest: 2}},
		{"after r3 returned, newer than asked", ok(2400, "param= files=a@r4,b@r4,late@r4\n"), verdict{oldest: 4, newest: 4}},
		{"mixed, not stale", ok(1500, "param= files=a@r2,b@r3,late@r3\n"), verdict{mixed: true, oldest: 2, newest: 3}},
		{"mixed and stale", ok(2400, "param= files=a@r2,b@r3,late@r3\n"), verdict{mixed: true, stale: true, oldest: 2, newest: 3}},
		{"transport error", reqRecord{sent: at(2400), err: errors.New("read: connection reset")}, verdict{failed: true, why: "transport"}},
		{"502 from nginx", reqRecord{sent: at(2400), status: 502, body: "<html>502</html>"}, verdict{failed: true, why: "status 502"}},
		{"PHP fatal shown with status 200", ok(2400, "<br />\n<b>Fatal error</b>: Uncaught Error: Failed opening required 'late-r2.php'"), verdict{failed: true, why: "PHP fatal"}},
		{"an old release's fatal is not stale", reqRecord{sent: at(2400), status: 500}, verdict{failed: true, why: "status 500"}},
		{"200 with another page", ok(2400, "hello\n"), verdict{failed: true, why: "unrecognised body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.r, deploys, 1); got != tt.want {
				t.Errorf("classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFigures(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 100 requests 100 ms apart over 10 s: 1 ms each, except 50 ms in the
	// 2 s after each deploy began (at 2 s and at 6 s), 500 ms for the one
	// at 3.5 s, and 900 ms for the one at 9 s, which is outside both
	// windows.
	var recs []reqRecord
	for i := range 100 {
		at := time.Duration(i) * 100 * time.Millisecond
		lat := time.Millisecond
		if (at >= 2*time.Second && at < 4*time.Second) || (at >= 6*time.Second && at < 8*time.Second) {
			lat = 50 * time.Millisecond
		}
		switch at {
		case 3500 * time.Millisecond:
			lat = 500 * time.Millisecond
		case 9 * time.Second:
			lat = 900 * time.Millisecond
		}
		recs = append(recs, reqRecord{intended: at, lat: lat, sent: start.Add(at), status: 200,
			body: "param= files=a@r1,b@r1,late@r1\n"})
	}
	recs[10] = reqRecord{intended: time.Second, lat: time.Millisecond, err: errors.New("reset")}
	deploys := []deployMark{
		{release: 2, began: start.Add(2 * time.Second), returned: start.Add(2*time.Second + 10*time.Millisecond)},
		{release: 3, began: start.Add(6 * time.Second), returned: start.Add(6*time.Second + 30*time.Millisecond)},
	}
	verdicts := make([]verdict, len(recs))
	for i, r := range recs {
		verdicts[i] = classify(r, deploys, 1)
	}
	f := figures(start, recs, verdicts, deploys, 2*time.Second)
	if f.requests != 100 || f.failed != 1 || f.failKinds["transport"] != 1 || f.mixed != 0 {
		t.Errorf("requests %d failed %d (%v) mixed %d; want 100, 1 transport, 0", f.requests, f.failed, f.failKinds, f.mixed)
	}
	// Every r1 answer sent after 2.01 s is stale: from 2.1 s on, 79 of them.
	if f.stale != 79 {
		t.Errorf("stale = %d, want 79", f.stale)
	}
	if first := f.failFirst["transport"]; !strings.Contains(first, "at 1.00 s") || !strings.Contains(first, "reset") {
		t.Errorf("first transport failure = %q", first)
	}
	// Overall: 60 at 1 ms, 38 at 50 ms, one at 500 ms and one at 900 ms.
	if f.p50 != time.Millisecond || f.p99 != 500*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 1ms 500ms", f.p50, f.p99)
	}
	// In the windows: 40 requests, 39 at 50 ms and one at 500 ms; the
	// 900 ms one at 9 s is outside.
	if f.p99After != 500*time.Millisecond {
		t.Errorf("p99 after a deploy = %v, want 500ms", f.p99After)
	}
	if f.deployMedian != 20*time.Millisecond {
		t.Errorf("deploy median = %v, want 20ms", f.deployMedian)
	}
	if f.served[1] != 99 {
		t.Errorf("served = %v, want 99 by r1", f.served)
	}
	kinds := map[string]int{"transport": 3, "status 404": 812, "status 502": 3}
	first := map[string]string{"status 404": `at 14.30 s, body "File not found."`}
	if got, want := failKindsText(kinds, first), `812 status 404 (first at 14.30 s, body "File not found."), 3 status 502, 3 transport`; got != want {
		t.Errorf("failKindsText = %q, want %q", got, want)
	}
}

func TestBinByTime(t *testing.T) {
	recs := []reqRecord{
		{intended: 0, lat: 10 * time.Millisecond},
		{intended: 50 * time.Millisecond, lat: 30 * time.Millisecond},
		{intended: 150 * time.Millisecond, lat: 5 * time.Millisecond},
		{intended: 350 * time.Millisecond, lat: 7 * time.Millisecond}, // past the span
	}
	verdicts := []verdict{{}, {failed: true}, {stale: true, mixed: true}, {}}
	bins := binByTime(recs, verdicts, 100*time.Millisecond, 250*time.Millisecond)
	want := []chartBin{
		{n: 2, failed: 1, p50: 10 * time.Millisecond, p99: 30 * time.Millisecond},
		{n: 1, stale: 1, mixed: 1, p50: 5 * time.Millisecond, p99: 5 * time.Millisecond},
		{},
	}
	if !slices.Equal(bins, want) {
		t.Errorf("bins = %+v, want %+v", bins, want)
	}
}

func TestSleepForCoversTheRange(t *testing.T) {
	seen := map[int]bool{}
	for i := range sleepMax - sleepMin + 1 {
		ms := sleepFor(i)
		if ms < sleepMin || ms > sleepMax {
			t.Fatalf("sleepFor(%d) = %d, outside %d..%d", i, ms, sleepMin, sleepMax)
		}
		seen[ms] = true
	}
	if len(seen) != sleepMax-sleepMin+1 {
		t.Errorf("one run of %d requests asks for %d distinct sleeps, want all", sleepMax-sleepMin+1, len(seen))
	}
}

// svgCounts parses an SVG strictly and counts, per panel group, its deploy
// lines and p99 polylines.
func svgCounts(t *testing.T, doc []byte) (deploys, p99 []int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	depth, root := 0, ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				root = e.Name.Local
				if e.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", e.Name.Space)
				}
			}
			class := ""
			for _, a := range e.Attr {
				if a.Name.Local == "class" {
					class = a.Value
				}
			}
			switch {
			case e.Name.Local == "g" && class == "panel":
				deploys, p99 = append(deploys, 0), append(p99, 0)
			case e.Name.Local == "line" && class == "deploy":
				deploys[len(deploys)-1]++
			case e.Name.Local == "polyline" && class == "p99":
				p99[len(p99)-1]++
			}
		case xml.EndElement:
			depth--
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	return deploys, p99
}

func TestDrawChart(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	bins := func(n int, lat time.Duration) []chartBin {
		b := make([]chartBin, n)
		for i := range b {
			b[i] = chartBin{n: 20, p50: lat / 2, p99: lat}
		}
		return b
	}
	gappy := bins(30, ms(40))
	gappy[10] = chartBin{}                                             // no request: the line breaks
	gappy[20] = chartBin{n: 20, failed: 5, stale: 20, p99: ms(20_000)} // raises the axis to 100 s
	panels := []chartPanel{
		{title: `symlink <"&"> 'quoted'`, deploys: [][2]time.Duration{{ms(1000), ms(1001)}, {ms(2000), ms(2001)}, {ms(2500), ms(2700)}}, bins: bins(30, ms(40))},
		{title: "fpmux", deploys: [][2]time.Duration{{ms(1000), ms(1300)}}, bins: gappy},
		{title: "no deploys", bins: bins(30, ms(3))},
	}
	doc := drawChart(panels, 3*time.Second, 100*time.Millisecond)
	deploys, p99 := svgCounts(t, doc)
	if !slices.Equal(deploys, []int{3, 1, 0}) {
		t.Errorf("deploy lines per panel = %v, want [3 1 0]", deploys)
	}
	if !slices.Equal(p99, []int{1, 2, 1}) {
		t.Errorf("p99 polylines per panel = %v, want [1 2 1] (a gap splits the line)", p99)
	}
	if !bytes.Contains(doc, []byte("symlink &lt;&#34;&amp;&#34;&gt; &#39;quoted&#39;")) {
		t.Errorf("title not escaped as expected")
	}
	if !bytes.Contains(doc, []byte(">100 s<")) {
		t.Errorf("a 20 s p99 did not raise the axis to 100 s")
	}
	if n := bytes.Count(doc, []byte(`class="mark"`)); n != 2 {
		t.Errorf("%d marks, want 2 (failed and stale in one bucket)", n)
	}
}

func TestSVGWriter(t *testing.T) {
	w := newSVG(100, 50)
	w.open("g", "class", "a&b")
	w.line(0.04, 1.25, 10, 20, "stroke", "red")
	w.text(1, 2, "x < y & z")
	w.polyline([]float64{0, 1, 2}, []float64{5, 6, 7})
	w.close("g")
	doc := w.bytes()
	for _, want := range []string{`class="a&amp;b"`, `x1="0" y1="1.3" x2="10" y2="20"`, ">x &lt; y &amp; z</text>", `points="0,5 1,6 2,7"`} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("missing %s in\n%s", want, doc)
		}
	}
	svgCounts(t, doc)
}

func TestSwapLinkAndPrune(t *testing.T) {
	dir := t.TempDir()
	w := &wayRun{s: &stack{releases: filepath.Join(dir, "releases"), current: filepath.Join(dir, "current")},
		app: map[string]string{"late-__RELEASE__.php": "<?php // __RELEASE__\n"}}
	for n := 1; n <= 7; n++ {
		if err := w.writeRelease(n); err != nil {
			t.Fatal(err)
		}
		id := "r" + string(rune('0'+n))
		if err := swapLink(w.s.current, id); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.Readlink(w.s.current); got != filepath.Join("releases", id) {
			t.Errorf("after deploying %s, current -> %q", id, got)
		}
		if err := w.prune(); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(w.s.releases)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"r3", "r4", "r5", "r6", "r7"}) {
		t.Errorf("releases left: %v, want r3..r7", left)
	}
	b, err := os.ReadFile(filepath.Join(w.s.current, "late-r7.php"))
	if err != nil || string(b) != "<?php // r7\n" {
		t.Errorf("late-r7.php through current: %q, %v", b, err)
	}
	if _, err := os.Lstat(w.s.current + ".next"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary link was left behind: %v", err)
	}
}

func TestNginxFor(t *testing.T) {
	s := &stack{dir: "/x", sock: "/x/fpmux.sock", current: "/x/www/current", o: stackOptions{keepalive: 32}}
	conf := func(way string) string { return (&wayRun{name: way, s: s}).nginxFor("127.0.0.1:1") }
	for _, way := range []string{waySymlink, wayReload} {
		c := conf(way)
		if !strings.Contains(c, "SCRIPT_FILENAME $document_root$fastcgi_script_name;") || strings.Contains(c, "realpath") ||
			!strings.Contains(c, "fastcgi_pass unix:/x/php-fpm.sock;") || strings.Contains(c, "keep_conn") {
			t.Errorf("%s:\n%s", way, c)
		}
	}
	if c := conf(wayRealpath); !strings.Contains(c, "SCRIPT_FILENAME $realpath_root$fastcgi_script_name;") ||
		!strings.Contains(c, "DOCUMENT_ROOT $realpath_root;") {
		t.Errorf("realpath_root:\n%s", c)
	}
	c := conf(wayFpmux)
	if !strings.Contains(c, "server unix:/x/fpmux.sock;") || !strings.Contains(c, "fastcgi_pass fpmux;") ||
		!strings.Contains(c, "fastcgi_keep_conn on;") || !strings.Contains(c, "$document_root$fastcgi_script_name") {
		t.Errorf("fpmux:\n%s", c)
	}
	// launchNginx fills in nginxHead's placeholders; none other may be left.
	head := strings.NewReplacer("{{user}}", "", "{{workers}}", "", "{{dir}}", "", "{{params}}", "")
	for _, way := range wayNames() {
		if c := head.Replace(conf(way)); strings.Contains(c, "{{") || !strings.Contains(c, "root /x/www/current;") {
			t.Errorf("%s: placeholder left or wrong root:\n%s", way, c)
		}
	}
}

func TestParseFlagsCompare(t *testing.T) {
	o, err := parseFlags([]string{"-only", "compare", "-compare-ways", "fpmux, symlink", "-svg", ""}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.compareWays, []string{"fpmux", "symlink"}) || o.svg != "" || o.compareDeploys != 10 {
		t.Errorf("ways %v svg %q deploys %d", o.compareWays, o.svg, o.compareDeploys)
	}
	if b := (&bench{o: o}); b.needsStack() {
		t.Error("compare alone needs the main stack")
	}
	if b := (&bench{o: options{only: map[string]bool{"compare": true, "hello": true}}}); !b.needsStack() {
		t.Error("hello and compare do not need the main stack")
	}
	o, err = parseFlags([]string{"-only", "compare", "-quick"}, io.Discard)
	if err != nil || o.compareDeploys != 3 || len(o.compareWays) != 4 || o.svg != "docs/compare.svg" {
		t.Errorf("quick: deploys %d ways %v svg %q err %v", o.compareDeploys, o.compareWays, o.svg, err)
	}
	for _, bad := range [][]string{{"-compare-ways", "rsync"}, {"-only", "compare", "-compare-ways", ","}, {"-compare-rate", "0"}, {"-compare-deploys", "0"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error", bad)
		}
	}
}

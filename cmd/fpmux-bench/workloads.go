// This file owns the sections: what each workload runs, in which order,
// and how its figures become a table. Modes alternate A B A B so that drift
// in a noisy machine falls on both alike, and each section reports the
// median over its rounds.

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// bench is one run: its options, its stack, and what sections hand on to
// later ones.
type bench struct {
	o   options
	s   *stack
	out func(*table) // prints a finished section

	failed   int      // failed requests (and deploys) over the run
	failures []string // a sample message per section that had any

	saturation      float64 // direct hello throughput (req/s), for the open-loop rate
	goPerConn       float64 // fpmux goroutines per idle front connection, from scale
	maxPoolAtDirect int     // fpmux's pool connections seen at the start of a direct phase

	cpu func() cpuSnap // what ab measures a phase's CPU by; nil: the main stack's
}

// section is one part of a run and the table it prints.
type section struct {
	name      string
	inDefault bool // runs when -only is not given
	run       func(b *bench, ctx context.Context) (*table, error)
}

// sections in the order they run: the first five compare two modes on
// release r1; switch and deploys replace r1, so they come after. compare
// brings up stacks of its own, one per way, and runs only when named.
var sections = []section{
	{"hello", true, func(b *bench, ctx context.Context) (*table, error) {
		return b.closedSection(ctx, "hello", "/hello.php", b.o.conns, b.s.direct, 0.95)
	}},
	{"rate", true, (*bench).rate},
	{"framework", true, func(b *bench, ctx context.Context) (*table, error) {
		return b.closedSection(ctx, "framework", "/fw/index.php", b.o.conns, b.s.direct, 0.98)
	}},
	// Issue 16's light page at saturation: 16 clients, against the other
	// way to deploy atomically, on the same pool.
	{"apcu", true, func(b *bench, ctx context.Context) (*table, error) {
		return b.closedSection(ctx, "apcu", "/apcu.php", 16, b.s.realpath, 0.95)
	}},
	{"pinned", true, (*bench).pinned},
	{"switch", true, (*bench).switches},
	{"switchcost", true, (*bench).switchCost},
	{"scale", true, (*bench).scale},
	{"deploys", true, (*bench).deploys},
	{"warmup", true, (*bench).warmupSection},
	{"realapp", true, (*bench).realapp},
	{"compare", false, (*bench).compare},
}

// sectionNames lists every section, and defaultSections those that run
// when -only is not given.
var sectionNames, defaultSections = func() (all, def []string) {
	for _, s := range sections {
		all = append(all, s.name)
		if s.inDefault {
			def = append(def, s.name)
		}
	}
	return all, def
}()

// needsStack reports whether a chosen section measures the main stack
// (fpmux and nginx with the direct and via servers); compare and realapp
// bring up their own.
func (b *bench) needsStack() bool {
	for name := range b.o.only {
		if name != "compare" && name != "realapp" {
			return true
		}
	}
	return false
}

func (b *bench) run(ctx context.Context) error {
	if b.needsStack() {
		if err := b.checkPages(); err != nil {
			return err
		}
	}
	for _, sec := range sections {
		if !b.o.only[sec.name] {
			continue
		}
		logf("section %s", sec.name)
		t, err := sec.run(b, ctx)
		if t != nil {
			b.out(t)
		}
		if err != nil {
			return fmt.Errorf("section %s: %w", sec.name, err)
		}
	}
	return nil
}

// checkPages makes sure both servers answer each page alike before
// anything is measured.
func (b *bench) checkPages() error {
	for _, path := range []string{"/hello.php", "/apcu.php", "/fw/index.php"} {
		var bodies [3][]byte
		for i, addr := range []string{b.s.direct, b.s.via, b.s.realpath} {
			code, body, err := fetch(newTarget(addr, path))
			if err != nil {
				return fmt.Errorf("check %s: %w", path, err)
			}
			if code != 200 {
				return fmt.Errorf("check http://%s%s: status %d: %.300s", addr, path, code, body)
			}
			bodies[i] = body
		}
		if string(bodies[0]) != string(bodies[1]) || string(bodies[0]) != string(bodies[2]) {
			return fmt.Errorf("check %s: direct, via fpmux and realpath_root answer differently:\n%.300s\n---\n%.300s\n---\n%.300s", path, bodies[0], bodies[1], bodies[2])
		}
	}
	return nil
}

// fail adds n failed requests or deploys to the run's, with a message
// that describes them, when there are any.
func (b *bench) fail(n int, format string, args ...any) {
	if n > 0 {
		b.failed += n
		b.failures = append(b.failures, fmt.Sprintf(format, args...))
	}
}

// count adds a phase's failures to the run's.
func (b *bench) count(what string, p phase) {
	b.fail(p.failed, "%s: %d failed, first: %s", what, p.failed, p.firstErr)
	if p.failed > 0 {
		logf("%s: %d requests failed, first: %s", what, p.failed, p.firstErr)
	}
}

// pause sleeps between phases, long enough for fpmux to close the pool
// connections a via-fpmux phase left idle (it closes those unused for 2 s),
// so a direct phase finds every php-fpm child free. Every phase gets it,
// whatever mode came before.
func (b *bench) pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.o.pause):
		return nil
	}
}

// runFunc runs one phase of load against t for d.
type runFunc func(ctx context.Context, t target, d time.Duration) (phase, error)

func closedRun(conns int) runFunc {
	return func(ctx context.Context, t target, d time.Duration) (phase, error) {
		return closedLoop(ctx, t, conns, d)
	}
}

// ab runs modes 0 and 1 alternately for the rounds, each phase preceded by
// hook(mode) (may be nil) and the pause; with warm, each mode first gets an
// unmeasured warm-up. It returns each mode's summary over its rounds.
func (b *bench) ab(ctx context.Context, section string, names [2]string, targets [2]target, run runFunc, warm bool, hook func(mode int) error) ([2]summary, error) {
	var res [2][]phase
	if warm {
		for m := range 2 {
			logf("%s: warm-up %s %v", section, names[m], b.o.warmup)
			p, err := run(ctx, targets[m], b.o.warmup)
			if err != nil {
				return [2]summary{}, err
			}
			b.count(section+" warm-up "+names[m], p)
		}
	}
	for r := range b.o.rounds {
		for m := range 2 {
			if hook != nil {
				if err := hook(m); err != nil {
					return [2]summary{}, err
				}
			}
			if err := b.pause(ctx); err != nil {
				return [2]summary{}, err
			}
			if a := targets[m].addr; a == b.s.direct || a == b.s.realpath {
				b.notePoolConns()
			}
			take := b.s.takeCPU
			if b.cpu != nil {
				take = b.cpu
			}
			cpu0 := take()
			p, err := run(ctx, targets[m], b.o.duration)
			if err != nil {
				return [2]summary{}, err
			}
			p.cpu = take().since(cpu0)
			b.count(fmt.Sprintf("%s round %d %s", section, r+1, names[m]), p)
			logf("%s: round %d/%d %-8s %7.0f req/s  p50 %.2f ms  p99 %.2f ms  failed %d  others' CPU %.0f%%",
				section, r+1, b.o.rounds, names[m], p.rps(), ms(p.p50()), ms(p.p99()), p.failed, 100*p.cpu.others())
			res[m] = append(res[m], p)
		}
	}
	return [2]summary{summarize(res[0]), summarize(res[1])}, nil
}

// notePoolConns records how many connections to php-fpm fpmux still holds
// as a direct phase starts: each pins a php-fpm child the direct phase then
// cannot use.
func (b *bench) notePoolConns() {
	u, err := fdsOf(b.s.fpmux.pid(), b.s.sock, b.s.adminSock)
	if err != nil {
		logf("count fpmux's pool connections: %v", err)
		return
	}
	if u.pool > 0 {
		logf("fpmux holds %d connections to php-fpm as a direct phase starts", u.pool)
	}
	b.maxPoolAtDirect = max(b.maxPoolAtDirect, u.pool)
}

// summary is the median of each figure over a mode's rounds.
type summary struct {
	rps, p50, p99 float64
	cpu           map[string]float64 // µs of CPU per request, by group
	busy          float64            // share of the machine's CPU in use
	others        float64            // share of the machine's CPU outside the bench
	failed        int                // failed requests over the rounds
	rounds        string             // each round's throughput and latency, for the notes
}

func summarize(ps []phase) summary {
	var rps, p50, p99, busy, others []float64
	cpu := map[string][]float64{}
	var raw []string
	for _, p := range ps {
		rps = append(rps, p.rps())
		p50 = append(p50, ms(p.p50()))
		p99 = append(p99, ms(p.p99()))
		busy = append(busy, p.cpu.busyShare())
		others = append(others, p.cpu.others())
		var all float64
		for _, g := range cpuGroups {
			us := float64(p.cpu.group[g]) / float64(time.Microsecond) / float64(max(1, len(p.lat)))
			cpu[g] = append(cpu[g], us)
			all += us
		}
		cpu["all"] = append(cpu["all"], all)
		raw = append(raw, fmt.Sprintf("%.0f req/s %.2f/%.2f ms", p.rps(), ms(p.p50()), ms(p.p99())))
	}
	s := summary{rps: median(rps), p50: median(p50), p99: median(p99), busy: median(busy), others: median(others), cpu: map[string]float64{}, rounds: strings.Join(raw, "; ")}
	for g, xs := range cpu {
		s.cpu[g] = median(xs)
	}
	for _, p := range ps {
		s.failed += p.failed
	}
	return s
}

// addCPURows adds the CPU per request of each part of the stack, and the
// share of the machine other processes took, for modes d and f.
func addCPURows(t *table, d, f summary) {
	for _, g := range append(cpuGroups, "all") {
		name := "CPU per request, " + g + " (µs)"
		if g == "all" {
			name = "CPU per request, all of the above (µs)"
		}
		t.add(name, fmt.Sprintf("%.0f", d.cpu[g]), fmt.Sprintf("%.0f", f.cpu[g]), fmt.Sprintf("%+.0f µs", f.cpu[g]-d.cpu[g]), "", "")
	}
	t.add("machine CPU busy (% of all CPUs)", fmt.Sprintf("%.0f%%", 100*d.busy), fmt.Sprintf("%.0f%%", 100*f.busy), "", "", "")
	t.add("CPU taken by other processes (% of machine)", fmt.Sprintf("%.0f%%", 100*d.others), fmt.Sprintf("%.0f%%", 100*f.others), "", "", "")
	t.note("CPU per request: user+system time in /proc (10 ms ticks) over a phase, divided by its requests; client is this process. Other processes: the machine's busy time less these four, as a share of all its CPUs; it is the noise a phase ran in.")
}

// logTimeline writes an open-loop phase's latency per bucket of intended
// start to stderr, to show when a run went wrong.
func logTimeline(section string, lp openPhase, bucket time.Duration) {
	if len(lp.samples) == 0 {
		return
	}
	for k, b := range timeBins(lp.samples, bucket, lp.samples[len(lp.samples)-1].intended+bucket, nil) {
		if from := time.Duration(k) * bucket; b.n > 0 {
			logf("%s: %5.1fs-%5.1fs  %5d requests  p50 %8.2f ms  p99 %8.2f ms  failed %d", section,
				from.Seconds(), (from + bucket).Seconds(), b.n, ms(b.p50), ms(b.p99), b.failed)
		}
	}
}

var modeNames = [2]string{"direct", "fpmux"}

func (b *bench) targets(path string) [2]target {
	return [2]target{newTarget(b.s.direct, path), newTarget(b.s.via, path)}
}

// closedSection is hello, framework and apcu: a closed loop at conns
// connections, the nginx server at base (direct, or realpath_root) against
// via fpmux, with a floor on the throughput ratio.
func (b *bench) closedSection(ctx context.Context, name, path string, conns int, base string, minRatio float64) (*table, error) {
	names := modeNames
	if base == b.s.realpath {
		names[0] = "realpath_root"
	}
	res, err := b.ab(ctx, name, names, [2]target{newTarget(base, path), newTarget(b.s.via, path)}, closedRun(conns), true, nil)
	if err != nil {
		return nil, err
	}
	d, f := res[0], res[1]
	if name == "hello" {
		b.saturation = d.rps
	}
	ratio := f.rps / d.rps
	t := &table{
		title:  fmt.Sprintf("%s: GET %s, closed loop, %d keep-alive connections", name, path, conns),
		header: []string{"metric", names[0], "fpmux", "fpmux/" + names[0] + " or difference", "target", "met?"},
	}
	t.add("requests/s", fmtRate(d.rps), fmtRate(f.rps), fmtRatio(ratio), fmt.Sprintf(">= %.2f", minRatio), met(ratio >= minRatio))
	t.add("p50 latency (ms)", fmtMS(d.p50), fmtMS(f.p50), fmtDiffMS(f.p50-d.p50), "", "")
	t.add("p99 latency (ms)", fmtMS(d.p99), fmtMS(f.p99), fmtDiffMS(f.p99-d.p99), "", "")
	t.add("failed requests", fmt.Sprint(d.failed), fmt.Sprint(f.failed), "", "0", met(d.failed+f.failed == 0))
	addCPURows(t, d, f)
	t.note("Medians over %d round(s) of %v each, modes alternating. Per round, %s: %s.", b.o.rounds, b.o.duration, names[0], d.rounds)
	t.note("Per round, fpmux: %s.", f.rounds)
	switch name {
	case "framework":
		if _, body, err := fetch(newTarget(b.s.via, path)); err == nil {
			t.note("The page loads %d PHP files (autoloader, bootstrap chain, %d interfaces, %d traits, %d classes) and answers %d bytes of HTML.",
				2+chainFiles+contracts+concerns+models, contracts, concerns, models, len(body))
		}
	case "apcu":
		t.note("The page reads %d bytes from APCu and answers them. realpath_root: nginx rooted at the current symlink with $realpath_root in SCRIPT_FILENAME and DOCUMENT_ROOT, straight to the same php-fpm pool as fpmux's (release r1's), one connection per request; fpmux: upstream keepalive %d and fastcgi_keep_conn on.",
			len(apcuLine)*apcuRepeat, b.o.keepalive)
	}
	return t, nil
}

// maxOpenConns bounds the connections of an open-loop client; past it a
// request waits, and the table says how often.
const maxOpenConns = 2048

// openRate is the open-loop rate: -rate, or half the direct hello
// saturation, measured now when the hello section did not run.
func (b *bench) openRate(ctx context.Context) (float64, error) {
	if b.o.rate > 0 {
		return b.o.rate, nil
	}
	if b.saturation == 0 {
		t := newTarget(b.s.direct, "/hello.php")
		logf("measuring direct hello saturation for the open-loop rate")
		if _, err := closedLoop(ctx, t, b.o.conns, b.o.warmup); err != nil {
			return 0, err
		}
		if err := b.pause(ctx); err != nil {
			return 0, err
		}
		p, err := closedLoop(ctx, t, b.o.conns, b.o.duration)
		if err != nil {
			return 0, err
		}
		b.count("saturation", p)
		b.saturation = p.rps()
	}
	return math.Round(b.saturation / 2), nil
}

func openRun(rate float64, info *[]openPhase) runFunc {
	return func(ctx context.Context, t target, d time.Duration) (phase, error) {
		p, err := openLoop(ctx, t, rate, d, maxOpenConns)
		*info = append(*info, p)
		return p.phase, err
	}
}

func (b *bench) rate(ctx context.Context) (*table, error) {
	rate, err := b.openRate(ctx)
	if err != nil {
		return nil, err
	}
	var info []openPhase
	res, err := b.ab(ctx, "rate", modeNames, b.targets("/hello.php"), openRun(rate, &info), true, nil)
	if err != nil {
		return nil, err
	}
	d, f := res[0], res[1]
	t := &table{
		title:  fmt.Sprintf("rate: GET /hello.php, open loop at %.0f req/s", rate),
		header: []string{"metric", "direct", "fpmux", "fpmux/direct or difference", "target", "met?"},
	}
	t.add("p50 latency (ms)", fmtMS(d.p50), fmtMS(f.p50), fmtDiffMS(f.p50-d.p50), "<= +0.30 ms", met(f.p50-d.p50 <= 0.3))
	t.add("p99 latency (ms)", fmtMS(d.p99), fmtMS(f.p99), fmtDiffMS(f.p99-d.p99), "<= +0.30 ms", met(f.p99-d.p99 <= 0.3))
	t.add("failed requests", fmt.Sprint(d.failed), fmt.Sprint(f.failed), "", "0", met(d.failed+f.failed == 0))
	addCPURows(t, d, f)
	conns, waited, late := 0, 0, time.Duration(0)
	for _, p := range info {
		conns, waited, late = max(conns, p.conns), waited+p.waited, max(late, p.lateness)
	}
	src := "half the direct hello saturation"
	if b.o.rate > 0 {
		src = "-rate"
	}
	t.note("Rate: %s. Latency counts from each request's intended start. Medians over %d round(s) of %v. Per round, direct: %s.", src, b.o.rounds, b.o.duration, d.rounds)
	t.note("Per round, fpmux: %s.", f.rounds)
	t.note("Over all phases, warm-ups included, the client used up to %d connections; a request waited for a connection %d times; the dispatcher was at most %.2f ms late.", conns, waited, ms(late))
	return t, nil
}

// logSummary counts fpmux's warnings and errors and quotes the first few,
// since a bench run is also a test of how fpmux behaves under load.
func logSummary(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("fpmux log unreadable: %v", err)
	}
	var warn, errs int
	var samples []string
	for _, line := range strings.Split(string(b), "\n") {
		isErr := strings.Contains(line, "level=ERROR")
		if !isErr && !strings.Contains(line, "level=WARN") {
			continue
		}
		if isErr {
			errs++
		} else {
			warn++
		}
		if len(samples) < 5 {
			samples = append(samples, "    "+line)
		}
	}
	s := fmt.Sprintf("fpmux log: %d warnings, %d errors", warn, errs)
	if len(samples) > 0 {
		s += "; first:\n" + strings.Join(samples, "\n")
	}
	return s
}

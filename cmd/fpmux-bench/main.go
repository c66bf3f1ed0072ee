// Command fpmux-bench measures what fpmux's extra hop costs. It starts a
// php-fpm pool through fpmux and an nginx with three servers in front of
// that same pool (straight to its socket, by $realpath_root, and through
// fpmux), loads them alike with its own Go client and prints Markdown
// tables for README.md: throughput and latency direct against via fpmux, a
// light APCu page against $realpath_root, latency around deploys, the CPU
// and memory of the pools over a deploy, the cost of idle connections, and
// whether many deploys leave anything behind. The compare section, run
// only when -only names it, deploys the same app under the same load four
// ways (a symlink swap, the swap plus a php-fpm reload, nginx's
// $realpath_root, and fpmux) and counts what each way's requests saw.
//
// Usage (as root or as any user with php-fpm and nginx installed):
//
//	go run ./cmd/fpmux-bench [-quick] [-only hello,rate,...] [-keep]
//	go run ./cmd/fpmux-bench -only compare [-svg docs/compare.svg]
//
// Tables go to stdout, progress to stderr. It exits non-zero when a request
// or a deploy failed, or when something it started outlived it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	fpmuxBin     string
	rounds       int
	duration     time.Duration
	warmup       time.Duration
	pause        time.Duration
	conns        int
	rate         float64
	only         map[string]bool
	quick        bool
	keep         bool
	children     int
	nginxWorkers string
	keepalive    int
	switches     int
	switchEvery  time.Duration
	controlRate  float64
	idleConns    int
	deploys      int

	compareWays     []string
	compareRate     float64
	compareDeploys  int
	compareEvery    time.Duration
	compareChildren int
	svg             string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fpmux-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.fpmuxBin, "fpmux", "", "fpmux binary `path`; empty: go build ./cmd/fpmux from the module root")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of each A/B comparison")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measured phase")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each mode's first phase")
	fs.DurationVar(&o.pause, "pause", 3*time.Second, "quiet time before every phase (fpmux closes pool connections idle for 2s)")
	fs.IntVar(&o.conns, "c", 32, "connections of the closed-loop client")
	fs.Float64Var(&o.rate, "rate", 0, "open-loop rate in req/s; 0: half the direct hello saturation")
	only := fs.String("only", strings.Join(defaultSections, ","), "comma-separated `sections` to run, of "+strings.Join(sectionNames, ","))
	fs.BoolVar(&o.quick, "quick", false, "a short try: 1 round of 2s, 5 switches, 20 deploys, 3 compare deploys (explicit flags still win)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (logs, configs) at the end")
	fs.IntVar(&o.children, "children", 4, "pm.max_children of the static php-fpm pools")
	fs.StringVar(&o.nginxWorkers, "nginx-workers", "auto", "nginx worker_processes")
	fs.IntVar(&o.keepalive, "keepalive", 32, "idle connections nginx keeps to fpmux (upstream keepalive)")
	fs.IntVar(&o.switches, "switches", 20, "deploys in the switch section")
	fs.DurationVar(&o.switchEvery, "switch-every", 2500*time.Millisecond, "time between deploys in the switch section")
	fs.Float64Var(&o.controlRate, "control-rate", 50, "req/s straight to an idle control pool during the switch section (0: none)")
	fs.IntVar(&o.idleConns, "idle-conns", 2000, "idle FastCGI connections in the scale section")
	fs.IntVar(&o.deploys, "deploys", 200, "deploys in the deploys section")
	ways := fs.String("compare-ways", strings.Join(wayNames(), ","), "comma-separated ways the compare section deploys, in this order")
	fs.Float64Var(&o.compareRate, "compare-rate", 200, "open-loop rate of the compare section in req/s")
	fs.IntVar(&o.compareDeploys, "compare-deploys", 10, "deploys per way in the compare section")
	fs.DurationVar(&o.compareEvery, "compare-every", 2500*time.Millisecond, "time between deploys in the compare section")
	fs.IntVar(&o.compareChildren, "compare-children", 16, "pm.max_children of every way's php-fpm pool in the compare section")
	fs.StringVar(&o.svg, "svg", "docs/compare.svg", "where the compare section writes its latency chart (`path`); empty: nowhere")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"rounds": "1", "duration": "2s", "switches": "5", "deploys": "20", "compare-deploys": "3"} {
			if !set[name] {
				fs.Set(name, v)
			}
		}
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(sectionNames, s) {
			return o, fmt.Errorf("-only: unknown section %q; want some of %s", s, strings.Join(sectionNames, ","))
		}
		o.only[s] = true
	}
	for _, w := range strings.Split(*ways, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if !slices.Contains(wayNames(), w) {
			return o, fmt.Errorf("-compare-ways: unknown way %q; want some of %s", w, strings.Join(wayNames(), ","))
		}
		o.compareWays = append(o.compareWays, w)
	}
	switch {
	case len(o.only) == 0:
		return o, errors.New("-only: no section named")
	case o.only["compare"] && len(o.compareWays) == 0:
		return o, errors.New("-compare-ways: no way named")
	case o.compareRate <= 0 || o.compareDeploys < 1 || o.compareEvery <= 0 || o.compareChildren < 1:
		return o, errors.New("-compare-rate and -compare-every must be positive, -compare-deploys and -compare-children at least 1")
	case o.rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.duration <= 0 || o.warmup <= 0 || o.pause < 0:
		return o, errors.New("-duration and -warmup must be positive, -pause not negative")
	case o.conns < 1 || o.children < 2 || o.switches < 1 || o.idleConns < 1 || o.deploys < 1:
		return o, errors.New("-c, -switches, -idle-conns and -deploys must be at least 1, -children at least 2")
	case o.rate < 0 || o.controlRate < 0:
		return o, errors.New("-rate and -control-rate must not be negative")
	}
	return o, nil
}

// started is when the run began; progress lines carry the time since.
var started = time.Now()

// logf writes a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "fpmux-bench: %v\n", err)
		return 2
	}
	// Caught until the end, so a second Ctrl-C does not cut the cleanup.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	s, err := newStack(stackOptions{fpmuxBin: o.fpmuxBin, nginxWorkers: o.nginxWorkers, keepalive: o.keepalive, children: o.children, keep: o.keep})
	if err != nil {
		fmt.Fprintf(stderr, "fpmux-bench: %v\n", err)
		return 1
	}
	defer s.close() // on a panic too; close runs once
	fmt.Fprint(stdout, header(o, s, args))

	b := &bench{o: o, s: s, out: func(t *table) { fmt.Fprintln(stdout, t.markdown()) }}
	if b.needsStack() {
		err = s.start(ctx)
	}
	if err == nil {
		err = b.run(ctx)
	}
	logs := ""
	if b.needsStack() {
		logs = logSummary(s.fpmuxLog)
	}
	closeErr := s.close()

	fmt.Fprintf(stdout, "### Run\n\n")
	fmt.Fprintf(stdout, "- total run time: %s\n", time.Since(started).Round(time.Second))
	fmt.Fprintf(stdout, "- load average at the end: %s\n", loadavg())
	if b.maxPoolAtDirect > 0 {
		fmt.Fprintf(stdout, "- fpmux still held up to %d connections to php-fpm when a direct phase started (each pins a php-fpm child the direct phase cannot use)\n", b.maxPoolAtDirect)
	}
	if logs != "" {
		fmt.Fprintf(stdout, "- %s\n", strings.ReplaceAll(logs, "\n", "\n  "))
	}
	fmt.Fprintf(stdout, "- failed requests and deploys: %d\n", b.failed)
	for _, f := range b.failures {
		fmt.Fprintf(stdout, "  - %s\n", f)
	}
	code := 0
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "fpmux-bench: interrupted (%v); stopped what it had started\n", err)
		code = 1
	case err != nil:
		fmt.Fprintf(stderr, "fpmux-bench: %v\n", err)
		code = 1
	}
	if closeErr != nil {
		fmt.Fprintf(stderr, "fpmux-bench: stopping: %v\n", closeErr)
		code = 1
	}
	if b.failed > 0 {
		fmt.Fprintf(stderr, "fpmux-bench: %d requests or deploys failed\n", b.failed)
		code = 1
	}
	return code
}

// header describes the machine, the settings and the command line.
func header(o options, s *stack, args []string) string {
	var b strings.Builder
	b.WriteString("## fpmux-bench\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n", commandLine(args))
	fmt.Fprintf(&b, "- date: %s\n", time.Now().UTC().Format(time.RFC3339))
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- machine: %d CPUs (GOMAXPROCS %d), Linux %s, %s (%s), %s, %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), strings.TrimSpace(string(kernel)),
		strings.Split(firstLine(s.phpFPM, "-v"), " (built")[0], s.phpFPM, firstLine(s.nginxBin, "-v"), runtime.Version())
	fmt.Fprintf(&b, "- load average at the start: %s\n", loadavg())
	only := []string{}
	for _, n := range sectionNames {
		if o.only[n] {
			only = append(only, n)
		}
	}
	rate := "half the direct hello saturation"
	if o.rate > 0 {
		rate = fmt.Sprintf("%.0f req/s", o.rate)
	}
	if len(only) == 1 && only[0] == "compare" {
		// The compare section describes its own settings under its table.
		fmt.Fprintf(&b, "- sections: compare\n\n")
		return b.String()
	}
	fmt.Fprintf(&b, "- sections: %s; %d round(s) of %v per mode, modes alternating, %v warm-up before each mode's first phase, %v pause before every phase\n",
		strings.Join(only, ", "), o.rounds, o.duration, o.warmup, o.pause)
	fmt.Fprintf(&b, "- closed loop: %d keep-alive connections; open loop: %s; switch: %d deploys %v apart, with a control at %.0f req/s; scale: %d idle connections; deploys: %d\n",
		o.conns, rate, o.switches, o.switchEvery, o.controlRate, o.idleConns, o.deploys)
	fmt.Fprintf(&b, "- php-fpm: pm static, pm.max_children %d, opcache on, validate_timestamps 0 (fpmux's defaults); nginx: worker_processes %s, direct and realpath_root: fastcgi_pass to the pool's socket, one connection per request; via fpmux: upstream keepalive %d, fastcgi_keep_conn on, over unix sockets\n",
		o.children, o.nginxWorkers, o.keepalive)
	b.WriteString("- client: Go, raw HTTP/1.1 on keep-alive TCP connections to nginx, responses parsed by net/http's ReadResponse; percentiles are nearest-rank over every recorded latency\n\n")
	return b.String()
}

// commandLine is how the bench was invoked, as go run when it was.
func commandLine(args []string) string {
	prog := os.Args[0]
	if strings.Contains(prog, "go-build") {
		prog = "go run ./cmd/fpmux-bench"
	}
	parts := []string{prog}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$`\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// firstLine runs a version command and returns its first line (nginx
// prints it on stderr).
func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return bin + ": " + err.Error()
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// loadavg returns /proc/loadavg's three averages: a busy machine shows
// here before it shows in the figures.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

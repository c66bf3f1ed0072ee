// This file owns the compare section: the same PHP app, under the same
// open-loop load, deployed the same number of times at the same spacing in
// four ways, one after the other, each on a stack of its own that is
// brought up and stopped in turn:
//
//   - symlink: one php-fpm pool started as a distribution runs it, nginx
//     rooted at the current symlink with $document_root; a deploy swaps the
//     symlink;
//   - symlink+reload: the same, and the deploy then sends the php-fpm
//     master SIGUSR2, as a service manager's reload does;
//   - realpath_root: nginx resolves the symlink per request
//     ($realpath_root for SCRIPT_FILENAME and DOCUMENT_ROOT); a deploy swaps
//     the symlink;
//   - fpmux: nginx passes to fpmux; a deploy is `fpmux deploy`.
//
// Every request's answer is judged: failed, mixed (it names two
// releases) or stale (it began after a deploy had returned and was served
// an older release), and its latency is kept for the table and the chart.

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/pool"
)

// The ways, as -compare-ways names them.
const (
	waySymlink  = "symlink"
	wayReload   = "symlink+reload"
	wayRealpath = "realpath_root"
	wayFpmux    = "fpmux"
)

func wayNames() []string { return []string{waySymlink, wayReload, wayRealpath, wayFpmux} }

// wayDirs names each way's directory under the run's temp dir; no name is
// a prefix of another, so a process's command line names one way only.
var wayDirs = map[string]string{waySymlink: "symlink", wayReload: "reload", wayRealpath: "realpath", wayFpmux: "fpmux"}

const (
	// keepReleases is how many release directories a deploy leaves,
	// the current one included: Capistrano's and Deployer's default.
	keepReleases = 5
	// Each request asks index.php to sleep between its first includes and
	// its late one for sleepMin to sleepMax ms, so some straddle a deploy.
	sleepMin, sleepMax = 20, 50
	// afterWindow is how long after a deploy began a request counts as
	// "after a deploy" for the latency column.
	afterWindow = 2 * time.Second
	// chartBucket is the time bucket of the chart's latency lines.
	chartBucket = 100 * time.Millisecond
	// phpPath is the whole environment of the php-fpm the bench starts
	// itself.
	phpPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// appNames are the files of testdata/app a release gets: index.php
// includes a.php and b.php, sleeps, then includes late-<release>.php,
// which the next release no longer has.
var appNames = []string{"index.php", "a.php", "b.php", "late-__RELEASE__.php"}

// readApp reads the test app from the module's testdata/app, with
// __RELEASE__ still in names and contents.
func readApp() (map[string]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	app := map[string]string{}
	for _, name := range appNames {
		b, err := os.ReadFile(filepath.Join(root, "testdata", "app", name))
		if err != nil {
			return nil, fmt.Errorf("read test app: %w", err)
		}
		app[name] = string(b)
	}
	return app, nil
}

// writeAppRelease writes the app as release id under root.
func writeAppRelease(root, id string, app map[string]string) error {
	if err := mkdir(root); err != nil {
		return err
	}
	for name, content := range app {
		path := filepath.Join(root, strings.ReplaceAll(name, "__RELEASE__", id))
		if err := writeFile(path, strings.ReplaceAll(content, "__RELEASE__", id)); err != nil {
			return err
		}
	}
	return nil
}

// sleepFor is request i's ?ms=: every value from sleepMin to sleepMax
// once in each run of 31 requests, in a scattered order.
func sleepFor(i int) int { return sleepMin + (i*13)%(sleepMax-sleepMin+1) }

// reqRecord is one measured request.
type reqRecord struct {
	intended  time.Duration // meant to start this long after the load began
	lat       time.Duration // from the intended start to the last byte
	sent, end time.Time     // when it was written and when its answer was read
	status    int
	body      string
	err       error // transport: dial, write, read
}

// deployMark is one deploy that succeeded.
type deployMark struct {
	release         int // N of the release rN it made current
	began, returned time.Time
}

// verdict is what a request's answer says.
type verdict struct {
	failed, mixed, stale bool
	why                  string // for a failed one: transport, status N, PHP fatal, unrecognised body
	oldest, newest       int    // the release numbers the answer names; 0 when failed
}

// probeAnswer is index.php's answer: fpmux's FPMUX_RELEASE (empty
// elsewhere) and the file@release list.
var probeAnswer = regexp.MustCompile(`^param=(\S*) files=(\S+)\n$`)

// namedReleases returns the oldest and newest release an index.php answer
// names, counting FPMUX_RELEASE when set; ok is false when body is not such
// an answer.
func namedReleases(body string) (oldest, newest int, ok bool) {
	m := probeAnswer.FindStringSubmatch(body)
	if m == nil {
		return 0, 0, false
	}
	var names []string
	if m[1] != "" {
		names = append(names, m[1])
	}
	for _, part := range strings.Split(m[2], ",") {
		_, rel, found := strings.Cut(part, "@")
		if !found {
			return 0, 0, false
		}
		names = append(names, rel)
	}
	for _, name := range names {
		n, err := strconv.Atoi(strings.TrimPrefix(name, "r"))
		if err != nil || !strings.HasPrefix(name, "r") || n < 1 {
			return 0, 0, false
		}
		if oldest == 0 || n < oldest {
			oldest = n
		}
		newest = max(newest, n)
	}
	return oldest, newest, true
}

// classify judges one request. deploys are in order; initial is the
// release current before the first. A failed request is neither mixed nor
// stale. A stale one began (was written) after a deploy had returned and
// names a release older than the one that deploy made current.
func classify(r reqRecord, deploys []deployMark, initial int) verdict {
	var v verdict
	switch {
	case r.err != nil:
		v.failed, v.why = true, "transport"
	case r.status != 200:
		v.failed, v.why = true, fmt.Sprintf("status %d", r.status)
	case strings.Contains(r.body, "Fatal error"):
		v.failed, v.why = true, "PHP fatal"
	}
	if v.failed {
		return v
	}
	oldest, newest, ok := namedReleases(r.body)
	if !ok {
		v.failed, v.why = true, "unrecognised body"
		return v
	}
	v.oldest, v.newest = oldest, newest
	v.mixed = oldest != newest
	want := initial
	for _, d := range deploys {
		if d.returned.Before(r.sent) {
			want = d.release
		}
	}
	v.stale = oldest < want
	return v
}

// wayFigures are one way's row of the table.
type wayFigures struct {
	requests, failed, mixed, stale int
	p50, p99, p99After             time.Duration
	deployMedian                   time.Duration
	failKinds                      map[string]int    // failed requests by why
	failFirst                      map[string]string // the first failed request of each why, described
	served                         map[int]int       // requests not failed, by the oldest release they name
}

// figures counts the verdicts and takes the latency percentiles: over
// every request (failed ones too), and over those meant to start within
// window after a deploy began, pooled over the deploys.
func figures(start time.Time, recs []reqRecord, verdicts []verdict, deploys []deployMark, window time.Duration) wayFigures {
	f := wayFigures{requests: len(recs), failKinds: map[string]int{}, failFirst: map[string]string{}, served: map[int]int{}}
	samples := make([]sample, len(recs))
	for i, r := range recs {
		v := verdicts[i]
		samples[i] = sample{intended: r.intended, lat: r.lat, failed: v.failed, done: true}
		switch {
		case v.failed:
			f.failed++
			if f.failKinds[v.why]++; f.failKinds[v.why] == 1 {
				f.failFirst[v.why] = describeFailure(r)
			}
			continue
		case v.mixed:
			f.mixed++
		}
		f.stale += btoi(v.stale)
		f.served[v.oldest]++
	}
	lat := make([]time.Duration, len(recs))
	for i, r := range recs {
		lat[i] = r.lat
	}
	slices.Sort(lat)
	f.p50, f.p99 = percentile(lat, 50), percentile(lat, 99)
	began := make([]time.Time, len(deploys))
	took := make([]float64, len(deploys))
	for i, d := range deploys {
		began[i] = d.began
		took[i] = float64(d.returned.Sub(d.began))
	}
	f.p99After = percentile(splitAround(start, samples, began, window).during, 99)
	if len(took) > 0 {
		f.deployMedian = time.Duration(median(took))
	}
	return f
}

// describeFailure says when a failed request was meant to start and what
// it got: the error, or the start of the body with its spaces squeezed.
func describeFailure(r reqRecord) string {
	at := fmt.Sprintf("at %.2f s", r.intended.Seconds())
	if r.err != nil {
		return fmt.Sprintf("%s: %v", at, r.err)
	}
	body := strings.Join(strings.Fields(r.body), " ")
	if len(body) > 100 {
		body = body[:100] + "..."
	}
	return fmt.Sprintf("%s, body %q", at, body)
}

// failKindsText is "812 status 404 (first at ...), 3 transport (first
// at ...)", most first; first may be nil.
func failKindsText(kinds map[string]int, first map[string]string) string {
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if kinds[ks[i]] != kinds[ks[j]] {
			return kinds[ks[i]] > kinds[ks[j]]
		}
		return ks[i] < ks[j]
	})
	var parts []string
	for _, k := range ks {
		part := fmt.Sprintf("%d %s", kinds[k], k)
		if first[k] != "" {
			part += " (first " + first[k] + ")"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

// binByTime puts requests into buckets of bin by their intended start,
// over span, for the chart.
func binByTime(recs []reqRecord, verdicts []verdict, bin, span time.Duration) []chartBin {
	samples := make([]sample, len(recs))
	for i, r := range recs {
		samples[i] = sample{intended: r.intended, lat: r.lat, failed: verdicts[i].failed, done: true}
	}
	return timeBins(samples, bin, span, func(i int, b *chartBin) {
		b.mixed += btoi(verdicts[i].mixed)
		b.stale += btoi(verdicts[i].stale)
	})
}

// wayResult is what one way's run measured.
type wayResult struct {
	name          string
	start         time.Time // the measured load's start
	span          time.Duration
	recs          []reqRecord
	verdicts      []verdict
	deploys       []deployMark
	failedDeploys int
	firstDeploy   string // the first failed deploy's error
	fig           wayFigures
	loadBefore    string  // load average as the way began
	busy          float64 // the machine's busy share during the measured load
	phase         openPhase
	fpmuxLog      string // fpmux's warnings and errors, for the fpmux way
}

// wayRun is one way's stack while it runs.
type wayRun struct {
	name string
	s    *stack // its dir, nginx and, for the fpmux way, fpmux
	app  map[string]string
	live []string // release ids whose directories exist, oldest first
}

// compare runs each chosen way in turn and returns the table; the chart
// goes to -svg.
func (b *bench) compare(ctx context.Context) (*table, error) {
	app, err := readApp()
	if err != nil {
		return nil, err
	}
	var results []*wayResult
	for i, name := range b.o.compareWays {
		if i > 0 {
			if err := b.pause(ctx); err != nil {
				return nil, err
			}
		}
		logf("compare: way %s", name)
		r, err := b.runWay(ctx, name, app)
		if err != nil {
			return nil, fmt.Errorf("way %s: %w", name, err)
		}
		results = append(results, r)
		b.countWay(r)
	}
	if b.o.svg != "" {
		if err := writeChart(b.o.svg, results); err != nil {
			return nil, err
		}
		logf("compare: chart written to %s", b.o.svg)
	}
	return b.compareTable(results), nil
}

// countWay adds to the run's failures what is fpmux's to answer for: any
// failed, mixed or stale request of the fpmux way, and any failed deploy.
// The other ways' bad answers are what this section measures, not faults
// of the bench.
func (b *bench) countWay(r *wayResult) {
	b.fail(r.failedDeploys, "compare %s: %d deploys failed, first: %s", r.name, r.failedDeploys, r.firstDeploy)
	if f := r.fig; r.name == wayFpmux {
		b.fail(f.failed+f.mixed+f.stale, "compare fpmux: %d failed (%s), %d mixed, %d stale", f.failed, failKindsText(f.failKinds, f.failFirst), f.mixed, f.stale)
	}
}

// runWay brings up one way's stack, warms it, runs the measured load with
// the deploys, and stops everything it started.
func (b *bench) runWay(ctx context.Context, name string, app map[string]string) (res *wayResult, err error) {
	s, err := b.s.sub(filepath.Join("compare", wayDirs[name]), b.o.compareChildren)
	if err != nil {
		return nil, err
	}
	w := &wayRun{name: name, s: s, app: app}
	res = &wayResult{name: name, loadBefore: loadavg()}
	defer func() {
		if name == wayFpmux {
			res.fpmuxLog = logSummary(s.fpmuxLog)
		}
		if cerr := s.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", cerr))
		}
	}()

	if err := w.writeRelease(1); err != nil {
		return res, err
	}
	if err := swapLink(s.current, "r1"); err != nil {
		return res, err
	}
	if name == wayFpmux {
		if err := s.startFpmux(ctx); err != nil {
			return res, err
		}
		if err := w.fpmuxDeploy(ctx, "r1"); err != nil {
			return res, err
		}
	} else if err := w.startPHPFPM(ctx); err != nil {
		return res, err
	}
	addr, err := w.startNginx(ctx)
	if err != nil {
		return res, err
	}
	if err := waitFor(ctx, "the first answer from r1", 20*time.Second, func() (bool, error) {
		code, body, err := fetch(newTarget(addr, "/index.php?ms=0"))
		if err != nil || code != 200 {
			return false, nil
		}
		oldest, newest, ok := namedReleases(string(body))
		return ok && oldest == 1 && newest == 1, nil
	}); err != nil {
		return res, err
	}

	// Warm: every worker has run the app (opcache, realpath cache, nginx's
	// connections) before anything is measured, as on a server that has
	// been up a while.
	logf("compare %s: warm-up %v", name, b.o.warmup)
	if _, _, err := w.load(ctx, addr, b.o.compareRate, b.o.warmup); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	if err := b.pause(ctx); err != nil {
		return res, err
	}

	n, every := b.o.compareDeploys, b.o.compareEvery
	res.span = time.Duration(n+1) * every
	var recs []reqRecord
	busy0, total0 := machineCPU()
	p, err := loadWhile(ctx, n, every, func(ctx context.Context, d time.Duration) (p openPhase, err error) {
		p, recs, err = w.load(ctx, addr, b.o.compareRate, d)
		return p, err
	}, func(i int) error {
		m, err := w.deploy(ctx, i+2)
		switch {
		case err != nil && name != wayFpmux:
			return err // the bench's own steps failed: nothing to measure
		case err != nil:
			res.failedDeploys++
			if res.firstDeploy == "" {
				res.firstDeploy = err.Error()
			}
			logf("compare %s: %v", name, err)
		default:
			res.deploys = append(res.deploys, m)
			logf("compare %s: deployed r%d in %.1f ms", name, i+2, ms(m.returned.Sub(m.began)))
		}
		return nil
	})
	res.busy = busyShareSince(busy0, total0)
	if err != nil {
		return res, err
	}
	res.start, res.phase, res.recs = p.start, p, recs
	res.verdicts = make([]verdict, len(recs))
	for i, r := range recs {
		res.verdicts[i] = classify(r, res.deploys, 1)
	}
	res.fig = figures(res.start, res.recs, res.verdicts, res.deploys, afterWindow)
	logTimeline("compare "+name, p, every)
	f := res.fig
	logf("compare %s: %d requests, %d failed (%s), %d mixed, %d stale; served (oldest release named): %v",
		name, f.requests, f.failed, failKindsText(f.failKinds, f.failFirst), f.mixed, f.stale, f.served)
	return res, nil
}

// writeRelease writes release rN and drops the oldest directories beyond
// keepReleases, as a deploy tool does after its switch.
func (w *wayRun) writeRelease(n int) error {
	id := fmt.Sprintf("r%d", n)
	if err := writeAppRelease(filepath.Join(w.s.releases, id), id, w.app); err != nil {
		return err
	}
	w.live = append(w.live, id)
	return nil
}

// prune removes the release directories older than the last keepReleases.
func (w *wayRun) prune() error {
	for len(w.live) > keepReleases {
		if err := os.RemoveAll(filepath.Join(w.s.releases, w.live[0])); err != nil {
			return fmt.Errorf("remove old release %s: %w", w.live[0], err)
		}
		w.live = w.live[1:]
	}
	return nil
}

// swapLink points current at releases/<id> atomically: a new link beside
// it, renamed over it (ln -sfn plus mv -T).
func swapLink(current, id string) error {
	next := current + ".next"
	if err := os.Remove(next); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("swap %s: %w", current, err)
	}
	if err := os.Symlink(filepath.Join("releases", id), next); err != nil {
		return fmt.Errorf("swap %s: %w", current, err)
	}
	if err := os.Rename(next, current); err != nil {
		return fmt.Errorf("swap %s: %w", current, err)
	}
	return nil
}

// deploy writes release rN and makes it current the way's way, then
// prunes; the mark's began is after the release is written, returned is
// when the deploy would hand back to its caller.
func (w *wayRun) deploy(ctx context.Context, n int) (deployMark, error) {
	id := fmt.Sprintf("r%d", n)
	if err := w.writeRelease(n); err != nil {
		return deployMark{}, err
	}
	m := deployMark{release: n, began: time.Now()}
	switch w.name {
	case wayFpmux:
		if err := w.fpmuxDeploy(ctx, id); err != nil {
			return m, err
		}
		// README's deploy script keeps the symlink in step for static files.
		if err := swapLink(w.s.current, id); err != nil {
			return m, err
		}
	case wayReload:
		if err := swapLink(w.s.current, id); err != nil {
			return m, err
		}
		// As systemd's php-fpm unit reloads (ExecReload=kill -USR2): the
		// deploy returns once the signal is sent.
		if err := w.s.fpm.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
			return m, fmt.Errorf("reload php-fpm: %w", err)
		}
	default:
		if err := swapLink(w.s.current, id); err != nil {
			return m, err
		}
	}
	if err := w.prune(); err != nil {
		return m, err
	}
	m.returned = time.Now()
	return m, nil
}

// fpmuxDeploy runs the built `fpmux deploy` for release id, which returns
// once the release is active, and notes its pool's process group.
func (w *wayRun) fpmuxDeploy(ctx context.Context, id string) error {
	root := filepath.Join(w.s.releases, id)
	out, err := exec.CommandContext(ctx, w.s.fpmuxBin, "deploy", "-admin", "unix:"+w.s.adminSock, "-id", id, "-root", root).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fpmux deploy %s: %w: %s", id, err, bytes.TrimSpace(out))
	}
	rs, err := w.s.releaseList(ctx)
	w.s.notePools(rs...)
	return err
}

// plainFPMConf is the php-fpm config of the ways without fpmux: one pool
// as a distribution's php-fpm service runs it. php.ini is the
// distribution's own (opcache on, validate_timestamps on every 2 s,
// realpath cache 120 s on Debian), and process_control_timeout is left at
// its default, 0.
const plainFPMConf = `[global]
pid = {{dir}}/php-fpm.pid
error_log = {{dir}}/php-fpm.log
daemonize = no

[www]
listen = {{sock}}
listen.mode = 0600
{{user}}
pm = static
pm.max_children = {{children}}
`

// startPHPFPM starts the plain php-fpm in its own process group and waits
// until its socket answers.
func (w *wayRun) startPHPFPM(ctx context.Context) error {
	dir := w.s.dir
	sock := filepath.Join(dir, "php-fpm.sock")
	ident := ""
	if os.Geteuid() == 0 {
		// php-fpm will not run workers as root: they run as fpmux's pools'
		// do (php-fpm takes a numeric group).
		wk, err := pool.WorkerOf(nil)
		if err != nil {
			return fmt.Errorf("start php-fpm: %w", err)
		}
		ident = fmt.Sprintf("user = %s\ngroup = %d", wk.Name, wk.GIDs[0])
	}
	conf := strings.NewReplacer("{{dir}}", dir, "{{sock}}", sock, "{{user}}", ident,
		"{{children}}", strconv.Itoa(w.s.o.children)).Replace(plainFPMConf)
	confPath := filepath.Join(dir, "php-fpm.conf")
	if err := writeFile(confPath, conf); err != nil {
		return err
	}
	cmd := exec.Command(w.s.phpFPM, "--nodaemonize", "--fpm-config", confPath)
	cmd.Env = []string{phpPath}
	p, err := startLogged("php-fpm", cmd, filepath.Join(dir, "php-fpm.out"))
	if err != nil {
		return err
	}
	w.s.fpm = p
	w.s.mu.Lock()
	w.s.pgids[p.pid()] = true
	w.s.mu.Unlock()
	logf("compare %s: php-fpm started (pid %d)", w.name, p.pid())
	return p.waitUp(ctx, 20*time.Second, filepath.Join(dir, "php-fpm.log"), func() bool { return accepting("unix", sock) })
}

// nginxFor returns the way's nginx config for a server on listen, rooted
// at the current symlink.
func (w *wayRun) nginxFor(listen string) string {
	scriptRoot, upstream, pass := "$document_root", "", "unix:"+filepath.Join(w.s.dir, "php-fpm.sock")
	switch w.name {
	case wayRealpath:
		scriptRoot = "$realpath_root"
	case wayFpmux:
		// As config/examples/nginx.conf recommends.
		upstream, pass = nginxUpstream("fpmux", "unix:"+w.s.sock, w.s.o.keepalive, ""), "fpmux"
	}
	return nginxHead + upstream + nginxServer(listen, w.s.current, scriptRoot, pass, w.name == wayFpmux) + "}\n"
}

func (w *wayRun) startNginx(ctx context.Context) (string, error) {
	addrs, err := w.s.launchNginx(ctx, 1, func(addrs []string) string { return w.nginxFor(addrs[0]) })
	if err != nil {
		return "", err
	}
	logf("compare %s: nginx started (pid %d) on http://%s", w.name, w.s.nginx.pid(), addrs[0])
	return addrs[0], nil
}

// load runs the open loop against index.php at rate for d and records
// every request with its answer.
func (w *wayRun) load(ctx context.Context, addr string, rate float64, d time.Duration) (openPhase, []reqRecord, error) {
	reqs := make([][]byte, sleepMax-sleepMin+1)
	for i := range reqs {
		reqs[i] = newTarget(addr, fmt.Sprintf("/index.php?ms=%d", sleepMin+i)).req
	}
	recs := make([]reqRecord, openRequests(rate, d))
	p, err := openLoopEach(ctx, newTarget(addr, "/index.php"), rate, d, maxOpenConns, func(wk *worker, i int) error {
		r := &recs[i]
		r.sent = time.Now()
		status, body, err := wk.send(reqs[sleepFor(i)-sleepMin], true)
		r.end = time.Now()
		r.status, r.body, r.err = status, string(body), err
		if err == nil && status != 200 {
			err = &errStatus{code: status, body: r.body}
		}
		return err
	})
	recs = recs[:len(p.samples)]
	for i, s := range p.samples {
		recs[i].intended, recs[i].lat = s.intended, s.lat
	}
	return p, recs, err
}

// compareTable is the section's table: one row per way, then the
// settings and what each way's run saw.
func (b *bench) compareTable(rs []*wayResult) *table {
	t := &table{
		title: fmt.Sprintf("compare: %d deploys %v apart under an open loop of %.0f req/s, each way in turn", b.o.compareDeploys, b.o.compareEvery, b.o.compareRate),
		header: []string{"way", "requests", "failed", "mixed", "stale", "p50 (ms)", "p99 (ms)",
			"p99 in the 2 s after a deploy (ms)", "deploy, median (ms)"},
	}
	for _, r := range rs {
		f := r.fig
		t.add(r.name, fmt.Sprint(f.requests), fmt.Sprint(f.failed), fmt.Sprint(f.mixed), fmt.Sprint(f.stale),
			fmtMS(ms(f.p50)), fmtMS(ms(f.p99)), fmtMS(ms(f.p99After)), fmtMS(ms(f.deployMedian)))
	}
	t.note("Each way: its own nginx and its own php-fpm (pm static, %d children, the distribution's php.ini), the same app (testdata/app: index.php includes a.php and b.php, sleeps ?ms= from %d to %d ms, then includes late-<release>.php, which the next release lacks), %v warm-up, then the measured load with a deploy every %v from %v on. A deploy writes release rN, switches, and deletes all but the last %d release directories. Chart: %s.",
		b.o.compareChildren, sleepMin, sleepMax, b.o.warmup, b.o.compareEvery, b.o.compareEvery, keepReleases, orNone(b.o.svg))
	t.note("symlink, symlink+reload: SCRIPT_FILENAME $document_root$fastcgi_script_name under root <dir>/current; symlink+reload sends the master SIGUSR2 after the swap and returns once it is sent. realpath_root: $realpath_root in SCRIPT_FILENAME and DOCUMENT_ROOT. fpmux: `fpmux deploy`, returning when the release is active (its pools run with fpmux's defaults: opcache.validate_timestamps 0), then the symlink is swapped too.")
	t.note("failed: a transport error, a status other than 200, or a PHP fatal. mixed: the answer names two releases. stale: written after a deploy had returned, and served a release older than that deploy's. Latency counts from each request's intended start, failed requests included; \"after a deploy\" is the 2 s from the moment a deploy began switching, pooled over the deploys.")
	for _, r := range rs {
		line := fmt.Sprintf("%s: load average %s as it began; machine %.0f%% busy during its load; client used up to %d connections, a request waited for one %d times, dispatcher at most %.1f ms late",
			r.name, r.loadBefore, 100*r.busy, r.phase.conns, r.phase.waited, ms(r.phase.lateness))
		if r.fig.failed > 0 {
			line += "; failed: " + failKindsText(r.fig.failKinds, r.fig.failFirst)
		}
		if r.failedDeploys > 0 {
			line += fmt.Sprintf("; %d deploys failed, first: %s", r.failedDeploys, r.firstDeploy)
		}
		if r.fpmuxLog != "" {
			l, _, _ := strings.Cut(r.fpmuxLog, "\n")
			line += "; " + strings.TrimSuffix(l, "; first:")
		}
		t.note("%s.", line)
	}
	return t
}

func orNone(path string) string {
	if path == "" {
		return "none (-svg empty)"
	}
	return path
}

// writeChart draws the chart and writes it to path.
func writeChart(path string, rs []*wayResult) error {
	var panels []chartPanel
	span := time.Duration(0)
	for _, r := range rs {
		span = max(span, r.span)
	}
	for _, r := range rs {
		p := chartPanel{
			title: fmt.Sprintf("%s: %d requests, %d failed, %d mixed, %d stale; p99 %.1f ms, %.1f ms in the 2 s after a deploy",
				r.name, r.fig.requests, r.fig.failed, r.fig.mixed, r.fig.stale, ms(r.fig.p99), ms(r.fig.p99After)),
			bins: binByTime(r.recs, r.verdicts, chartBucket, span),
		}
		for _, d := range r.deploys {
			p.deploys = append(p.deploys, [2]time.Duration{d.began.Sub(r.start), d.returned.Sub(r.start)})
		}
		panels = append(panels, p)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := os.WriteFile(path, drawChart(panels, span, chartBucket), 0o644); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

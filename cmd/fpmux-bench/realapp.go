// This file owns the realapp section: deploys of a real PHP application,
// Debian's MediaWiki, with an app warm-up, under a load that keeps the CPUs
// busy on the release serving. It installs the wiki with SQLite into the
// run's temp dir (MediaWiki's own installer), makes each release a tree of
// hard links to /usr/share/mediawiki with a LocalSettings.php of its own,
// runs nginx -> fpmux with a pool of 16 workers, and reports per deploy
// where the time and the CPU go: fpmux's step log, the new pool's CPU by
// step, the old pool's stop, and the latency around the switch. Without
// MediaWiki installed it says so and is skipped; it never installs it.

package main

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/pool"
)

// Settings of the realapp section.
const (
	mediawikiDir    = "/usr/share/mediawiki"
	realappChildren = 16 // pm.max_children, pm static
	realappConns    = 4  // closed-loop connections: two requests per CPU keep both busy on the old pool
	realappDeploys  = 8  // -quick: 3
	realappAfter    = 2 * time.Second
	realappSteady   = 3 * time.Second // quiet time between a deploy's after-window and the next deploy
	realappPage     = "/index.php?title=Main_Page"
	// realappTrace is how often the new pool's CPU is read while it
	// deploys: /proc/<pid>/schedstat of the master and workers only.
	realappTrace = 20 * time.Millisecond
)

// realappWarmup are the warm-up paths of every deploy: the page, the
// ResourceLoader startup module every page loads, and the API: the three
// entry points a wiki's traffic reaches.
var realappWarmup = []string{
	realappPage,
	"/load.php?lang=en&modules=startup&only=scripts&raw=1&skin=vector",
	"/api.php?action=query&meta=siteinfo&format=json",
}

// realappInstall says why MediaWiki cannot be run here, or "" when it can,
// with the PHP CLI to install it with.
func realappInstall(phpFPM string) (php string, missing string) {
	for _, f := range []string{"index.php", "load.php", "api.php", "maintenance/install.php"} {
		if _, err := os.Stat(filepath.Join(mediawikiDir, f)); err != nil {
			return "", fmt.Sprintf("MediaWiki is not installed (%v)", err)
		}
	}
	// php-fpm8.2 goes with php8.2.
	cli := "php" + strings.TrimPrefix(filepath.Base(phpFPM), "php-fpm")
	php, err := exec.LookPath(cli)
	if err != nil {
		return "", fmt.Sprintf("no PHP CLI %s for the installer (%v)", cli, err)
	}
	for _, ext := range []string{"pdo_sqlite", "intl", "mbstring", "xml"} {
		if err := exec.Command(php, "-r", "exit(extension_loaded('"+ext+"') ? 0 : 1);").Run(); err != nil {
			return "", fmt.Sprintf("PHP extension %s is not loaded in %s", ext, php)
		}
	}
	return php, ""
}

// wiki is the installed app: its LocalSettings.php, and the data dir its
// releases share (the SQLite database and the caches), as releases of one
// app share their database.
type wiki struct {
	settings string
	data     string
}

// installWiki runs MediaWiki's installer into dir with SQLite and returns
// the settings every release gets. The workers write the data dir: as
// root it is handed to the user the pool's workers run as.
func installWiki(ctx context.Context, dir, php string) (wiki, error) {
	w := wiki{data: filepath.Join(dir, "data")}
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{w.data, conf} {
		if err := mkdir(d); err != nil {
			return w, err
		}
	}
	if err := maintenance(ctx, php, "install.php", "--dbtype=sqlite", "--dbpath="+w.data, "--dbname=wiki", "--server=http://127.0.0.1",
		"--scriptpath=", "--pass=fpmux-bench-admin", "--confpath="+conf, "fpmux bench wiki", "admin"); err != nil {
		return w, fmt.Errorf("install MediaWiki into %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(conf, "LocalSettings.php"))
	if err != nil {
		return w, fmt.Errorf("install MediaWiki: %w", err)
	}
	// Jobs run at the end of web requests by default: each writes the
	// SQLite job queue, and under the bench's concurrent load they would
	// take the database lock from the page views. The localisation cache
	// goes to CDB files built once here, as MediaWiki's performance
	// advice has it, instead of SQLite rows read on every request.
	w.settings = string(b) + fmt.Sprintf(`
# fpmux-bench
$wgJobRunRate = 0;
$wgCacheDirectory = %q;
$wgLocalisationCacheConf['store'] = 'files';
$wgLocalisationCacheConf['manualRecache'] = true;
`, filepath.Join(w.data, "cache"))
	if err := writeFile(filepath.Join(conf, "LocalSettings.php"), w.settings); err != nil {
		return w, err
	}
	if err := maintenance(ctx, php, "rebuildLocalisationCache.php", "--lang=en", "--conf="+filepath.Join(conf, "LocalSettings.php")); err != nil {
		return w, fmt.Errorf("build MediaWiki's localisation cache: %w", err)
	}
	if os.Geteuid() == 0 {
		wk, err := pool.WorkerOf(nil)
		if err != nil {
			return w, fmt.Errorf("install MediaWiki: %w", err)
		}
		if err := chownTree(w.data, wk.UID, wk.GIDs[0]); err != nil {
			return w, err
		}
	}
	return w, nil
}

// maintenance runs one of MediaWiki's maintenance scripts with php, in
// the environment of the php-fpm the bench starts itself.
func maintenance(ctx context.Context, php, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, php, append([]string{filepath.Join(mediawikiDir, "maintenance", script)}, args...)...)
	cmd.Env = []string{phpPath}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	return nil
}

// chownTree gives dir and everything under it to uid and gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

// writeWikiRelease makes root a release of the wiki: a tree of hard links
// to mediawikiDir (a copy of the code at no cost in disk, every file at a
// path of the release's own, as a deploy of a copy has it), with
// LocalSettings.php a file of its own in place of Debian's symlink to
// /etc. MediaWiki finds its install path from its own files' directory,
// so it runs from root. Where a hard link is refused (another file
// system, or fs.protected_hardlinks for a user that does not own the
// files), the file is copied.
func writeWikiRelease(root string, w wiki) error {
	err := filepath.WalkDir(mediawikiDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mediawikiDir, p)
		dst := filepath.Join(root, rel)
		switch {
		case rel == "LocalSettings.php":
			return nil
		case d.IsDir():
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			to, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(to, dst)
		}
		if err := os.Link(p, dst); err == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("write release %s: %w", root, err)
	}
	return writeFile(filepath.Join(root, "LocalSettings.php"), w.settings)
}

// cpuAt is the CPU a new pool had run at one moment.
type cpuAt struct {
	at  time.Time
	cpu time.Duration
}

// traceNewPool reads, every realappTrace until ctx ends, the CPU of the
// php-fpm master fpmux starts that is not one of old (the masters already
// there): the pool being deployed.
func traceNewPool(ctx context.Context, fpmuxPid int, old map[int]bool) (master int, trace []cpuAt) {
	sampleEvery(ctx, realappTrace, func() {
		if master == 0 {
			for _, c := range children(fpmuxPid) {
				if !old[c] {
					master = c
				}
			}
		}
		if master != 0 {
			cpu, _ := poolCPU(master)
			trace = append(trace, cpuAt{time.Now(), cpu})
		}
	})
	return master, trace
}

// cpuBy is the last traced CPU at or before t.
func cpuBy(trace []cpuAt, t time.Time) time.Duration {
	var c time.Duration
	for _, s := range trace {
		if s.at.After(t) {
			break
		}
		c = s.cpu
	}
	return c
}

// stepLine is one step of a release in fpmux's log (see the supervisor's
// step): "release <step>" with the time it was logged and since_deploy.
type stepLine struct {
	step  string
	at    time.Time
	since time.Duration
}

// releaseSteps reads the steps of release id from fpmux's text log.
func releaseSteps(logPath, id string) ([]stepLine, error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return nil, fmt.Errorf("read fpmux's steps: %w", err)
	}
	var out []stepLine
	for _, line := range strings.Split(string(b), "\n") {
		kv := logfmt(line)
		if kv["release"] != id || kv["step"] == "" {
			continue
		}
		at, err1 := time.Parse(time.RFC3339Nano, kv["time"])
		since, err2 := time.ParseDuration(kv["since_deploy"])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, stepLine{kv["step"], at, since})
	}
	return out, nil
}

// logfmt splits one line of slog's text handler into its keys and values.
func logfmt(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(k, " ") {
			return kv
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return kv
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		kv[k] = v
		line = rest
	}
	return kv
}

// realDeploy is what one deploy of the section measured.
type realDeploy struct {
	switchWindow
	id                 string
	took               time.Duration
	steps              []stepLine
	startCPU, totalCPU time.Duration // the new pool's, until its first step and until active
	workers            int
	stopCPU, stopFor   time.Duration // the old pool's stop: CPU, and from the switch until gone
	busyShare          float64       // the machine's busy CPU share from the POST to active
}

func (b *bench) realapp(ctx context.Context) (*table, error) {
	t := &table{
		title:  fmt.Sprintf("realapp: deploys of MediaWiki with %d warm-up paths under a closed loop of %d connections on %s, %d workers", len(realappWarmup), realappConns, realappPage, realappChildren),
		header: []string{"figure", "median", "min / max"},
	}
	php, missing := realappInstall(b.s.phpFPM)
	if missing != "" {
		t.note("Skipped: %s. It runs once `apt-get install --no-install-recommends mediawiki php8.2-sqlite3 php8.2-intl php8.2-mbstring php8.2-xml` is done; the bench never installs it.", missing)
		logf("realapp: skipped: %s", missing)
		return t, nil
	}
	n := realappDeploys
	if b.o.quick {
		n = 3
	}
	st, err := b.s.sub("realapp", realappChildren)
	if err != nil {
		return nil, err
	}
	defer st.close()
	logf("realapp: installing MediaWiki with SQLite")
	w, err := installWiki(ctx, st.dir, php)
	if err != nil {
		return nil, err
	}
	roots := make([]string, n+1)
	for i := range roots {
		roots[i] = filepath.Join(st.releases, fmt.Sprintf("mw%d", i))
		if err := writeWikiRelease(roots[i], w); err != nil {
			return nil, err
		}
	}
	// The stack's nginx; its direct server, to a release r1 this stack
	// does not have, is not used.
	if err := st.serve(ctx, "mw0", realappWarmup); err != nil {
		return nil, err
	}
	page := newTarget(st.via, realappPage)
	if code, body, err := fetch(page); err != nil || code != 200 {
		return nil, fmt.Errorf("realapp: check %s: %d %v: %.300s", page, code, err, body)
	}

	// A closed loop keeps the CPUs as busy as realappConns requests at a
	// time can, without a backlog that grows for as long as a deploy slows
	// the serving release; it runs until endLoad.
	workers, err := dialWorkers(page, realappConns)
	if err != nil {
		return nil, fmt.Errorf("realapp: %w", err)
	}
	lctx, stopLoad := context.WithCancel(ctx)
	var (
		loadStart time.Time
		samples   []sample
		errs      *errCounter
		loaded    = make(chan struct{})
	)
	go func() {
		defer close(loaded)
		loadStart, samples, errs = closedLoopUntil(lctx, workers, time.Time{})
		slices.SortFunc(samples, func(a, b sample) int { return cmp.Compare(a.intended, b.intended) })
	}()
	endLoad := sync.OnceFunc(func() { stopLoad(); <-loaded })
	defer endLoad()

	fpid := st.fpmux.pid()
	var ds deployStats
	var deploys []realDeploy
	select {
	case <-ctx.Done():
	case <-time.After(realappSteady):
	}
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		d := realDeploy{id: fmt.Sprintf("mw%d", i)}
		oldPid, err := st.activePool(ctx)
		if err != nil {
			return nil, err
		}
		old := map[int]bool{}
		for _, c := range children(fpid) {
			old[c] = true
		}
		reaped0, err := childrenCPU(fpid)
		if err != nil {
			return nil, err
		}
		tctx, traceStop := context.WithCancel(ctx)
		var (
			master int
			trace  []cpuAt
			traced = make(chan struct{})
		)
		go func() {
			defer close(traced)
			master, trace = traceNewPool(tctx, fpid, old)
		}()
		busy0, total0 := machineCPU()
		d.posted = time.Now()
		d.activated, d.took, err = st.deployWarm(ctx, d.id, roots[i], realappWarmup)
		d.busyShare = busyShareSince(busy0, total0)
		oldCPU, _ := poolCPU(oldPid)
		traceStop()
		<-traced
		ds.add("realapp", d.id, d.took, err)
		if err != nil {
			continue
		}
		d.totalCPU = cpuBy(trace, time.Now())
		d.workers = len(children(master))
		if d.steps, err = releaseSteps(st.fpmuxLog, d.id); err != nil {
			return nil, err
		}
		if len(d.steps) > 0 {
			d.startCPU = cpuBy(trace, d.steps[0].at)
		}
		if err := waitFor(ctx, "the old pool to stop", 30*time.Second, func() (bool, error) {
			return syscall.Kill(-oldPid, 0) != nil, nil
		}); err != nil {
			return nil, err
		}
		d.stopFor = time.Since(d.activated)
		d.stopCPU = stopCPU(ctx, fpid, reaped0, oldCPU)
		logf("realapp: %s active in %.0f ms (%s); its pool ran %.0f ms of CPU (%.0f ms until %s), %d workers; the old pool stopped in %.0f ms on %.0f ms of CPU; the machine %.0f%% busy",
			d.id, ms(d.took), stepSummary(d.steps), ms(d.totalCPU), ms(d.startCPU), firstStep(d.steps), d.workers, ms(d.stopFor), ms(d.stopCPU), 100*d.busyShare)
		deploys = append(deploys, d)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(d.activated.Add(realappAfter + realappSteady))):
		}
	}
	endLoad()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if errs.n > 0 {
		b.count("realapp", phase{failed: errs.n, firstErr: errs.first})
	}
	b.countDeploys("realapp", ds)

	// Requests that started between a deploy's POST and its activation,
	// or in the realappAfter after it, are not steady.
	var steady []time.Duration
	for _, s := range samples {
		in := false
		for k := range deploys {
			in = deploys[k].file(loadStart.Add(s.intended), s.lat, s.failed, realappAfter) || in
		}
		if !in && !s.failed {
			steady = append(steady, s.lat)
		}
	}
	slices.Sort(steady)
	steadyP99 := ms(percentile(steady, 99))
	span := time.Duration(0)
	if len(samples) > 0 {
		span = samples[len(samples)-1].intended - samples[0].intended
	}

	var took, start, total, rest, stopC, stopF, busy, p99, ratio []float64
	steps := map[string][]float64{}
	var order []string
	for _, d := range deploys {
		took = append(took, ms(d.took))
		start = append(start, ms(d.startCPU))
		total = append(total, ms(d.totalCPU))
		rest = append(rest, ms(d.totalCPU-d.startCPU))
		stopC = append(stopC, ms(d.stopCPU))
		stopF = append(stopF, ms(d.stopFor))
		busy = append(busy, 100*d.busyShare)
		slices.Sort(d.after)
		p := ms(percentile(d.after, 99))
		p99 = append(p99, p)
		if steadyP99 > 0 {
			ratio = append(ratio, p/steadyP99)
		}
		for _, s := range d.steps {
			if !slices.Contains(order, s.step) {
				order = append(order, s.step)
			}
			steps[s.step] = append(steps[s.step], ms(s.since))
		}
	}
	t.addSpread("deploy→active (ms)", took, "%.0f")
	for _, s := range order {
		t.addSpread("  step "+s+", since the deploy began (ms)", steps[s], "%.0f")
	}
	t.addSpread("new pool's CPU until its first step (ms)", start, "%.0f")
	t.addSpread("new pool's CPU from then until active: checks, warm-up, ping (ms)", rest, "%.0f")
	t.addSpread("new pool's CPU until active (ms)", total, "%.0f")
	t.addSpread("old pool's stop: CPU (ms)", stopC, "%.0f")
	t.addSpread("old pool's stop: from the switch until gone (ms)", stopF, "%.0f")
	t.addSpread("machine's CPU busy from the POST to active (%)", busy, "%.0f")
	t.addSpread("p99 in the 2 s after a deploy (ms)", p99, "%.1f")
	t.addSpread("… over steady p99", ratio, "%.2f")
	t.add("steady: p50 / p99 (ms), req/s", fmt.Sprintf("%.1f / %.1f", ms(percentile(steady, 50)), steadyP99),
		fmt.Sprintf("%.0f", float64(len(samples))/span.Seconds()))
	t.add("failed requests / deploys", fmt.Sprintf("%d / %d", errs.n, ds.failed), "")
	t.note("MediaWiki %s with SQLite, installed by its installer into the temp dir; each release a tree of hard links to it with its own LocalSettings.php ($wgJobRunRate = 0), all sharing one database; pm static, %d workers, opcache on. Warm-up paths, per deploy: %s.", firstLine("dpkg-query", "-W", "-f=${Version}", "mediawiki"), realappChildren, strings.Join(realappWarmup, ", "))
	t.note("%d deploys, each %v after the last one's switch plus %v; steady: the requests that started neither during a deploy nor in the %v after its switch. New pool's CPU: schedstat run time of its master and workers, read every %v while it deployed; its first step is fpmux's first step line for the release. Old pool's stop: what fpmux's reaped children gained, less what the old pool had run at the switch (10 ms ticks).", len(deploys), realappAfter, realappSteady, realappAfter, realappTrace)
	return t, nil
}

// stepSummary writes a deploy's steps as "step +ms" in order.
func stepSummary(steps []stepLine) string {
	var parts []string
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%s %.0f", s.step, ms(s.since)))
	}
	return strings.Join(parts, ", ")
}

func firstStep(steps []stepLine) string {
	if len(steps) == 0 {
		return "?"
	}
	return steps[0].step
}

// This file owns the warmup section: what fpmux's app warm-up (a deploy's
// "warmup" paths, sent to the new pool before it becomes active) does to
// the requests of the first second after a switch. It deploys the same
// framework-like app under new ids through fpmux under a steady open loop
// on that app's page, alternating deploys without app warm-up (php-fpm's
// ping only) and with the page as the warm-up path, and compares the two
// side by side.

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// Settings of the warmup section.
const (
	warmupRate    = 400 // req/s on the framework page, about a sixth of its saturation
	warmupDeploys = 10  // alternating without and with warm-up; -quick: 4
	warmupEvery   = 3 * time.Second
	warmupWindow  = time.Second // "the first second after a switch"
	warmupPage    = "/fw/index.php"
)

// warmDeploy is one deploy of the section and the requests of its first
// second.
type warmDeploy struct {
	switchWindow
	warm bool
	took time.Duration
}

// switchWindow is one deploy and the requests around it, filed by when
// they started: while it ran, or in a window after its switch.
type switchWindow struct {
	posted, activated time.Time // the deploy's POST, and activated_at
	during            []time.Duration
	after             []time.Duration
	failedAfter       int
}

// file puts a request that started at at into w.during or w.after when it
// lies there, and reports whether it did.
func (w *switchWindow) file(at time.Time, lat time.Duration, failed bool, window time.Duration) bool {
	switch {
	case !at.Before(w.activated) && at.Before(w.activated.Add(window)):
		w.after = append(w.after, lat)
		w.failedAfter += btoi(failed)
	case !at.Before(w.posted) && at.Before(w.activated):
		w.during = append(w.during, lat)
	default:
		return false
	}
	return true
}

func (b *bench) warmupSection(ctx context.Context) (*table, error) {
	n := warmupDeploys
	if b.o.quick {
		n = 4
	}
	root := filepath.Join(b.s.releases, "warm")
	if err := writeHelloRelease(root); err != nil {
		return nil, err
	}
	if _, err := writeFramework(filepath.Join(root, "fw")); err != nil {
		return nil, err
	}
	// The load starts on the framework page: a release that has it must
	// serve it by then (after the deploys section, a hello-only one is
	// active).
	if _, _, err := b.s.deploy(ctx, "w0", root, true, []string{warmupPage}); err != nil {
		return nil, err
	}
	if err := b.pause(ctx); err != nil {
		return nil, err
	}
	deploys := make([]warmDeploy, 0, n)
	var ds deployStats
	lp, err := b.underLoad(ctx, "warmup", warmupPage, warmupRate, n, warmupEvery, func(i int) error {
		d := warmDeploy{warm: i%2 == 1}
		paths := []string{}
		if d.warm {
			paths = []string{warmupPage}
		}
		id := fmt.Sprintf("w%d", i+1)
		d.posted = time.Now()
		activated, took, err := b.s.deployWarm(ctx, id, root, paths)
		ds.add("warmup", id, took, err)
		if err == nil {
			d.activated, d.took = activated, took
			logf("warmup: deployed %s (warm-up %v) in %.0f ms", id, d.warm, ms(took))
			deploys = append(deploys, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.countDeploys("warmup", ds)

	var steady []time.Duration
	for _, s := range lp.samples {
		if !s.done {
			continue
		}
		in := false
		for k := range deploys {
			in = deploys[k].file(lp.start.Add(s.intended), s.lat, s.failed, warmupWindow) || in
		}
		if !in {
			steady = append(steady, s.lat)
		}
	}
	slices.Sort(steady)
	// Per mode, the median over its deploys of each figure.
	var figs [2][5][]float64 // mode, figure (p50, p99, max, deploy→active, p99 while deploying)
	var failed [2]int
	for k := range deploys {
		d := &deploys[k]
		slices.Sort(d.after)
		m := btoi(d.warm)
		figs[m][0] = append(figs[m][0], ms(percentile(d.after, 50)))
		figs[m][1] = append(figs[m][1], ms(percentile(d.after, 99)))
		figs[m][2] = append(figs[m][2], ms(percentile(d.after, 100)))
		figs[m][3] = append(figs[m][3], ms(d.took))
		slices.Sort(d.during)
		figs[m][4] = append(figs[m][4], ms(percentile(d.during, 99)))
		failed[m] += d.failedAfter
		logf("warmup: %s (warm-up %v): first second p50 %.2f p99 %.2f max %.2f ms over %d requests",
			fmt.Sprintf("w%d", k+1), d.warm, ms(percentile(d.after, 50)), ms(percentile(d.after, 99)), ms(percentile(d.after, 100)), len(d.after))
	}
	t := &table{
		title: fmt.Sprintf("warmup: %d deploys of the framework-like app %v apart, alternating without and with app warm-up, open loop at %d req/s on %s",
			len(deploys), warmupEvery, warmupRate, warmupPage),
		header: []string{"first second after a switch (median over deploys)", "without warm-up", "with warm-up", "with / without"},
	}
	for f, name := range []string{"p50 latency (ms)", "p99 latency (ms)", "max latency (ms)", "deploy→active (ms)",
		"p99 latency (ms) of the requests meant to start while the deploy ran, on the old release"} {
		without, with := median(figs[0][f]), median(figs[1][f])
		t.add(name, fmtMS(without), fmtMS(with), fmtRatio(with/without))
	}
	t.add("deploys / failed requests", fmt.Sprintf("%d / %d", len(figs[0][0]), failed[0]), fmt.Sprintf("%d / %d", len(figs[1][0]), failed[1]), "")
	t.note("Steady state (requests neither while a deploy ran nor in the first second after a switch): p50 %.2f ms, p99 %.2f ms over %d requests.",
		ms(percentile(steady, 50)), ms(percentile(steady, 99)), len(steady))
	t.note("Without: the deploy names no warm-up path (\"warmup\": []), so only php-fpm's ping reaches each worker before the switch. With: \"warmup\": [\"%s\"], sent once, then once on each other worker. Same release tree under a new id each time, so each pool starts with an empty opcache. A request is in the first second when its intended start lies within %v after the release's activated_at.", warmupPage, warmupWindow)
	return t, nil
}

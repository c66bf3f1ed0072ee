// This file owns the sections that deploy through fpmux while it serves:
// switch (latency around each deploy) and deploys (many in a row, then
// whether fpmux's resources came back to where they were).

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fpmux/fpmux/fcgiclient"
)

// writeReleases writes hello releases prefix1..prefixN and returns their
// roots.
func (b *bench) writeReleases(prefix string, n int) ([]string, error) {
	roots := make([]string, n)
	for i := range n {
		roots[i] = filepath.Join(b.s.releases, fmt.Sprintf("%s%d", prefix, i+1))
		if err := writeHelloRelease(roots[i]); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

// underLoad runs an open loop through fpmux on path at rate while it
// deploys as loadWhile does; the load's failures count as the section's.
func (b *bench) underLoad(ctx context.Context, section, path string, rate float64, n int, every time.Duration, deploy func(i int) error) (openPhase, error) {
	lp, err := loadWhile(ctx, n, every, func(ctx context.Context, d time.Duration) (openPhase, error) {
		return openLoop(ctx, newTarget(b.s.via, path), rate, d, maxOpenConns)
	}, deploy)
	if err == nil {
		b.count(section, lp.phase)
	}
	return lp, err
}

// loadWhile runs load while it calls deploy(i) for each i below n, the
// i-th at the end of period i of every. The load lasts n+1 periods or,
// with every 0 (deploys back to back), until the last deploy returned; an
// error from deploy ends both.
func loadWhile(ctx context.Context, n int, every time.Duration, load func(ctx context.Context, d time.Duration) (openPhase, error), deploy func(i int) error) (openPhase, error) {
	d := time.Duration(n+1) * every
	if every == 0 {
		d = 30 * time.Minute // only a cap
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		lp   openPhase
		lerr error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		lp, lerr = load(lctx, d)
	}()
	err := paced(ctx, n, every, deploy)
	if err != nil || every == 0 {
		cancel()
	}
	<-done
	switch {
	case ctx.Err() != nil:
		return lp, ctx.Err()
	case err != nil:
		return lp, err
	case lerr != nil && (every > 0 || !errors.Is(lerr, context.Canceled)):
		return lp, lerr
	}
	return lp, nil
}

// paced calls f(i) for each i below n, the i-th (i+1)*every after it
// began, until ctx ends or f fails.
func paced(ctx context.Context, n int, every time.Duration, f func(i int) error) error {
	t0 := time.Now()
	for i := range n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(t0.Add(time.Duration(i+1) * every))):
		}
		if err := f(i); err != nil {
			return err
		}
	}
	return nil
}

// deployStats collects deploy→active times and failed deploys.
type deployStats struct {
	took   []float64 // ms
	failed int
	first  string
}

func (d *deployStats) add(section, id string, took time.Duration, err error) {
	if err != nil {
		if d.failed == 0 {
			d.first = err.Error()
		}
		d.failed++
		logf("%s: %v", section, err)
		return
	}
	d.took = append(d.took, ms(took))
}

// addDeployRows adds the deploy→active rows, with a ceiling on the median
// when target > 0.
func addDeployRows(t *table, d deployStats, cols int, target float64) {
	blank := make([]string, cols)
	row := func(metric, value, tgt, ok string) {
		r := append([]string{metric}, blank...)
		r[cols] = value
		t.add(append(r, tgt, ok)...)
	}
	med := median(d.took)
	if target > 0 {
		row("deploy→active, median (ms)", fmtMS(med), fmt.Sprintf("<= %.0f", target), met(med <= target))
	} else {
		row("deploy→active, median (ms)", fmtMS(med), "", "")
	}
	if len(d.took) > 0 {
		row("deploy→active, min / max (ms)", fmtMS(slices.Min(d.took))+" / "+fmtMS(slices.Max(d.took)), "", "")
	}
	row("failed deploys", fmt.Sprint(d.failed), "0", met(d.failed == 0))
}

// countDeploys adds failed deploys to the run's failures.
func (b *bench) countDeploys(section string, d deployStats) {
	b.fail(d.failed, "%s: %d deploys failed, first: %s", section, d.failed, d.first)
}

// controlLoop sends GET /hello.php over FastCGI straight to a pool's
// socket, as an open loop at rate per second for at most d, on a new
// connection each as nginx does without keep-alive, until ctx ends (a
// request under way still ends on its own). It is the switch section's
// control: a pool fpmux does not route to, so a stall it shares with the
// requests through fpmux comes from the machine (php-fpm starting), not
// from fpmux's switch.
func controlLoop(ctx context.Context, sock, root string, rate float64, d time.Duration) (time.Time, []sample) {
	req := fcgiclient.Request{Params: helloParams(root)}
	p, _ := openLoopEach(ctx, target{}, rate, d, maxOpenConns, func(*worker, int) error {
		rctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		resp, err := fcgiclient.Fetch(rctx, "unix", sock, req)
		if err == nil && resp.Status != 200 {
			err = fmt.Errorf("status %d", resp.Status)
		}
		return err
	})
	return p.start, p.samples
}

// aroundDeploys splits samples into those whose intended start lies within
// window after one of the deploy starts, and the others.
type aroundDeploys struct {
	during, steady         []time.Duration // sorted
	failDuring, failSteady int
}

func splitAround(start time.Time, samples []sample, deploys []time.Time, window time.Duration) aroundDeploys {
	var a aroundDeploys
	for _, s := range samples {
		at := start.Add(s.intended)
		if slices.ContainsFunc(deploys, func(d time.Time) bool { return !at.Before(d) && at.Before(d.Add(window)) }) {
			a.during = append(a.during, s.lat)
			a.failDuring += btoi(s.failed)
		} else {
			a.steady = append(a.steady, s.lat)
			a.failSteady += btoi(s.failed)
		}
	}
	slices.Sort(a.during)
	slices.Sort(a.steady)
	return a
}

// afterDeploys bins the requests by how long after the last deploy start
// their intended start lies, summed over all deploys: where in a deploy a
// stall sits. Each bin's latencies come back sorted.
func afterDeploys(start time.Time, samples []sample, deploys []time.Time, bin, span time.Duration) [][]time.Duration {
	bins := make([][]time.Duration, int(span/bin))
	for _, s := range samples {
		at := start.Add(s.intended)
		i, ok := slices.BinarySearchFunc(deploys, at, func(d, t time.Time) int { return d.Compare(t) })
		if !ok {
			i-- // the last deploy that began before at
		}
		if i < 0 {
			continue
		}
		if k := int(at.Sub(deploys[i]) / bin); k < len(bins) {
			bins[k] = append(bins[k], s.lat)
		}
	}
	for _, b := range bins {
		slices.Sort(b)
	}
	return bins
}

func (a aroundDeploys) p(pct float64) (steady, during float64) {
	return ms(percentile(a.steady, pct)), ms(percentile(a.during, pct))
}

// switchSetup is what switch and switchcost start from: the open-loop
// rate, and hello releases prefix1..prefixN for -switches deploys.
func (b *bench) switchSetup(ctx context.Context, prefix string) (float64, []string, error) {
	rate, err := b.openRate(ctx)
	if err != nil {
		return 0, nil, err
	}
	roots, err := b.writeReleases(prefix, b.o.switches)
	return rate, roots, err
}

// switches deploys releases s1..sN through fpmux under an open-loop load
// and compares the latency right after each deploy with the rest.
func (b *bench) switches(ctx context.Context) (*table, error) {
	rate, roots, err := b.switchSetup(ctx, "s")
	if err != nil {
		return nil, err
	}
	n, every := b.o.switches, b.o.switchEvery
	// The control pool: a release started without traffic.
	ctlRoot := filepath.Join(b.s.releases, "ctl")
	if b.o.controlRate > 0 {
		if err := writeHelloRelease(ctlRoot); err != nil {
			return nil, err
		}
		if _, _, err := b.s.deploy(ctx, "ctl", ctlRoot, false, nil); err != nil {
			return nil, err
		}
	}
	if err := b.pause(ctx); err != nil {
		return nil, err
	}
	const window = 2 * time.Second
	ctlCtx, ctlStop := context.WithCancel(ctx)
	defer ctlStop()
	var (
		ctlStart   time.Time
		ctlSamples []sample
		ctlDone    = make(chan struct{})
	)
	go func() {
		defer close(ctlDone)
		if b.o.controlRate > 0 {
			// Ended by ctlStop; d, twice the load's length, only bounds it.
			ctlStart, ctlSamples = controlLoop(ctlCtx, b.s.poolSock("ctl"), ctlRoot, b.o.controlRate, 2*time.Duration(n+1)*every)
		}
	}()
	var (
		ds     deployStats
		starts []time.Time
	)
	lp, err := b.underLoad(ctx, "switch", "/hello.php", rate, n, every, func(i int) error {
		id := fmt.Sprintf("s%d", i+1)
		starts = append(starts, time.Now())
		took, _, err := b.s.deploy(ctx, id, roots[i], true, nil)
		ds.add("switch", id, took, err)
		if err == nil {
			logf("switch: deployed %s in %.0f ms", id, ms(took))
		}
		return nil
	})
	ctlStop()
	<-ctlDone
	if err != nil {
		return nil, err
	}
	logTimeline("switch", lp, every)
	const bin = 100 * time.Millisecond
	bins := afterDeploys(lp.start, lp.samples, starts, bin, every)
	var profile []string
	for k, lat := range bins {
		logf("switch: %4.0f-%4.0f ms after a deploy began: %5d requests  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms",
			ms(time.Duration(k)*bin), ms(time.Duration(k+1)*bin), len(lat), ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
		if k < 8 {
			profile = append(profile, fmt.Sprintf("%.0f–%.0f ms: %.1f/%.1f", ms(time.Duration(k)*bin), ms(time.Duration(k+1)*bin), ms(percentile(lat, 50)), ms(percentile(lat, 99))))
		}
	}
	b.countDeploys("switch", ds)
	if b.o.controlRate > 0 {
		if err := b.s.retire(ctx, "ctl"); err != nil {
			return nil, err
		}
		if left, err := b.s.waitRetired(ctx, 30*time.Second); err != nil {
			return nil, fmt.Errorf("%w (left: %s)", err, strings.Join(left, ", "))
		}
	}

	a := splitAround(lp.start, lp.samples, starts, window)
	p50s, p50d := a.p(50)
	p99s, p99d := a.p(99)
	t := &table{
		title:  fmt.Sprintf("switch: %d deploys %v apart through fpmux, open loop at %.0f req/s", n, every, rate),
		header: []string{"metric", "steady state", "within 2 s of a deploy", "ratio or value", "target", "met?"},
	}
	addDeployRows(t, ds, 3, 150)
	t.add("p50 latency (ms)", fmtMS(p50s), fmtMS(p50d), fmtRatio(p50d/p50s), "", "")
	t.add("p99 latency (ms)", fmtMS(p99s), fmtMS(p99d), fmtRatio(p99d/p99s), "<= 1.2", met(p99d/p99s <= 1.2))
	t.add("requests", fmt.Sprint(len(a.steady)), fmt.Sprint(len(a.during)), "", "", "")
	t.add("failed requests", fmt.Sprint(a.failSteady), fmt.Sprint(a.failDuring), "", "0", met(a.failSteady+a.failDuring == 0))
	if b.o.controlRate > 0 {
		c := splitAround(ctlStart, ctlSamples, starts, window)
		c50s, c50d := c.p(50)
		c99s, c99d := c.p(99)
		t.add("control, p50 latency (ms)", fmtMS(c50s), fmtMS(c50d), fmtRatio(c50d/c50s), "", "")
		t.add("control, p99 latency (ms)", fmtMS(c99s), fmtMS(c99d), fmtRatio(c99d/c99s), "", "")
		t.add("control, requests / failed", fmt.Sprintf("%d / %d", len(c.steady), c.failSteady), fmt.Sprintf("%d / %d", len(c.during), c.failDuring), "", "", "")
		b.fail(c.failSteady+c.failDuring, "switch control: %d failed", c.failSteady+c.failDuring)
		t.note("Control: %.0f req/s of FastCGI (fcgiclient), a new connection each, straight to the socket of a pool fpmux keeps ready but sends nothing to (release ctl, deployed without activating). It shares the machine, not fpmux's routing: a stall after a deploy that it shows too comes from starting php-fpm on two cores.", b.o.controlRate)
	}
	t.note("p50/p99 latency (ms) of the requests by when after a deploy began they were meant to start, over all deploys: %s.", strings.Join(profile, "; "))
	t.note("Deploy→active is the admin POST /v1/releases until its 201. A request is \"within 2 s of a deploy\" when its intended start lies in the 2 s after a deploy began.")
	t.note("The client used up to %d connections; a request waited for a connection %d times; the dispatcher was at most %.2f ms late.", lp.conns, lp.waited, ms(lp.lateness))
	return t, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// deploys runs many deploys in a row under a light load and compares
// fpmux's resources before and after.
func (b *bench) deploys(ctx context.Context) (*table, error) {
	n := b.o.deploys
	roots, err := b.writeReleases("d", n)
	if err != nil {
		return nil, err
	}
	before, err := b.quietSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	logf("deploys: before: %+v", before)
	const lightRate = 200
	var (
		ds         deployStats
		start, end time.Time
	)
	lp, err := b.underLoad(ctx, "deploys", "/hello.php", lightRate, n, 0, func(i int) error {
		if i == 0 {
			start = time.Now()
		}
		id := fmt.Sprintf("d%d", i+1)
		took, _, err := b.s.deploy(ctx, id, roots[i], true, nil)
		ds.add("deploys", id, took, err)
		if (i+1)%20 == 0 {
			logf("deploys: %d/%d, last took %.0f ms", i+1, n, ms(took))
		}
		end = time.Now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	all := end.Sub(start)
	logTimeline("deploys", lp, 5*time.Second)
	b.countDeploys("deploys", ds)

	drainStart := time.Now()
	notRetired, err := b.s.waitRetired(ctx, 60*time.Second)
	drained := time.Since(drainStart)
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	after, err := b.quietSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	logf("deploys: after: %+v", after)

	t := &table{
		title:  fmt.Sprintf("deploys: %d deploys in a row through fpmux under %d req/s", n, lightRate),
		header: []string{"metric", "before", "after", "difference", "target", "met?"},
	}
	dFront := after.fds.front - before.fds.front
	dPool := after.fds.pool - before.fds.pool
	dFDs := after.fds.total - before.fds.total
	dG := int(math.Round(after.goroutines - before.goroutines))
	// fcgimux runs one goroutine per front connection; an idle pool
	// connection has none. The scale section measures the first.
	perFront := 1
	if b.goPerConn > 0 {
		perFront = int(math.Round(b.goPerConn))
	}
	baseline := func(diff, explained int) string {
		switch {
		case diff == 0:
			return "yes (equal)"
		case diff == explained:
			return "yes (idle connections)"
		}
		return "**no**"
	}
	t.add("go_goroutines", fmt.Sprint(before.goroutines), fmt.Sprint(after.goroutines), fmt.Sprintf("%+d", dG), "back to baseline", baseline(dG, dFront*perFront))
	t.add("fpmux open fds", fmt.Sprint(before.fds.total), fmt.Sprint(after.fds.total), fmt.Sprintf("%+d", dFDs), "back to baseline", baseline(dFDs, dFront+dPool))
	t.add("… of which nginx→fpmux connections", fmt.Sprint(before.fds.front), fmt.Sprint(after.fds.front), fmt.Sprintf("%+d", dFront), "", "")
	t.add("… of which fpmux→php-fpm connections", fmt.Sprint(before.fds.pool), fmt.Sprint(after.fds.pool), fmt.Sprintf("%+d", dPool), "", "")
	t.add("php-fpm processes under fpmux", fmt.Sprint(before.phpFPM), fmt.Sprint(after.phpFPM), fmt.Sprintf("%+d", after.phpFPM-before.phpFPM), "equal", met(after.phpFPM == before.phpFPM))
	t.add("fpmux RSS (MB)", fmtMB(before.rssKB), fmtMB(after.rssKB), fmt.Sprintf("%+.1f MB", float64(after.rssKB-before.rssKB)/1024), "", "")
	addDeployRows(t, ds, 3, 0)
	t.add("releases not retired after the wait", "", fmt.Sprint(len(notRetired)), "", "0", met(len(notRetired) == 0))
	t.add("failed requests", "", fmt.Sprint(lp.failed), "", "0", met(lp.failed == 0))
	t.note("%d deploys took %.1f s; the old releases were retired %.1f s after the last one (polling GET /v1/releases, bounded by 60 s), then a %v pause before the snapshot. %d requests sent, p99 %.2f ms.",
		len(ds.took), all.Seconds(), drained.Seconds(), b.o.pause, len(lp.samples), ms(lp.p99()))
	t.note("\"Back to baseline\": equal, or the difference is exactly the idle connections counted in /proc/net/unix (an idle nginx→fpmux connection holds one descriptor and %d goroutine(s); an idle fpmux→php-fpm connection one descriptor and none).", perFront)
	if len(notRetired) > 0 {
		t.note("Not retired: %s.", strings.Join(notRetired[:min(10, len(notRetired))], ", "))
	}
	return t, nil
}

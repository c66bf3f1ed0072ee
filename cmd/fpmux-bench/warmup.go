// This file owns the warmup section: what fpmux's app warm-up (a deploy's
// "warmup" paths, sent to the new pool before it becomes active) does to
// the requests of the first second after a switch. It deploys the same
// framework-like app under new ids through fpmux under a steady open loop
// on that app's page, alternating deploys without app warm-up (php-fpm's
// ping only) and with the page as the warm-up path, and compares the two
// side by side.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	warm      bool
	posted    time.Time // the deploy's POST
	activated time.Time
	during    []time.Duration // requests meant to start between posted and activated
	took      time.Duration
	lat       []time.Duration // sorted
	failed    int
}

// deployWarm deploys id from root through the admin API with warmup as its
// own warm-up list ([] for none), and returns when the release became
// active by fpmux's clock (activated_at).
func (b *bench) deployWarm(ctx context.Context, id, root string, warmup []string) (time.Time, time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"id": id, "root": root, "activate": true, "warmup": warmup})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://fpmux/v1/releases", bytes.NewReader(body))
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("deploy %s: %w", id, err)
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := b.s.admin.Do(req)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("deploy %s: %w", id, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return time.Time{}, took, fmt.Errorf("deploy %s: %s %v: %s", id, resp.Status, err, bytes.TrimSpace(data))
	}
	var r struct {
		ActivatedAt *time.Time `json:"activated_at"`
		Pool        *struct {
			Pid int `json:"pid"`
		} `json:"pool"`
		Warmup []struct {
			Path   string `json:"path"`
			Status int    `json:"status"`
			MS     int64  `json:"ms"`
			Failed int    `json:"failed"`
		} `json:"warmup"`
	}
	if err := json.Unmarshal(data, &r); err != nil || r.ActivatedAt == nil {
		return time.Time{}, took, fmt.Errorf("deploy %s: no activated_at in %.300s (%v)", id, data, err)
	}
	if r.Pool != nil && r.Pool.Pid > 0 {
		b.s.mu.Lock()
		b.s.pgids[r.Pool.Pid] = true
		b.s.mu.Unlock()
	}
	for _, w := range r.Warmup {
		logf("warmup: %s warmed %s: first request %d in %d ms, %d failed", id, w.Path, w.Status, w.MS, w.Failed)
		if w.Failed > 0 {
			return *r.ActivatedAt, took, fmt.Errorf("deploy %s: warm-up of %s failed %d times", id, w.Path, w.Failed)
		}
	}
	return *r.ActivatedAt, took, nil
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
	if err := b.pause(ctx); err != nil {
		return nil, err
	}
	var (
		lp      openPhase
		loadErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		lp, loadErr = openLoop(ctx, newTarget(b.s.via, warmupPage), warmupRate, time.Duration(n+1)*warmupEvery, maxOpenConns)
	}()
	t0 := time.Now()
	deploys := make([]warmDeploy, 0, n)
	var ds deployStats
	for i := range n {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(t0.Add(time.Duration(i+1) * warmupEvery))):
		}
		if ctx.Err() != nil {
			break
		}
		d := warmDeploy{warm: i%2 == 1}
		paths := []string{}
		if d.warm {
			paths = []string{warmupPage}
		}
		id := fmt.Sprintf("w%d", i+1)
		var err error
		d.posted = time.Now()
		d.activated, d.took, err = b.deployWarm(ctx, id, root, paths)
		ds.add("warmup", id, d.took, err)
		if err == nil {
			logf("warmup: deployed %s (warm-up %v) in %.0f ms", id, d.warm, ms(d.took))
			deploys = append(deploys, d)
		}
	}
	<-done
	if loadErr != nil {
		return nil, loadErr
	}
	b.count("warmup", lp.phase)
	b.countDeploys("warmup", ds)

	var steady []time.Duration
	for _, s := range lp.samples {
		if !s.done {
			continue
		}
		at := lp.start.Add(s.intended)
		in := false
		for k := range deploys {
			d := &deploys[k]
			switch {
			case !at.Before(d.activated) && at.Before(d.activated.Add(warmupWindow)):
				d.lat = append(d.lat, s.lat)
				d.failed += btoi(s.failed)
				in = true
			case !at.Before(d.posted) && at.Before(d.activated):
				d.during = append(d.during, s.lat)
				in = true
			}
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
		slices.Sort(d.lat)
		m := btoi(d.warm)
		figs[m][0] = append(figs[m][0], ms(percentile(d.lat, 50)))
		figs[m][1] = append(figs[m][1], ms(percentile(d.lat, 99)))
		figs[m][2] = append(figs[m][2], ms(percentile(d.lat, 100)))
		figs[m][3] = append(figs[m][3], ms(d.took))
		slices.Sort(d.during)
		figs[m][4] = append(figs[m][4], ms(percentile(d.during, 99)))
		failed[m] += d.failed
		logf("warmup: %s (warm-up %v): first second p50 %.2f p99 %.2f max %.2f ms over %d requests",
			fmt.Sprintf("w%d", k+1), d.warm, ms(percentile(d.lat, 50)), ms(percentile(d.lat, 99)), ms(percentile(d.lat, 100)), len(d.lat))
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

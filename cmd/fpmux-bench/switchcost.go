// This file owns the switchcost section: where the CPU of a deploy goes
// (the new pool's start until it is active, the old pool's stop) and what
// memory all pools hold over a deploy cycle, read from /proc while fpmux
// deploys under an open-loop load.

package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	procfs "github.com/fpmux/fpmux/internal/proc"
)

// pssEvery is how often switchcost sums the PSS of the pools: reading
// smaps_rollup walks each process's page tables, so not more often.
const pssEvery = 100 * time.Millisecond

// poolsPSS sums the PSS of every php-fpm process under fpmux.
func poolsPSS(fpmuxPid int) uint64 {
	var sum uint64
	for _, p := range phpFPMBelow(fpmuxPid) {
		if _, pss, err := procfs.SmapsRollup(p); err == nil {
			sum += pss / 1024
		}
	}
	return sum
}

type pssSample struct {
	at time.Time
	kb uint64
}

// sampleMemory sums the pools' PSS every pssEvery until ctx ends.
func sampleMemory(ctx context.Context, fpmuxPid int) (out []pssSample) {
	sampleEvery(ctx, pssEvery, func() { out = append(out, pssSample{time.Now(), poolsPSS(fpmuxPid)}) })
	return out
}

// sampleEvery calls f at once, then every d until ctx ends.
func sampleEvery(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stopCPU waits up to 5 s for fpmux to reap the master of a pool that
// stopped, and returns the CPU its stop took: what fpmux's (pid fpid)
// reaped children gained since they stood at reaped0, less ran, what the
// pool had run at the switch. fpmux reaps the master after its group is
// gone; its times reach fpmux's cutime then.
func stopCPU(ctx context.Context, fpid int, reaped0, ran time.Duration) time.Duration {
	var reaped time.Duration
	_ = waitFor(ctx, "fpmux to reap the old master", 5*time.Second, func() (bool, error) {
		c, err := childrenCPU(fpid)
		reaped = c - reaped0
		return err == nil && reaped >= ran, err
	})
	return reaped - ran
}

// cycleMemory returns, for each deploy i, the time average of the pools'
// PSS from deploy i's start to the next's (or to end) over that cycle's
// steady PSS: the median of its samples in the last second before the
// next deploy, when the old pool is long gone and one pool serves. steady
// is the median of those steady figures, in KiB.
func cycleMemory(samples []pssSample, starts []time.Time, end time.Time) (ratios []float64, steady float64) {
	var steadies []float64
	for i, from := range starts {
		to := end
		if i+1 < len(starts) {
			to = starts[i+1]
		}
		var sum float64
		var quiet []float64
		n := 0
		for _, s := range samples {
			if s.at.Before(from) || !s.at.Before(to) {
				continue
			}
			sum += float64(s.kb)
			n++
			if !s.at.Before(to.Add(-time.Second)) {
				quiet = append(quiet, float64(s.kb))
			}
		}
		if n > 0 && len(quiet) > 0 {
			q := median(quiet)
			ratios = append(ratios, sum/float64(n)/q)
			steadies = append(steadies, q)
		}
	}
	return ratios, median(steadies)
}

// switchCost deploys releases c1..cN through fpmux under the open-loop
// load and measures each deploy's CPU: the new pool's from its spawn until
// the deploy answered (its master and workers, live), and the old pool's
// stop (the CPU fpmux's reaped children gained while it retired, less what
// the old pool had run when the switch came). It samples the pools' PSS all
// along.
func (b *bench) switchCost(ctx context.Context) (*table, error) {
	rate, roots, err := b.switchSetup(ctx, "c")
	if err != nil {
		return nil, err
	}
	n, every := b.o.switches, b.o.switchEvery
	oldPid, err := b.s.activePool(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.pause(ctx); err != nil {
		return nil, err
	}
	fpid := b.s.fpmux.pid()
	memCtx, memStop := context.WithCancel(ctx)
	var (
		mem     []pssSample
		memDone sync.WaitGroup
	)
	memDone.Add(1)
	go func() {
		defer memDone.Done()
		mem = sampleMemory(memCtx, fpid)
	}()
	defer func() { memStop(); memDone.Wait() }()

	var (
		ds                 deployStats
		starts             []time.Time
		startCPU, stopCPUs []float64 // ms
		workers            []int
		retireMS           []float64
	)
	lp, err := b.underLoad(ctx, "switchcost", "/hello.php", rate, n, every, func(i int) error {
		id := fmt.Sprintf("c%d", i+1)
		reaped0, err := childrenCPU(fpid)
		if err != nil {
			return err
		}
		starts = append(starts, time.Now())
		took, r, err := b.s.deploy(ctx, id, roots[i], true, nil)
		ds.add("switchcost", id, took, err)
		if err != nil || r.Pool == nil {
			return nil
		}
		cpu, k := poolCPU(r.Pool.Pid)
		oldCPU, _ := poolCPU(oldPid)
		startCPU = append(startCPU, ms(cpu))
		workers = append(workers, k-1)
		// The old pool retires: wait for its master to be reaped.
		gone := time.Now()
		if err := waitFor(ctx, "the old pool to stop", 30*time.Second, func() (bool, error) {
			return !slices.ContainsFunc(processes(), func(p procfs.Process) bool { return p.Pgrp == oldPid }), nil
		}); err != nil {
			return err
		}
		retireMS = append(retireMS, ms(time.Since(gone)))
		stop := stopCPU(ctx, fpid, reaped0, oldCPU)
		stopCPUs = append(stopCPUs, ms(stop))
		logf("switchcost: %s active in %.0f ms, its %d workers and master ran %.1f ms; the old pool stopped in %.0f ms on %.1f ms of CPU",
			id, ms(took), k-1, ms(cpu), retireMS[len(retireMS)-1], ms(stop))
		oldPid = r.Pool.Pid
		return nil
	})
	memStop()
	memDone.Wait()
	if err != nil {
		return nil, err
	}
	b.countDeploys("switchcost", ds)
	ratios, steady := cycleMemory(mem, starts, time.Now())

	t := &table{
		title:  fmt.Sprintf("switchcost: %d deploys %v apart through fpmux, open loop at %.0f req/s", n, every, rate),
		header: []string{"metric", "median", "min / max", "target", "met?"},
	}
	t.addSpread("deploy→active (ms)", ds.took, "%.1f", "<= 150", met(median(ds.took) <= 150))
	wk := make([]float64, len(workers))
	for i, w := range workers {
		wk[i] = float64(w)
	}
	t.addSpread("new pool's workers at active", wk, "%.1f")
	t.addSpread("new pool's CPU until active (ms)", startCPU, "%.1f")
	t.addSpread("old pool's stop: CPU (ms)", stopCPUs, "%.1f")
	t.addSpread("old pool's stop: from the switch until gone (ms)", retireMS, "%.1f")
	t.addSpread("pools' PSS, time average over a cycle / steady", ratios, "%.3f", "<= 1.05", met(median(ratios) <= 1.05))
	t.add("pools' PSS steady (MB)", fmt.Sprintf("%.1f", steady/1024), "", "", "")
	t.add("failed requests / deploys", fmt.Sprintf("%d / %d", lp.failed, ds.failed), "", "0", met(lp.failed+ds.failed == 0))
	t.note("CPU of the new pool: schedstat run time of its master and workers when the deploy answered. CPU of the stop: what fpmux's reaped children gained while the old pool retired, less what the old pool had run at the switch (/proc ticks of 10 ms).")
	t.note("A cycle runs from one deploy's start to the next's (%v); PSS of every php-fpm process under fpmux every %v (%d samples); a cycle's steady PSS is the median of its last second, one pool serving.", every, pssEvery, len(mem))
	return t, nil
}

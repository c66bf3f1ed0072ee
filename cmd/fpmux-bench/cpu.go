// This file owns the CPU accounting of a phase: how much CPU time nginx,
// fpmux, php-fpm and the client itself spent, and how much went to
// processes outside the bench. On a shared two-core machine throughput
// moves with whatever else runs; CPU time per request is the steadier
// measure of what the extra hop costs, and the share taken by others says
// how far a phase's figures can be trusted.

package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go runs on.
const clockTick = 10 * time.Millisecond

// cpuGroups are the parts of the stack whose CPU time is counted apart.
var cpuGroups = []string{"nginx", "fpmux", "php-fpm", "client"}

// cpuSnap is the CPU time consumed so far, per process and machine-wide.
type cpuSnap struct {
	procs  map[int]procCPU
	client time.Duration
	busy   time.Duration // all CPUs, not idle
	total  time.Duration // all CPUs, idle included
}

type procCPU struct {
	group string
	used  time.Duration
}

// cpuUse is what a phase consumed.
type cpuUse struct {
	group map[string]time.Duration
	busy  time.Duration // machine-wide
	total time.Duration
}

// busyShare is the machine's busy time as a share of all its CPUs.
func (u cpuUse) busyShare() float64 {
	if u.total <= 0 {
		return 0
	}
	return float64(u.busy) / float64(u.total)
}

// others is the CPU time of processes outside the bench (and the kernel's
// own work), as a share of the machine's capacity.
func (u cpuUse) others() float64 {
	var ours time.Duration
	for _, d := range u.group {
		ours += d
	}
	if u.total <= 0 {
		return 0
	}
	return max(0, float64(u.busy-ours)/float64(u.total))
}

// takeCPU reads the CPU times of nginx (master and workers), fpmux, the
// php-fpm processes below fpmux, this process, and the machine.
func (s *stack) takeCPU() cpuSnap { return takeCPU(s.nginx, s.fpmux) }

// takeCPU is stack.takeCPU for an nginx and any fpmuxes (nil ones are
// left out).
func takeCPU(nginx *proc, fpmuxes ...*proc) cpuSnap {
	sn := cpuSnap{procs: map[int]procCPU{}}
	add := func(pid int, group string) {
		if d, err := cpuTime(pid, false); err == nil {
			sn.procs[pid] = procCPU{group, d}
		}
	}
	if nginx != nil {
		add(nginx.pid(), "nginx")
		for _, p := range descendants(nginx.pid()) {
			add(p, "nginx")
		}
	}
	for _, f := range fpmuxes {
		if f == nil {
			continue
		}
		add(f.pid(), "fpmux")
		for _, p := range phpFPMBelow(f.pid()) {
			add(p, "php-fpm")
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		sn.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	sn.busy, sn.total = machineCPU()
	return sn
}

// since returns what was consumed from before to sn, counting only the
// processes present in both.
func (sn cpuSnap) since(before cpuSnap) cpuUse {
	u := cpuUse{group: map[string]time.Duration{}, busy: sn.busy - before.busy, total: sn.total - before.total}
	for pid, p := range sn.procs {
		if b, ok := before.procs[pid]; ok && b.group == p.group {
			u.group[p.group] += p.used - b.used
		}
	}
	u.group["client"] = sn.client - before.client
	return u
}

// busyShareSince is the machine's busy time as a share of all its CPUs
// since machineCPU returned busy0 and total0.
func busyShareSince(busy0, total0 time.Duration) float64 {
	busy, total := machineCPU()
	return cpuUse{busy: busy - busy0, total: total - total0}.busyShare()
}

// machineCPU returns the busy and total CPU time of all CPUs from the
// first line of /proc/stat (idle and iowait are not busy).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var sum, idle int64
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(s, 10, 64)
		sum += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return time.Duration(sum-idle) * clockTick, time.Duration(sum) * clockTick
}

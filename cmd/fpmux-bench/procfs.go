// This file owns what the bench reads about processes from /proc: memory,
// CPU times, open descriptors and what kind of socket each is, process
// trees and the processes a run left behind.

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	procfs "github.com/fpmux/fpmux/internal/proc"
)

// procKB returns the figure after key in /proc/<pid>/<file>, a line such
// as status's "VmRSS:  1234 kB": KiB.
func procKB(pid int, file, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0, fmt.Errorf("read %s of pid %d: %w", file, pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("read %s of pid %d: no %s line", file, pid, key)
}

// cpuTime is pid's user and system time; with reaped, that of the
// children it reaped instead (a pool's master, once fpmux reaped it, with
// every worker it reaped).
func cpuTime(pid int, reaped bool) (time.Duration, error) {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return 0, err
	}
	if reaped {
		return time.Duration(st.CUTime+st.CSTime) * clockTick, nil
	}
	return time.Duration(st.UTime+st.STime) * clockTick, nil
}

// childrenCPU returns the user and system time of pid's reaped children.
func childrenCPU(pid int) (time.Duration, error) { return cpuTime(pid, true) }

// schedRuntime is the first field of /proc/<pid>/schedstat: the time the
// process has run on a CPU, in nanoseconds.
func schedRuntime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, fmt.Errorf("read schedstat of pid %d: %w", pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("read schedstat of pid %d: empty", pid)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read schedstat of pid %d: %w", pid, err)
	}
	return time.Duration(ns), nil
}

// fdUse is how a process's open descriptors divide up.
type fdUse struct {
	total int
	front int // connected sockets on the FastCGI listener (from nginx or the bench)
	pool  int // connected unnamed unix sockets: fpmux's connections to php-fpm pools
	admin int // connected sockets on the admin listener
}

// fdsOf classifies pid's descriptors using /proc/net/unix: a connection a
// listener accepted carries the listener's path there, a connection a
// process dialed carries none.
func fdsOf(pid int, frontPath, adminPath string) (fdUse, error) {
	socks, err := unixSockets()
	if err != nil {
		return fdUse{}, err
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fdUse{}, fmt.Errorf("list fds of pid %d: %w", pid, err)
	}
	var u fdUse
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		u.total++
		ino, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		s, ok := socks[strings.TrimSuffix(ino, "]")]
		if !ok || !s.connected {
			continue
		}
		switch s.path {
		case frontPath:
			u.front++
		case adminPath:
			u.admin++
		case "":
			u.pool++
		}
	}
	return u, nil
}

type unixSocket struct {
	path      string
	connected bool
}

// unixSockets reads /proc/net/unix, by inode.
func unixSockets() (map[string]unixSocket, error) {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil, fmt.Errorf("read /proc/net/unix: %w", err)
	}
	m := map[string]unixSocket{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header: Num RefCount Protocol Flags Type St Inode Path
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 {
			continue
		}
		s := unixSocket{connected: f[5] == "03"}
		if len(f) > 7 {
			s.path = f[7]
		}
		m[f[6]] = s
	}
	return m, nil
}

// processes lists the live processes (zombies left out).
func processes() []procfs.Process {
	ps, _ := procfs.Processes()
	return ps
}

// children lists the children of pid, from every thread's
// /proc/<pid>/task/<tid>/children: a cheaper read than all of /proc, which
// the realapp section makes every 20 ms while a pool starts.
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// descendants returns the pids below pid: its children, theirs, and so on.
func descendants(pid int) []int {
	var out []int
	for next := children(pid); len(next) > 0; next = next[1:] {
		out = append(out, next[0])
		next = append(next, children(next[0])...)
	}
	return out
}

// phpFPMBelow returns the php-fpm processes (masters and workers) below
// pid.
func phpFPMBelow(pid int) []int {
	var out []int
	for _, p := range descendants(pid) {
		if cl, _ := procfs.Cmdline(p); strings.HasPrefix(cl, "php-fpm") {
			out = append(out, p)
		}
	}
	return out
}

// poolCPU is the CPU a pool's master and its workers have run so far
// (schedstat's nanoseconds, not /proc's 10 ms ticks), and how many of them
// there are.
func poolCPU(master int) (time.Duration, int) {
	var sum time.Duration
	n := 0
	for _, pid := range append([]int{master}, children(master)...) {
		if d, err := schedRuntime(pid); err == nil {
			sum += d
			n++
		}
	}
	return sum, n
}

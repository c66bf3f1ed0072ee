// This file owns what the bench reads about processes from /proc: resident
// memory, open descriptors and what kind of socket each is, process trees
// and the processes a run left behind.

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// rssKB returns a process's resident set size (VmRSS) in KiB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("read status of pid %d: no VmRSS line", pid)
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

// procInfo is one live process.
type procInfo struct {
	pid, ppid, pgrp int
	cmdline         string // NUL-separated arguments joined with spaces
}

// processes lists the live processes (zombies left out).
func processes() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var ps []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// state, ppid and pgrp follow the parenthesised command name.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		ps = append(ps, procInfo{pid: pid, ppid: ppid, pgrp: pgrp,
			cmdline: strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))})
	}
	return ps
}

// descendants returns the processes whose parent chain leads to pid.
func descendants(ps []procInfo, pid int) []procInfo {
	parent := map[int]int{}
	for _, p := range ps {
		parent[p.pid] = p.ppid
	}
	var out []procInfo
	for _, p := range ps {
		for q, hops := p.ppid, 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// phpFPMUnder counts the php-fpm processes (masters and children) below pid.
func phpFPMUnder(pid int) int {
	n := 0
	for _, p := range descendants(processes(), pid) {
		if strings.HasPrefix(p.cmdline, "php-fpm") {
			n++
		}
	}
	return n
}

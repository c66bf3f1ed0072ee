// Package proc owns what fpmux and its tests read of Linux's /proc: a
// process's stat line, its command line, open files and memory, the
// processes of a process group, the sockets listening on loopback and the
// load average. fpmux watches php-fpm through it (is the group still alive,
// are its processes stopped, what do they hold in memory) and the tests
// check through it what fpmux left behind.
package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Pids returns the pid of every process in /proc.
func Pids() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Group returns the live processes of process group pgid, its leader
// included when it lives. Zombies do not count: they hold no socket or
// memory, and reaping them is up to their parent (pid 1 for a group whose
// leader exited), which may be slow in a container. A process that exits
// while the group is read is left out.
func Group(pgid int) ([]Stat, error) {
	pids, err := Pids()
	if err != nil {
		return nil, err
	}
	var g []Stat
	for _, pid := range pids {
		if st, err := ReadStat(pid); err == nil && st.Pgrp == pgid && st.Live() {
			g = append(g, st)
		}
	}
	return g, nil
}

// Process is a live process: its stat line and its command line.
type Process struct {
	Stat
	Cmdline string // see Cmdline; empty if it could not be read
}

// Processes returns every live process (see Stat.Live).
func Processes() ([]Process, error) {
	pids, err := Pids()
	if err != nil {
		return nil, err
	}
	var ps []Process
	for _, pid := range pids {
		st, err := ReadStat(pid)
		if err != nil || !st.Live() {
			continue
		}
		cl, _ := Cmdline(pid)
		ps = append(ps, Process{Stat: st, Cmdline: cl})
	}
	return ps, nil
}

// Cmdline returns a process's command line as ps(1) shows it: the
// arguments separated by spaces. php-fpm writes its title there ("php-fpm:
// master process (<config>)", "php-fpm: pool <name>"), which is how fpmux
// and the tests tell its processes apart.
func Cmdline(pid int) (string, error) {
	b, err := os.ReadFile(path(pid, "cmdline"))
	if err != nil {
		return "", fmt.Errorf("read command line of %d: %w", pid, err)
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))), nil
}

// FD is one of a process's open file descriptors.
type FD struct {
	Num    int
	Target string // what its /proc/<pid>/fd link points to: a path, "socket:[inode]", "pipe:[inode]"...
}

func (f FD) String() string { return strconv.Itoa(f.Num) + "->" + f.Target }

// FDs returns a process's open file descriptors, in order. One closed
// while they are read is left out.
func FDs(pid int) ([]FD, error) {
	dir := path(pid, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list open files of %d: %w", pid, err)
	}
	fds := make([]FD, 0, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			fds = append(fds, FD{n, l})
		}
	}
	return fds, nil
}

// ListensOn tells whether process pid holds a socket listening on
// 127.0.0.1:port: /proc/net/tcp names the listening socket's inode, and
// one of pid's fds must point to it. It tells a server's own bind from
// another process's on the same port.
func ListensOn(pid, port int) (bool, error) {
	tcp, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false, fmt.Errorf("read listening sockets: %w", err)
	}
	inode, ok := loopbackListener(tcp, port)
	if !ok {
		return false, nil
	}
	fds, err := FDs(pid)
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		if fd.Target == "socket:["+inode+"]" {
			return true, nil
		}
	}
	return false, nil
}

// loopbackListener returns the inode of the socket listening on
// 127.0.0.1:port in tcp, the text of /proc/net/tcp.
func loopbackListener(tcp []byte, port int) (inode string, ok bool) {
	local := fmt.Sprintf("0100007F:%04X", port)
	for line := range strings.SplitSeq(string(tcp), "\n") {
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode; st 0A is LISTEN
		if f := strings.Fields(line); len(f) > 9 && f[1] == local && f[3] == "0A" {
			return f[9], true
		}
	}
	return "", false
}

// SmapsRollup returns what process pid holds in memory, in bytes, from
// /proc/<pid>/smaps_rollup: RSS counts each shared page in every process
// that maps it, PSS divides it among them.
func SmapsRollup(pid int) (rss, pss uint64, err error) {
	b, err := os.ReadFile(path(pid, "smaps_rollup"))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	rss, pss, err = parseSmapsRollup(b)
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	return rss, pss, nil
}

func parseSmapsRollup(b []byte) (rss, pss uint64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 3 || string(f[2]) != "kB" {
			continue
		}
		var dst *uint64
		switch string(f[0]) {
		case "Rss:":
			dst = &rss
		case "Pss:":
			dst = &pss
		default:
			continue
		}
		kb, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("smaps_rollup: %q: %w", sc.Bytes(), err)
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("smaps_rollup: no Rss and Pss lines")
	}
	return rss, pss, nil
}

// LoadAverage returns /proc/loadavg's first three fields (the 1, 5 and 15
// minute load averages) as they stand there, e.g. "0.52 0.61 0.70": the
// tests log it beside figures the machine's load can bend.
func LoadAverage() (string, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "", fmt.Errorf("read load average: %w", err)
	}
	return parseLoadAverage(b)
}

func parseLoadAverage(b []byte) (string, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "", fmt.Errorf("read load average: %q: want three fields", b)
	}
	return strings.Join(f[:3], " "), nil
}

func path(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

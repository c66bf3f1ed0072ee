// This file owns /proc/<pid>/stat: reading it, and the fields fpmux uses.

package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrMalformed is returned for a stat line that has not the form proc(5)
// gives it; a caller tells it from a process that is gone with errors.Is.
var ErrMalformed = errors.New("malformed stat line")

// Stat is what fpmux reads of a process's /proc/<pid>/stat (proc(5) numbers
// the fields from 1).
type Stat struct {
	Pid  int    // field 1
	Comm string // field 2, without its parentheses: the executable's name, cut to 15 bytes
	// State is field 3: R running, S sleeping, D disk sleep, T stopped
	// (SIGSTOP), t stopped by a tracer, Z zombie, X dead...
	State byte
	PPid  int // field 4
	Pgrp  int // field 5: the process group
	// UTime and STime (fields 14 and 15) are the CPU time the process has
	// run in user and kernel mode, CUTime and CSTime (16 and 17) that of
	// its children it reaped, all in clock ticks (USER_HZ, 100 a second).
	UTime, STime, CUTime, CSTime int
	Nice                         int // field 19: -20 (first) to 19 (last)
	Policy                       int // field 41: the scheduling policy, SCHED_OTHER 0, SCHED_BATCH 3, SCHED_IDLE 5...
}

// Live tells whether the process runs: it is neither a zombie (exited, not
// yet reaped) nor dead.
func (s Stat) Live() bool { return s.State != 'Z' && s.State != 'X' }

// ReadStat reads /proc/<pid>/stat. Its error wraps the file system's (such
// as fs.ErrNotExist once the process is gone) or ErrMalformed.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(path(pid, "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	st, err := parseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	return st, nil
}

// parseStat parses a stat line: "pid (comm) state ppid pgrp ...". comm is
// whatever the program named itself and may hold spaces and parentheses,
// so the fields after it are split after the line's last ')'.
func parseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("%w: no (comm)", ErrMalformed)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("%w: pid %q", ErrMalformed, bytes.TrimSpace(b[:open]))
	}
	f := strings.Fields(string(b[end+1:])) // f[0] is field 3
	const policy = 41 - 3
	if len(f) <= policy {
		return Stat{}, fmt.Errorf("%w: %d fields after comm, want %d", ErrMalformed, len(f), policy+1)
	}
	if len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("%w: state %q", ErrMalformed, f[0])
	}
	st := Stat{Pid: pid, Comm: string(b[open+1 : end]), State: f[0][0]}
	for _, n := range []struct {
		dst   *int
		field int
	}{{&st.PPid, 4}, {&st.Pgrp, 5}, {&st.UTime, 14}, {&st.STime, 15}, {&st.CUTime, 16}, {&st.CSTime, 17},
		{&st.Nice, 19}, {&st.Policy, 41}} {
		if *n.dst, err = strconv.Atoi(f[n.field-3]); err != nil {
			return Stat{}, fmt.Errorf("%w: field %d: %q", ErrMalformed, n.field, f[n.field-3])
		}
	}
	return st, nil
}

// sched.go owns the CPU priority of a pool's processes: SCHED_IDLE at
// nice 19 while the pool starts, sits kept or stops, so that its CPU
// (php-fpm's module set-up and forks, its workers' module shutdown) comes
// out of what the release serving traffic leaves idle; once that has
// lasted idleBound, fpmux's own priority for a starting pool (its app
// warm-up is what the deploy waits for, and a machine kept busy must not
// hold a deploy for long) and nice 5 for a kept or stopping one; fpmux's
// own priority while it serves.

package pool

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
	"golang.org/x/sys/unix"
)

// A pool's start and stop cost CPU: for 16 workers serving a hello page,
// 40 to 60 ms to start until the release is active (about 20 ms of it the
// master's module set-up, 1 to 2 ms each worker's fork) and 50 to 100 ms
// for their graceful stop (each worker's module shutdown frees its class
// and function tables and unloads its extensions), measured by
// fpmux-bench's switchcost section. At normal priority, or at nice 5, that
// is taken from the release serving traffic, whose p99 jumps for as long.
const (
	// backgroundNice, under SCHED_IDLE, is a starting, kept or stopping pool's
	// priority for its first idleBound.
	backgroundNice = 19
	// idleBound bounds how long a pool runs at SCHED_IDLE in one go: on a
	// machine the serving release (or anything else) keeps busy, an idle
	// task gets next to no CPU, and a start would wait for as long as the
	// load lasts.
	idleBound = 200 * time.Millisecond
	// lateNice is a kept or stopping pool's priority after idleBound: less
	// than a serving worker's, not starved. A stop starts at SCHED_IDLE:
	// at nice 5, 16 workers' module shutdown (50 to 60 ms of CPU within
	// about 40 ms) took the serving release's workers' CPU, and the p99
	// of fpmux-bench's switch section (16 workers, 1000 req/s, a quiet
	// machine) rose to 20 ms in the 40 ms after each switch, 2.4 to 3.2
	// times steady over the 2 s after a deploy (1.7 to 1.9 with the idle
	// stop, in three alternating pairs).
	// It is bounded: unbounded, on a busy machine an idle stop held the
	// old pool 130 to 140 ms after the switch instead of 70 to 110, the
	// pools' PSS over a 2.5 s deploy cycle 1.08 to 1.10 of steady instead
	// of 1.04 to 1.05. A starting pool goes to fpmux's own priority after
	// idleBound instead: its app
	// warm-up (1.4 to 2.3 s of CPU for a MediaWiki release, fpmux-bench's
	// realapp section) is what the deploy waits for, and at nice 5, with a
	// third of the weight of each serving worker, it yielded to the
	// serving load for as long as it ran: the bound bounded nothing.
	lateNice = 5
)

// priority is where a pool's CPU priority stands. Its methods are safe for
// concurrent use.
type priority struct {
	mu        sync.Mutex
	lowered   bool        // in the background: not yet Foreground
	idleTimer *time.Timer // ends SCHED_IDLE after idleFor
}

// idleFor is idleBound, in nanoseconds; tests lengthen or shorten it.
var idleFor atomic.Int64

func init() { idleFor.Store(int64(idleBound)) }

// lower puts process group pgid at SCHED_IDLE and backgroundNice, and
// after idleFor at SCHED_OTHER and, for a start, fpmux's own priority, else
// (a kept or a stopping pool) lateNice, unless raise or end came first. start is true for a master
// just spawned: its workers are still to come and inherit its priority, so
// only it is set.
func (pr *priority) lower(pgid int, start bool, log func(string, error)) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.stopTimerLocked()
	pr.lowered = true
	var err error
	if start {
		err = syscall.Setpriority(syscall.PRIO_PROCESS, pgid, backgroundNice)
	} else {
		err = syscall.Setpriority(syscall.PRIO_PGRP, pgid, backgroundNice)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		log("could not lower the pool's priority", err)
	}
	if err := setPolicy(pgid, unix.SCHED_IDLE); err != nil {
		log("could not make the pool SCHED_IDLE", err)
	}
	var t *time.Timer
	t = time.AfterFunc(time.Duration(idleFor.Load()), func() {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if pr.idleTimer != t { // raised, ended or lowered again since
			return
		}
		pr.idleTimer = nil
		if err := setPolicy(pgid, unix.SCHED_NORMAL); err != nil {
			log("could not end the pool's SCHED_IDLE", err)
		}
		nice := lateNice
		if start {
			nice = ownNice()
		}
		if err := syscall.Setpriority(syscall.PRIO_PGRP, pgid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
			log("could not set the pool's priority", err)
		}
	})
	pr.idleTimer = t
}

// raise gives process group pgid fpmux's own priority and SCHED_OTHER, if
// it was lowered.
func (pr *priority) raise(pgid int, log func(string, error)) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.lowered {
		return
	}
	pr.lowered = false
	pr.stopTimerLocked()
	if err := setPolicy(pgid, unix.SCHED_NORMAL); err != nil {
		log("could not end the pool's SCHED_IDLE", err)
	}
	if err := syscall.Setpriority(syscall.PRIO_PGRP, pgid, ownNice()); err != nil && !errors.Is(err, syscall.ESRCH) {
		log("could not raise the pool's priority", err)
	}
}

// ownNice is fpmux's own nice value.
func ownNice() int {
	// The raw getpriority syscall answers 20 - nice.
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return 0
	}
	return 20 - prio
}

// isLowered reports whether the pool is in the background.
func (pr *priority) isLowered() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.lowered
}

// end stops the timer: the pool's processes are gone, and their process
// group id may come to another.
func (pr *priority) end() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.stopTimerLocked()
}

func (pr *priority) stopTimerLocked() {
	if pr.idleTimer != nil {
		pr.idleTimer.Stop()
		pr.idleTimer = nil
	}
}

// startInBackground lowers the priority of a master just spawned (its
// workers inherit it) until Foreground. Only when fpmux runs as root: a
// process may raise its priority back only with CAP_SYS_NICE, and a pool
// left in the background would serve slowly for good.
func (p *Pool) startInBackground(pid int) {
	if os.Geteuid() != 0 {
		return
	}
	p.prio.lower(pid, true, p.logPrio)
}

// Foreground gives the pool, master and workers, fpmux's own CPU priority
// back after a start in the background: the release is about to take
// traffic.
func (p *Pool) Foreground() {
	if pid := p.Pid(); pid > 0 {
		p.prio.raise(pid, p.logPrio)
	}
}

// Background lowers the pool's CPU priority to that of a starting pool
// until Foreground: for a pool kept idle while another release serves, so
// its housekeeping (and a restart of its master) yields to the serving one.
// Only when fpmux runs as root, as for a start (see startInBackground).
func (p *Pool) Background() {
	if !p.prio.isLowered() {
		p.toBackground()
	}
}

// toBackground gives the pool's processes a starting pool's priority, for
// Background. Only when fpmux runs as root.
func (p *Pool) toBackground() {
	if os.Geteuid() != 0 {
		return
	}
	if pid := p.Pid(); pid > 0 {
		p.prio.lower(pid, false, p.logPrio)
	}
}

// toStopping gives the pool's processes a stopping pool's priority:
// SCHED_IDLE for at most idleBound, then nice 5, below the releases
// serving. Only when fpmux runs as root.
func (p *Pool) toStopping() {
	if os.Geteuid() != 0 {
		return
	}
	if pid := p.Pid(); pid > 0 {
		p.prio.lower(pid, false, p.logPrio)
	}
}

func (p *Pool) logPrio(msg string, err error) { p.log.Debug(msg, "err", err) }

// setPolicy gives the master pgid and every live process of its group the
// scheduling policy policy (unix.SCHED_IDLE or unix.SCHED_NORMAL, which is SCHED_OTHER), the
// master first: a worker it forks after that inherits the new policy, and
// one it forked before is in /proc by the time the group is read. The
// policy is per process (per thread, strictly: php-fpm runs one), unlike
// the nice value, which setpriority sets for a whole process group.
func setPolicy(pgid, policy int) error {
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: uint32(policy)}
	set := func(pid int) error {
		// SCHED_FLAG_KEEP_PARAMS would keep the nice value: sched_setattr
		// sets it otherwise, so read it and pass it on.
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
		if err != nil {
			return err
		}
		a := *attr
		a.Nice = int32(20 - prio)
		return unix.SchedSetAttr(pid, &a, 0)
	}
	if err := set(pgid); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	group, err := proc.Group(pgid)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range group {
		if st.Pid == pgid {
			continue
		}
		if err := set(st.Pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

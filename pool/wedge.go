// wedge.go owns the wedge check: a master that is alive but whose pool
// answers nothing (a master stopped with SIGSTOP, every worker stopped, or
// nothing listening on its socket) is killed with its group and replaced
// like a master that died, instead of holding requests until the web
// server's timeout.

package pool

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// wedgePingTimeout bounds each ping of the wedge check (WedgeInterval, when
// shorter).
const wedgePingTimeout = 2 * time.Second

// watchWedge checks m every WedgeInterval while it runs, from a goroutine
// of its own: a ping can take up to its timeout, and the supervising
// goroutine must stay free to see m exit or Stop arrive. The returned func
// stops the checks and waits for that goroutine; call it before m is let
// go. answered tells whether m has answered a ping already.
func (p *Pool) watchWedge(m *master, answered bool) (stop func()) {
	if p.o.WedgeInterval <= 0 || p.o.WedgeMisses <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.checkWedge(ctx, m, answered)
	}()
	return func() {
		cancel()
		<-done
	}
}

// checkWedge pings the pool every WedgeInterval and, after WedgeMisses
// misses in a row, marks m wedged and SIGKILLs its group (a stopped
// process ignores SIGQUIT and SIGTERM until continued, never SIGKILL);
// supervise then replaces it. A failed ping is a miss only when no process
// of the pool can be serving (see wedgeMiss): a pool whose workers are all
// busy in PHP misses pings too, since php-fpm answers ping.path from a
// worker, and it must not be killed for being busy. A draining pool is not
// checked (drain_timeout bounds it), and neither is a master restarted
// before its first pong, unless it gives none for StartTimeout.
func (p *Pool) checkWedge(ctx context.Context, m *master, answered bool) {
	tick := time.NewTicker(p.o.WedgeInterval)
	defer tick.Stop()
	timeout := min(wedgePingTimeout, p.o.WedgeInterval)
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.exited:
			return
		case <-tick.C:
		}
		if p.gate.draining() {
			misses = 0
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			answered, misses = true, 0
			continue
		}
		if !answered && time.Since(m.started) < p.o.StartTimeout {
			continue // a master just (re)started, not serving yet
		}
		why, miss := wedgeMiss(err, m.pid)
		if !miss {
			p.log.Debug("wedge check: no pong, but the pool is busy, not wedged", "pid", m.pid, "err", err)
			misses = 0
			continue
		}
		misses++
		p.log.Warn("wedge check missed", "pid", m.pid, "misses", misses, "of", p.o.WedgeMisses, "why", why, "err", err)
		if misses < p.o.WedgeMisses {
			continue
		}
		p.log.Error("php-fpm is wedged; replacing its master", "pid", m.pid, "why", why,
			"misses", misses, "interval", p.o.WedgeInterval)
		p.wedged.Store(int64(m.pid))
		if p.o.OnWedged != nil {
			p.o.OnWedged()
		}
		m.signalGroup(syscall.SIGKILL)
		return
	}
}

// wedgeMiss tells whether a failed ping of the pool whose master is pid
// counts as a wedge check missed, and why (see wedgeMissOf).
func wedgeMiss(err error, pid int) (why string, miss bool) {
	if refused(err) {
		return wedgeMissOf(err, 0, nil)
	}
	master, workers := groupStates(pid)
	return wedgeMissOf(err, master, workers)
}

// wedgeMissOf is wedgeMiss given the /proc states of the master and its
// workers. A miss is: nothing listens on the socket (a busy pool still
// takes connections into its backlog), or no process of the pool can run
// (its master or every worker is stopped: state T, or t under a tracer).
// A ping that timed out while the master runs and a worker is not stopped
// is a busy pool (its workers in PHP, or one still starting), which is no
// miss: php-fpm's request_terminate_timeout is what bounds a worker stuck
// in PHP for good.
func wedgeMissOf(err error, master byte, workers []byte) (why string, miss bool) {
	if refused(err) {
		return "nothing listens on its socket", true
	}
	if stopped(master) {
		return "its master is stopped", true
	}
	if len(workers) == 0 {
		return "", false
	}
	for _, st := range workers {
		if !stopped(st) {
			return "", false
		}
	}
	return "every worker is stopped", true
}

// refused tells whether a ping failed because nothing listens on the
// pool's socket.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// stopped tells whether a /proc state letter is a stopped process
// (SIGSTOP, or held by a tracer).
func stopped(state byte) bool { return state == 'T' || state == 't' }

// groupStates returns the /proc state of master pid and of the other live
// processes of its group (its workers).
func groupStates(pid int) (master byte, workers []byte) {
	if st, err := proc.ReadStat(pid); err == nil {
		master = st.State
	}
	group, _ := proc.Group(pid)
	for _, st := range group {
		if st.Pid != pid {
			workers = append(workers, st.State)
		}
	}
	return master, workers
}

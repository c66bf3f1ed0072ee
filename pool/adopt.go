// adopt.go owns the pool's side of an in-place upgrade of fpmux: the next
// fpmux adopts a running pool from its directory (Adopt), and the one
// before lets it go without stopping php-fpm (Detach), so the master, its
// workers and their opcache live on across the upgrade.

package pool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fpmux/fpmux/internal/proc"
)

// Adopt takes over the pool another fpmux runs in o.Dir: the master its pid
// file names, checked to be php-fpm on this directory's config, watched
// from now on (and restarted if it dies, as after Start), once it answers a
// ping within o.StartTimeout. out is the read end of the master's output
// pipe, passed on by that fpmux, or nil (php-fpm's output is then lost).
// The config in Dir is left as it is: the pool keeps the settings it was
// started with, as a running pool does across a reload. On failure php-fpm
// and Dir are left alone: they are still the other fpmux's.
func Adopt(ctx context.Context, o Options, out *os.File) (*Pool, error) {
	p, _, err := newPool(o)
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	o = p.o
	// The running master answers the paths its config names, not the
	// ones newPool drew.
	if p.pages.Ping, p.pages.Status, err = ReadPagePaths(o.Dir); err != nil {
		return nil, fmt.Errorf("adopt pool %s: %w", o.ID, err)
	}
	if !hasStatusListen(o.Dir) {
		p.statusSock = p.sock // started by an fpmux before pm.status_listen
	}
	pid, err := readPid(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("adopt pool %s: %w", o.ID, err)
	}
	if !isOurMaster(pid, o.Dir) {
		return nil, fmt.Errorf("adopt pool %s: pid %d is not a php-fpm master on %s", o.ID, pid, filepath.Join(o.Dir, confName))
	}
	if st, err := proc.ReadStat(pid); err != nil || st.Pgrp != pid {
		return nil, fmt.Errorf("adopt pool %s: php-fpm master %d does not lead its process group", o.ID, pid)
	}
	m, err := adoptMaster(pid, out, p.log, p.o.OnPHPError)
	if err != nil {
		return nil, fmt.Errorf("adopt pool %s: %w", o.ID, err)
	}
	if err := p.waitReady(ctx, m); err != nil {
		// Not ours to kill: stop watching it and give up.
		m.stopReading()
		return nil, fmt.Errorf("adopt pool %s: %w", o.ID, err)
	}
	p.pid.Store(int64(pid))
	p.cur.Store(m)
	p.log.Info("pool adopted", "pid", pid, "socket", p.sock)
	go p.supervise(m)
	return p, nil
}

// readPid reads the master's pid from dir's pid file.
func readPid(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, pidName))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: %q is not a pid", filepath.Join(dir, pidName), b)
	}
	return pid, nil
}

// Detach lets the pool go without stopping php-fpm, once the next fpmux has
// adopted it: the supervising goroutine ends (a master that dies from now on
// is the next fpmux's to restart), the output is no longer read here, and
// Done is closed. Stop after Detach stops nothing. Safe to call twice.
func (p *Pool) Detach() {
	p.detachOnce.Do(func() { close(p.detachCh) })
	<-p.done
}

// OutputFile returns the read end of the running master's output pipe, to
// pass to the next fpmux at an upgrade, or nil. The caller must neither
// close it nor call its Fd method (which would make it blocking).
func (p *Pool) OutputFile() *os.File {
	if m := p.cur.Load(); m != nil && !m.isExited() {
		return m.out
	}
	return nil
}

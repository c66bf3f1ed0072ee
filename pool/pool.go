// pool.go owns the Pool: Start (validate, write config, spawn, wait for the
// first pong), the supervising goroutine that restarts a crashed master, and
// Stop.

package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	healthyAfter = 30 * time.Second // a master that ran this long resets the backoff
	termGrace    = 2 * time.Second  // between SIGTERM and SIGKILL
	killWait     = 5 * time.Second  // bound on the group vanishing after SIGKILL
	pollInterval = 15 * time.Millisecond
	probeTimeout = 5 * time.Second // Ping/Status bound when ctx has no deadline
)

// Pool is one release's running php-fpm master. Its methods are safe for
// concurrent use.
type Pool struct {
	o           Options
	log         *slog.Logger
	binary      string
	args        []string
	sock        string
	statusSock  string    // pm.status_listen, or sock for a pool started without one (status.go)
	pages       pagePaths // ping and status paths, random per Start
	maxChildren int
	startKids   int

	gate     *gate
	pid      atomic.Int64
	restarts atomic.Int64
	wedged   atomic.Int64 // pid of the master the wedge check killed (wedge.go)
	prio     priority     // the CPU priority of its processes (sched.go)

	// undrainMu orders Undrain against Stop and against supervise giving
	// up on the master of a draining pool.
	undrainMu sync.Mutex
	stopping  bool // Stop was called
	abandoned bool // a master died while draining and is not restarted

	cur atomic.Pointer[master] // the running master, for OutputFile; owned by supervise

	stopOnce   sync.Once
	stopCh     chan struct{} // closed by the first Stop
	detachOnce sync.Once
	detachCh   chan struct{} // closed by Detach: supervise lets php-fpm run on
	forceOnce  sync.Once
	forceCh    chan struct{} // closed by a Stop(true)
	done       chan struct{} // closed by supervise when the pool is gone
	stopErr    error         // written by supervise before done is closed
}

// Start validates o, writes the pool's config into o.Dir, spawns php-fpm and
// waits until it answers a ping, for at most o.StartTimeout or until ctx is
// done. ctx bounds the start only, not the pool's life. On any failure
// nothing is left running, o.Dir is removed, and the error quotes php-fpm's
// last output lines.
//
// After Start, a master that dies unexpectedly is restarted with backoff
// (100ms doubling to 5s, back to 100ms once a master has run 30s); Restarts
// and OnRestart count the respawns, not their readiness. A draining pool's
// master is not restarted. Binary may be a wrapper only if it execs
// php-fpm: Start refuses one that runs php-fpm as a child.
func Start(ctx context.Context, o Options) (*Pool, error) {
	p, conf, err := newPool(o)
	if err != nil {
		return nil, err
	}
	o = p.o
	if err := p.writeDir(conf); err != nil {
		_ = os.RemoveAll(o.Dir)
		return nil, fmt.Errorf("start pool %s: %w", o.ID, err)
	}
	m, err := p.spawn()
	if err != nil {
		_ = os.RemoveAll(o.Dir)
		return nil, fmt.Errorf("start pool %s: %w", o.ID, err)
	}
	p.startInBackground(m.pid)
	if err := p.waitReady(ctx, m); err != nil {
		p.prio.end()
		if kerr := m.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		_ = os.RemoveAll(o.Dir)
		p.log.Error("pool did not start", "err", err)
		return nil, err
	}
	if err := p.checkMasterPid(m); err != nil {
		// The php-fpm that answered is not m: stop it by its pid file
		// (which removes Dir), then m.
		p.prio.end()
		if _, rerr := Reap(o.Dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if kerr := m.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		_ = os.RemoveAll(o.Dir)
		p.log.Error("pool did not start", "err", err)
		return nil, err
	}
	p.pid.Store(int64(m.pid))
	p.log.Info("pool ready", "pid", m.pid, "socket", p.sock, "startup", time.Since(m.started).Round(time.Millisecond))
	p.cur.Store(m)
	go p.supervise(m)
	return p, nil
}

// newPool validates o and returns a Pool that runs nothing yet, with the
// php-fpm config it would write.
func newPool(o Options) (*Pool, []byte, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, nil, fmt.Errorf("start pool %q: %w", o.ID, err)
	}
	if err := checkRoot(o.Root); err != nil {
		return nil, nil, fmt.Errorf("start pool %s: %w", o.ID, err)
	}
	binary := o.Binary
	if binary == "" {
		b, err := FindBinary()
		if err != nil {
			return nil, nil, fmt.Errorf("start pool %s: %w", o.ID, err)
		}
		binary = b
	}
	usr, grp := workerIdentity(os.Geteuid(), o.Directives)
	o.Ini = withPreloadUser(os.Geteuid(), o.Ini, o.Directives, usr)
	pages, err := newPagePaths()
	if err != nil {
		return nil, nil, fmt.Errorf("start pool %s: %w", o.ID, err)
	}
	conf := renderConfig(confParams{
		ID: o.ID, Root: o.Root, Dir: o.Dir, StopTimeout: o.StopTimeout, Pages: pages,
		User: usr, Group: grp, Directives: o.Directives, Global: o.Global, Bare: o.Bare, Ini: o.Ini,
	})
	p := &Pool{
		o:           o,
		log:         o.Logger.With("release", o.ID),
		binary:      binary,
		args:        commandArgs(filepath.Join(o.Dir, confName), o.Ini),
		sock:        filepath.Join(o.Dir, socketName),
		statusSock:  filepath.Join(o.Dir, statusSocketName),
		pages:       pages,
		maxChildren: o.maxChildren(),
		startKids:   o.startChildren(),
		gate:        newGate(),
		stopCh:      make(chan struct{}),
		forceCh:     make(chan struct{}),
		detachCh:    make(chan struct{}),
		done:        make(chan struct{}),
	}
	return p, conf, nil
}

// writeDir creates Dir (0700) and writes the config into it.
func (p *Pool) writeDir(conf []byte) error {
	if err := os.MkdirAll(p.o.Dir, 0o700); err != nil {
		return fmt.Errorf("Dir: %w", err)
	}
	if err := os.Chmod(p.o.Dir, 0o700); err != nil {
		return fmt.Errorf("Dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p.o.Dir, confName), conf, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// spawn starts a master after removing what a dead one may have left.
func (p *Pool) spawn() (*master, error) {
	for _, name := range []string{socketName, statusSocketName, pidName} {
		if err := os.Remove(filepath.Join(p.o.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %s: %w", name, err)
		}
	}
	m, err := spawn(p.binary, p.args, p.o.Dir, p.log, p.o.OnPHPError)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", p.binary, err)
	}
	p.log.Info("php-fpm spawned", "step", "spawned", "pid", m.pid, "binary", p.binary)
	return m, nil
}

// waitReady polls Ping until it answers, the master exits, StartTimeout
// passes or ctx is done.
func (p *Pool) waitReady(parent context.Context, m *master) error {
	ctx, cancel := context.WithTimeout(parent, p.o.StartTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		if m.isExited() {
			return p.exitedErr(m)
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := p.Ping(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-m.exited:
			return p.exitedErr(m)
		case <-ctx.Done():
			said := ""
			if s := m.tail.String(); s != "" {
				said = "; php-fpm said: " + s
			}
			if perr := parent.Err(); perr != nil {
				return fmt.Errorf("start pool %s: %w (last health check: %v%s)", p.o.ID, perr, lastErr, said)
			}
			return fmt.Errorf("start pool %s: health check: no pong on %s within %v: %v%s", p.o.ID, p.sock, p.o.StartTimeout, lastErr, said)
		case <-tick.C:
		}
	}
}

// checkMasterPid makes sure that the process fpmux spawned is the php-fpm
// master that answered, as php-fpm's pid file says. A Binary that runs
// php-fpm as its child instead of exec'ing it would leave php-fpm out
// of fpmux's reach: php-fpm starts a session of its own, so signals to the
// wrapper's process group miss it, and fpmux would watch the wrapper's
// exit, not php-fpm's.
func (p *Pool) checkMasterPid(m *master) error {
	b, err := os.ReadFile(filepath.Join(p.o.Dir, pidName))
	if err != nil {
		return fmt.Errorf("start pool %s: php-fpm answered but wrote no pid file: %w", p.o.ID, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("start pool %s: php-fpm's pid file: %w", p.o.ID, err)
	}
	if pid != m.pid {
		return fmt.Errorf("start pool %s: %s runs php-fpm as a child (php-fpm is pid %d, %s is pid %d); "+
			"a wrapper must exec php-fpm, or fpmux can neither stop it nor take it along if fpmux dies",
			p.o.ID, p.binary, pid, filepath.Base(p.binary), m.pid)
	}
	return nil
}

func (p *Pool) exitedErr(m *master) error {
	select { // the last words come after the exit
	case <-m.logDone:
	case <-time.After(logDrainMax):
	}
	said := m.tail.String()
	if said == "" {
		said = "(no output)"
	}
	return fmt.Errorf("start pool %s: php-fpm exited (%s): %s", p.o.ID, m.exitDesc(), said)
}

// supervise owns the running master: it restarts it with backoff when it
// dies unexpectedly and stops it when Stop asks. It closes p.done last.
func (p *Pool) supervise(m *master) {
	defer close(p.done)
	backoff := minBackoff
	answered := true // Start had m's pong
	for {
		stopWatch := p.watchWedge(m, answered)
		select {
		case <-p.stopCh:
			stopWatch()
			p.finish(m)
			return
		case <-p.detachCh:
			stopWatch()
			p.letGo(m)
			return
		case <-m.exited:
		}
		stopWatch()
		// The master died on its own, or the wedge check killed it;
		// wait() has SIGKILLed its group.
		p.pid.Store(0)
		if p.abandonIfDraining() {
			p.awaitStop(m)
			return
		}
		if time.Since(m.started) >= healthyAfter {
			backoff = minBackoff
		}
		if p.wedged.Load() == int64(m.pid) {
			p.log.Warn("php-fpm master killed for being wedged", "pid", m.pid, "restart_in", backoff)
		} else {
			p.log.Error("php-fpm master died", "pid", m.pid, "exit", m.exitDesc(), "last_output", m.tail.String(), "restart_in", backoff)
		}
		// No new master while the old workers still hold the socket.
		if err := waitGroupGone(m.pid, killWait); err != nil {
			p.log.Error("old php-fpm group", "err", err)
		}
		for {
			t := time.NewTimer(backoff)
			select {
			case <-p.stopCh:
				t.Stop()
				p.finish(m)
				return
			case <-p.detachCh:
				t.Stop()
				p.letGo(m)
				return
			case <-t.C:
			}
			if p.abandonIfDraining() {
				p.awaitStop(m)
				return
			}
			backoff = min(backoff*2, maxBackoff)
			nm, err := p.spawn()
			if err != nil {
				p.log.Error("restart php-fpm", "err", err, "retry_in", backoff)
				continue
			}
			m, answered = nm, false
			break
		}
		n := p.restarts.Add(1)
		p.pid.Store(int64(m.pid))
		p.cur.Store(m)
		p.log.Warn("php-fpm master restarted", "pid", m.pid, "restarts", n)
		if p.o.OnRestart != nil {
			p.o.OnRestart()
		}
	}
}

// abandonIfDraining tells whether the pool drains, in which case its dead
// master is not restarted and Undrain refuses the pool from then on.
func (p *Pool) abandonIfDraining() bool {
	p.undrainMu.Lock()
	defer p.undrainMu.Unlock()
	if p.gate.draining() {
		p.abandoned = true
	}
	return p.abandoned
}

// awaitStop is what is left to do for a draining pool whose master died:
// nothing new may go to it and its requests died with the master, so no new
// master is started; the pool's owner is about to Stop it.
func (p *Pool) awaitStop(m *master) {
	p.log.Warn("php-fpm master died while the pool drains; not restarting it", "pid", m.pid, "exit", m.exitDesc(), "last_output", m.tail.String())
	select {
	case <-p.stopCh:
		p.finish(m)
	case <-p.detachCh:
		p.letGo(m)
	}
}

// letGo ends this process's part in a pool the next fpmux adopted: php-fpm
// and Dir stay as they are, and its output is read there from now on.
func (p *Pool) letGo(m *master) {
	m.stopReading()
	p.pid.Store(0)
	p.log.Info("pool handed over to the next fpmux; php-fpm keeps running", "pid", m.pid)
}

// finish stops m (if still running), removes Dir and records the result.
func (p *Pool) finish(m *master) {
	err := p.stopMaster(m)
	p.pid.Store(0)
	if rerr := os.RemoveAll(p.o.Dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("remove Dir: %w", rerr))
	}
	if err != nil {
		p.stopErr = fmt.Errorf("stop pool %s: %w", p.o.ID, err)
		p.log.Error("pool stopped", "err", err)
		return
	}
	p.log.Info("pool stopped")
}

// stopMaster: unless forced, SIGQUIT to the master (graceful: workers finish
// their request) and up to StopTimeout; then SIGTERM to the group and up to
// termGrace; then SIGKILL to the group. A Stop(true) arriving meanwhile
// skips the graceful wait.
func (p *Pool) stopMaster(m *master) error {
	if !m.isExited() && !isDone(p.forceCh) {
		p.log.Info("stopping php-fpm gracefully", "pid", m.pid, "timeout", p.o.StopTimeout)
		m.signal(syscall.SIGQUIT)
		t := time.NewTimer(p.o.StopTimeout)
		select {
		case <-m.exited:
		case <-p.forceCh:
		case <-t.C:
			p.log.Warn("php-fpm did not stop in time", "pid", m.pid, "timeout", p.o.StopTimeout)
		}
		t.Stop()
	}
	if !m.isExited() {
		p.log.Info("terminating php-fpm", "pid", m.pid)
		m.signalGroup(syscall.SIGTERM)
		t := time.NewTimer(termGrace)
		select {
		case <-m.exited:
		case <-t.C:
			p.log.Warn("php-fpm ignored SIGTERM; killing", "pid", m.pid)
		}
		t.Stop()
	}
	return m.kill()
}

// ID returns the release id.
func (p *Pool) ID() string { return p.o.ID }

// Socket returns the unix socket php-fpm listens on.
func (p *Pool) Socket() string { return p.sock }

// MaxChildren returns pm.max_children (php-fpm's default 5 when unset).
func (p *Pool) MaxChildren() int { return p.maxChildren }

// StartChildren returns how many workers php-fpm starts the pool with
// (pm.max_children under static, pm.start_servers under dynamic, 0 under
// ondemand): how many a warm-up can reach at once.
func (p *Pool) StartChildren() int { return p.startKids }

// Pid returns the current master's pid, 0 while none is running.
func (p *Pool) Pid() int { return int(p.pid.Load()) }

// Restarts returns how many times the master was restarted after dying
// unexpectedly.
func (p *Pool) Restarts() int { return int(p.restarts.Load()) }

// Acquire counts a request in. It returns ok=false once the pool is
// draining. Call release exactly once when the request is over (further
// calls do nothing).
func (p *Pool) Acquire() (release func(), ok bool) { return p.gate.acquire() }

// Enter counts a request in, like Acquire, without allocating: it is the
// per-request path. It returns false once the pool is draining. Every Enter
// that returns true must be matched by exactly one Leave.
func (p *Pool) Enter() bool { return p.gate.enter() }

// Leave counts out a request that entered.
func (p *Pool) Leave() { p.gate.leave() }

// InFlight returns the number of acquired, unreleased requests.
func (p *Pool) InFlight() int64 { return p.gate.inFlight() }

// Drain makes every later Acquire fail. It is idempotent; an Acquire racing
// with Drain either succeeds before Drain returns or fails. A master that
// dies once the pool drains is not restarted; the pool waits for Stop.
func (p *Pool) Drain() { p.gate.drain() }

// Idle is closed once the pool is draining and no request is in flight.
func (p *Pool) Idle() <-chan struct{} { return p.gate.idleCh() }

// Undrain lets a drained pool take requests again: a release kept running
// after it stopped being active. It succeeds only once the drain has
// finished (Idle is closed), while the master runs and before Stop; it
// returns false otherwise, and the pool stays drained. A later Drain gets a
// new Idle channel. An Enter racing with Undrain fails or succeeds, as for
// a pool that was never drained.
func (p *Pool) Undrain() bool {
	p.undrainMu.Lock()
	defer p.undrainMu.Unlock()
	// A master that died while draining is not restarted; Pid is 0 from
	// its death until a restart, so one that died just now counts too.
	if p.stopping || p.abandoned || p.Pid() == 0 {
		return false
	}
	return p.gate.reopen()
}

// Done is closed when the pool has stopped for good.
func (p *Pool) Done() <-chan struct{} { return p.done }

// Stop drains the pool and stops php-fpm: force=false sends SIGQUIT to the
// master and waits up to StopTimeout, then SIGTERM to the group, 2s, then
// SIGKILL; force=true starts at SIGTERM. It returns once the master is
// reaped, no live process is left in its group (zombies of orphaned workers
// waiting for pid 1 to reap them do not count: they hold no socket) and Dir
// is removed. Stop is safe to
// call twice and concurrently: later calls wait for the first (a forced call
// cuts short a graceful one in progress) and return the same result.
func (p *Pool) Stop(force bool) error {
	p.undrainMu.Lock()
	p.stopping = true
	p.undrainMu.Unlock()
	p.Drain()
	p.toStopping() // its teardown yields to the releases serving
	if force {
		p.forceOnce.Do(func() { close(p.forceCh) })
	}
	p.stopOnce.Do(func() { close(p.stopCh) })
	<-p.done
	p.prio.end()
	return p.stopErr
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

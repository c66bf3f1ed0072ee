// reloadpools.go owns `fpmux reload-pools`: a fresh pool for the active
// release under the settings now in force (php_fpm.ini, php_fpm.pool, the
// binary), started, checked, warmed and switched to like a deploy, the old
// pool drained, so that a php.ini change costs no request.
//
// The release keeps its id: FPMUX_RELEASE, metrics, state.json, rollback
// and status all go on naming it. What tells the pools apart is the
// release's generation: its deploy's pool is generation 0, in
// state_dir/pools/<id>; each reload's fresh pool is the next one, in
// state_dir/pools/<id>+<generation> ("+" cannot be in a release id, so no
// release's directory is another's). The registry holds one record per id:
// the fresh pool gets a new record, and the one it replaces leaves the
// registry and drains out of it (Close still stops it); status shows the
// release with its generation and when its pool was reloaded.

package supervisor

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/pool"
)

// poolDir is the directory of release id's pool of generation gen.
func (s *Supervisor) poolDir(id string, gen int) string {
	if gen == 0 {
		return filepath.Join(s.poolsDir(), id)
	}
	return filepath.Join(s.poolsDir(), id+"+"+strconv.Itoa(gen))
}

// adoptGen is the generation of the pool of release id that an fpmux
// before this one left running (upgrade): the highest among the pool
// directories of id that hold a pid file.
func (s *Supervisor) adoptGen(id string) int {
	ents, err := os.ReadDir(s.poolsDir())
	if err != nil {
		return 0
	}
	best := 0
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), id+"+")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n <= best {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.poolsDir(), e.Name(), "php-fpm.pid")); err == nil {
			best = n
		}
	}
	return best
}

// replacedLocked returns the records whose pool a reload replaced and that
// still live (drain), dropping the others.
func (s *Supervisor) replacedLocked() []*release {
	live := s.replaced[:0]
	for _, r := range s.replaced {
		if r.state.live() {
			live = append(live, r)
		}
	}
	clear(s.replaced[len(live):])
	s.replaced = live
	return live
}

// reloadBusyLocked says why an upgrade cannot start now: a reload is under
// way, or a replaced pool still drains (the next fpmux adopts the active
// pool only).
func (s *Supervisor) reloadBusyLocked() error {
	if s.reloading {
		return newError(ErrConflict, "a pool reload is under way; upgrade once it is over")
	}
	if rs := s.replacedLocked(); len(rs) > 0 {
		return newError(ErrConflict, "the pool release %s had before its reload is still draining; upgrade once it stopped", rs[0].id)
	}
	return nil
}

// ReloadPools starts a fresh pool for the active release, at its root,
// under the configuration in force (Reload puts a new one in force),
// checks it as a deploy does (the workers' access, health checks, app
// warm-up, worker warm-up) and switches new requests to it; the pool it
// replaces drains as a release does after a switch, and is never kept.
// While the fresh pool starts the old one serves, and a failure leaves it
// serving. Refused (409) with no active release, during a guard window
// (its judgement is of the pool deployed), while another reload runs, or
// when the active release changed meanwhile.
func (s *Supervisor) ReloadPools(ctx context.Context) (Release, error) {
	s.mu.Lock()
	a := s.active.Load()
	var err error
	switch {
	case s.stopping:
		err = newError(ErrUnavailable, "fpmux is shutting down")
	case s.frozen.Load():
		err = errUpgrading
	case a == nil:
		err = newError(ErrConflict, "no release is active: there is no pool to reload")
	case s.reloading:
		err = newError(ErrConflict, "a pool reload is under way")
	case s.watching != nil:
		err = newError(ErrConflict, "the guard watches release %s until its window ends; reload the pools after its verdict", s.watching.rel.id)
	}
	if err != nil {
		s.mu.Unlock()
		return Release{}, err
	}
	s.reloading = true
	gen := a.gen + 1
	nr := newRelease(a.id, a.root, a.metrics)
	nr.gen = gen
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.reloading = false
		s.mu.Unlock()
	}()
	s.log.Info("pool reload starting", "release", a.id, "root", a.root, "generation", gen)

	p, backend, checked, warmed, err := s.startFresh(ctx, nr)
	if err != nil {
		s.log.Error("pool reload failed; the pool before serves on", "release", a.id, "generation", gen, "err", err)
		var e *Error
		if errors.As(err, &e) {
			return Release{}, rewrap(err, nil, "reload the pool of release %s: %v", a.id, err)
		}
		return Release{}, newError(ErrPoolFailed, "reload the pool of release %s: %v; the pool before serves on", a.id, err)
	}
	s.mu.Lock()
	if s.stopping || s.frozen.Load() || s.active.Load() != a {
		s.mu.Unlock()
		backend.Close()
		p.Stop(true)
		return Release{}, newError(ErrConflict, "reload the pool of release %s: the active release changed while the fresh pool started; it was stopped", a.id)
	}
	defer s.mu.Unlock()
	s.attachLocked(nr, p, backend)
	nr.health, nr.warmup = checked, warmed
	nr.readyIn = time.Since(nr.createdAt)
	s.step(nr, "ready", nr.createdAt, "generation", gen)
	// The release is the same: its age, activation and request count go
	// on; the fresh pool's start is reloadedAt.
	nr.createdAt, nr.activatedAt, nr.reloadedAt = a.createdAt, a.activatedAt, time.Now()
	nr.requests.Store(a.requests.Load())
	nr.state = StateActive
	s.releases[nr.id] = nr
	s.active.Store(nr)
	close(nr.ready)
	a.keep.noKeep = true
	a.keep.reason = "its pool was replaced by reload-pools (generation " + strconv.Itoa(gen) + ")"
	s.replaced = append(s.replacedLocked(), a)
	s.drainLocked(a)
	s.log.Info("pool reloaded: new requests go to the fresh pool, the one before drains", "release", nr.id,
		"generation", gen, "pid", p.Pid(), "in", nr.readyIn.Round(time.Millisecond))
	return nr.snapshot(), nil
}

// startFresh starts nr's pool in its generation's directory and puts it
// through what a deploy's pool goes through before it may serve.
func (s *Supervisor) startFresh(ctx context.Context, nr *release) (*pool.Pool, *fcgimux.Backend, []HealthResult, []WarmupResult, error) {
	root, err := s.checkRoot(nr.root)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	conf := s.conf()
	health, warmup := conf.Health, conf.Warmup
	if err := s.checkAccess(nr, health, warmup); err != nil {
		return nil, nil, nil, nil, err
	}
	opts := s.poolOptions(nr.id, root, nr.metrics)
	opts.Dir = s.poolDir(nr.id, nr.gen)
	p, err := pool.Start(ctx, opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	s.step(nr, "healthy", nr.createdAt, "generation", nr.gen)
	checked, err := s.checkHealth(ctx, nr, p.Socket(), health)
	var backend *fcgimux.Backend
	var warmed []WarmupResult
	if err == nil {
		backend = poolBackend(p, conf.Limits.MaxInFlight)
		warmed, err = s.warm(ctx, nr, p, backend, warmup, conf.WarmupFailures != config.WarmupFailuresWarn)
	}
	if err != nil {
		if backend != nil {
			backend.Close()
		}
		s.stopRefused(nr, p)
		return nil, nil, nil, nil, err
	}
	p.Foreground()
	return p, backend, checked, warmed, nil
}

func (s *Supervisor) handleReloadPools(w http.ResponseWriter, r *http.Request) {
	if f := s.reloadConfig.Load(); f != nil {
		if err := (*f)(); err != nil {
			writeError(w, errorf(422, "reload the configuration: %v; no pool was reloaded", err))
			return
		}
	}
	rel, err := s.ReloadPools(r.Context())
	writeRelease(w, 200, rel, err)
}

// OnReloadConfig makes POST /v1/reload-pools read the configuration file
// again with reload (and put it in force, as SIGHUP does) before it starts
// the fresh pool. Without it the configuration in force is used.
func (s *Supervisor) OnReloadConfig(reload func() error) {
	s.reloadConfig.Store(&reload)
}

// Package supervisor owns the release registry: which releases exist, which
// one is active, and the state machine each goes through (starting -> ready
// -> active -> draining -> retired, or failed). It starts and stops their
// php-fpm pools, pins each new request to the active release (it is the
// fcgimux Router), persists what must survive a restart, and serves the
// admin API.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/metrics"
	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
)

// State is where a release is in its life.
type State string

const (
	StateStarting State = "starting"
	StateReady    State = "ready"
	StateActive   State = "active"
	StateDraining State = "draining"
	StateRetired  State = "retired"
	StateFailed   State = "failed"
)

var allStates = []State{StateStarting, StateReady, StateActive, StateDraining, StateRetired, StateFailed}

// live tells whether a release in state s holds (or is about to hold) a pool.
func (s State) live() bool {
	return s == StateStarting || s == StateReady || s == StateActive || s == StateDraining
}

// keepGone is how many retired or failed releases stay listed in status.
const keepGone = 20

// Options configures a Supervisor.
type Options struct {
	// Config is fpmux's validated configuration. Required.
	Config *config.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer gets fpmux's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Supervisor is the release registry. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg    atomic.Pointer[config.Config] // swapped whole by Reload
	phpfpm atomic.Pointer[pool.Settings] // cfg's php_fpm, read and checked (PHPFPMSettings); swapped with it
	log    *slog.Logger
	// requests lists the requests in flight on a release (the FastCGI
	// front's InFlight), for status; set once by ListRequestsWith.
	requests atomic.Pointer[func(release string) []fcgimux.Request]
	m        *metrics.Supervisor
	// previewLog bounds the lines logged for bad preview tokens (preview.go).
	previewLog previewLog
	stateFS    stateFS // how state.json is written (state.go)
	hooks      hooks   // test seams; all nil outside tests

	active atomic.Pointer[release] // read on every request, without s.mu
	// frozen: an upgrade is handing the releases to the next fpmux; no
	// release changes (see upgrade.go).
	frozen       atomic.Bool
	upgrade      atomic.Pointer[func(context.Context) (UpgradeOutcome, error)] // see OnUpgrade
	reloadConfig atomic.Pointer[func() error]                                  // see OnReloadConfig

	mu       sync.Mutex // guards everything below and each release's mutable fields
	releases map[string]*release
	history  []histEntry // releases active before the current one, oldest first
	stopping bool
	watching *guard  // the guard watching the active release, or nil (guard.go)
	holdNext bool    // the activation under way keeps the release it replaces (fleet.go)
	routes   []route // admin API routes added by AddHandler (fleet.go)
	// reloading: ReloadPools is starting a fresh pool; replaced: the
	// records whose pool a reload replaced, draining out of the registry
	// (reloadpools.go).
	reloading bool
	replaced  []*release
	drains    sync.WaitGroup
	stopCh    chan struct{} // closed by Close: drains stop waiting
}

// hooks are test seams: each one set is called, without Supervisor.mu, at
// one point of a lifecycle, so that a test can park that goroutine there
// and act while it waits. Set them before the Supervisor is used.
type hooks struct {
	deployStarting   func(id string) // a deploy registered its release, before its pool starts
	activationFailed func(id string) // a deploy's activation failed, before its pool is stopped
	rollbackWaits    func(id string) // a rollback is about to wait for its release to start or drain
}

// hook calls h with id when it is set.
func hook(h func(id string), id string) {
	if h != nil {
		h(id)
	}
}

type histEntry struct {
	ID   string `json:"id"`
	Root string `json:"root"`
}

// poolBackend returns the Backend through which requests reach pool p, as
// every release's pool gets it (started, kept again, reloaded or adopted):
// at most max_children connections and, when idle, one child left free of
// kept connections for the status page; maxInFlight is limits.max_in_flight.
func poolBackend(p *pool.Pool, maxInFlight int) *fcgimux.Backend {
	b := fcgimux.NewBackend("unix", p.Socket(), p.MaxChildren(), p.MaxChildren()-1)
	b.SetMaxInFlight(maxInFlight)
	return b
}

// release is one deployed release. Fields after mu-guarded note are written
// only under Supervisor.mu.
type release struct {
	id, root  string
	createdAt time.Time
	requests  atomic.Int64

	// guarded by Supervisor.mu
	state       State
	activatedAt time.Time
	drainedAt   time.Time
	retiredAt   time.Time
	readyIn     time.Duration
	err         string
	pool        *pool.Pool
	backend     *fcgimux.Backend
	gone        chan struct{} // closed when retired or failed
	ready       chan struct{} // closed when its start ends well (ready or active)
	retireAsked chan struct{} // closed by the first Retire (see Rollback)
	keep        keepState     // kept after it drained: see keep.go
	warmup      []WarmupResult
	g           guardPart // see guard.go
	health      []HealthResult
	held        bool // kept ready by ActivateKeeping until Unhold (fleet.go)

	// metrics counts the release's requests; set at creation.
	metrics *releaseMetrics
	// gen counts the fresh pools ReloadPools gave the release (0: the
	// deploy's own), reloadedAt when the last one took over.
	gen        int
	reloadedAt time.Time
}

// newRelease returns a release of id at root, starting now, with every
// channel its life closes made: whichever way it comes (a deploy, an
// adoption, a pool reload), a release then goes through the same states.
// rm counts its requests.
func newRelease(id, root string, rm *releaseMetrics) *release {
	return &release{id: id, root: root, createdAt: time.Now(), state: StateStarting,
		gone: make(chan struct{}), ready: make(chan struct{}), retireAsked: make(chan struct{}), metrics: rm}
}

// Done implements fcgimux.Tracker: a request pinned by Supervisor.Pin ended.
// The pool is the one Pin entered: a release's pool is replaced only after
// it drained, when no pinned request is left.
func (r *release) Done(status int, d time.Duration) {
	r.pool.Leave()
	r.metrics.observe(status, d)
	if g := r.g.watch.Load(); g != nil {
		g.observe(status)
	}
}

// New returns a Supervisor with no release. Call Restore to bring back the
// release that was active before a restart.
func New(o Options) (*Supervisor, error) {
	if o.Config == nil {
		return nil, errors.New("supervisor: Options.Config is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Supervisor{
		log:      o.Logger,
		releases: map[string]*release{},
		stopCh:   make(chan struct{}),
		stateFS:  osStateFS,
	}
	if err := checkSymlink(o.Config.Symlink); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	st, err := PHPFPMSettings(o.Config)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	s.warnPHPFPM(st)
	s.phpfpm.Store(st)
	s.cfg.Store(o.Config)
	s.m = newMetrics(s)
	if o.Registerer != nil {
		if err := s.m.Register(o.Registerer); err != nil {
			return nil, fmt.Errorf("supervisor: register metrics: %w", err)
		}
	}
	return s, nil
}

// Pin implements fcgimux.Router: it counts a request into the active
// release. A pool refuses new requests atomically once it drains, and the
// active pointer moves before the old pool drains, so a refused Acquire
// means a switch just happened and the next load sees the new release.
func (s *Supervisor) Pin() (fcgimux.Pin, error) {
	for range 100 {
		r := s.active.Load()
		if r == nil {
			s.m.Unrouted.Inc()
			return fcgimux.Pin{}, fcgimux.ErrNoRelease
		}
		if !r.pool.Enter() {
			continue
		}
		r.requests.Add(1)
		return fcgimux.Pin{Release: r.id, Root: r.root, Backend: r.backend, Tracker: r}, nil
	}
	return fcgimux.Pin{}, errors.New("releases are switching too fast to pin a request")
}

// step logs one step of a release's life (healthy, warmed, ready, active,
// drained, retired) with how long it took since from, and how long since
// the deploy began: one line each, so a slow deploy or drain shows where
// its time went.
func (s *Supervisor) step(r *release, step string, from time.Time, attrs ...any) {
	now := time.Now()
	s.log.Info("release "+step, append([]any{"release", r.id, "step", step,
		"in", now.Sub(from).Round(time.Millisecond), "since_deploy", now.Sub(r.createdAt).Round(time.Millisecond)}, attrs...)...)
}

// DeployRequest is what a deploy asks for.
type DeployRequest struct {
	ID       string
	Root     string
	Activate bool
	// Warmup lists the paths to warm the release with (see warmApp); nil
	// takes the config's warmup key, an empty list warms none.
	Warmup []string
	// Guard turns the guard after the switch on or off for this deploy;
	// nil takes the config's guard key (see guard.go).
	Guard *bool
	// Health lists the checks the release must pass (see checkHealth),
	// with their defaults applied; nil takes the config's health key, an
	// empty list runs none.
	Health []config.HealthCheck
}

// Deploy registers a release, starts its pool, waits until it is healthy
// and, if asked, makes it active. The active release keeps serving whatever
// happens to the new one. A release whose activation cannot be recorded in
// state_dir is not activated: it fails (500) and its pool is stopped.
func (s *Supervisor) Deploy(ctx context.Context, req DeployRequest) (Release, error) {
	return s.deploy(ctx, req, false)
}

// deploy is Deploy; restoring is true for the release Restore brings back,
// which state.json names already, so its activation needs no record.
func (s *Supervisor) deploy(ctx context.Context, req DeployRequest, restoring bool) (Release, error) {
	if err := pool.ValidateID(req.ID); err != nil {
		s.m.Deploys.WithLabelValues(metrics.DeployRefused).Inc()
		return Release{}, newError(ErrInvalid, "release id %q: %v", req.ID, err)
	}
	root, err := s.checkRoot(req.Root)
	if err != nil {
		s.m.Deploys.WithLabelValues(metrics.DeployRefused).Inc()
		return Release{}, err
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return Release{}, newError(ErrUnavailable, "fpmux is shutting down")
	}
	if s.frozen.Load() {
		s.mu.Unlock()
		return Release{}, errUpgrading
	}
	if old, ok := s.releases[req.ID]; ok && old.state.live() {
		s.mu.Unlock()
		hint := "deploy under a new id or retire it first"
		if old.state == StateReady {
			hint = "it is ready: fpmux activate " + req.ID + " switches to it, or retire it first"
		}
		return Release{}, newError(ErrConflict, "release %s is already known (%s); %s", req.ID, old.state, hint)
	}
	r := newRelease(req.ID, root, forRelease(s.m, req.ID))
	s.releases[req.ID] = r
	s.pruneLocked()
	s.mu.Unlock()
	s.log.Info("release starting", "release", r.id, "root", root)
	hook(s.hooks.deployStarting, r.id)

	if req.Warmup == nil {
		req.Warmup = s.conf().Warmup
	}
	if req.Health == nil {
		req.Health = s.conf().Health
	}
	// A restored release passed its checks when it was deployed, and
	// refusing it now would leave no release serving: it is not checked
	// again, and its warm-up failures are only logged.
	failWarmup := s.conf().WarmupFailures != config.WarmupFailuresWarn && !restoring
	if !restoring {
		err = s.checkAccess(r, req.Health, req.Warmup)
	}
	var p *pool.Pool
	if err == nil {
		p, err = s.startPool(ctx, r.id, root, r.metrics)
	}
	var backend *fcgimux.Backend
	var warmed []WarmupResult
	var checked []HealthResult
	if err == nil {
		s.step(r, "healthy", r.createdAt)
		if !restoring {
			checked, err = s.checkHealth(ctx, r, p.Socket(), req.Health)
		}
		if err == nil {
			backend = poolBackend(p, s.conf().Limits.MaxInFlight)
			warmed, err = s.warm(ctx, r, p, backend, req.Warmup, failWarmup)
		}
		if err != nil {
			if backend != nil {
				backend.Close()
				backend = nil
			}
			s.stopRefused(r, p)
			p = nil
		}
	}
	if err == nil {
		p.Foreground()
	}
	s.mu.Lock()
	r.health, r.warmup = checked, warmed
	if err == nil && s.stopping {
		// Close has already collected the pools to stop; this one is ours.
		err = errors.New("fpmux shut down while the release started")
	}
	if err != nil {
		s.mu.Unlock()
		return s.fail(r, p, backend, err), rewrap(err, ErrPoolFailed, "release %s: %v", r.id, err)
	}
	err = s.readyLocked(r, p, backend, req, restoring)
	snap := r.snapshot()
	s.mu.Unlock()
	if err != nil {
		hook(s.hooks.activationFailed, r.id)
		return s.fail(r, p, backend, err), err
	}
	return snap, nil
}

// readyLocked attaches p, reached through backend, to r, whose pool
// started and passed its checks, and makes r ready or, if req asks,
// active. When that activation fails (its switch could not be recorded,
// say), r gets the error but stays starting and p is no longer r's: the
// caller stops p (fail) before r fails. Until then a deploy of the same id
// is refused (409) and cannot start a pool in the directory that stop
// removes, nor can r be activated or rolled back to; Close, which may run
// meanwhile, leaves p to that stop.
func (s *Supervisor) readyLocked(r *release, p *pool.Pool, backend *fcgimux.Backend, req DeployRequest, restoring bool) error {
	s.attachLocked(r, p, backend)
	r.readyIn = time.Since(r.createdAt)
	s.step(r, "ready", r.createdAt)
	if !req.Activate {
		r.state = StateReady
	} else if err := s.activateGuardedLocked(r, req.Guard, restoring); err != nil {
		s.attachLocked(r, nil, nil)
		r.err = err.Error()
		return err
	}
	close(r.ready)
	s.m.Deploys.WithLabelValues(metrics.DeployOK).Inc()
	return nil
}

// fail ends a deploy that did not make r ready or active, with err: it
// stops p, the pool the deploy started and no one else stops (nil when
// there is none, or it is stopped already), with backend, and only then
// marks r failed. Called without s.mu; it returns r's snapshot.
func (s *Supervisor) fail(r *release, p *pool.Pool, backend *fcgimux.Backend, err error) Release {
	if backend != nil {
		backend.Close()
	}
	if p != nil {
		if serr := p.Stop(true); serr != nil {
			s.log.Error("stop the pool of a release that failed", "release", r.id, "err", serr)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.state, r.err = StateFailed, err.Error()
	close(r.gone)
	s.m.Deploys.WithLabelValues(metrics.DeployFailed).Inc()
	s.log.Error("release failed", "release", r.id, "err", err)
	return r.snapshot()
}

// attachLocked makes p, reached through backend, the pool r's requests go
// to (both nil: r has none). Pin reads the Backend of a release whose pool
// it entered without Supervisor.mu, so a pool gets its Backend here before
// it takes requests: before r is made active, or before a drained pool is
// let take requests again (undrainLocked).
func (s *Supervisor) attachLocked(r *release, p *pool.Pool, backend *fcgimux.Backend) {
	r.pool, r.backend = p, backend
}

func (s *Supervisor) startPool(ctx context.Context, id, root string, rm *releaseMetrics) (*pool.Pool, error) {
	return pool.Start(ctx, s.poolOptions(id, root, rm))
}

// poolOptions are the pool options of release id at root, for a start or
// an adoption; rm, the release's metrics, counts PHP's errors.
func (s *Supervisor) poolOptions(id, root string, rm *releaseMetrics) pool.Options {
	st := s.phpfpm.Load()
	return pool.Options{
		ID:            id,
		Root:          root,
		Dir:           filepath.Join(s.poolsDir(), id),
		Binary:        s.conf().PHPFPM.Binary,
		Ini:           pool.ExpandAll(st.Ini, id, root),
		Directives:    pool.ExpandAll(st.Directives, id, root),
		Global:        pool.ExpandAll(st.Global, id, root),
		Bare:          st.Bare,
		StartTimeout:  time.Duration(s.conf().PHPFPM.StartTimeout),
		StopTimeout:   time.Duration(s.conf().PHPFPM.StopTimeout),
		Logger:        s.log,
		OnRestart:     func() { s.m.Restarts.WithLabelValues(id).Inc() },
		WedgeInterval: time.Duration(s.conf().PHPFPM.WedgeCheckInterval),
		WedgeMisses:   s.conf().PHPFPM.WedgeMisses,
		OnWedged:      func() { s.m.Wedged.WithLabelValues(id).Inc() },
		OnPHPError:    rm.phpError,
	}
}

func (s *Supervisor) poolsDir() string { return filepath.Join(s.conf().StateDir, "pools") }

// checkRoot resolves a release root to its real path and checks that it is
// a directory under one of allowed_roots (after symlinks, on both sides).
func (s *Supervisor) checkRoot(root string) (string, error) {
	if !filepath.IsAbs(root) {
		return "", newError(ErrInvalid, "release root %q must be an absolute path", root)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", newError(ErrUnusable, "release root %s: %v", root, errors.Unwrap(err))
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", newError(ErrUnusable, "release root %s: %v", root, err)
	}
	if !fi.IsDir() {
		return "", newError(ErrUnusable, "release root %s is not a directory", root)
	}
	// The real path is written into the pool's php-fpm config (chdir,
	// and {release_root} in php_fpm values), by the pool package's rules;
	// checked here so a bad one is refused before a release is registered.
	if err := pool.CheckPath(real); err != nil {
		return "", newError(ErrUnusable, "release root %s: %v", root, err)
	}
	for _, allowed := range s.conf().AllowedRoots {
		a, err := filepath.EvalSymlinks(allowed)
		if err != nil {
			continue
		}
		if strings.HasPrefix(real, a+string(filepath.Separator)) {
			return real, nil
		}
	}
	return "", newError(ErrUnusable, "release root %s (real path %s) is not under allowed_roots %v", root, real, s.conf().AllowedRoots)
}

// activateLocked makes r the release new requests go to and drains the one
// before it. The switch is recorded in state.json first, and one that cannot
// be recorded does not happen (a 500 that says so): the next fpmux would
// bring back the release state.json still names, undoing a deploy that
// reported success. Only a restore (state.json names r already) goes on
// with a warning. Then the pointer moves: from then on Pin sees r, and a
// request that loaded the old release a moment earlier either got into its
// pool before Drain (and finishes there) or is refused and retries on r.
func (s *Supervisor) activateLocked(r *release, restoring bool) error {
	prev := s.active.Load()
	if prev == r {
		return nil
	}
	if s.frozen.Load() && !restoring {
		return errUpgrading
	}
	history := s.history
	if prev != nil {
		history = append(slices.Clip(history), histEntry{prev.id, prev.root})
		if len(history) > keepGone {
			history = history[len(history)-keepGone:]
		}
	}
	if err := s.recordLocked(r, history); err != nil {
		if !restoring {
			serving := "no release is active"
			if prev != nil {
				serving = "release " + prev.id + " keeps serving"
			}
			return newError(ErrNotRecorded, "release %s not activated: the switch could not be recorded in state_dir, and a restart would undo it: %v; %s", r.id, err, serving)
		}
		s.log.Warn("the restored release could not be recorded again; state.json still names it", "release", r.id, "err", err)
	}
	s.pointSymlinkLocked(r)
	s.guardSwitchLocked(r)
	s.unkeepLocked(r)
	r.state = StateActive
	r.activatedAt = time.Now()
	s.active.Store(r)
	s.step(r, "active", r.createdAt)
	s.history = history
	if prev != nil {
		guarded := s.startGuardLocked(r, prev)
		if !s.holdLocked(prev) && !guarded {
			s.drainLocked(prev)
		}
	}
	return nil
}

// drainLocked stops new requests to r and retires it once its in-flight
// requests are done, or by force at drain_timeout.
func (s *Supervisor) drainLocked(r *release) {
	r.state = StateDraining
	r.drainedAt = time.Now()
	r.pool.Drain()
	r.backend.Close()
	s.drains.Add(1)
	go s.retireWhenIdle(r)
}

func (s *Supervisor) retireWhenIdle(r *release) {
	defer s.drains.Done()
	timer := time.NewTimer(time.Duration(s.conf().DrainTimeout))
	defer timer.Stop()
	forced := false
	select {
	case <-r.pool.Idle():
	case <-timer.C:
		forced = true
	case <-s.stopCh:
		// Close stops every pool itself, bounded by its own context.
		return
	}
	start := r.drainedAt
	if !forced {
		s.step(r, "drained", start)
		if s.keepDrained(r) {
			// Its drain ended here; the pool runs on, kept.
			s.m.DrainSeconds.Observe(time.Since(start).Seconds())
			return
		}
	}
	stopStart := time.Now()
	if forced {
		s.m.DrainsForced.Inc()
		s.log.Warn("drain timed out; stopping the pool by force", "release", r.id,
			"drain_timeout", time.Duration(s.conf().DrainTimeout), "in_flight", r.pool.InFlight())
	}
	err := r.pool.Stop(forced)
	s.m.DrainSeconds.Observe(time.Since(start).Seconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retireLocked(r)
	if err != nil {
		r.err = err.Error()
		s.log.Error("release retired with an error", "release", r.id, "err", err)
	} else {
		s.step(r, "retired", stopStart, append([]any{"forced", forced}, retiredReason(r)...)...)
	}
}

func (s *Supervisor) retireLocked(r *release) {
	if !r.state.live() { // retired, or failed by its guard, already
		return
	}
	r.state = StateRetired
	if r.g.failed {
		r.state = StateFailed // rolled back by its guard
	}
	r.retiredAt = time.Now()
	close(r.gone)
}

// withKnown calls f, under s.mu, with the release of that id in the
// registry, and returns what f returns; a release not known is a
// not-found error naming it, and f is not called.
func (s *Supervisor) withKnown(id string, f func(r *release) (Release, error)) (Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.releases[id]
	if !ok {
		return Release{}, newError(ErrNotFound, "release %s is not known", id)
	}
	return f(r)
}

// Activate switches new requests to a ready release.
func (s *Supervisor) Activate(id string) (Release, error) { return s.activate(id, false) }

// activate is Activate; with hold, the release it replaces stays ready
// (see ActivateKeeping).
func (s *Supervisor) activate(id string, hold bool) (Release, error) {
	return s.withKnown(id, func(r *release) (Release, error) {
		switch r.state {
		case StateActive:
			return r.snapshot(), nil
		case StateReady:
			s.holdNext = hold
			if hold {
				r.g.pending = s.guardFor(nil)
			}
			err := s.activateLocked(r, false)
			s.holdNext = false
			r.g.pending = nil
			return r.snapshot(), err
		}
		return r.snapshot(), newError(ErrConflict, "release %s is %s, only a ready release can be activated; deploy it again", id, r.state)
	})
}

// Retire drains and stops a release that is not active.
func (s *Supervisor) Retire(id string) (Release, error) {
	return s.withKnown(id, func(r *release) (Release, error) {
		switch r.state {
		case StateReady:
			s.guardRetiredLocked(r)
			s.noKeepLocked(r, reasonRetired)
			s.askRetireLocked(r)
			s.drainLocked(r)
			return r.snapshot(), nil
		case StateDraining:
			s.noKeepLocked(r, reasonRetired)
			s.askRetireLocked(r)
			return r.snapshot(), nil
		case StateActive:
			return r.snapshot(), newError(ErrConflict, "release %s is active; activate or deploy another release first", id)
		}
		return r.snapshot(), newError(ErrConflict, "release %s is %s", id, r.state)
	})
}

// askRetireLocked tells a rollback waiting for r that r was retired.
func (s *Supervisor) askRetireLocked(r *release) {
	select {
	case <-r.retireAsked: // asked already
	default:
		close(r.retireAsked)
	}
}

// Rollback activates the release that was active before the current one:
// at once when its pool is still ready, otherwise by starting its pool again
// from its root. A release of that id that is starting (deployed again) or
// draining is waited for: once ready (started, or kept after its drain) it
// is switched to at once; once gone it is started again; and when it is
// retired meanwhile, the rollback is refused, since that retire is the
// later word.
func (s *Supervisor) Rollback(ctx context.Context) (Release, error) {
	s.mu.Lock()
	prev := s.rollbackTargetLocked()
	s.mu.Unlock()
	if prev.ID == "" {
		return Release{}, newError(ErrConflict, "there is no previous release to roll back to")
	}
	for {
		s.mu.Lock()
		r := s.releases[prev.ID]
		if r == nil || !r.state.live() {
			s.mu.Unlock()
			break
		}
		switch r.state {
		case StateReady:
			err := s.activateLocked(r, false)
			snap := r.snapshot()
			s.mu.Unlock()
			return snap, err
		case StateActive: // a deploy of that id activated it meanwhile
			snap := r.snapshot()
			s.mu.Unlock()
			return snap, nil
		}
		state, gone, retired := r.state, r.gone, r.retireAsked
		var wake <-chan struct{} = r.ready
		if state == StateDraining {
			wake = s.keptSignalLocked(r)
		}
		select {
		case <-retired:
			retired = nil // retired before this rollback: it starts the release again
		default:
		}
		s.mu.Unlock()
		hook(s.hooks.rollbackWaits, prev.ID)
		select {
		case <-wake: // ready: switch to it
			continue
		case <-gone:
		case <-retired:
			return Release{}, newError(ErrConflict, "release %s was retired while the rollback waited for it; roll back again to start it from its root", prev.ID)
		case <-ctx.Done():
			return Release{}, newError(ErrTimeout, "release %s is still %s: %v", prev.ID, state, ctx.Err())
		}
		break
	}
	s.log.Info("rolling back", "release", prev.ID, "root", prev.Root)
	noGuard := false // the operator goes back to a release known to serve
	return s.Deploy(ctx, DeployRequest{ID: prev.ID, Root: prev.Root, Activate: true, Guard: &noGuard})
}

// Get returns one release.
func (s *Supervisor) Get(ctx context.Context, id string) (Release, error) {
	return s.get(ctx, id, false)
}

// get is Get, with the pool's per-process view when full.
func (s *Supervisor) get(ctx context.Context, id string, full bool) (Release, error) {
	var r *release
	snap, err := s.withKnown(id, func(known *release) (Release, error) {
		r = known
		snap := r.snapshot()
		s.addRollbackLocked(&snap, r, s.rollbackTargetLocked().ID)
		return snap, nil
	})
	if err != nil {
		return Release{}, err
	}
	if st := s.addPoolFigures(ctx, &snap, r); st != nil && full {
		snap.Pool.Processes = poolProcesses(st.Processes)
		s.addSlowLog(&snap, r)
	}
	s.addHolding(&snap)
	return snap, nil
}

// List returns every known release, oldest first.
func (s *Supervisor) List(ctx context.Context) []Release {
	s.mu.Lock()
	rs := make([]*release, 0, len(s.releases))
	for _, r := range s.releases {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *release) int { return a.createdAt.Compare(b.createdAt) })
	snaps := make([]Release, len(rs))
	target := s.rollbackTargetLocked().ID
	for i, r := range rs {
		snaps[i] = r.snapshot()
		s.addRollbackLocked(&snaps[i], r, target)
	}
	s.mu.Unlock()
	for i := range snaps {
		s.addPoolFigures(ctx, &snaps[i], rs[i])
		s.addHolding(&snaps[i])
	}
	return snaps
}

// ListRequestsWith gives the supervisor the front's list of requests in
// flight (fcgimux.Server.InFlight), so that status can show what holds a
// draining release. The front is made after the supervisor, whose Pin it
// calls, hence a setter.
func (s *Supervisor) ListRequestsWith(list func(release string) []fcgimux.Request) {
	s.requests.Store(&list)
}

// ActiveID returns the active release's id, or "".
func (s *Supervisor) ActiveID() string {
	if r := s.active.Load(); r != nil {
		return r.id
	}
	return ""
}

// pruneLocked forgets the oldest retired and failed releases beyond
// keepGone, so the registry (and the metrics labelled by release) stays
// bounded however many deploys there are.
func (s *Supervisor) pruneLocked() {
	var gone []*release
	for _, r := range s.releases {
		if !r.state.live() {
			gone = append(gone, r)
		}
	}
	if len(gone) <= keepGone {
		return
	}
	slices.SortFunc(gone, func(a, b *release) int { return a.createdAt.Compare(b.createdAt) })
	for _, r := range gone[:len(gone)-keepGone] {
		delete(s.releases, r.id)
		s.m.Forget(r.id)
	}
}

// Close stops fpmux's side of every release: each pool drains until ctx
// ends, then is stopped (by force once ctx has ended). The
// persisted state keeps naming the active release, so the next fpmux brings
// it back. Safe to call twice.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.drains.Wait()
		return nil
	}
	s.stopping = true
	s.endGuardLocked("fpmux is shutting down", false)
	close(s.stopCh)
	s.active.Store(nil)
	var live []*release
	for _, r := range append(s.replacedLocked(), slices.Collect(maps.Values(s.releases))...) {
		if r.keep.timer != nil { // a kept window ends with the Supervisor
			r.keep.timer.Stop()
		}
		if r.pool != nil && r.state.live() {
			r.pool.Drain()
			r.backend.Close()
			live = append(live, r)
		}
	}
	s.mu.Unlock()
	s.drains.Wait()

	var wg sync.WaitGroup
	errs := make([]error, len(live))
	for i, r := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-r.pool.Idle():
			case <-ctx.Done():
			}
			// Past the bound, a pool whose requests were just cut is
			// idle too, but its workers may still run them: a graceful
			// stop would wait for those up to stop_timeout more.
			errs[i] = r.pool.Stop(ctx.Err() != nil)
			s.mu.Lock()
			s.retireLocked(r)
			s.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// This file owns the guard after a switch (config guard, deploy -guard):
// for a window after a deploy made a release active, the release before it
// stays ready with its pool running, whatever keep_previous says, and the
// new release is judged on each of its requests' ends, by atomic counters
// Release.Done feeds. Once min_requests answers were counted, a share of
// 5xx answers over max_error_ratio (fpmux's own 502, 503 and 504 for the
// release included: fcgimux reports them to the release's Done too)
// switches back to the release before at once, as an activate of a kept
// release does; so do more than max_fatal PHP fatal errors logged for it
// since the switch, judged as each is counted and with no wait for
// min_requests (see judgeFatals). The new one is marked failed with the reason and the
// figures and retired once drained. A manual activate, rollback or deploy
// during the window, a retire of the release before, an upgrade or a
// shutdown ends the guard: it never switches after an operator acted. A
// restart of fpmux ends it too: state.json names the active release only,
// so the next fpmux serves the new release unguarded and the previous pool
// is not started again.

package supervisor

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fpmux/fpmux/config"
)

// A guard's outcomes, in GuardInfo.State.
const (
	guardWatching   = "watching"    // the window runs
	guardPassed     = "passed"      // the window ended with no rollback
	guardRolledBack = "rolled_back" // the guard switched back to the release before
	guardEnded      = "ended"       // an operator's switch, a retire, an upgrade or a shutdown ended it
)

// guardPart is a release's part in the guard. watch is read on every
// request's end; the other fields are guarded by Supervisor.mu.
type guardPart struct {
	watch   atomic.Pointer[guard] // the guard judging this release's answers, or nil
	pending *config.Guard         // the guard this release's activation starts (set by deploy)
	last    *guard                // this release's latest guard, shown in status
	heldBy  *guard                // the guard keeping this release ready as the way back
	failed  bool                  // rolled back by its guard: failed, not retired, once stopped
}

// guard judges one release (rel) for one window after the switch to it
// from prev.
type guard struct {
	s          *Supervisor
	rel, prev  *release
	conf       config.Guard
	start, end time.Time // the switch, and when the window ends
	timer      *time.Timer

	answered, errors atomic.Int64 // answers counted, and those with status >= 500
	tripped          atomic.Bool  // set by the first answer or fatal over a bound
	fatal0           int64        // the release's fatals before the switch (warm-up, health checks)
	fatalN           int64        // its fatals in the window, once it ended (guarded by Supervisor.mu)

	// guarded by Supervisor.mu
	state   string
	reason  string
	endedAt time.Time
	ended   chan struct{} // closed when the window ends, one way or another
}

// GuardInfo is a release's guard as status shows it: the bounds, the
// figures so far and, once it ended, how.
type GuardInfo struct {
	State      string     `json:"state"` // watching, passed, rolled_back or ended
	Previous   string     `json:"previous"`
	Since      time.Time  `json:"since"`
	Until      time.Time  `json:"until"`
	LeftMS     int64      `json:"left_ms"` // time left in the window while watching
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Answered   int64      `json:"answered"`
	Errors     int64      `json:"errors"` // answers with status >= 500
	ErrorRatio float64    `json:"error_ratio"`
	Fatals     int64      `json:"fatals"` // PHP fatal errors logged for the release in the window

	Window        string  `json:"window"`
	MaxErrorRatio float64 `json:"max_error_ratio"`
	MinRequests   int     `json:"min_requests"`
	MaxFatal      int     `json:"max_fatal"`
}

// guardFor returns the guard a deploy's activation starts: want (the
// deploy's -guard or -no-guard) over the config's guard key; -guard with
// no guard key takes config.DefaultGuard. Nil: no guard.
func (s *Supervisor) guardFor(want *bool) *config.Guard {
	conf := s.conf().Guard
	switch {
	case want == nil && conf == nil, want != nil && !*want:
		return nil
	case conf == nil:
		g := config.DefaultGuard()
		return &g
	}
	g := *conf
	return &g
}

// activateGuardedLocked is activateLocked for a deploy: want says whether
// its switch starts a guard (see guardFor). A restore starts none.
func (s *Supervisor) activateGuardedLocked(r *release, want *bool, restoring bool) error {
	if !restoring {
		r.g.pending = s.guardFor(want)
	}
	err := s.activateLocked(r, restoring)
	r.g.pending = nil
	return err
}

// startGuardLocked starts the guard r's activation asked for, if any, now
// that r is active and prev was: prev stays ready with its pool running
// (not drained) until the guard ends, and true is returned. False: no
// guard, and prev drains as usual.
func (s *Supervisor) startGuardLocked(r, prev *release) bool {
	conf := r.g.pending
	r.g.pending = nil
	if conf == nil {
		return false
	}
	now := time.Now()
	g := &guard{s: s, rel: r, prev: prev, conf: *conf, start: now, end: now.Add(time.Duration(conf.Window)),
		state: guardWatching, ended: make(chan struct{}), fatal0: r.metrics.fatals()}
	prev.state = StateReady
	prev.g.heldBy = g
	r.g.last = g
	s.watching = g
	r.g.watch.Store(g)
	judge := g.judgeFatals
	r.metrics.onFatal.Store(&judge)
	g.timer = time.AfterFunc(time.Duration(conf.Window), func() { s.guardWindowEnded(g) })
	s.log.Info("guard watching", "release", r.id, "previous", prev.id, "window", time.Duration(conf.Window),
		"max_error_ratio", conf.MaxErrorRatio, "min_requests", conf.MinRequests, "max_fatal", conf.MaxFatal)
	return true
}

// observe counts one answer of the guarded release and, the first time the
// figures pass a bound, switches back. Two atomic adds on the request's
// path; the switch itself takes Supervisor.mu once.
func (g *guard) observe(status int) {
	g.judgeFatals()
	n := g.answered.Add(1)
	bad := g.errors.Load()
	if status >= 500 {
		bad = g.errors.Add(1)
	}
	if n < int64(g.conf.MinRequests) || float64(bad) <= g.conf.MaxErrorRatio*float64(n) {
		return
	}
	if g.tripped.CompareAndSwap(false, true) {
		g.s.guardTrip(g, ratioReason(bad, n, g.conf.MaxErrorRatio))
	}
}

// ratioReason says why bad errors in n answers passed max_error_ratio.
// The ratio is printed to 4 significant digits: 100*0.07 is
// 7.000000000000001 in floating point.
func ratioReason(bad, n int64, maxRatio float64) string {
	return fmt.Sprintf("%d of its %d answers had status 500 or more (%.1f%%, over max_error_ratio %.4g%%)",
		bad, n, 100*float64(bad)/float64(n), 100*maxRatio)
}

// judgeFatals switches back, the first time PHP has logged more than
// max_fatal fatal errors for the release since the switch. It runs on each
// answer's end and on php-fpm's output reader as each fatal is counted,
// so a fatal logged after its request ended is judged at once. It does
// not wait for min_requests: a fatal is a page that broke, whatever its
// status (a framework's error page, display_errors on, a shutdown
// function), not a share that needs a sample to mean something.
func (g *guard) judgeFatals() {
	n := g.rel.metrics.fatals() - g.fatal0
	if n <= int64(g.conf.MaxFatal) {
		return
	}
	if g.tripped.CompareAndSwap(false, true) {
		errs := "errors"
		if n == 1 {
			errs = "error"
		}
		g.s.guardTrip(g, fmt.Sprintf("PHP logged %d fatal %s for it (over max_fatal %d)", n, errs, g.conf.MaxFatal))
	}
}

// guardTrip switches back from g's release to the one before, at once,
// unless the guard ended meanwhile. The release switched away from is
// marked failed with why and is stopped once drained, never kept, and
// leaves the rollback history, so that a later `fpmux rollback` does not
// bring it back.
func (s *Supervisor) guardTrip(g *guard, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watching != g || s.stopping {
		return
	}
	r, prev := g.rel, g.prev
	// The switch below is not an operator's: it must not end g as one.
	// g goes on counting r's answers until r stops being active (the
	// switch records itself in state.json first), so its figures say
	// how many requests r answered.
	s.watching = nil
	defer s.clearGuardLocked(g)
	if s.active.Load() != r || prev.state != StateReady || prev.pool == nil {
		g.finishLocked(guardEnded, "could not roll back: release "+prev.id+" is "+string(prev.state))
		s.log.Error("guard could not roll back", "release", r.id, "previous", prev.id, "previous_state", prev.state, "why", why)
		return
	}
	r.g.failed = true
	kept := r.keep
	s.noKeepLocked(r, "")
	if err := s.activateLocked(prev, false); err != nil {
		r.g.failed = false
		r.keep = kept
		g.finishLocked(guardEnded, "rollback failed: "+err.Error())
		s.releaseHeldLocked(prev)
		s.log.Error("guard rollback failed; the release stays active", "release", r.id, "previous", prev.id, "why", why, "err", err)
		return
	}
	took := time.Since(g.start)
	r.err = fmt.Sprintf("guard rolled back to %s %s after the switch: %s", prev.id, took.Round(time.Millisecond), why)
	g.finishLocked(guardRolledBack, why)
	s.m.GuardRollbacks.Inc()
	s.history = slices.DeleteFunc(slices.Clone(s.history), func(h histEntry) bool { return h.ID == r.id })
	if err := s.recordLocked(prev, s.history); err != nil {
		s.log.Warn("state.json still lists the release rolled back from in the history", "release", r.id, "err", err)
	}
	s.log.Error("guard rolled back", "release", r.id, "to", prev.id, "after", took.Round(time.Millisecond),
		"answered", g.answered.Load(), "errors", g.errors.Load(), "why", why)
}

// guardWindowEnded ends g when its window passed with no rollback: the
// release before is then kept or retired as keep_previous and keep_for
// say.
func (s *Supervisor) guardWindowEnded(g *guard) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watching != g || s.stopping {
		return
	}
	s.clearGuardLocked(g)
	g.finishLocked(guardPassed, "")
	s.log.Info("guard passed", "release", g.rel.id, "previous", g.prev.id, "window", time.Duration(g.conf.Window),
		"answered", g.answered.Load(), "errors", g.errors.Load())
	s.releaseHeldLocked(g.prev)
}

// endGuardLocked ends the guard now watching, if any, for reason, with no
// switch. When release is true the release it kept ready goes the way a
// release that stopped being active goes (keep_previous, keep_for).
func (s *Supervisor) endGuardLocked(reason string, release bool) {
	g := s.watching
	if g == nil {
		return
	}
	s.clearGuardLocked(g)
	g.finishLocked(guardEnded, reason)
	s.log.Info("guard ended", "release", g.rel.id, "previous", g.prev.id, "reason", reason,
		"answered", g.answered.Load(), "errors", g.errors.Load())
	if release {
		s.releaseHeldLocked(g.prev)
	}
}

// guardSwitchLocked ends the guard now watching because release to is
// being activated: an operator (activate, rollback, a deploy) acted, and
// the guard never switches after that. The release the guard kept ready
// goes on as usual, unless it is the one being activated.
func (s *Supervisor) guardSwitchLocked(to *release) {
	g := s.watching
	if g == nil {
		return
	}
	s.endGuardLocked("release "+to.id+" was activated during the window", g.prev != to)
}

// guardRetiredLocked ends the guard that keeps r ready when r is retired:
// there is no way back left to switch to.
func (s *Supervisor) guardRetiredLocked(r *release) {
	if g := s.watching; g != nil && g.prev == r {
		s.endGuardLocked("release "+r.id+", the way back, was retired during the window", false)
	}
}

// clearGuardLocked stops g's timer and detaches it from its releases.
func (s *Supervisor) clearGuardLocked(g *guard) {
	g.timer.Stop()
	s.watching = nil
	g.rel.g.watch.Store(nil)
	g.rel.metrics.onFatal.Store(nil)
	if g.prev.g.heldBy == g {
		g.prev.g.heldBy = nil
	}
}

// finishLocked records how g ended.
func (g *guard) finishLocked(state, reason string) {
	g.state, g.reason, g.endedAt = state, reason, time.Now()
	g.fatalN = g.rel.metrics.fatals() - g.fatal0
	close(g.ended)
}

// releaseHeldLocked lets r, kept ready by a guard that ended, go the way
// of a release that stopped being active: it drains, and once drained is
// kept or stopped as keep_previous and keep_for say (keep_for counting
// from now). One a fleet switch keeps (ActivateKeeping) stays ready
// until Unhold: its rollout may still switch back to it.
func (s *Supervisor) releaseHeldLocked(r *release) {
	if r.held {
		return
	}
	if r.state == StateReady && r.pool != nil {
		s.drainLocked(r)
	}
}

// info returns g as status shows it; the caller holds Supervisor.mu.
func (g *guard) info(now time.Time) *GuardInfo {
	gi := &GuardInfo{
		State: g.state, Previous: g.prev.id, Since: g.start, Until: g.end, Reason: g.reason,
		Answered: g.answered.Load(), Errors: g.errors.Load(), EndedAt: timePtr(g.endedAt),
		Window: time.Duration(g.conf.Window).String(), MaxErrorRatio: g.conf.MaxErrorRatio,
		MinRequests: g.conf.MinRequests, MaxFatal: g.conf.MaxFatal,
	}
	if gi.Answered > 0 {
		gi.ErrorRatio = float64(gi.Errors) / float64(gi.Answered)
	}
	gi.Fatals = g.fatalN
	if g.state == guardWatching {
		gi.LeftMS = max(g.end.Sub(now).Milliseconds(), 0)
		gi.Fatals = g.rel.metrics.fatals() - g.fatal0
	}
	return gi
}

// addGuardLocked puts r's guard in snap, and for a release a guard keeps
// ready, the end of that window as KeptUntil.
func (r *release) addGuardLocked(snap *Release) {
	now := time.Now()
	if g := r.g.last; g != nil {
		snap.Guard = g.info(now)
	}
	if g := r.g.heldBy; g != nil {
		until := g.end
		snap.KeptUntil = &until
	}
}

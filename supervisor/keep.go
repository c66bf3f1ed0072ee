// This file owns kept releases (keep_previous, keep_for): a release that
// stopped being active and has drained keeps its pool running, idle and in
// state ready, so that rollback (or activate) to it is an instant switch
// with no cold start, until its window ends or newer kept releases push it
// out. It also says, for status, how each release can be rolled back to.

package supervisor

import (
	"slices"
	"time"
)

// Reasons a kept release is retired, in its "release retired" log line.
const (
	reasonKeepFor      = "keep_for ended"
	reasonKeepPrevious = "more than keep_previous kept"
	reasonRetired      = "retire requested"
)

// How a release can be rolled back to, in Release.Rollback.
const (
	rollbackInstant = "instant" // its pool runs: the switch needs no start
	rollbackRestart = "restart" // its pool is started again from its root
)

// keepState is a release's part in keeping; guarded by Supervisor.mu.
type keepState struct {
	until  time.Time     // non-zero while kept: when its window ends
	timer  *time.Timer   // retires it at until
	noKeep bool          // retire requested: stop it once drained
	reason string        // why a kept release is being retired, for its log line
	kept   chan struct{} // closed when a draining release is kept (see keptSignalLocked)
}

// keepDrained is called once r, which stopped being active or was asked to
// retire, has drained with nothing cut. When r is among the keep_previous
// releases that most recently stopped being active, and its window
// (keep_for from when it stopped being active) has not passed, it goes back
// to ready with its pool running, niced, and a fresh Backend, and true is
// returned. Otherwise it returns false and r is stopped as before. Either
// way the oldest kept releases beyond keep_previous are retired, so a
// reload that lowers keep_previous applies at the next switch.
func (s *Supervisor) keepDrained(r *release) bool {
	conf := s.conf()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	left := r.drainedAt // when it stopped being active
	until := left.Add(time.Duration(conf.KeepFor))
	keep := conf.KeepPrevious > 0 && !r.keep.noKeep && r.state == StateDraining && !r.activatedAt.IsZero()
	if keep && !time.Now().Before(until) {
		s.log.Info("release not kept: keep_for passed while it drained", "release", r.id, "keep_for", time.Duration(conf.KeepFor))
		keep = false
	}
	// The newest keep_previous of the kept ones (and r) stay.
	kept := s.keptLocked()
	if keep {
		kept = append(kept, r)
	}
	slices.SortFunc(kept, func(a, b *release) int { return a.drainedAt.Compare(b.drainedAt) })
	excess := kept[:max(len(kept)-conf.KeepPrevious, 0)]
	if slices.Contains(excess, r) {
		keep = false
	}
	if keep {
		keep = s.undrainLocked(r, conf.Limits.MaxInFlight)
	}
	for _, e := range excess {
		if e != r {
			s.retireKeptLocked(e, reasonKeepPrevious)
		}
	}
	if !keep {
		return false
	}
	r.pool.Background()
	r.state = StateReady
	r.keep.until = until
	r.keep.timer = time.AfterFunc(time.Until(until), func() { s.keepEnded(r, until) })
	if r.keep.kept != nil {
		close(r.keep.kept)
		r.keep.kept = nil
	}
	s.step(r, "kept", left, "until", until.Format(time.RFC3339), "keep_previous", conf.KeepPrevious)
	return true
}

// undrainLocked gives drained r a fresh Backend (the drain closed the old
// one) and lets its pool take requests again; false when the pool cannot
// (its master died while draining).
func (s *Supervisor) undrainLocked(r *release, maxInFlight int) bool {
	old := r.backend
	s.attachLocked(r, r.pool, poolBackend(r.pool, maxInFlight))
	if !r.pool.Undrain() {
		r.backend.Close()
		s.attachLocked(r, r.pool, old)
		s.log.Warn("release not kept: its php-fpm master is gone", "release", r.id)
		return false
	}
	return true
}

// keptLocked returns the releases kept now.
func (s *Supervisor) keptLocked() []*release {
	var kept []*release
	for _, r := range s.releases {
		if r.state == StateReady && !r.keep.until.IsZero() {
			kept = append(kept, r)
		}
	}
	return kept
}

// keepEnded retires r when the window ending at until is still its own:
// not activated or retired since.
func (s *Supervisor) keepEnded(r *release, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.keep.until.Equal(until) || r.state != StateReady || s.stopping {
		return
	}
	s.retireKeptLocked(r, reasonKeepFor)
}

// retireKeptLocked drains and stops a kept release at once (it has nothing
// in flight), with reason in its "release retired" line.
func (s *Supervisor) retireKeptLocked(r *release, reason string) {
	s.noKeepLocked(r, reason)
	r.pool.Foreground() // Stop lowers it again for the teardown
	s.drainLocked(r)
}

// noKeepLocked marks r to be stopped, not kept, once drained, and ends its
// window if it is kept; reason goes in its "release retired" line when it
// was kept.
func (s *Supervisor) noKeepLocked(r *release, reason string) {
	wasKept := !r.keep.until.IsZero()
	if r.keep.timer != nil {
		r.keep.timer.Stop()
	}
	r.keep = keepState{noKeep: true, kept: r.keep.kept}
	if wasKept {
		r.keep.reason = reason
	}
}

// unkeepLocked ends r's window as it becomes active again: its pool gets
// fpmux's own priority back before it takes traffic.
func (s *Supervisor) unkeepLocked(r *release) {
	if r.keep.timer != nil {
		r.keep.timer.Stop()
	}
	r.keep = keepState{kept: r.keep.kept}
	if r.pool != nil {
		r.pool.Foreground()
	}
}

// keptSignalLocked returns a channel closed if the draining release r is
// kept once drained (it is then ready); if it is stopped instead, r.gone
// closes.
func (s *Supervisor) keptSignalLocked(r *release) <-chan struct{} {
	if r.keep.kept == nil {
		r.keep.kept = make(chan struct{})
	}
	return r.keep.kept
}

// retiredReason returns the attributes of a "release retired" line that
// say why a kept release was retired, if it was.
func retiredReason(r *release) []any {
	if r.keep.reason == "" {
		return nil
	}
	return []any{"reason", r.keep.reason}
}

// rollbackTargetLocked returns the release Rollback activates: the newest
// in the history that is not the active one; zero when there is none.
func (s *Supervisor) rollbackTargetLocked() histEntry {
	cur := s.active.Load()
	for i := len(s.history) - 1; i >= 0; i-- {
		if cur == nil || s.history[i].ID != cur.id {
			return s.history[i]
		}
	}
	return histEntry{}
}

// addRollbackLocked says in snap how release r can be rolled back to:
// "instant" when it was active before and its pool runs (kept, or ready
// again); "restart" when it was active before and its pool has stopped or
// is stopping, so rollback starts it again from its root; "" for the active
// release, one never active and one starting. A draining release that will
// be kept counts as instant: rollback waits for its drain, then switches.
func (s *Supervisor) addRollbackLocked(snap *Release, r *release, target string) {
	if !r.keep.until.IsZero() {
		until := r.keep.until
		snap.KeptUntil = &until
	}
	snap.RollbackTarget = r.id == target
	wasActive := !r.activatedAt.IsZero() || slices.ContainsFunc(s.history, func(h histEntry) bool { return h.ID == r.id })
	switch {
	case !wasActive:
	case r.state == StateReady:
		snap.Rollback = rollbackInstant
	case r.state == StateDraining && s.conf().KeepPrevious > 0 && !r.keep.noKeep:
		snap.Rollback = rollbackInstant
	case r.state == StateDraining || r.state == StateRetired || r.state == StateFailed:
		snap.Rollback = rollbackRestart
	}
}

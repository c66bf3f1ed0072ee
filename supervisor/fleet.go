// This file owns what a fleet host's agent asks of the supervisor beyond
// deploy and retire: a switch that keeps the release it replaces ready (a
// fleet rollout switches back to it at once when another host fails), each
// release's figures as the guard judges them, and a route of its own on the
// admin API (behind the same guard) for fpmux status.

package supervisor

import (
	"net/http"
	"slices"
	"time"
)

// ActivateKeeping switches new requests to ready release id, as Activate
// does, and keeps the release it replaces ready with its pool running,
// not drained, whatever keep_previous says, until Unhold lets it go. When
// the config has a guard, the switch starts it as a deploy's does: a
// fleet host judges the release it switched to by its own figures too,
// and its guard's way back is the release kept anyway.
func (s *Supervisor) ActivateKeeping(id string) (Release, error) { return s.activate(id, true) }

// holdLocked keeps prev, which the release being activated replaces,
// ready when ActivateKeeping asked for it; false: prev drains as usual.
func (s *Supervisor) holdLocked(prev *release) bool {
	if !s.holdNext {
		return false
	}
	prev.state = StateReady
	prev.held = true
	return true
}

// Unhold lets release id, kept ready by ActivateKeeping, go the way of a
// release that stopped being active: it drains, and once drained is kept
// or stopped as keep_previous and keep_for say. A release not held, or
// active again, is left as it is.
func (s *Supervisor) Unhold(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.releases[id]
	if !ok || !r.held {
		return
	}
	r.held = false
	// A guard still watching keeps its way back ready until its window ends.
	if r != s.active.Load() && r.g.heldBy == nil {
		s.releaseHeldLocked(r)
	}
}

// Figures are one release's counts, as a fleet host publishes them: the
// answers it gave, those with a status of 500 or more, and the PHP fatal
// errors logged for it, all since it was created.
type Figures struct {
	ID       string `json:"id"`
	State    State  `json:"state"`
	Answered int64  `json:"answered"`
	Errors   int64  `json:"errors"`
	Fatals   int64  `json:"fatals"`

	created time.Time
}

// Figures returns the figures of every live release, oldest first. It
// asks no pool anything: a fleet host calls it every second.
func (s *Supervisor) Figures() []Figures {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Figures
	for _, r := range s.releases {
		if r.state.live() {
			out = append(out, Figures{ID: r.id, State: r.state, Answered: r.metrics.answered.Load(),
				Errors: r.metrics.errors.Load(), Fatals: r.metrics.fatals(), created: r.createdAt})
		}
	}
	slices.SortFunc(out, func(a, b Figures) int { return a.created.Compare(b.created) })
	return out
}

// route is an admin API route added by AddHandler.
type route struct {
	pattern string
	h       http.Handler
}

// AddHandler adds h under pattern (as http.ServeMux takes it) to the admin
// API that Handler returns, behind the same checks (admin_token, the
// browser guard). Call it before Handler.
func (s *Supervisor) AddHandler(pattern string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = append(s.routes, route{pattern, h})
}

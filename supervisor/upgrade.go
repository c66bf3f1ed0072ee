// This file owns the supervisor's side of an in-place upgrade of fpmux:
// the fpmux before freezes its releases and hands the active one's pool on
// (Freeze, HandOver), and the next fpmux adopts that pool from state_dir
// instead of starting it again (RestoreAdopting), so its php-fpm master,
// workers and opcache carry on.

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/fpmux/fpmux/pool"
)

// errUpgrading answers a change asked for while an upgrade hands the
// releases over: the next fpmux takes it a moment later.
var errUpgrading = newError(ErrUnavailable, "fpmux is upgrading: no release changes until the next fpmux serves; retry in a moment")

// Handed is what the fpmux before an upgrade hands to the next: the active
// release and the read end of its master's output pipe (nil when none).
type Handed struct {
	ID     string
	Output *os.File
}

// Freeze stops every release change (deploy, activate, rollback, retire
// answer 503) and returns the active release to hand over. It fails, and
// freezes nothing, while a release is starting: its deploy would be lost.
// Thaw undoes it when the upgrade fails.
func (s *Supervisor) Freeze() (Handed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return Handed{}, newError(ErrUnavailable, "fpmux is shutting down")
	}
	for _, r := range s.releases {
		if r.state == StateStarting {
			return Handed{}, newError(ErrConflict, "release %s is starting; upgrade once its deploy is over", r.id)
		}
	}
	if err := s.reloadBusyLocked(); err != nil {
		return Handed{}, err
	}
	s.frozen.Store(true)
	// The next fpmux adopts the active pool only: the guard cannot
	// switch back across the upgrade.
	s.endGuardLocked("fpmux is upgrading", true)
	a := s.active.Load()
	if a == nil {
		return Handed{}, nil
	}
	return Handed{ID: a.id, Output: a.pool.OutputFile()}, nil
}

// Thaw lets releases change again after an upgrade that failed.
func (s *Supervisor) Thaw() { s.frozen.Store(false) }

// HandOver ends this fpmux's part once the next one serves and every web
// server connection has gone over to it: the active release's pool is let
// go, running (the next fpmux adopted it), and every other pool is stopped
// as Close does. state.json is left as it is: it names what the next fpmux
// serves.
func (s *Supervisor) HandOver(ctx context.Context) error {
	if a := s.active.Load(); a != nil {
		a.pool.Detach()
	}
	return s.Close(ctx)
}

// RestoreAdopting is Restore for the fpmux an upgrade started: the release
// state.json names as active is adopted with its running pool (output is
// the read end of its master's output pipe, or nil), not started again,
// and no pool directory is reaped: the fpmux before still serves on them
// and stops those it does not hand over. Unlike Restore, a release that
// cannot be adopted is an error: the upgrade then fails and the fpmux
// before keeps serving.
func (s *Supervisor) RestoreAdopting(ctx context.Context, id string, output *os.File) error {
	st, err := readState(s.conf().StateDir)
	if err != nil {
		return fmt.Errorf("adopt: %w", err)
	}
	if st.Active == nil && id == "" {
		s.mu.Lock()
		s.history = st.History
		s.mu.Unlock()
		return nil
	}
	if st.Active == nil || st.Active.ID != id {
		named := "none"
		if st.Active != nil {
			named = st.Active.ID
		}
		return fmt.Errorf("adopt release %q: state.json names %s as active", id, named)
	}
	root, err := s.checkRoot(st.Active.Root)
	if err != nil {
		return fmt.Errorf("adopt release %s: %w", id, err)
	}
	r := newRelease(id, root, forRelease(s.m, id))
	s.mu.Lock()
	s.history = st.History
	s.releases[id] = r
	s.mu.Unlock()
	opts := s.poolOptions(id, root, r.metrics)
	r.gen = s.adoptGen(id)
	opts.Dir = s.poolDir(id, r.gen)
	p, err := pool.Adopt(ctx, opts, output)
	if err != nil {
		s.mu.Lock()
		r.state, r.err = StateFailed, err.Error()
		close(r.gone)
		s.mu.Unlock()
		return err
	}
	backend := poolBackend(p, s.conf().Limits.MaxInFlight)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attachLocked(r, p, backend)
	r.readyIn = time.Since(r.createdAt)
	r.state = StateReady
	close(r.ready)
	s.step(r, "adopted", r.createdAt, "pid", p.Pid())
	return s.activateLocked(r, true)
}

// UpgradeOutcome is what POST /v1/upgrade answers once the next fpmux
// serves: its pid, the pid of this one (which exits once its connections
// are handed over or at drain_timeout), and the release handed over.
type UpgradeOutcome struct {
	OldPID  int    `json:"old_pid"`
	NewPID  int    `json:"new_pid"`
	Release string `json:"release,omitempty"`
}

// OnUpgrade makes POST /v1/upgrade call upgrade, which starts the next
// fpmux and returns once it serves or failed to. Without it the endpoint
// answers 501.
func (s *Supervisor) OnUpgrade(upgrade func(ctx context.Context) (UpgradeOutcome, error)) {
	s.upgrade.Store(&upgrade)
}

func (s *Supervisor) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	fn := s.upgrade.Load()
	if fn == nil {
		writeError(w, errorf(http.StatusNotImplemented, "this fpmux cannot upgrade in place"))
		return
	}
	out, err := (*fn)(r.Context())
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			err = errorf(http.StatusBadGateway, "upgrade failed; this fpmux (pid %d) keeps serving: %v", os.Getpid(), err)
		}
		writeError(w, err)
		return
	}
	writeJSON(w, 200, out)
}

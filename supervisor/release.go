// This file owns the Release view: what the admin API and `fpmux status`
// show of a release.

package supervisor

import (
	"context"
	"time"
)

// Release is a snapshot of one release as the admin API shows it.
type Release struct {
	ID          string     `json:"id"`
	Root        string     `json:"root"`
	State       State      `json:"state"`
	InFlight    int64      `json:"in_flight"`
	Requests    int64      `json:"requests"`
	CreatedAt   time.Time  `json:"created_at"`
	ActivatedAt *time.Time `json:"activated_at"`
	DrainingAt  *time.Time `json:"draining_at,omitempty"`
	RetiredAt   *time.Time `json:"retired_at"`
	ReadyMS     int64      `json:"ready_ms,omitempty"`
	Error       string     `json:"error,omitempty"`
	Pool        *PoolInfo  `json:"pool,omitempty"`
}

// PoolInfo is a live release's php-fpm master and, when it answered its
// status page in time, the pool's own figures.
type PoolInfo struct {
	Pid                int    `json:"pid"`
	Restarts           int    `json:"restarts"`
	Socket             string `json:"socket"`
	ActiveProcesses    *int64 `json:"active_processes,omitempty"`
	IdleProcesses      *int64 `json:"idle_processes,omitempty"`
	TotalProcesses     *int64 `json:"total_processes,omitempty"`
	ListenQueue        *int64 `json:"listen_queue,omitempty"`
	MaxChildrenReached *int64 `json:"max_children_reached,omitempty"`
	StatusError        string `json:"status_error,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// snapshot copies r; the caller holds Supervisor.mu.
func (r *release) snapshot() Release {
	snap := Release{
		ID:          r.id,
		Root:        r.root,
		State:       r.state,
		Requests:    r.requests.Load(),
		CreatedAt:   r.createdAt,
		ActivatedAt: timePtr(r.activatedAt),
		DrainingAt:  timePtr(r.drainedAt),
		RetiredAt:   timePtr(r.retiredAt),
		ReadyMS:     r.readyIn.Milliseconds(),
		Error:       r.err,
	}
	if r.pool != nil && r.state.live() {
		snap.InFlight = r.pool.InFlight()
		snap.Pool = &PoolInfo{Pid: r.pool.Pid(), Restarts: r.pool.Restarts(), Socket: r.pool.Socket()}
	}
	return snap
}

// statusTimeout bounds the wait for a pool's status page: php-fpm answers
// it from a worker, so a saturated pool may not answer soon.
const statusTimeout = 300 * time.Millisecond

// addPoolFigures fills in the php-fpm status of a live pool, if it answers
// in time.
func (s *Supervisor) addPoolFigures(ctx context.Context, snap *Release, r *release) {
	// A draining pool is being stopped and soon answers nothing; its
	// in-flight count is what matters then.
	if snap.Pool == nil || (snap.State != StateReady && snap.State != StateActive) {
		return
	}
	s.mu.Lock()
	p := r.pool
	s.mu.Unlock()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := p.Status(ctx)
	if err != nil {
		snap.Pool.StatusError = err.Error()
		return
	}
	snap.Pool.ActiveProcesses = &st.ActiveProcesses
	snap.Pool.IdleProcesses = &st.IdleProcesses
	snap.Pool.TotalProcesses = &st.TotalProcesses
	snap.Pool.ListenQueue = &st.ListenQueue
	snap.Pool.MaxChildrenReached = &st.MaxChildrenReached
}

// This file owns the Release view: what the admin API and `fpmux status`
// show of a release.

package supervisor

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/fpmux/fpmux/pool"
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
	// Generation counts the fresh pools `fpmux reload-pools` gave the
	// release (0: its deploy's own); PoolReloadedAt is when the last took
	// over. The release id stays the same (see reloadpools.go).
	Generation     int        `json:"generation,omitempty"`
	PoolReloadedAt *time.Time `json:"pool_reloaded_at,omitempty"`
	Error          string     `json:"error,omitempty"`
	Pool           *PoolInfo  `json:"pool,omitempty"`
	// Holding lists, for a draining release, the requests still in flight
	// on it, oldest first: why its drain is slow.
	Holding []HeldRequest `json:"holding,omitempty"`
	// Rollback says how the release can be rolled back to: "instant" (its
	// pool runs: kept after it stopped being active, see keep_previous),
	// "restart" (its pool is started again from its root), or "" (the
	// active release, or one never active). KeptUntil is when a kept
	// release's window (keep_for) ends. RollbackTarget marks the release
	// `fpmux rollback` activates.
	Rollback       string     `json:"rollback"`
	KeptUntil      *time.Time `json:"kept_until,omitempty"`
	RollbackTarget bool       `json:"rollback_target,omitempty"`
	// Warmup is what the app warm-up did for each path, when it ran.
	Warmup []WarmupResult `json:"warmup,omitempty"`
	// Guard is the release's guard after its switch, when one ran or
	// runs: its bounds, its figures so far and how it ended.
	Guard *GuardInfo `json:"guard,omitempty"`
	// Health is what the health checks found, when they ran: every check
	// of a ready release, up to the one that failed of a failed one.
	Health []HealthResult `json:"health,omitempty"`
}

// HeldRequest is a request in flight on a draining release.
type HeldRequest struct {
	Method    string    `json:"method"`
	URI       string    `json:"uri"` // query values that look like credentials are redacted
	StartedAt time.Time `json:"started_at"`
	AgeMS     int64     `json:"age_ms"`
}

// maxHeld bounds the requests listed for one release.
const maxHeld = 50

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
	// HeldProcesses are the idle processes that wait on a connection
	// fpmux keeps open to the pool (counted in IdleProcesses).
	HeldProcesses *int64 `json:"held_processes,omitempty"`
	SlowRequests  *int64 `json:"slow_requests,omitempty"`
	// Processes is php-fpm's per-process view, for GET
	// /v1/releases/{id}?full (see figures.go).
	Processes []PoolProcess `json:"processes,omitempty"`
	// SlowLog is the end of the pool's slowlog (newest last), from the file
	// SlowLogPath names, for ?full too; SlowLogError why it could not be read.
	SlowLog      []pool.SlowEntry `json:"slowlog,omitempty"`
	SlowLogPath  string           `json:"slowlog_path,omitempty"`
	SlowLogError string           `json:"slowlog_error,omitempty"`
	StatusError  string           `json:"status_error,omitempty"`
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
		ID:             r.id,
		Root:           r.root,
		State:          r.state,
		Requests:       r.requests.Load(),
		CreatedAt:      r.createdAt,
		ActivatedAt:    timePtr(r.activatedAt),
		DrainingAt:     timePtr(r.drainedAt),
		RetiredAt:      timePtr(r.retiredAt),
		ReadyMS:        r.readyIn.Milliseconds(),
		Generation:     r.gen,
		PoolReloadedAt: timePtr(r.reloadedAt),
		Error:          r.err,
		Warmup:         r.warmup,
		Health:         r.health,
	}
	r.addGuardLocked(&snap)
	if r.pool != nil && r.state.live() {
		snap.InFlight = r.pool.InFlight()
		snap.Pool = &PoolInfo{Pid: r.pool.Pid(), Restarts: r.pool.Restarts(), Socket: r.pool.Socket()}
	}
	return snap
}

// statusTimeout bounds the wait for a pool's status page. php-fpm answers
// it from a worker of its own status pool (see pool/status.go), forked on
// demand: not queued behind requests, but a fork on a loaded host.
const statusTimeout = time.Second

// addHolding lists the requests a draining release still holds, when the
// front that relays them was given with ListRequestsWith.
func (s *Supervisor) addHolding(snap *Release) {
	if snap.State != StateDraining {
		return
	}
	list := s.requests.Load()
	if list == nil {
		return
	}
	now := time.Now()
	for i, r := range (*list)(snap.ID) {
		if i == maxHeld {
			break
		}
		snap.Holding = append(snap.Holding, HeldRequest{
			Method: r.Method, URI: redactURI(r.URI), StartedAt: r.Started, AgeMS: now.Sub(r.Started).Milliseconds(),
		})
	}
}

// credentialWords mark query parameters whose values are not shown.
var credentialWords = []string{"token", "key", "secret", "pass", "auth", "sig", "session", "code", "jwt", "credential", "nonce"}

// redactURI replaces the value of every query parameter whose name holds
// one of credentialWords with REDACTED, so that listing what holds a drain
// does not print an API token or a password reset code.
func redactURI(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		name, _, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		n := name
		if u, err := url.QueryUnescape(name); err == nil {
			n = u
		}
		n = strings.ToLower(n)
		for _, w := range credentialWords {
			if strings.Contains(n, w) {
				params[i] = name + "=REDACTED"
				break
			}
		}
	}
	return path + "?" + strings.Join(params, "&")
}

// addPoolFigures fills in the php-fpm status of a live pool, if it answers
// in time, and returns it (nil when it did not).
func (s *Supervisor) addPoolFigures(ctx context.Context, snap *Release, r *release) *pool.Status {
	// A draining pool is being stopped and soon answers nothing; its
	// in-flight count is what matters then.
	if snap.Pool == nil || (snap.State != StateReady && snap.State != StateActive) {
		return nil
	}
	s.mu.Lock()
	p := r.pool
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := p.Status(ctx)
	if err != nil {
		snap.Pool.StatusError = err.Error()
		return nil
	}
	snap.Pool.ActiveProcesses = &st.ActiveProcesses
	snap.Pool.IdleProcesses = &st.IdleProcesses
	snap.Pool.TotalProcesses = &st.TotalProcesses
	snap.Pool.ListenQueue = &st.ListenQueue
	snap.Pool.MaxChildrenReached = &st.MaxChildrenReached
	snap.Pool.HeldProcesses = &st.HeldProcesses
	snap.Pool.SlowRequests = &st.SlowRequests
	return &st
}

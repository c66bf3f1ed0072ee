// figures.go owns the per-process view of a release's pool that GET
// /v1/releases/{id}?full (and `fpmux status ID -full`) shows: php-fpm's own
// list, its request URIs redacted as a drain's holding list is.

package supervisor

import (
	"time"

	"github.com/fpmux/fpmux/pool"
)

// PoolProcess is one php-fpm worker of a release's pool.
type PoolProcess struct {
	PID int `json:"pid"`
	// State is php-fpm's word (Idle, Reading headers, Running, ...).
	// Busy is whether the worker serves a request; Held whether it is
	// idle but waiting on a connection fpmux keeps open, which php-fpm
	// shows as "Reading headers".
	State     string    `json:"state"`
	Busy      bool      `json:"busy"`
	Held      bool      `json:"held,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Requests  int64     `json:"requests"`
	// Method, URI (query values that look like credentials redacted) and
	// Script are of the request running, or of the last one an idle
	// worker served; DurationMS likewise (for a held worker: how long it
	// has waited).
	Method     string `json:"method,omitempty"`
	URI        string `json:"uri,omitempty"`
	Script     string `json:"script,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// LastCPUPercent and LastMemoryBytes are of the last request an idle
	// worker ended (php-fpm shows none while one runs).
	LastCPUPercent  float64 `json:"last_cpu_percent"`
	LastMemoryBytes int64   `json:"last_memory_bytes"`
}

// slowLogShown is how many of a slowlog's last entries ?full shows.
const slowLogShown = 5

// addSlowLog puts the last entries of r's pool's slowlog in snap.
func (s *Supervisor) addSlowLog(snap *Release, r *release) {
	s.mu.Lock()
	p := r.pool
	s.mu.Unlock()
	if p == nil || snap.Pool == nil {
		return
	}
	entries, path, err := p.SlowLog(slowLogShown)
	snap.Pool.SlowLog, snap.Pool.SlowLogPath = entries, path
	if err != nil {
		snap.Pool.SlowLogError = err.Error()
	}
}

// poolProcesses turns php-fpm's per-process list into the API's view.
func poolProcesses(ps []pool.Process) []PoolProcess {
	dash := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	out := make([]PoolProcess, 0, len(ps))
	for _, p := range ps {
		out = append(out, PoolProcess{
			PID: p.PID, State: p.State, Busy: p.Busy(), Held: p.Held(),
			StartedAt: time.Unix(p.StartTime, 0).UTC(), Requests: p.Requests,
			Method: dash(p.RequestMethod), URI: redactURI(dash(p.RequestURI)), Script: dash(p.Script),
			DurationMS:     p.RequestDuration / 1000,
			LastCPUPercent: p.LastRequestCPU, LastMemoryBytes: p.LastRequestMemory,
		})
	}
	return out
}

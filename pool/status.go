// status.go owns what fpmux reads of php-fpm's status page: the pool's
// figures and its per-process list (pm.status_path?json&full), and how its
// workers are counted from that list.
//
// The page is asked on the pool's pm.status_listen socket, where php-fpm
// answers it from a hidden pool of its own ("<release>_status", ondemand,
// its workers titled "php-fpm: pool <release>_status"), so it answers while
// every worker of the release is busy or held by a kept connection, and
// right after a start, when the master has not yet counted anything. A
// pool adopted from an fpmux that did not set pm.status_listen is asked on
// its main socket, as before.
//
// php-fpm's own "active processes" counts every worker not in the Idle
// state, among them a worker that finished its request and waits on the
// connection fpmux keeps open (FCGI_KEEP_CONN) for the next one: an idle
// pool behind fpmux looked fully busy. Its counts are also the master's
// once-a-second view. The per-process list is each worker's own
// scoreboard, up to date when read; Status counts from it.

package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Status is php-fpm's pool status, its worker counts taken from the
// per-process list (see the file comment).
type Status struct {
	Pool               string `json:"pool"`
	ProcessManager     string `json:"process manager"`
	StartTime          int64  `json:"start time"`
	StartSince         int64  `json:"start since"`
	AcceptedConn       int64  `json:"accepted conn"`
	ListenQueue        int64  `json:"listen queue"`
	MaxListenQueue     int64  `json:"max listen queue"`
	ListenQueueLen     int64  `json:"listen queue len"`
	IdleProcesses      int64  `json:"idle processes"`
	ActiveProcesses    int64  `json:"active processes"`
	TotalProcesses     int64  `json:"total processes"`
	MaxActiveProcesses int64  `json:"max active processes"`
	MaxChildrenReached int64  `json:"max children reached"`
	SlowRequests       int64  `json:"slow requests"`
	// HeldProcesses are the idle workers that wait on a connection fpmux
	// keeps open (counted in IdleProcesses too).
	HeldProcesses int64 `json:"-"`
	// Processes is php-fpm's per-process view, in its order.
	Processes []Process `json:"processes"`
}

// Process is one worker as php-fpm's full status lists it.
type Process struct {
	PID        int    `json:"pid"`
	State      string `json:"state"` // Idle, Reading headers, Running, Finishing, Ending, ...
	StartTime  int64  `json:"start time"`
	StartSince int64  `json:"start since"`
	Requests   int64  `json:"requests"`
	// RequestDuration is in microseconds: of the request running, or of
	// the last one for an idle worker.
	RequestDuration int64  `json:"request duration"`
	RequestMethod   string `json:"request method"`
	// RequestURI is as php-fpm shows it, query string included: shown to
	// an operator, it must be redacted first.
	RequestURI    string `json:"request uri"`
	ContentLength int64  `json:"content length"`
	User          string `json:"user"`
	Script        string `json:"script"`
	// LastRequestCPU (percent) and LastRequestMemory (bytes) are of the
	// last request an idle worker ended; php-fpm shows 0 while one runs.
	LastRequestCPU    float64 `json:"last request cpu"`
	LastRequestMemory int64   `json:"last request memory"`
}

// Held tells whether the worker is idle but for php-fpm's state: it
// ended its request and waits for the next one on a connection kept open
// (php-fpm says "Reading headers" from the moment it waits, with no
// request read yet).
func (p Process) Held() bool {
	return p.State == "Reading headers" && (p.RequestMethod == "" || p.RequestMethod == "-")
}

// Busy tells whether the worker is serving a request.
func (p Process) Busy() bool { return p.State != "Idle" && !p.Held() }

// Status returns php-fpm's status figures and per-process list for the
// pool. Without a deadline on ctx it gives up after 5s.
func (p *Pool) Status(ctx context.Context) (Status, error) {
	var st Status
	res, err := fcgiGet(ctx, p.statusSock, p.pages.Status, "json&full")
	if err != nil {
		return st, fmt.Errorf("status of pool %s: %w", p.o.ID, err)
	}
	if res.Status != http.StatusOK {
		return st, fmt.Errorf("status of pool %s: got %d %q", p.o.ID, res.Status, clip(string(res.Body)))
	}
	if st, err = parseStatus(res.Body); err != nil {
		return st, fmt.Errorf("status of pool %s: %w", p.o.ID, err)
	}
	return st, nil
}

// parseStatus decodes php-fpm's ?json&full answer and counts the workers
// from its per-process list.
func parseStatus(b []byte) (Status, error) {
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode status page: %w", err)
	}
	if st.Processes == nil {
		return st, fmt.Errorf("decode status page: no per-process list (%q)", clip(string(b)))
	}
	st.TotalProcesses, st.ActiveProcesses, st.IdleProcesses, st.HeldProcesses = int64(len(st.Processes)), 0, 0, 0
	for _, proc := range st.Processes {
		switch {
		case proc.Busy():
			st.ActiveProcesses++
		case proc.Held():
			st.HeldProcesses++
			st.IdleProcesses++
		default:
			st.IdleProcesses++
		}
	}
	return st, nil
}

// hasStatusListen tells whether the php-fpm config in dir sets
// pm.status_listen (an fpmux before it did not).
func hasStatusListen(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, confName))
	if err != nil {
		return false
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if k, _, ok := strings.Cut(string(l), " = "); ok && k == "pm.status_listen" {
			return true
		}
	}
	return false
}

// This file owns the server side of the front: accepting connections from the
// web server, reading their records, the connection's lifecycle up to
// shutdown, and the goroutines that serve connections and relay responses.
// One goroutine owns each connection; a relay adds one more for the response
// of the request in flight. Both come from the server's spare goroutines
// when one is waiting (see worker).

package fcgimux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNoRelease is what a Router returns when no release is active; the web
// server then gets a 503.
var ErrNoRelease = errors.New("no active release")

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("fcgimux: server closed")

// Router is what the server needs from outside: the release a new request
// goes to. The supervisor implements it.
type Router interface {
	// Pin counts a request into the active release and returns how to
	// reach it. It must not block.
	Pin() (Pin, error)
}

// Pin is one request's claim on a release. Done must be called exactly once,
// when the request's last byte has been written to the web server or the
// request failed; until then the release's pool is not stopped.
type Pin struct {
	Release string
	Root    string // the release's real root
	Backend *Backend
	// Tracker hears when the request ends. It is an interface rather than
	// a func so that a router can hand out a pointer it already holds (the
	// release), and pinning a request allocates nothing.
	Tracker Tracker
}

// Tracker is told of the end of each request pinned to a release.
type Tracker interface {
	// Done ends the claim of one request: its HTTP status (as fpmux saw
	// it: php-fpm's Status header, or fpmux's own error) and how long it
	// took from BEGIN_REQUEST.
	Done(status int, d time.Duration)
}

// Done ends the pin's claim; see Tracker.
func (p Pin) Done(status int, d time.Duration) { p.Tracker.Done(status, d) }

// Options configures a Server. Zero values get the defaults named.
type Options struct {
	// Docroot is the path prefix the web server sends in DOCUMENT_ROOT and
	// SCRIPT_FILENAME. Required, absolute.
	Docroot string
	// Router picks the release for each request. Required. One that is a
	// HintRouter also gets the routing hints requests carry (route.go).
	Router Router
	// Logger gets one line per refused or failed request. Default slog.Default().
	Logger *slog.Logger
	// MaxParamsBytes bounds the params of one request. Default 1 MiB.
	MaxParamsBytes int
	// ReadTimeout bounds the wait for each record while a request is being
	// read (its params and body), and for the first record on a new
	// connection. Default 60s.
	ReadTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that carries no request.
	// Default 5m.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the web server: one that makes no
	// progress for this long (a client that stopped reading) cuts the
	// connection and the request it carries. Default 60s.
	WriteTimeout time.Duration
	// BackendTimeout bounds how long php-fpm may send nothing once the
	// whole request reached it, and then between two reads of the
	// response (nginx's fastcgi_read_timeout). Past it the request is
	// answered 504, or cut if its response had started, its pool
	// connection is closed (the child may still be running the script),
	// and it is counted as RefusedTimeout. Default 0: no bound.
	BackendTimeout time.Duration
	// MaxConns bounds the web server connections open at once. One over it
	// is closed as soon as it is accepted (the web server answers 502 and
	// may try another upstream), counted in ConnStats and logged at most
	// once a second. Default 4096.
	MaxConns int
	// ReservedScriptNames begin the paths of the ping and status pages
	// php-fpm serves itself: a request whose SCRIPT_NAME, PATH_INFO or
	// REDIRECT_URL begins with one is answered 404 without reaching PHP.
	ReservedScriptNames []string
}

// Server is the FastCGI front fpmux offers to the web server.
type Server struct {
	docroot    string
	router     Router
	hinter     HintRouter // router, when it takes routing hints; else nil
	log        *slog.Logger
	maxParams  int
	readTO     time.Duration
	idleTO     time.Duration
	writeTO    time.Duration
	backendTO  time.Duration
	reserved   []string
	maxConns   int
	inShutdown atomic.Bool
	pass       atomic.Pointer[func(net.Conn) bool] // set by Handoff
	refused    atomic.Uint64
	scripts    scriptCheck
	refusals   [refusalKinds]atomic.Uint64
	logWindow  atomic.Int64 // unix second of the current refusal log window
	logCount   atomic.Int64 // refusal lines logged in it
	logDropped atomic.Int64 // refusal lines not logged since the last one that was
	refusedLog atomic.Int64 // unix nanoseconds of the last "refused" log line

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	// conns are the connections being served, each at its slot: a
	// slice, not a map, as a connection is added and removed per
	// connection, and a map's insert and delete cost ten times the
	// append and swap.
	conns    []*conn
	draining bool           // Shutdown took its list of conns: no more are added
	serving  sync.WaitGroup // one per accept loop (Serve)
	wg       sync.WaitGroup // one per connection goroutine

	free     sync.Pool      // conns done with their connection, kept with their buffers for the next
	spare    chan task      // a worker waiting for a task receives it here
	spareN   atomic.Int32   // workers waiting on spare
	quit     chan struct{}  // closed once Shutdown saw every connection end: waiting workers return
	quitOnce sync.Once      // closes quit
	workers  sync.WaitGroup // one per worker goroutine
}

// NewServer checks o and returns a Server.
func NewServer(o Options) (*Server, error) {
	if o.Router == nil {
		return nil, errors.New("fcgimux: Options.Router is required")
	}
	if !filepath.IsAbs(o.Docroot) || filepath.Clean(o.Docroot) == "/" {
		return nil, fmt.Errorf("fcgimux: Options.Docroot %q must be an absolute path other than /", o.Docroot)
	}
	s := &Server{
		docroot:   filepath.Clean(o.Docroot),
		router:    o.Router,
		log:       o.Logger,
		maxParams: o.MaxParamsBytes,
		readTO:    o.ReadTimeout,
		idleTO:    o.IdleTimeout,
		writeTO:   o.WriteTimeout,
		backendTO: max(o.BackendTimeout, 0),
		reserved:  o.ReservedScriptNames,
		maxConns:  o.MaxConns,
		listeners: map[net.Listener]struct{}{},
		spare:     make(chan task),
		quit:      make(chan struct{}),
	}
	s.hinter, _ = o.Router.(HintRouter)
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxParams <= 0 {
		s.maxParams = 1 << 20
	}
	if s.readTO <= 0 {
		s.readTO = 60 * time.Second
	}
	if s.idleTO <= 0 {
		s.idleTO = 5 * time.Minute
	}
	if s.writeTO <= 0 {
		s.writeTO = 60 * time.Second
	}
	if s.maxConns <= 0 {
		s.maxConns = 4096
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown. It closes ln on return.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
		s.serving.Done()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or similar: wait and go on, as
				// net/http does, rather than give up the listener.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		c := s.newConn(nc)
		if c == nil {
			nc.Close()
			continue
		}
		s.run(task{c: c})
	}
}

// newConn registers nc and returns the conn that will serve it: one that
// served an earlier connection when there is one, with its buffers; nil
// when the server is draining or full.
func (s *Server) newConn(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return nil
	}
	if len(s.conns) >= s.maxConns {
		s.refused.Add(1)
		if now, last := time.Now().UnixNano(), s.refusedLog.Load(); now-last > int64(time.Second) && s.refusedLog.CompareAndSwap(last, now) {
			s.log.Warn("connection refused: limits.max_connections reached", "max_connections", s.maxConns, "refused_total", s.refused.Load())
		}
		return nil
	}
	c, _ := s.free.Get().(*conn)
	if c == nil {
		c = &conn{rr: &recordReader{}}
		c.rel.front = c
		c.rel.done = make(chan struct{}, 1)
	}
	c.reset(s, nc)
	c.slot = len(s.conns)
	s.conns = append(s.conns, c)
	s.wg.Add(1)
	return c
}

// task is what a worker is given: a connection to serve, or the response
// of a relay to stream.
type task struct {
	c *conn
	r *relay
}

// maxSpare bounds the workers kept waiting for a task.
const maxSpare = 128

// run has t done by a worker waiting for one, or by a new one.
func (s *Server) run(t task) {
	select {
	case s.spare <- t:
	default:
		s.workers.Add(1)
		go s.worker(t)
	}
}

// worker does t, then, while fewer than maxSpare others wait, the tasks run
// hands it, until Shutdown has seen every connection end. Goroutines are
// kept across connections and requests so that their stacks, once grown to
// what serving takes, are not grown again: each new goroutine starts with a
// small stack, and copying it as it grew cost a third of fpmux's
// instructions for a request without keep-alive (two growths, one per
// goroutine, about 16,000 instructions each).
func (s *Server) worker(t task) {
	defer s.workers.Done()
	for {
		if t.c != nil {
			t.c.serve()
			s.free.Put(t.c)
		} else {
			t.r.run()
		}
		if s.spareN.Add(1) > maxSpare {
			s.spareN.Add(-1)
			return
		}
		select {
		case t = <-s.spare:
			s.spareN.Add(-1)
		case <-s.quit:
			s.spareN.Add(-1)
			return
		}
	}
}

// stopWorkers makes the waiting workers return and waits for every worker;
// Shutdown calls it once no connection is left, so none is working.
func (s *Server) stopWorkers() {
	s.quitOnce.Do(func() { close(s.quit) })
	s.workers.Wait()
}

// Refusal is why fpmux answered a request itself instead of relaying it.
type Refusal int

const (
	RefusedScript     Refusal = iota // SCRIPT_FILENAME missing, outside the docroot or the release, or php-fpm's own page: 404
	RefusedMalformed                 // params that do not decode: 400
	RefusedParamsSize                // params over max_params_bytes: 431
	RefusedBusy                      // the pool holds max_in_flight requests: 503
	RefusedTimeout                   // php-fpm sent nothing for BackendTimeout: 504, or cut
	refusalKinds
)

// String names the refusal as the metric label does.
func (r Refusal) String() string {
	switch r {
	case RefusedScript:
		return "script"
	case RefusedMalformed:
		return "malformed"
	case RefusedParamsSize:
		return "params_size"
	case RefusedBusy:
		return "busy"
	case RefusedTimeout:
		return "backend_timeout"
	}
	return "unknown"
}

// Refusals lists every Refusal, for metrics.
func Refusals() []Refusal {
	return []Refusal{RefusedScript, RefusedMalformed, RefusedParamsSize, RefusedBusy, RefusedTimeout}
}

// Refused returns how many requests were refused for r since the start.
func (s *Server) Refused(r Refusal) uint64 { return s.refusals[r].Load() }

// refusalLogsPerSecond bounds the refusal lines logged each second.
const refusalLogsPerSecond = 10

// logRefusal logs a refused request unless refusalLogsPerSecond lines have
// been logged this second; the first line after a quiet spell says how
// many were left out.
func (s *Server) logRefusal(msg string, attrs ...any) {
	now := time.Now().Unix()
	if w := s.logWindow.Load(); w != now && s.logWindow.CompareAndSwap(w, now) {
		s.logCount.Store(0)
	}
	if s.logCount.Add(1) > refusalLogsPerSecond {
		s.logDropped.Add(1)
		return
	}
	if n := s.logDropped.Swap(0); n > 0 {
		attrs = append(attrs, "not_logged_before", n)
	}
	s.log.Warn(msg, attrs...)
}

// ConnStats returns the web server connections open now and how many were
// refused since the start for being over MaxConns.
func (s *Server) ConnStats() (open int, refused uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), s.refused.Load()
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	last := len(s.conns) - 1
	s.conns[c.slot], s.conns[last].slot = s.conns[last], c.slot
	s.conns[last] = nil
	s.conns = s.conns[:last]
	s.mu.Unlock()
	s.wg.Done()
}

// Request is a request in flight, as InFlight reports it.
type Request struct {
	Method  string
	URI     string // as the web server sent it, query string included
	Started time.Time
}

// InFlight returns the requests being relayed to release, oldest first:
// what holds a draining release up.
func (s *Server) InFlight(release string) []Request {
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	var out []Request
	for _, c := range conns {
		c.mu.Lock()
		if c.busy && c.cur.release == release {
			out = append(out, Request{Method: string(c.cur.method), URI: string(c.cur.uri), Started: c.cur.started})
		}
		c.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Request) int { return a.Started.Compare(b.Started) })
	return out
}

// Shutdown stops accepting, closes connections that carry no request, and
// waits for the requests in flight to end. A connection accepted until then
// is served, not dropped, and one that has not sent its first record yet
// gets freshGrace to send it (see closeIfIdle). When ctx ends first, it cuts
// every connection, the writes of request bodies to php-fpm included, and
// waits for their goroutines, which end at once, then returns ctx's error.
// Either way the server's goroutines have all returned when it returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.inShutdown.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	// An accept loop may be handing over a connection it accepted a moment
	// ago; the web server has written its request on it already.
	accepted := closedAtZero(&s.serving)
	select {
	case <-accepted:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.draining = true
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle()
	}
	done := closedAtZero(&s.wg)
	select {
	case <-done:
		<-accepted
		s.stopWorkers()
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for _, c := range s.conns {
		c.cutAtBound()
	}
	s.mu.Unlock()
	<-done
	<-accepted
	s.stopWorkers()
	return ctx.Err()
}

// closedAtZero returns a channel closed once wg's count is zero, for a
// select; Shutdown waits for it on every path, so its goroutine ends there.
func closedAtZero(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	return ch
}

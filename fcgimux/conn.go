// This file owns one connection from the web server: the loop that reads its
// records, the state of the request being read, and the answers fpmux gives
// itself (errors, management records).

package fcgimux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// phase is where the connection's current request is.
type phase uint8

const (
	phaseNone     phase = iota // no request: waiting for BEGIN_REQUEST
	phaseParams                // BEGIN seen, reading PARAMS
	phaseRelaying              // params sent to php-fpm; body and response flow
	phaseAnswered              // fpmux answered itself; the rest of the body is dropped
)

// lingerTimeout bounds how long a connection without FCGI_KEEP_CONN is read
// (and its input dropped) after its response ended while its body was still
// coming, waiting for the web server to close it.
const lingerTimeout = 5 * time.Second

// errDone ends a connection that has nothing more to do: its request was
// answered and its body read, and it is not kept.
var errDone = errors.New("connection done")

type conn struct {
	s    *Server
	nc   net.Conn
	slot int           // index in s.conns; guarded by s.mu
	rr   *recordReader // takes a buffer from bufPool only while there is input
	// ncClose closes nc once: see closeNC.
	ncClose sync.Once

	wmu  sync.Mutex // serializes writes to nc: the relay's goroutine writes responses too
	wbuf []byte     // records fpmux writes itself, built here; guarded by wmu
	// wdeadline is the write deadline set on nc. waited tells that the
	// last one passed with nothing written, and queued what unsent told
	// then. Guarded by wmu.
	wdeadline time.Time
	waited    bool
	queued    int

	// Owned by the serve goroutine.
	id        uint16
	keepConn  bool
	phase     phase
	params    []byte // the request's params as the web server sent them
	out       []byte // the params rewritten, as encoded pairs
	ends      []int  // where each pair in out ends
	up        []byte // records for php-fpm: BEGIN, PARAMS, STDIN; up[upSent:] not yet written
	upSent    int    // 0 unless the request is held (see holdUp)
	holding   bool   // up keeps what was written, for retry; decided at the first write
	rel       relay  // the current request's relay; reused
	relActive bool   // rel carries a request not yet waited for
	crossing  bool   // reading a request that crossed Shutdown; its deadline is set
	stdinDone bool   // the web server's body is complete
	started   time.Time

	// upConn is the pool connection a write to php-fpm is under way on, if
	// any; cut is set once Shutdown's bound has passed. See writeUp.
	upConn atomic.Pointer[backendConn]
	cut    atomic.Bool
	// inline is set while the serve goroutine runs the relay itself (see
	// flushUp), so that cutAtBound abandons it.
	inline atomic.Bool

	mu           sync.Mutex // guards busy, begun, bodyDone, closing, closeAt, cur, idleDeadline and rdeadline
	busy         bool
	begun        bool      // a request was begun on it: it is no longer fresh (see closeIfIdle)
	bodyDone     bool      // the web server's body of the current request was read to its end
	closing      bool      // Shutdown asked the connection to go once idle
	closeAt      time.Time // when a closing connection's read gives up waiting
	cur          current   // the request being relayed, for InFlight
	idleDeadline time.Time
	rdeadline    time.Time // the read deadline set on nc (see setReadLocked)
}

// current is what InFlight tells of a connection's request: kept in
// buffers the connection reuses, so recording it allocates nothing.
type current struct {
	release     string // "" when no request is being relayed
	started     time.Time
	method, uri []byte
}

// upFlushSize is how much of a request body is gathered before it is
// written to php-fpm even though the web server has sent more.
const upFlushSize = 64 << 10

// maxKeptBuf is the largest per-request buffer a connection keeps between
// requests; a bigger one (a large params block or body) is dropped, so an
// idle connection stays small.
const maxKeptBuf = 16 << 10

// serve reads records until the connection closes, fails, or is shut down.
func (c *conn) serve() {
	defer c.s.forget(c)
	defer c.closeNC()
	defer c.endRelay()
	c.armDeadlines()
	for {
		if c.rr.buffered() == 0 {
			// About to block on the web server: push out what is queued
			// for php-fpm first, so records batch into few writes.
			if c.phase == phaseRelaying && (len(c.up) > c.upSent || !c.rel.running) {
				c.flushUp()
			}
			if c.phase != phaseParams && (c.phase != phaseRelaying || c.stdinDone) {
				// Nothing of a request is expected soon: an idle
				// connection holds no buffer.
				c.rr.release()
			}
			if !c.crossing {
				c.setReadDeadline()
			}
		}
		h, content, err := c.rr.next()
		c.crossing = false
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.deadlineLifted() {
				continue // a deadline left in place lazily; see setReadDeadline
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && c.handOff() {
				return // the next fpmux serves it from here on
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && c.crossedShutdown() {
				// The web server sent a request as Shutdown came: serve
				// it, then go (requestEnded closes in shutdown).
				c.crossing = true
				c.mu.Lock()
				c.setReadLocked(time.Now().Add(c.s.readTO))
				c.mu.Unlock()
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.midRequest() {
				c.s.log.Info("web server connection ended mid-request", "err", err)
			}
			return
		}
		if err := c.handle(h, content); err != nil {
			if err != errDone {
				c.s.log.Warn("closing web server connection", "err", err)
			}
			return
		}
	}
}

// endOfBody notes that the web server's body of the current request was
// read to its end: from then on requestEnded closes a connection without
// FCGI_KEEP_CONN at once.
func (c *conn) endOfBody() {
	c.mu.Lock()
	c.bodyDone = true
	c.mu.Unlock()
}

// doneNow tells, once the body was read, whether the connection can go: it
// is not kept and its response is complete. Under mu, after endOfBody, so
// that either this or requestEnded sees the other.
func (c *conn) doneNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.keepConn && !c.busy
}

// midRequest tells whether the connection carries a request not yet ended.
func (c *conn) midRequest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy
}

// endRelay waits for the relay of the current request, cutting it first:
// the connection is going away, so its request is abandoned. The web
// server's side is closed too, so a relay blocked writing to a client that
// stopped reading returns at once.
func (c *conn) endRelay() {
	if !c.relActive {
		return
	}
	c.closeNC()
	c.rel.abandon()
	c.startRun()
	c.waitRelay()
}

// startRun starts the relay's response goroutine if it is not running yet.
func (c *conn) startRun() {
	if !c.rel.running {
		c.rel.running = true
		c.s.run(task{r: &c.rel})
	}
}

// reset readies c, new or done with an earlier connection (its goroutines
// returned, forgotten by the server), to serve nc, keeping its buffers.
func (c *conn) reset(s *Server, nc net.Conn) {
	rr := c.rr
	if rr.big != nil {
		putBuf(rr.big)
		rr.big = nil
	}
	rr.r, rr.buf, rr.rpos, rr.wpos = nc, rr.small[:], 0, 0
	c.s, c.nc, c.ncClose = s, nc, sync.Once{}
	c.wbuf, c.wdeadline, c.waited, c.queued = trim(c.wbuf), time.Time{}, false, 0
	c.id, c.keepConn, c.phase = 0, false, phaseNone
	c.params, c.out, c.ends, c.up, c.upSent, c.holding = trim(c.params), trim(c.out), c.ends[:0], trim(c.up), 0, false
	c.rel.clear()
	c.relActive, c.crossing, c.stdinDone, c.started = false, false, false, time.Time{}
	c.upConn.Store(nil)
	c.cut.Store(false)
	// Under mu: InFlight may still be looking at c from its last connection.
	c.mu.Lock()
	c.busy, c.begun, c.bodyDone, c.closing, c.closeAt = false, false, false, false, time.Time{}
	c.cur = current{method: c.cur.method[:0], uri: c.cur.uri[:0]}
	c.idleDeadline, c.rdeadline = time.Now().Add(s.readTO), time.Time{}
	c.mu.Unlock()
}

// closeNC closes the web server's connection, the first time only. A
// connection is closed where its end is known (its response complete, a
// cut, a failed write) and again on the serve goroutine's way out, and a
// second Close of a net.Conn only makes an error to be dropped (an
// allocation and about 900 instructions, twice per connection without
// keep-alive). As with Close, nc is closed once closeNC returns, whichever
// goroutine's call closed it.
func (c *conn) closeNC() {
	c.ncClose.Do(func() { c.nc.Close() })
}

// waitRelay waits for the relay's goroutine to return, and disposes of a
// pool connection it left to this goroutine.
func (c *conn) waitRelay() {
	<-c.rel.done
	c.rel.running = false
	c.rel.settleDeferred(false)
	c.relActive = false
}

// setReadDeadline picks the bound for the next read: ReadTimeout while a
// request is being read, none while its response is produced (a slow script
// is bounded by the pool, not here), and the idle deadline between requests.
//
// Moving a deadline costs a timer update in the runtime, and most requests
// need none of these moves: nginx sends a whole GET in one write, so its
// params are read before the loop gets here, and its response is produced
// and the connection idles with the deadline the request was read under. So
// a deadline is moved only when it would bound the read too loosely, or
// more tightly by over an eighth of ReadTimeout: the one set at accept is
// kept for the params of a request sent at once, and the bound on each body
// record moves once it has aged by an eighth (a stalled body is cut after
// 7/8 of ReadTimeout to all of it). A deadline that would bound too tightly
// (while php-fpm produces the response, or between requests) is left in
// place and lifted if it passes: see deadlineLifted.
func (c *conn) setReadDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing && !c.busy:
		c.setReadLocked(c.closeAt) // wake the read then: see crossedShutdown
	case c.phase == phaseParams:
		// The params as a whole, not each record: a client that sends
		// a record now and then would otherwise hold the connection
		// for ever.
		c.boundReadLocked(c.started.Add(c.s.readTO))
	case c.phase == phaseRelaying && !c.stdinDone:
		// The body may be long: each record within ReadTimeout, as
		// nginx's fastcgi_send_timeout bounds each write.
		c.boundReadLocked(time.Now().Add(c.s.readTO))
	case c.phase == phaseRelaying && !c.rel.ended.Load():
		// php-fpm is producing the response: no bound, but the deadline
		// in place stays until it passes.
	default:
		c.setReadLocked(c.idleDeadline)
	}
}

// boundReadLocked makes the read deadline d, unless the one in place is
// already at most an eighth of ReadTimeout before it. The caller holds mu.
func (c *conn) boundReadLocked(d time.Time) {
	if c.rdeadline.IsZero() || c.rdeadline.After(d) || d.Sub(c.rdeadline) > c.s.readTO/8 {
		c.setReadLocked(d)
	}
}

// setReadLocked sets the read deadline d on nc unless it is the one set
// already. The caller holds mu.
func (c *conn) setReadLocked(d time.Time) {
	if !d.Equal(c.rdeadline) {
		c.rdeadline = d
		c.nc.SetReadDeadline(d)
	}
}

// armDeadlines sets a new connection's first deadlines: its idle deadline
// for reads, and for writes the same one when it is what writeLocked would
// set (WriteTimeout from now, give or take an eighth), so that both are
// set at once, on one timer.
func (c *conn) armDeadlines() {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, to := c.idleDeadline, c.s.writeTO
	if left := time.Until(d); left <= to && left >= to-to/8 {
		c.wmu.Lock()
		c.rdeadline, c.wdeadline = d, d
		c.nc.SetDeadline(d)
		c.wmu.Unlock()
		return
	}
	c.setReadLocked(d)
}

// deadlineLifted tells, after a read met its deadline, whether that was a
// deadline setReadDeadline left in place that no longer bounds the read:
// while php-fpm produces the response (no bound), or between requests
// before the idle deadline. It sets the right one; the read goes on.
func (c *conn) deadlineLifted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing && !c.busy, c.phase == phaseParams, c.phase == phaseRelaying && !c.stdinDone:
		return false
	case c.phase == phaseRelaying && !c.rel.ended.Load():
		c.setReadLocked(time.Time{})
		return true
	case c.idleDeadline.After(time.Now()):
		c.setReadLocked(c.idleDeadline)
		return true
	}
	return false
}

// requestEnded marks the connection idle once a response is complete.
func (c *conn) requestEnded(keepConn bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	c.cur.release = ""
	if !keepConn && c.bodyDone {
		// Nothing more will come that closing could reset: the web
		// server reads the response, then end of file.
		c.closeNC()
		return
	}
	if !keepConn {
		// Like php-fpm: shut the write side and read until the web server
		// closes, so it never sees a reset while sending the rest of a body
		// (endOfBody closes once that body has come).
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.closeNC()
		}
		c.idleDeadline = time.Now().Add(lingerTimeout)
	} else {
		c.idleDeadline = time.Now().Add(c.s.idleTO)
	}
	if c.rdeadline.IsZero() || c.rdeadline.After(c.idleDeadline) {
		c.setReadLocked(c.idleDeadline)
	} // else the earlier one is lifted when it passes: see deadlineLifted
	if c.s.inShutdown.Load() {
		if keepConn {
			// As closeIfIdle: a request sent on it meanwhile is served.
			c.closing, c.closeAt = true, time.Now()
			c.setReadLocked(c.closeAt)
		} else {
			c.closeNC()
		}
	}
}

// closeIfIdle makes the connection go if it carries no request; it is how
// Shutdown lets idle keep-alive connections go. It does not close the
// connection under the serve goroutine, which may be reading a request the
// web server sent a moment before (a kept connection is the web server's to
// reuse at any time, and nginx sends a POST on it again only if it never
// went out): it wakes the goroutine's read, which then looks for such a
// request (crossedShutdown) before it closes.
//
// A fresh connection, one that never began a request, is given freshGrace
// to send its first record: a web server writes its request right after
// connecting, so a connection accepted a moment before Shutdown has one on
// the way, and closing it unread resets it (nginx answers that 502 rather
// than retry on a new connection).
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		c.closing, c.closeAt = true, time.Now()
		if !c.begun && c.s.pass.Load() == nil {
			// A Handoff passes it on at once instead: nothing is lost.
			c.closeAt = c.closeAt.Add(freshGrace)
		}
		c.setReadLocked(c.closeAt)
	}
}

// freshGrace is how long Shutdown waits for a fresh connection's first
// record. It is reached only by a client that connected and stays silent.
const freshGrace = 500 * time.Millisecond

// crossedShutdown tells, after Shutdown woke an idle connection's read,
// whether the web server has sent a request on it all the same: part of a
// record already read, or bytes waiting on the socket.
func (c *conn) crossedShutdown() bool {
	c.mu.Lock()
	closing := c.closing && !c.busy
	c.mu.Unlock()
	if !closing {
		return false
	}
	if c.rr.buffered() > 0 {
		return true
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// Control, not Read: the read deadline has passed, and Read would
	// answer that without looking.
	waiting := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting = err == nil && n > 0
	})
	return waiting
}

// handle acts on one record. An error closes the connection.
func (c *conn) handle(h header, content []byte) error {
	switch h.Type {
	case typeGetValues:
		return c.getValues(content)
	case typeBeginRequest:
		return c.begin(h, content)
	case typeParams:
		if c.phase != phaseParams || h.ID != c.id {
			return nil // not the request being read: ignored, as the spec asks
		}
		if len(content) == 0 {
			c.startRelay()
			return nil
		}
		if len(c.params)+len(content) > c.s.maxParams {
			c.s.refusals[RefusedParamsSize].Add(1)
			c.s.logRefusal("request refused", "status", 431, "reason", "params too large", "max_params_bytes", c.s.maxParams)
			c.answer(431, fmt.Sprintf("request params exceed %d bytes", c.s.maxParams))
			return nil
		}
		c.params = append(c.params, content...)
	case typeStdin:
		if h.ID != c.id || c.stdinDone || c.phase != phaseRelaying && c.phase != phaseAnswered {
			return nil // no request, or its body ended
		}
		if len(content) == 0 {
			c.stdinDone = true
			c.endOfBody()
		}
		if c.phase == phaseRelaying {
			c.bodyRecord(content)
		} // else the body of a request fpmux answered itself: dropped
		if c.stdinDone && c.doneNow() {
			return errDone
		}
	case typeAbortRequest:
		if h.ID != c.id {
			return nil
		}
		switch c.phase {
		case phaseParams:
			c.phase = phaseAnswered
			c.ended(c.writeEnd(h.ID, "", 0, statusRequestComplete), c.keepConn)
		case phaseRelaying:
			if c.rel.ended.Load() {
				return nil // the response is complete; nothing to abort
			}
			c.rel.abort()
			c.dropUp()
			c.startRun()
		}
	case typeData, typeStdout, typeStderr, typeEndRequest, typeGetValuesResult, typeUnknownType:
		// Not sent by a web server to an application; dropped.
	default:
		var b [8]byte
		b[0] = byte(h.Type)
		return c.writeRecord(typeUnknownType, b[:])
	}
	return nil
}

// begin starts a new request, or refuses a second one while one is in
// flight: fpmux does not multiplex (FCGI_MPXS_CONNS is 0).
func (c *conn) begin(h header, content []byte) error {
	if c.phase == phaseRelaying && !c.rel.ended.Load() || c.phase == phaseParams {
		if h.ID == c.id {
			return fmt.Errorf("request id %d begun again while in flight", h.ID)
		}
		c.refuseBegin(h.ID, statusCantMpxConn)
		return nil
	}
	br, err := parseBeginRequest(content)
	if err != nil {
		return err
	}
	if c.relActive {
		c.waitRelay() // its goroutine is past END_REQUEST; let it finish
	}
	if br.Role != roleResponder {
		c.refuseBegin(h.ID, statusUnknownRole)
		return nil
	}
	c.mu.Lock()
	c.busy, c.begun, c.bodyDone = true, true, false
	closing := c.closing
	c.mu.Unlock()
	c.id, c.keepConn, c.phase, c.stdinDone = h.ID, br.KeepConn, phaseParams, false
	c.params = trim(c.params)
	c.out = trim(c.out)
	c.up = trim(c.up)
	c.started = time.Now()
	if closing {
		// Shutdown (or a Handoff) may have found the connection idle
		// between the read of this BEGIN_REQUEST and busy above, and set
		// its read deadline to now to wake it. The serve loop sets the
		// params' deadline only once its buffer is empty, so a record of
		// this request already partly read would meet that past deadline
		// and be cut (nginx answers 502 for a POST). Serve it instead.
		c.setReadDeadline()
	}
	return nil
}

// trim empties a per-request buffer for reuse, or drops it when a large
// request made it big.
func trim(b []byte) []byte {
	if cap(b) > maxKeptBuf {
		return nil
	}
	return b[:0]
}

// startRelay pins the request to a release (the one its routing hint
// names, when the router takes hints), rewrites its params and sends them
// to that release's pool; from then on the relay carries it.
func (c *conn) startRelay() {
	var pin Pin
	var err error
	if hint, ok := routeHint(c.params); ok && c.s.hinter != nil {
		pin, err = c.s.hinter.PinHint(hint)
	} else {
		pin, err = c.s.router.Pin()
	}
	if err != nil {
		if errors.Is(err, ErrNoRelease) {
			c.answer(503, "no active release")
		} else {
			c.answer(503, err.Error())
		}
		return
	}
	p := pinnedPaths{docroot: c.s.docroot, root: pin.Root, release: pin.Release, reserved: c.s.reserved, scripts: &c.s.scripts}
	var line requestLine
	c.out, c.ends, line, err = rewriteParams(c.out[:0], c.ends[:0], c.params, p)
	if err != nil {
		var rej *rejectError
		if errors.As(err, &rej) {
			c.refuse(pin, RefusedScript, rej.status, "not found", "reason", rej.reason)
		} else {
			c.refuse(pin, RefusedMalformed, 400, "malformed params", "reason", err)
		}
		return
	}
	c.up, c.upSent, c.holding = appendBeginRequest(c.up[:0], c.id, true), 0, false
	if c.up, err = appendParams(c.up, c.id, c.out, c.ends); err != nil {
		var rej *rejectError
		errors.As(err, &rej)
		c.refuse(pin, RefusedParamsSize, rej.status, rej.reason, "reason", rej.reason)
		return
	}
	bc, err := pin.Backend.get()
	if errors.Is(err, ErrPoolBusy) {
		c.refuse(pin, RefusedBusy, 503, "release "+pin.Release+" is busy: too many requests in flight", "reason", err)
		return
	}
	if err != nil {
		c.s.log.Warn("request failed", "release", pin.Release, "status", 502, "err", err)
		pin.Done(502, time.Since(c.started))
		c.answer(502, "the pool of release "+pin.Release+" did not answer")
		return
	}
	c.phase = phaseRelaying
	c.rel.reset(c.s, c.id, c.keepConn, c.params, c.started, pin, bc)
	c.relActive = true
	c.record(pin.Release, line)
}

// refuse answers a request fpmux will not relay, counts it under reason
// and logs why (at most refusalLogsPerSecond lines a second, so a client
// sending bad requests in a loop cannot flood the log).
func (c *conn) refuse(pin Pin, reason Refusal, status int, msg string, attrs ...any) {
	c.s.refusals[reason].Add(1)
	c.s.logRefusal("request refused", append([]any{"release", pin.Release, "status", status}, attrs...)...)
	pin.Done(status, time.Since(c.started))
	c.answer(status, msg)
}

// record notes the request now relayed, for InFlight.
func (c *conn) record(release string, line requestLine) {
	c.mu.Lock()
	c.cur.release, c.cur.started = release, c.started
	c.cur.method = append(c.cur.method[:0], line.method...)
	c.cur.uri = append(c.cur.uri[:0], line.uri...)
	c.mu.Unlock()
}

// bodyRecord queues one STDIN record for php-fpm; the empty one that ends
// the body is sent at once.
func (c *conn) bodyRecord(content []byte) {
	if c.rel.ended.Load() {
		// php-fpm already answered; the rest of the body is dropped, and
		// the connection, whose stream php-fpm left mid-body, is not reused.
		c.rel.settleDeferred(false)
		return
	}
	c.up = appendRecord(c.up, typeStdin, c.id, content)
	if len(content) == 0 || len(c.up)-c.upSent >= upFlushSize {
		c.flushUp()
	}
}

// dropUp forgets what is queued for php-fpm. Bytes held for retry are left
// as they are (retry may be sending them): up starts anew instead.
func (c *conn) dropUp() {
	if c.holding {
		c.up, c.upSent, c.holding = nil, 0, false
		return
	}
	c.up = c.up[:0]
}

// flushUp writes what is queued for php-fpm, and starts the relay's
// response goroutine after the first write. A kept pool connection that
// turns out dead on that first write (its child exited after
// pm.max_requests, say) is replaced by a new one: all of the request sent
// so far is still in c.up, and none of it reached PHP.
func (c *conn) flushUp() {
	r := &c.rel
	if len(c.up) > c.upSent && !r.ended.Load() {
		first := !r.running
		var err error
		if first && r.bc.reused {
			c.holding = c.holdUp()
			if !c.holding {
				// Too large to hold for retry: a new connection,
				// which no php-fpm child can have ended.
				err = r.redialUp()
			}
		}
		if c.holding && len(c.up) > 2*maxHeld {
			c.holding = false // more body than CONTENT_LENGTH said
		}
		if err == nil {
			err = r.sendUp(c.up, c.upSent, c.holding)
		}
		if err != nil && first && r.bc.reused && !c.cut.Load() {
			c.holding = false
			if err = r.redialUp(); err == nil {
				err = r.sendUp(c.up, 0, false)
			}
		}
		switch {
		case err != nil:
			r.upFailed(err)
		case c.stdinDone:
			r.bodySent()
		}
	}
	if c.holding {
		c.upSent = len(c.up)
	} else {
		c.up, c.upSent = c.up[:0], 0
	}
	if c.stdinDone && !c.keepConn && !r.running {
		c.runInline()
		return
	}
	c.startRun()
}

// runInline streams the response on the serve goroutine, for a request
// whose body is all sent on a connection without FCGI_KEEP_CONN: nothing
// more is to be read from the web server, so the goroutine that would read
// it while another streams the response, and the hand-over between them,
// are saved. Like php-fpm, which reads nothing more of such a connection
// either, fpmux then learns that the web server went away only when writing
// to it, and an FCGI_ABORT_REQUEST sent during the response is not seen
// (nginx and Apache send none: they close the connection).
func (c *conn) runInline() {
	c.rel.running = true
	c.inline.Store(true)
	if c.cut.Load() {
		c.rel.abandon()
	}
	c.rel.run()
	c.inline.Store(false)
}

// writeUp writes b to php-fpm on bc. A script that does not read its input
// (a PUT it ignores, a POST over post_max_size) blocks this write for as
// long as it runs, and nothing on the web server's side ends it: cutAtBound
// does, so that Shutdown's bound holds.
func (c *conn) writeUp(bc *backendConn, b []byte) error {
	c.upConn.Store(bc)
	defer c.upConn.Store(nil)
	if c.cut.Load() {
		return errCut
	}
	_, err := bc.Write(b)
	return err
}

// errCut is why a request cut at Shutdown's bound was not written on.
var errCut = errors.New("cut at the shutdown bound")

// cutAtBound closes the connection when Shutdown's bound has passed, and
// ends a write to php-fpm its goroutine may be blocked in, or the relay it
// runs itself (runInline): the ends that closing the web server's side does
// not reach. Cut and the pool connection
// are published in the opposite order to writeUp's, so either it sees the
// write or the write sees cut. A deadline rather than a close, as the pool
// connection stays the goroutine's to dispose of (upFailed closes it); one
// that has just gone back to the pool meets the deadline on its next write,
// and is replaced, as a dead kept connection is.
func (c *conn) cutAtBound() {
	c.cut.Store(true)
	if bc := c.upConn.Load(); bc != nil {
		bc.SetWriteDeadline(time.Now())
	}
	c.closeNC() // first: the web server gets no answer made up for the cut
	if c.inline.Load() {
		c.rel.abandon() // what the serve goroutine does for a relay of its own
	}
}

// contentLength returns the request's CONTENT_LENGTH param, and false when
// it is missing or not a length.
func contentLength(params []byte) (int, bool) {
	n, ok := 0, false
	eachPair(params, func(name, value []byte) error {
		if string(name) != "CONTENT_LENGTH" {
			return nil
		}
		v, err := strconv.Atoi(string(value))
		n, ok = v, err == nil && v >= 0
		return errStop
	})
	return n, ok
}

// maxHeld bounds the request (params and body, as records) that is kept
// whole for retry while it is sent on a kept pool connection.
const maxHeld = 128 << 10

// holdUp tells, at a request's first write to a kept pool connection,
// whether all of the request can be kept until php-fpm has answered, so
// that retry can send it again if php-fpm ended that connection: when it
// is all in c.up already, or its CONTENT_LENGTH says the rest will fit
// within maxHeld. A request that cannot (a large or unannounced body) goes
// on a new connection instead: no bound on its size would make it safe on a
// kept one, since php-fpm tells nothing before it has read the body.
func (c *conn) holdUp() bool {
	if c.stdinDone {
		return true
	}
	n, ok := contentLength(c.params)
	// Each STDIN record adds at most 16 bytes (header and padding); the
	// web server sends its body in records of several KB.
	return ok && len(c.up)+n+n/64+16 <= maxHeld
}

// answer ends the current request with a response fpmux writes itself.
func (c *conn) answer(status int, msg string) {
	c.phase = phaseAnswered
	c.ended(c.writeEnd(c.id, answerText(status, msg), 0, statusRequestComplete), c.keepConn)
}

// answerText is a whole response fpmux makes itself: the status, and a
// short plain-text body saying why. The relay's fail answers with it too.
func answerText(status int, msg string) string {
	body := "fpmux: " + msg + "\n"
	return "Status: " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Cache-Control: no-store\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// writeEnd writes the records fpmux ends request id with itself: resp as
// its STDOUT stream (none when resp is empty), then END_REQUEST. It is the
// one place those are built, in wbuf under wmu, for the serve goroutine and
// the relay's alike (see front).
func (c *conn) writeEnd(id uint16, resp string, appStatus uint32, protocolStatus uint8) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	if resp != "" {
		c.wbuf = appendStream(c.wbuf, typeStdout, id, []byte(resp))
		c.wbuf = appendRecord(c.wbuf, typeStdout, id, nil)
	}
	c.wbuf = appendEndRequest(c.wbuf, id, appStatus, protocolStatus)
	_, err := c.writeLocked(c.wbuf)
	return err
}

// writeRecord writes a management record (request id 0) fpmux answers with
// itself, FCGI_GET_VALUES_RESULT or FCGI_UNKNOWN_TYPE, built in wbuf under
// wmu as writeEnd builds a request's.
func (c *conn) writeRecord(t recType, content []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = appendRecord(c.wbuf[:0], t, 0, content)
	_, err := c.writeLocked(c.wbuf)
	return err
}

// ended ends the current request once its last records were written, err
// being that write's error: the connection goes idle (requestEnded), or,
// when the write failed, is closed. See front.
func (c *conn) ended(err error, keepConn bool) {
	if err != nil {
		c.closeNC()
		return
	}
	c.requestEnded(keepConn)
}

// refuseBegin answers a BEGIN_REQUEST that starts no request with a lone
// END_REQUEST; a failed write closes the connection.
func (c *conn) refuseBegin(id uint16, protocolStatus uint8) {
	if c.writeEnd(id, "", 0, protocolStatus) != nil {
		c.closeNC()
	}
}

// write sends b to the web server as it is; the relay's goroutine uses it
// for the response records it passes through.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.writeLocked(b)
	return err
}

// writeLocked writes b to the web server, cut when the web server makes
// no progress reading it for WriteTimeout: a client that stops reading would
// otherwise hold the connection, and through the relay a php-fpm child, for
// ever, while one that reads slowly but steadily gets all of a long write.
//
// Progress is what the socket shows. A write that reaches its deadline
// having sent some bytes goes on with a new one. One that sent nothing is
// not proof of a stall: a unix socket wakes its writer only once the reader
// has emptied three quarters of the send buffer (about 160 KB), so a reader
// taking a few KB at a time is seen late; there the bytes still queued on
// the socket (SIOCOUTQ, which falls each time the reader has taken a whole
// earlier write) tell, and the write goes on as long as they fell since the
// last deadline. b goes out in writes of at most writeChunk so that this
// shows a reader's progress in steps that small: a client is cut when it
// reads less than that in WriteTimeout (546 B/s at the default 60s, where a
// whole 128 KiB write per deadline cut anything under 2.2 KB/s). A stalled
// client is cut after 7/8 of WriteTimeout to twice it.
//
// Moving a deadline costs (a timer update in the runtime), so it is moved
// only once it has aged by an eighth of WriteTimeout, not on every write.
// The caller holds wmu.
func (c *conn) writeLocked(b []byte) (int, error) {
	to := c.s.writeTO
	sent := 0
	for {
		if now := time.Now(); c.wdeadline.Sub(now) < to-to/8 {
			c.wdeadline = now.Add(to)
			c.nc.SetWriteDeadline(c.wdeadline)
		}
		n, err := c.nc.Write(b[:min(len(b), writeChunk)])
		sent += n
		b = b[n:]
		if err == nil {
			c.waited = false
			if len(b) == 0 {
				return sent, nil
			}
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return sent, err
		}
		if n == 0 {
			q := c.unsent()
			if q < 0 || c.waited && q >= c.queued {
				return sent, err // nothing taken since the last deadline
			}
			c.waited, c.queued = true, q
		}
		c.wdeadline = time.Time{} // it passed with progress made: a new one
	}
}

// writeChunk is the most writeLocked writes at once; see there.
const writeChunk = 32 << 10

// unsent returns how many bytes the web server has not yet read of those
// written to its socket, or -1 when that cannot be told. Only writeLocked's
// rare path asks.
func (c *conn) unsent() int {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	q := -1
	rc.Control(func(fd uintptr) {
		var v int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&v))); e == 0 {
			q = int(v)
		}
	})
	return q
}

// getValues answers FCGI_GET_VALUES with the variables the spec defines.
func (c *conn) getValues(content []byte) error {
	var out []byte
	err := eachPair(content, func(name, _ []byte) error {
		switch string(name) {
		case "FCGI_MAX_CONNS", "FCGI_MAX_REQS":
			out = appendPair(out, string(name), strconv.Itoa(c.s.maxConns))
		case "FCGI_MPXS_CONNS":
			out = appendPair(out, string(name), "0")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("get values: %w", err)
	}
	return c.writeRecord(typeGetValuesResult, out)
}

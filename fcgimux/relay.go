// This file owns the relay: one request carried to one php-fpm connection.
// The connection's goroutine writes the request up (BEGIN, PARAMS and the
// body, batched in the connection's buffer); the relay's own goroutine
// streams php-fpm's response back. The web server and php-fpm use the same
// request id, so response records pass through unchanged: each read from
// php-fpm is scanned for record boundaries and written to the web server as
// it is, in one write.

package fcgimux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// front is what a relay needs of the web server's connection it carries a
// request for; conn implements it. The conn drives the relay (reset, sendUp,
// abort, abandon, run); the relay answers only through these methods, so it
// reads none of the conn's fields.
type front interface {
	// write passes response records to the web server as they are, in one
	// write serialized with the connection's own.
	write(b []byte) error
	// writeUp writes request bytes to php-fpm on bc. It goes through the
	// connection so that Shutdown's bound can cut a write php-fpm stopped
	// reading (see conn.cutAtBound).
	writeUp(bc *backendConn, b []byte) error
	// writeEnd ends request id with records fpmux makes itself: resp as
	// its STDOUT (none when empty), then END_REQUEST. fail needs it for the
	// 502, 504 and aborted answers, which only the connection can build,
	// since it owns the buffer they are built in.
	writeEnd(id uint16, resp string, appStatus uint32, protocolStatus uint8) error
	// ended is told that the request is over on the connection, err being
	// the last write's error: with nil its response is whole and the
	// connection goes idle (or closes without keepConn); with an error
	// the connection is closed, so that the web server never takes a cut
	// response for a whole one.
	ended(err error, keepConn bool)
}

// relay is the state of one request between its pool connection and the
// web server. A conn keeps one and reuses it for each request it carries.
type relay struct {
	front front // the web server's connection; set once, with the conn
	// Given by reset for each request. s is the server whose settings
	// (backend_timeout), log and refusal counts the request is under;
	// params are the request's as the web server sent them, which the
	// connection goroutine leaves as they are until it has waited for the
	// relay (retry looks up the method in them).
	s        *Server
	params   []byte
	id       uint16
	keepConn bool
	pin      Pin
	bc       *backendConn // swapped by redialUp before run starts, then only by retry, under mu
	start    time.Time
	running  bool          // run was started and not yet waited for; conn goroutine only
	done     chan struct{} // run sends one value as it returns; cap 1, reused

	// upMu serializes the writes of the request to php-fpm (the
	// connection goroutine's) with retry's move of the request to a new
	// pool connection, and guards held. It is never held while waiting for
	// mu's holders, so abandon and abort can close a connection a write is
	// blocked on.
	upMu sync.Mutex
	// held is all of the request written so far, kept while the request is
	// on a kept connection and small enough (see conn.holdUp), so that the
	// request can be sent again when php-fpm turns out to have ended that
	// connection (see retry). It aliases conn.up, whose bytes the
	// connection goroutine leaves alone while they are held.
	held []byte

	ended     atomic.Bool // the response is over (END_REQUEST sent or the request failed)
	mu        sync.Mutex  // guards bc once run started, and the fields below
	stdinDone bool        // the whole body reached php-fpm
	upErr     error
	aborted   bool
	abandoned bool
	retried   bool
	// deferred: php-fpm ended the request cleanly before the body was
	// marked sent, so whether the connection can be reused is the
	// connection goroutine's call (see settleDeferred).
	deferred bool
}

// reset readies the relay for a request: id, begun at start with params,
// pinned to pin and given the pool connection bc.
func (r *relay) reset(s *Server, id uint16, keepConn bool, params []byte, start time.Time, pin Pin, bc *backendConn) {
	r.s, r.id, r.keepConn, r.params, r.start, r.pin, r.bc = s, id, keepConn, params, start, pin, bc
	r.held = nil
	r.ended.Store(false)
	r.stdinDone, r.upErr, r.aborted, r.abandoned, r.retried, r.deferred = false, nil, false, false, false, false
}

// clear drops what the relay holds of its last request, so that a conn
// kept between connections keeps nothing of it alive.
func (r *relay) clear() {
	r.s, r.params, r.pin, r.bc, r.held = nil, nil, Pin{}, nil, nil
}

// pool returns the pool connection the request is on now.
func (r *relay) pool() *backendConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bc
}

// retry sends the request again on a new pool connection after the kept
// one it was sent on failed before php-fpm answered anything, err being the
// read's error; what of the request is still to come goes there too. php-fpm ends a kept connection when its child is to exit
// (pm.max_requests): it sends END_REQUEST, then shuts its side for writing
// and reads whatever arrives, discarding it, until fpmux closes. A request
// that crossed that shutdown was read and thrown away, never run, so it is
// sent again whatever its method; that is the case when the read saw end of
// file on a unix socket that still takes writes (see peerDraining). In any
// other case the child may have died running it, and, as nginx does for its
// cached upstream connections, only a method that may be repeated is sent
// again. Either way this is done once, and only when all of the request
// sent so far is still in hand (held). A timeout is no such failure: the
// request is running.
//
// This is the second line of defence: Backend.get does not hand out a kept
// connection php-fpm has already shut (alive), but php-fpm shuts it only
// after END_REQUEST and the rest of its request shutdown (the access log
// line among them), and a connection handed back in that window goes
// straight to a waiting request.
func (r *relay) retry(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	r.upMu.Lock()
	defer r.upMu.Unlock()
	r.mu.Lock()
	bc := r.bc
	ok := !r.retried && bc.reused && r.held != nil && !r.aborted && !r.abandoned
	r.retried = true
	r.mu.Unlock()
	// The method is looked up only now, on this rare path.
	if !ok || !idempotent(r.params) && !(errors.Is(err, io.EOF) && bc.peerDraining()) {
		return false
	}
	nbc, err := r.pin.Backend.redial(bc)
	if err != nil {
		return false
	}
	r.mu.Lock()
	r.bc = nbc
	cut := r.aborted || r.abandoned
	r.mu.Unlock()
	if cut {
		nbc.Close()
		return false
	}
	return r.front.writeUp(nbc, r.held) == nil
}

// redialUp puts the request, not yet written, on a new pool connection in
// place of the kept one it was given. Only before run starts, so r.bc is
// the connection goroutine's alone.
func (r *relay) redialUp() error {
	bc, err := r.pin.Backend.redial(r.bc)
	if err != nil {
		return err // upFailed closes r.bc again, harmlessly
	}
	r.bc = bc
	return nil
}

// sendUp writes up[from:] to php-fpm, the rest of the request as the
// connection goroutine has it, and with hold keeps all of up for retry.
func (r *relay) sendUp(up []byte, from int, hold bool) error {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	r.held = nil
	if hold {
		r.held = up
	}
	return r.front.writeUp(r.bc, up[from:]) // r.bc changes only under upMu
}

// bodySent notes that the whole body reached php-fpm. php-fpm may have
// answered already: the body was whole, so the connection is as good as any.
// From now on BackendTimeout bounds the wait for php-fpm (see run).
func (r *relay) bodySent() {
	r.mu.Lock()
	r.stdinDone = true
	if to := r.s.backendTO; to > 0 {
		r.bc.SetReadDeadline(time.Now().Add(to))
	}
	r.mu.Unlock()
	r.settleDeferred(true)
}

// bodyDone tells whether the whole body reached php-fpm.
func (r *relay) bodyDone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdinDone
}

// settleDeferred disposes of a connection whose fate finish left to the
// connection goroutine: back to the pool when the whole body was sent,
// closed otherwise. Without a deferred connection it does nothing.
func (r *relay) settleDeferred(reuse bool) {
	r.mu.Lock()
	deferred := r.deferred
	r.deferred = false
	r.mu.Unlock()
	if !deferred {
		return
	}
	if reuse {
		r.putBack()
	} else {
		r.bc.Close()
	}
}

// putBack hands the pool connection back for reuse, without the read
// deadline BackendTimeout set on it.
func (r *relay) putBack() {
	if r.s.backendTO > 0 {
		r.bc.SetReadDeadline(time.Time{})
	}
	r.pin.Backend.put(r.bc)
}

// upFailed records that the request could not be written: php-fpm is gone
// or stopped reading. Closing the connection makes run see it.
func (r *relay) upFailed(err error) {
	r.mu.Lock()
	if r.upErr == nil {
		r.upErr = err
	}
	bc := r.bc
	r.mu.Unlock()
	bc.Close()
}

// abort honours FCGI_ABORT_REQUEST: php-fpm has no abort of its own that is
// safe to send, so the relay drops the pool connection, which is how php-fpm
// learns a request is abandoned; run then ends the request.
func (r *relay) abort() { r.cut(&r.aborted) }

// abandon cuts the request because the web server's connection is gone.
func (r *relay) abandon() { r.cut(&r.abandoned) }

// cut sets why (aborted or abandoned) and closes the pool connection,
// unless it is too late: php-fpm ended the request and its connection went
// back to the pool (or was closed), where another request may be using it
// now. One that finish left to the connection goroutine (deferred) is
// closed here instead. Whether to close is decided under mu, where finish
// decides whether the connection goes back to the pool: either finish came
// first and the connection is the pool's now, or finish sees why and keeps
// it out of the pool.
func (r *relay) cut(why *bool) {
	r.mu.Lock()
	*why = true
	bc, cut := r.bc, !r.ended.Load() || r.deferred
	r.deferred = false
	r.mu.Unlock()
	if cut {
		if cutHook != nil {
			cutHook()
		}
		bc.Close()
	}
}

// cutHook, when set (by tests only), runs in cut after it decided to close
// the pool connection and before it does, so a test can run finish in
// between.
var cutHook func()

// run streams php-fpm's response to the web server until END_REQUEST. Each
// read from php-fpm goes out in one write, minus any incomplete record at
// its end, which waits for the rest.
func (r *relay) run() {
	defer func() { r.done <- struct{}{} }()
	buf := getBuf()
	defer putBuf(buf)
	var start, pos, end int // buf[start:pos] is to send; buf[pos:end] is not yet scanned
	status, wrote, got := 0, false, false
	// send writes what is scanned and not yet sent; false: the request
	// failed and is over.
	send := func() bool {
		if pos == start {
			return true
		}
		if err := r.front.write(buf[start:pos]); err != nil {
			r.fail(&frontError{err}, true, status)
			return false
		}
		wrote, start = true, pos
		return true
	}
	// With BackendTimeout, php-fpm has that long to answer once the
	// whole request reached it (bodySent sets the first deadline) and
	// then between two reads, as nginx's fastcgi_read_timeout: a response
	// that keeps coming is never cut, an upload never bounded. The
	// deadline is moved only once it has aged by an eighth of the bound,
	// since moving it costs; moved is when run last did.
	to := r.s.backendTO
	var moved time.Time
	bc := r.pool()
	for {
		n, err := bc.Read(buf[end:])
		if n > 0 {
			bc.answered()
			end += n
			got = true
			if to > 0 {
				if now := time.Now(); now.Sub(moved) > to/8 && r.bodyDone() {
					moved = now
					bc.SetReadDeadline(now.Add(to))
				}
			}
		}
		if err != nil && !got && r.retry(err) {
			bc = r.pool()
			if to > 0 && r.bodyDone() {
				bc.SetReadDeadline(time.Now().Add(to))
			}
			continue
		}
		for end-pos >= headerLen {
			h, herr := parseHeader(buf[pos:end])
			if herr == nil && h.ID != r.id {
				herr = errors.New("php-fpm answered for another request id")
			}
			if herr != nil {
				r.fail(herr, wrote, status)
				return
			}
			recEnd := pos + headerLen + int(h.ContentLength) + int(h.PaddingLength)
			if recEnd > end {
				break
			}
			content := buf[pos+headerLen : pos+headerLen+int(h.ContentLength)]
			switch h.Type {
			case typeStdout, typeStderr:
				if h.Type == typeStdout && status == 0 && len(content) > 0 {
					status = parseStatus(content)
				}
				pos = recEnd
			case typeEndRequest:
				er, perr := parseEndRequest(content)
				if perr != nil {
					r.fail(perr, wrote, status)
					return
				}
				// Bytes after END_REQUEST were never asked for: the
				// connection is not clean enough to reuse.
				r.finish(er, status, buf[start:recEnd], recEnd == end)
				return
			default:
				// Nothing else is part of a response: not forwarded.
				if !send() {
					return
				}
				pos, start = recEnd, recEnd
			}
		}
		if !send() {
			return
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // php-fpm closed without END_REQUEST
			}
			r.fail(err, wrote, status)
			return
		}
		switch {
		case pos == end:
			start, pos, end = 0, 0, 0
		case len(buf)-pos < maxRecordLen:
			end = copy(buf[:], buf[pos:end])
			start, pos = 0, 0
		}
	}
}

// finish ends a request php-fpm completed: the pool connection goes back
// for reuse when the whole body reached php-fpm, the pin is released, and
// only then the web server gets the rest of the response with END_REQUEST
// (out), so a request it sends next on this connection never finds this one
// still counted.
func (r *relay) finish(er endRequest, status int, out []byte, cleanEnd bool) {
	r.mu.Lock()
	r.ended.Store(true)
	clean := cleanEnd && r.upErr == nil && er.ProtocolStatus == statusRequestComplete && !r.aborted && !r.abandoned
	reuse := clean && r.stdinDone
	deferred := clean && !r.stdinDone
	r.deferred = deferred
	r.mu.Unlock()
	switch {
	case reuse:
		r.putBack()
	case !deferred:
		r.bc.Close()
	}
	if status == 0 {
		status = 200
	}
	r.pin.Done(status, time.Since(r.start))
	r.front.ended(r.front.write(out), r.keepConn)
}

// fail ends a request whose pool connection broke. Before any response byte
// went out the web server gets a 502 it can show; after that a made-up
// status would corrupt the response, so the web server's connection is cut
// instead, as net/http/httputil does.
func (r *relay) fail(err error, wrote bool, status int) {
	r.mu.Lock()
	r.ended.Store(true)
	aborted, upErr := r.aborted, r.upErr
	r.mu.Unlock()
	r.bc.Close()
	s := r.s
	var fe *frontError
	timedOut := errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &fe)
	if timedOut {
		s.refusals[RefusedTimeout].Add(1)
	}
	var last error // the last write's, for ended
	switch {
	case aborted:
		r.pin.Done(499, time.Since(r.start))
		last = r.front.writeEnd(r.id, "", 1, statusRequestComplete)
	case wrote:
		if status == 0 {
			status = 200
		}
		r.pin.Done(status, time.Since(r.start))
		switch {
		case errors.Is(err, net.ErrClosed):
		case timedOut:
			s.logRefusal("response cut: php-fpm sent nothing more for backend_timeout", "release", r.pin.Release, "bound", s.backendTO)
		case errors.As(err, &fe) && errors.Is(err, os.ErrDeadlineExceeded):
			s.log.Warn("response cut: the web server stopped reading it for write_timeout", "release", r.pin.Release, "bound", s.writeTO)
		case errors.As(err, &fe):
			s.log.Info("response cut: the web server went away", "release", r.pin.Release, "err", fe.err)
		default:
			s.log.Warn("response cut: pool connection broke mid-response", "release", r.pin.Release, "err", err)
		}
		last = err // not nil: the web server's connection is cut
	case timedOut:
		r.pin.Done(504, time.Since(r.start))
		s.logRefusal("request failed: php-fpm did not answer within backend_timeout", "release", r.pin.Release, "status", 504, "bound", s.backendTO)
		last = r.front.writeEnd(r.id, answerText(504, "release "+r.pin.Release+" did not answer within "+s.backendTO.String()), 0, statusRequestComplete)
	default:
		if upErr != nil {
			err = upErr
		}
		r.pin.Done(502, time.Since(r.start))
		s.log.Warn("request failed: pool connection broke", "release", r.pin.Release, "err", err)
		last = r.front.writeEnd(r.id, answerText(502, "the pool of release "+r.pin.Release+" failed"), 0, statusRequestComplete)
	}
	r.front.ended(last, r.keepConn)
}

// frontError is a failed write to the web server, told apart from a
// failure of the pool connection in what fail logs.
type frontError struct{ err error }

func (e *frontError) Error() string { return "write to the web server: " + e.err.Error() }
func (e *frontError) Unwrap() error { return e.err }

// parseStatus reads the HTTP status from the first bytes of a CGI response:
// its "Status:" header, or 200 when there is none.
func parseStatus(b []byte) int {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b
		if i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		if len(line) > 7 && bytes.EqualFold(line[:7], []byte("status:")) {
			v := bytes.TrimSpace(line[7:])
			if len(v) >= 3 && isDigit(v[0]) && isDigit(v[1]) && isDigit(v[2]) {
				return int(v[0]-'0')*100 + int(v[1]-'0')*10 + int(v[2]-'0')
			}
		}
	}
	return 200
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

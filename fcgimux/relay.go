// This file owns the relay: one request carried to one php-fpm connection,
// its body streamed up by the connection's goroutine and its response
// streamed back by the relay's own goroutine, record by record as php-fpm
// writes them.

package fcgimux

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type relay struct {
	c        *conn
	id       uint16
	keepConn bool
	pin      Pin
	bc       *backendConn
	start    time.Time
	done     chan struct{} // closed when run returns

	ended     atomic.Bool // the response is over (END_REQUEST sent or the request failed)
	mu        sync.Mutex
	stdinDone bool // the whole body reached php-fpm
	upErr     error
	aborted   bool
	// deferred: php-fpm ended the request cleanly before the body was
	// marked sent, so whether the connection can be reused is the
	// connection goroutine's call (see settleDeferred).
	deferred bool
}

func newRelay(c *conn, pin Pin, bc *backendConn) *relay {
	return &relay{
		c: c, id: c.id, keepConn: c.keepConn, pin: pin, bc: bc,
		start: c.started, done: make(chan struct{}),
	}
}

// up queues one STDIN record for php-fpm; an empty one ends the body and is
// flushed at once. Called by the connection's goroutine only.
func (r *relay) up(content []byte) {
	if r.ended.Load() {
		// php-fpm already answered; the rest of the body is dropped, and
		// the connection, whose stream php-fpm left mid-body, is not reused.
		r.settleDeferred(false)
		return
	}
	if err := writeRecord(r.bc.bw, typeStdin, r.id, content); err != nil {
		r.upFailed(err)
		return
	}
	if len(content) > 0 {
		return
	}
	if err := r.bc.bw.Flush(); err != nil {
		r.upFailed(err)
		return
	}
	r.mu.Lock()
	r.stdinDone = true
	r.mu.Unlock()
	// php-fpm may have answered while the last record was being flushed:
	// the body was whole, so the connection is as good as any.
	r.settleDeferred(true)
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
		r.pin.Backend.put(r.bc)
	} else {
		r.bc.Close()
	}
}

func (r *relay) flushUp() error {
	if r.ended.Load() || r.bc.bw.Buffered() == 0 {
		return nil
	}
	return r.bc.bw.Flush()
}

// upFailed records that the body could not be written: php-fpm is gone or
// stopped reading. Closing the connection makes run see it.
func (r *relay) upFailed(err error) {
	r.mu.Lock()
	if r.upErr == nil {
		r.upErr = err
	}
	r.mu.Unlock()
	r.bc.Close()
}

// abort honours FCGI_ABORT_REQUEST: php-fpm has no abort of its own that is
// safe to send, so the relay drops the pool connection, which is how php-fpm
// learns a request is abandoned; run then ends the request.
func (r *relay) abort() {
	r.mu.Lock()
	r.aborted = true
	r.mu.Unlock()
	r.bc.Close()
}

// abandon cuts the request because the web server's connection is gone.
func (r *relay) abandon() {
	if !r.ended.Load() {
		r.bc.Close()
	}
	r.settleDeferred(false)
}

// run streams php-fpm's response to the web server until END_REQUEST.
func (r *relay) run() {
	defer close(r.done)
	c := r.c
	rr := r.bc.rr()
	status, wrote := 0, false
	for {
		if r.bc.br.Buffered() == 0 && wrote {
			// php-fpm has nothing more queued: send what we hold.
			c.wmu.Lock()
			err := c.bw.Flush()
			c.wmu.Unlock()
			if err != nil {
				r.fail(err, true, status)
				return
			}
		}
		h, content, err := rr.next()
		r.bc.answered()
		if err == nil && h.ID != r.id {
			err = errors.New("php-fpm answered for another request id")
		}
		if err != nil {
			r.fail(err, wrote, status)
			return
		}
		switch h.Type {
		case typeStdout, typeStderr:
			if h.Type == typeStdout && status == 0 && len(content) > 0 {
				status = parseStatus(content)
			}
			c.wmu.Lock()
			err = writeRecord(c.bw, h.Type, r.id, content)
			c.wmu.Unlock()
			if err != nil {
				r.fail(err, true, status)
				return
			}
			wrote = true
		case typeEndRequest:
			er, err := parseEndRequest(content)
			if err != nil {
				r.fail(err, wrote, status)
				return
			}
			r.finish(er, status)
			return
		}
	}
}

// finish ends a request php-fpm completed: the pool connection goes back
// for reuse when the whole body reached php-fpm, the pin is released, and
// only then the web server sees END_REQUEST, so a request it sends next on
// this connection never finds this one still counted.
func (r *relay) finish(er endRequest, status int) {
	r.mu.Lock()
	r.ended.Store(true)
	clean := r.upErr == nil && er.ProtocolStatus == statusRequestComplete
	reuse := clean && r.stdinDone
	deferred := clean && !r.stdinDone
	r.deferred = deferred
	r.mu.Unlock()
	switch {
	case reuse:
		r.pin.Backend.put(r.bc)
	case !deferred:
		r.bc.Close()
	}
	if status == 0 {
		status = 200
	}
	r.pin.Done(status, time.Since(r.start))
	r.c.finishRequest(r.id, er.AppStatus, er.ProtocolStatus, r.keepConn)
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
	c := r.c
	switch {
	case aborted:
		r.pin.Done(499, time.Since(r.start))
		c.finishRequest(r.id, 1, statusRequestComplete, r.keepConn)
	case wrote:
		if status == 0 {
			status = 200
		}
		r.pin.Done(status, time.Since(r.start))
		if !errors.Is(err, net.ErrClosed) {
			c.s.log.Warn("response cut: pool connection broke mid-response", "release", r.pin.Release, "err", err)
		}
		c.nc.Close()
	default:
		if upErr != nil {
			err = upErr
		}
		r.pin.Done(502, time.Since(r.start))
		c.s.log.Warn("request failed: pool connection broke", "release", r.pin.Release, "err", err)
		c.answerFrom(r.id, r.keepConn, 502, "the pool of release "+r.pin.Release+" failed")
	}
}

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
			if len(v) >= 3 {
				if n, err := strconv.Atoi(string(v[:3])); err == nil {
					return n
				}
			}
		}
	}
	return 200
}

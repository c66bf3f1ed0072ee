// This file owns one connection from the web server: the loop that reads its
// records, the state of the request being read, and the answers fpmux gives
// itself (errors, management records).

package fcgimux

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
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
// (and its input dropped) after its response ended, waiting for the web
// server to close it.
const lingerTimeout = 5 * time.Second

type conn struct {
	s  *Server
	nc net.Conn
	br *bufio.Reader
	rr *recordReader

	wmu sync.Mutex // guards bw: the relay's goroutine writes responses too
	bw  *bufio.Writer

	// Owned by the serve goroutine.
	id        uint16
	keepConn  bool
	phase     phase
	params    []byte
	out       []byte
	ends      []int
	rel       *relay
	stdinDone bool
	started   time.Time

	mu           sync.Mutex // guards busy, idleDeadline and the read deadline
	busy         bool
	idleDeadline time.Time
}

// serve reads records until the connection closes, fails, or is shut down.
func (c *conn) serve() {
	defer c.s.forget(c)
	defer c.nc.Close()
	defer c.endRelay()
	for {
		if c.br.Buffered() == 0 {
			// About to block on the web server: push out what is queued
			// for php-fpm first, so records batch into few writes.
			if c.rel != nil && !c.stdinDone {
				if err := c.rel.flushUp(); err != nil {
					c.rel.upFailed(err)
				}
			}
			c.setReadDeadline()
		}
		h, content, err := c.rr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.phase != phaseNone {
				c.s.log.Info("web server connection ended mid-request", "err", err)
			}
			return
		}
		if err := c.handle(h, content); err != nil {
			c.s.log.Warn("closing web server connection", "err", err)
			return
		}
	}
}

// endRelay waits for the relay of the current request, cutting it first:
// the connection is going away, so its request is abandoned. The web
// server's side is closed too, so a relay blocked writing to a client that
// stopped reading returns at once.
func (c *conn) endRelay() {
	if c.rel == nil {
		return
	}
	c.nc.Close()
	c.rel.abandon()
	<-c.rel.done
	c.rel = nil
}

// setReadDeadline picks the bound for the next read: ReadTimeout while a
// request is being read, none while its response is produced (a slow script
// is bounded by the pool, not here), and the idle deadline between requests.
func (c *conn) setReadDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Time
	switch {
	case c.phase == phaseParams || c.phase == phaseRelaying && !c.stdinDone:
		d = time.Now().Add(c.s.readTO)
	case c.phase == phaseRelaying && !c.rel.ended.Load():
	default:
		d = c.idleDeadline
	}
	c.nc.SetReadDeadline(d)
}

// requestEnded marks the connection idle once a response is complete.
func (c *conn) requestEnded(keepConn bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	if !keepConn {
		// Like php-fpm: shut the write side and read until the web server
		// closes, so it never sees a reset while sending the rest of a body.
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.nc.Close()
		}
		c.idleDeadline = time.Now().Add(lingerTimeout)
	} else {
		c.idleDeadline = time.Now().Add(c.s.idleTO)
	}
	c.nc.SetReadDeadline(c.idleDeadline)
	if c.s.inShutdown.Load() {
		c.nc.Close()
	}
}

// closeIfIdle closes the connection if it carries no request; it is how
// Shutdown lets idle keep-alive connections go.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		c.nc.Close()
	}
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
			c.answer(431, fmt.Sprintf("request params exceed %d bytes", c.s.maxParams))
			return nil
		}
		c.params = append(c.params, content...)
	case typeStdin:
		if h.ID != c.id || c.phase != phaseRelaying || c.stdinDone {
			return nil // body of a request fpmux already answered, or no request
		}
		if len(content) == 0 {
			c.stdinDone = true
		}
		c.rel.up(content)
	case typeAbortRequest:
		if h.ID != c.id {
			return nil
		}
		switch c.phase {
		case phaseParams:
			c.phase = phaseAnswered
			c.finishRequest(h.ID, 0, statusRequestComplete, c.keepConn)
		case phaseRelaying:
			c.rel.abort()
		}
	case typeData, typeStdout, typeStderr, typeEndRequest, typeGetValuesResult, typeUnknownType:
		// Not sent by a web server to an application; dropped.
	default:
		var b [8]byte
		b[0] = byte(h.Type)
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if err := writeRecord(c.bw, typeUnknownType, 0, b[:]); err != nil {
			return err
		}
		return c.bw.Flush()
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
		c.writeEnd(h.ID, 0, statusCantMpxConn)
		return nil
	}
	br, err := parseBeginRequest(content)
	if err != nil {
		return err
	}
	if c.rel != nil {
		<-c.rel.done // its goroutine is past END_REQUEST; let it finish
		c.rel.settleDeferred(false)
		c.rel = nil
	}
	if br.Role != roleResponder {
		c.writeEnd(h.ID, 0, statusUnknownRole)
		return nil
	}
	c.mu.Lock()
	c.busy = true
	c.mu.Unlock()
	c.id, c.keepConn, c.phase, c.stdinDone = h.ID, br.KeepConn, phaseParams, false
	c.params = c.params[:0]
	c.started = time.Now()
	return nil
}

// startRelay pins the request to a release, rewrites its params and sends
// them to that release's pool; from then on the relay carries it.
func (c *conn) startRelay() {
	pin, err := c.s.router.Pin()
	if err != nil {
		if errors.Is(err, ErrNoRelease) {
			c.answer(503, "no active release")
		} else {
			c.answer(503, err.Error())
		}
		return
	}
	p := pinnedPaths{docroot: c.s.docroot, root: pin.Root, release: pin.Release, reserved: c.s.reserved}
	c.out, c.ends, err = rewriteParams(c.out[:0], c.ends[:0], c.params, p)
	if err != nil {
		status, msg := 400, "malformed params"
		var rej *rejectError
		if errors.As(err, &rej) {
			status, msg = rej.status, "not found"
			c.s.log.Warn("request refused", "release", pin.Release, "status", rej.status, "reason", rej.reason)
		} else {
			c.s.log.Warn("request refused", "release", pin.Release, "status", status, "reason", err)
		}
		pin.Done(status, time.Since(c.started))
		c.answer(status, msg)
		return
	}
	bc, err := c.sendParams(pin.Backend)
	if err != nil {
		status, msg := 502, "the pool of release "+pin.Release+" did not answer"
		var rej *rejectError
		if errors.As(err, &rej) {
			status, msg = rej.status, rej.reason
		}
		c.s.log.Warn("request failed", "release", pin.Release, "status", status, "err", err)
		pin.Done(status, time.Since(c.started))
		c.answer(status, msg)
		return
	}
	c.phase = phaseRelaying
	c.rel = newRelay(c, pin, bc)
	go c.rel.run()
}

// sendParams writes BEGIN_REQUEST and the params to a pool connection. A
// reused connection that turns out dead (its child exited after
// pm.max_requests, say) is replaced by a new one once: nothing of the
// request has reached php-fpm yet, so resending is safe.
func (c *conn) sendParams(b *Backend) (*backendConn, error) {
	bc, err := b.get()
	if err != nil {
		return nil, err
	}
	for {
		err = writeBeginRequest(bc.bw, c.id, true)
		if err == nil {
			err = writeParams(bc.bw, c.id, c.out, c.ends)
		}
		if err == nil {
			err = bc.bw.Flush()
		}
		if err == nil {
			return bc, nil
		}
		bc.Close()
		var rej *rejectError
		if !bc.reused || errors.As(err, &rej) {
			return nil, err
		}
		if bc, err = b.dial(); err != nil {
			return nil, err
		}
	}
}

// answer ends the current request with a response fpmux writes itself.
func (c *conn) answer(status int, msg string) {
	c.phase = phaseAnswered
	c.answerFrom(c.id, c.keepConn, status, msg)
}

// answerFrom writes a whole response for request id: a short plain-text body
// with the status, then END_REQUEST. The relay's goroutine uses it too.
func (c *conn) answerFrom(id uint16, keepConn bool, status int, msg string) {
	body := "fpmux: " + msg + "\n"
	resp := "Status: " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Cache-Control: no-store\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	c.wmu.Lock()
	err := writeStream(c.bw, typeStdout, id, []byte(resp))
	if err == nil {
		err = writeRecord(c.bw, typeStdout, id, nil)
	}
	c.wmu.Unlock()
	if err != nil {
		c.nc.Close()
		return
	}
	c.finishRequest(id, 0, statusRequestComplete, keepConn)
}

// finishRequest writes END_REQUEST for the current request, flushes, and
// marks the connection idle. A write failure closes the connection.
func (c *conn) finishRequest(id uint16, appStatus uint32, protocolStatus uint8, keepConn bool) {
	c.wmu.Lock()
	err := writeEndRequest(c.bw, id, appStatus, protocolStatus)
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.nc.Close()
		return
	}
	c.requestEnded(keepConn)
}

// writeEnd writes a lone END_REQUEST refusing a request that never began.
func (c *conn) writeEnd(id uint16, appStatus uint32, protocolStatus uint8) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if writeEndRequest(c.bw, id, appStatus, protocolStatus) != nil || c.bw.Flush() != nil {
		c.nc.Close()
	}
}

// getValues answers FCGI_GET_VALUES with the variables the spec defines.
func (c *conn) getValues(content []byte) error {
	var out []byte
	err := eachPair(content, func(name, _ []byte) error {
		switch string(name) {
		case "FCGI_MAX_CONNS", "FCGI_MAX_REQS":
			out = appendPair(out, string(name), "10000")
		case "FCGI_MPXS_CONNS":
			out = appendPair(out, string(name), "0")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("get values: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := writeRecord(c.bw, typeGetValuesResult, 0, out); err != nil {
		return err
	}
	return c.bw.Flush()
}

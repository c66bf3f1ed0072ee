// This file owns the front's side of an in-place upgrade of fpmux: the
// server before it hands every kept web server connection to the next
// fpmux between two requests (Handoff), and the next one serves what it
// is handed (Adopt). A kept connection is never closed on the web server's
// side, so no request it sends at that instant can be lost; nginx resends
// only idempotent requests on a kept connection that closed under them.

package fcgimux

import (
	"context"
	"net"
	"time"
)

// Handoff stops accepting and lets every connection go as Shutdown does,
// except that a connection carrying FCGI_KEEP_CONN is given to pass
// instead of being closed, once it is between requests and nothing of the
// next request has been read from it: at once when idle, right after its
// response when busy. pass owns nothing it is given: it must duplicate the
// connection's descriptor (the server closes its own copy) and report
// whether the next fpmux took it; a connection it refuses is closed as
// Shutdown would. Requests in flight when ctx ends are cut, as by Shutdown.
func (s *Server) Handoff(ctx context.Context, pass func(net.Conn) bool) error {
	s.pass.Store(&pass)
	return s.Shutdown(ctx)
}

// Adopt serves a connection another fpmux handed over, between requests:
// it gets the idle timeout of a kept connection. It returns false (and
// the caller closes nc) when the server is shutting down or full.
func (s *Server) Adopt(nc net.Conn) bool {
	c := s.newConn(nc)
	if c == nil {
		return false
	}
	c.idleDeadline = time.Now().Add(s.idleTO)
	s.run(task{c: c})
	return true
}

// handOff gives the connection to Handoff's pass when it is between
// requests: idle, no byte of a next request read, no body still coming.
// It returns true when pass took it; the caller then lets go of it.
func (c *conn) handOff() bool {
	pass := c.s.pass.Load()
	if pass == nil {
		return false
	}
	c.mu.Lock()
	idle := c.closing && !c.busy
	c.mu.Unlock()
	between := c.phase == phaseNone || c.keepConn && (c.phase == phaseAnswered || c.phase == phaseRelaying && c.stdinDone)
	if !idle || !between || c.rr.buffered() > 0 {
		return false
	}
	if c.relActive {
		c.waitRelay() // past END_REQUEST; its pool connection is settled
	}
	return (*pass)(c.nc)
}

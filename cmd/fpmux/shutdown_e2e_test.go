// This file holds fpmux to its shutdown bound: SIGTERM to exit takes at most
// drain_timeout + php_fpm.stop_timeout, whatever the requests in flight are
// doing, and leaves no php-fpm process behind.

package main

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The stack's bounds (newStack writes stop_timeout: 5s) and the margin a
// busy machine gets on top: the test checks a bound from the spec, not a
// speed.
const (
	shutdownDrain = 2 * time.Second
	shutdownStop  = 5 * time.Second
	shutdownSlack = 10 * time.Second
)

// sigtermWithinBound sends SIGTERM and checks that fpmux exited within
// drain_timeout + stop_timeout (+ slack) and that no php-fpm process of the
// test is left.
func (s *stack) sigtermWithinBound() {
	s.t.Helper()
	s.notePgids()
	start := time.Now()
	s.stopFpmux(syscall.SIGTERM)
	took := time.Since(start)
	bound := shutdownDrain + shutdownStop + shutdownSlack
	s.t.Logf("SIGTERM to exit: %v (drain_timeout %v, stop_timeout %v)", took.Round(10*time.Millisecond), shutdownDrain, shutdownStop)
	if took > bound {
		s.t.Errorf("fpmux exited %v after SIGTERM, over drain_timeout + stop_timeout + %v slack = %v", took.Round(10*time.Millisecond), shutdownSlack, bound)
	}
	if left := s.phpFPMProcesses(); len(left) > 0 {
		s.t.Errorf("php-fpm processes left after fpmux exited: %v", left)
	}
}

// TestSIGTERMBoundHoldsWithABodyPHPDoesNotRead: a script that sleeps and
// never reads its input (a PUT, or a POST over post_max_size, which PHP
// does not read) stops fpmux's write of the body to php-fpm once the socket
// buffers are full. SIGTERM must still end fpmux within its bound; it used
// to wait for the script to end (40 s here).
func TestSIGTERMBoundHoldsWithABodyPHPDoesNotRead(t *testing.T) {
	for _, tc := range []struct {
		name, method, contentType string
		ini                       map[string]string
	}{
		{name: "PUT", method: "PUT", contentType: "application/octet-stream"},
		{name: "POST over post_max_size", method: "POST", contentType: "application/x-www-form-urlencoded",
			ini: map[string]string{"post_max_size": "1M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, stackOptions{drainTimeout: shutdownDrain.String(), ini: tc.ini})
			s.deploy("r1")
			const bodyLen = 8 << 20
			c := s.dialFCGI()
			c.nc.SetDeadline(time.Now().Add(120 * time.Second))
			script := "/index.php"
			pairs := fcgiPairs("SCRIPT_FILENAME", s.docroot+script, "DOCUMENT_ROOT", s.docroot, "SCRIPT_NAME", script,
				"REQUEST_URI", script+"?ms=40000", "DOCUMENT_URI", script, "QUERY_STRING", "ms=40000",
				"REQUEST_METHOD", tc.method, "CONTENT_TYPE", tc.contentType, "CONTENT_LENGTH", "8388608",
				"SERVER_PROTOCOL", "HTTP/1.1", "GATEWAY_INTERFACE", "CGI/1.1", "SERVER_NAME", "localhost", "REMOTE_ADDR", "127.0.0.1")
			c.send(append(append(fcgiBegin(1, fcgiRoleResponder, true), fcgiStream(fcgiParams, 1, pairs)...), fcgiRecord(fcgiParams, 1, nil)...))
			var sent atomic.Int64
			writerDone := make(chan struct{})
			go func() {
				defer close(writerDone)
				rec := fcgiRecord(fcgiStdin, 1, make([]byte, 32<<10))
				for sent.Load() < bodyLen {
					if _, err := c.nc.Write(rec); err != nil {
						return
					}
					sent.Add(32 << 10)
				}
			}()
			t.Cleanup(func() {
				c.nc.Close()
				<-writerDone
			})
			s.waitFor("the request to be in flight on r1", 20*time.Second, func() bool {
				return s.releasesByID()["r1"].InFlight == 1
			})
			// The body stalls once php-fpm's socket buffer is full: fpmux is
			// blocked writing to it.
			last, still := int64(-1), 0
			s.waitFor("the body to stall", 30*time.Second, func() bool {
				if n := sent.Load(); n == last {
					still++
				} else {
					last, still = n, 0
				}
				return still >= 25 // 0.5 s without progress
			})
			if n := sent.Load(); n >= bodyLen {
				t.Fatalf("the whole body went out (%d bytes): php-fpm read it, the case is not made", n)
			}
			t.Logf("%s: %d of %d body bytes taken before it stalled", tc.name, sent.Load(), bodyLen)
			s.sigtermWithinBound()
		})
	}
}

// TestSIGTERMBoundHoldsWithAScriptThatOutlivesIt: a GET whose script runs
// past drain_timeout is cut there, and its pool stopped by force.
func TestSIGTERMBoundHoldsWithAScriptThatOutlivesIt(t *testing.T) {
	s := newStack(t, stackOptions{drainTimeout: shutdownDrain.String()})
	s.deploy("r1")
	slow := s.slowRequestInFlight("r1", 40000)
	s.sigtermWithinBound()
	if r := <-slow; r.err == nil && r.status == 200 {
		t.Fatalf("the request that outlived drain_timeout was not cut: %q", r.body)
	}
}

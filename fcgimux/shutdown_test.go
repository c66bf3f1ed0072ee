package fcgimux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deafPool stands in for php-fpm running a script that never reads its
// input (a PUT it ignores, a POST over post_max_size): it accepts
// connections and reads nothing from them, so a request body written to it
// blocks once the socket buffers are full.
type deafPool struct {
	addr     string
	accepted atomic.Int64
}

func startDeafPool(t *testing.T) *deafPool {
	t.Helper()
	p := &deafPool{addr: filepath.Join(t.TempDir(), "deaf.sock")}
	ln, err := net.Listen("unix", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			p.accepted.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return p
}

// serveOneClient starts a Server that the test shuts down itself, and one
// client connection to it, with bounds long enough for a busy machine.
func serveOneClient(t *testing.T, router Router) (*Server, <-chan error, *rawClient) {
	t.Helper()
	s, err := NewServer(Options{Docroot: testDocroot, Router: router, ReadTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	front, served := serveUnix(t, s)
	c := dialRaw(t, front)
	c.nc.SetDeadline(time.Now().Add(60 * time.Second))
	return s, served, c
}

// TestShutdownBoundCutsABodyPHPDoesNotRead: at Shutdown's bound the
// connection's goroutine may be blocked writing a request body to php-fpm,
// which a script that never reads its input holds for as long as it runs.
// The bound still holds: Shutdown returns soon after ctx ends, having
// released the request's pin.
func TestShutdownBoundCutsABodyPHPDoesNotRead(t *testing.T) {
	p := startDeafPool(t)
	router := &testRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: NewBackend("unix", p.addr, 0, 1)}}
	s, served, c := serveOneClient(t, router)
	const bodyLen = 8 << 20
	head := request(1, true, "", phpParams("/put.php", "REQUEST_METHOD", "PUT", "CONTENT_LENGTH", "8388608")...)
	c.send(head[:len(head)-headerLen]) // all but the empty STDIN that ends the body
	var sent atomic.Int64
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		chunk := make([]byte, 32<<10)
		var rec []byte
		for sent.Load() < bodyLen {
			rec = appendRecord(rec[:0], typeStdin, 1, chunk)
			if _, err := c.nc.Write(rec); err != nil {
				return
			}
			sent.Add(int64(len(chunk)))
		}
	}()
	t.Cleanup(func() {
		c.nc.Close()
		<-writerDone
	})

	// Wait until the body stalls: fpmux is blocked writing it to the pool.
	deadline := time.Now().Add(20 * time.Second)
	last, still := int64(-1), 0
	for still < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the body never stalled: %d bytes sent, %d pool connections", sent.Load(), p.accepted.Load())
		}
		time.Sleep(20 * time.Millisecond)
		if n := sent.Load(); n == last && n > 0 && p.accepted.Load() > 0 {
			still++
		} else {
			last, still = n, 0
		}
	}
	if sent.Load() >= bodyLen {
		t.Fatalf("the whole body went out (%d bytes): the pool stand-in read it", sent.Load())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- s.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the bound's context.DeadlineExceeded", err)
		}
		t.Logf("Shutdown returned %v after it was called with a 200ms bound", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		// Unblock the write so the test's goroutines can end.
		router.pin.Backend.Close()
		t.Fatalf("Shutdown still waiting %v after its 200ms bound: the write of the body to php-fpm holds it", time.Since(start).Round(time.Millisecond))
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("serve returned %v", err)
	}
	if got := router.doneCodes(); len(got) != 1 {
		t.Errorf("Done called with %v, want once", got)
	}
	if n := router.pin.Backend.Open(); n != 0 {
		t.Errorf("%d pool connections open after Shutdown, want 0", n)
	}
}

// TestShutdownGivesAFreshConnectionItsRequest: a web server writes its
// request right after connecting, so a connection accepted just before
// Shutdown, with no record read yet, is waited for (freshGrace) and its
// request served whole; one that stays silent is closed once that passes.
// A kept idle connection, which has served a request, is not waited for.
func TestShutdownGivesAFreshConnectionItsRequest(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	for _, tc := range []struct {
		name   string
		served bool          // a request was served on the connection before Shutdown
		after  time.Duration // when the request is sent, after Shutdown began
		send   bool
	}{
		{name: "fresh, request at once", send: true},
		{name: "fresh, request 200ms late", after: 200 * time.Millisecond, send: true},
		{name: "fresh, silent"},
		{name: "kept and idle", served: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, served, c := serveOneClient(t, newTestRouter(b, 1))
			if tc.served {
				c.send(request(1, true, "first", phpParams("/index.php")...))
				c.read(1)
			}
			waitOpen(t, s, 1)
			shut := make(chan error, 1)
			start := time.Now()
			go func() { shut <- s.Shutdown(context.Background()) }()
			if tc.send {
				time.Sleep(tc.after)
				c.send(request(1, true, "late", phpParams("/index.php")...))
				if r := c.read(1); !strings.Contains(r.stdout, "body=late") {
					t.Fatalf("the request of the fresh connection got %q", r.stdout)
				}
			}
			if _, _, err := c.rr.next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after Shutdown: %v, want the connection closed", err)
			}
			waited := time.Since(start)
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Fatalf("serve returned %v", err)
			}
			if !tc.send && !tc.served && waited < freshGrace {
				t.Errorf("the silent fresh connection was closed after %v, before freshGrace (%v)", waited, freshGrace)
			}
		})
	}
}

// TestShutdownBoundCutsASlowScript: when Shutdown's bound passes, a request
// whose script is still running is cut, with or without FCGI_KEEP_CONN
// (without it the serve goroutine streams the response itself: see
// runInline), its pin released and its pool connection closed, and
// Shutdown returns the bound's error instead of waiting for the script.
func TestShutdownBoundCutsASlowScript(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep_conn=%v", keep), func(t *testing.T) {
			release := make(chan struct{})
			b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
				<-release
			})
			t.Cleanup(func() { close(release) })
			router := newTestRouter(b, 1)
			s, err := NewServer(Options{Docroot: testDocroot, Router: router})
			if err != nil {
				t.Fatal(err)
			}
			addr, served := serveUnix(t, s)
			c := dialRaw(t, addr)
			c.send(request(1, keep, "", phpParams("/slow.php")...))
			for b.requests.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(ctx) }()
			select {
			case err := <-shut:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown = %v, want the bound's context.DeadlineExceeded", err)
				}
			case <-time.After(15 * time.Second):
				router.pin.Backend.Close()
				t.Fatal("Shutdown still waiting 15s after its 200ms bound: the running script holds it")
			}
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Errorf("serve returned %v", err)
			}
			if _, _, err := c.rr.next(); err == nil {
				t.Error("the web server's connection still open after the bound")
			}
			if got := router.doneCodes(); len(got) != 1 {
				t.Errorf("Done called with %v, want once", got)
			}
			if n := router.pin.Backend.Open(); n != 0 {
				t.Errorf("%d pool connections open after Shutdown, want 0", n)
			}
		})
	}
}

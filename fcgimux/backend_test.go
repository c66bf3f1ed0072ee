package fcgimux

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startAppServer runs a Server in front of a recordApp and returns the
// router, to read its done codes, and the front address.
func startAppServer(t *testing.T, app *recordApp, maxIdle int) (*testRouter, string) {
	t.Helper()
	return startAppServerBounded(t, app, 0, maxIdle)
}

func startAppServerBounded(t *testing.T, app *recordApp, maxOpen, maxIdle int) (*testRouter, string) {
	t.Helper()
	network, addr := app.addr()
	router := &testRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: NewBackend(network, addr, maxOpen, maxIdle)}}
	_, front := startServer(t, router)
	t.Cleanup(router.pin.Backend.Close)
	return router, front
}

func getRequest(id uint16) []byte {
	return request(id, true, "", "SCRIPT_FILENAME", testDocroot+"/index.php", "REQUEST_METHOD", "GET")
}

// TestPoolClosingKeptConnectionsFailsNothing is php-fpm with
// pm.max_requests = 1: every child closes its connection right after its
// response, whatever FCGI_KEEP_CONN asked. No request may fail for finding
// a kept connection dead, over unix sockets or TCP, one client or several.
func TestPoolClosingKeptConnectionsFailsNothing(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			app := startRecordApp(t, network, recordAppOptions{resp: pageResponse("page"), closeAfter: true})
			router, front := startAppServer(t, app, 4)
			const clients, each = 4, 50
			var wg sync.WaitGroup
			errs := make(chan string, clients*each)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := dialRaw(t, front)
					for range each {
						c.send(getRequest(1))
						if r := c.read(1); !strings.HasSuffix(r.stdout, "page") {
							errs <- fmt.Sprintf("response %q", r.stdout)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if n := app.requests.Load(); n != clients*each {
				t.Errorf("the pool answered %d requests, want %d", n, clients*each)
			}
			for _, code := range router.doneCodes() {
				if code != 200 {
					t.Fatalf("a request ended with %d", code)
				}
			}
		})
	}
}

// TestRetryAfterKeptConnectionFails: the kept connection a request was
// sent on ends before php-fpm answered. When php-fpm shut it for writing
// and drains it, as it does after pm.max_requests, the request was thrown
// away unrun and is sent again whatever its method. When it was closed
// after reading the request (a child that died), only a GET or HEAD is sent
// again; a POST gets the 502, since it may have run.
func TestRetryAfterKeptConnectionFails(t *testing.T) {
	tests := []struct {
		how       string
		method    string
		wantCode  int
		wantConns int64
	}{
		{"drained", "GET", 200, 2},
		{"drained", "POST", 200, 2},
		{"drained", "PATCH", 200, 2},
		{"closed", "GET", 200, 2},
		{"closed", "HEAD", 200, 2},
		{"closed", "POST", 502, 1},
		{"closed", "PATCH", 502, 1},
	}
	for _, tt := range tests {
		t.Run(tt.how+" "+tt.method, func(t *testing.T) {
			o := recordAppOptions{resp: pageResponse("page"), dropSecond: tt.how == "closed", drainSecond: tt.how == "drained"}
			app := startRecordApp(t, "unix", o)
			router, front := startAppServer(t, app, 4)
			c := dialRaw(t, front)
			c.send(getRequest(1)) // the first request leaves the connection kept
			if r := c.read(1); !strings.HasSuffix(r.stdout, "page") {
				t.Fatalf("first response %q", r.stdout)
			}
			c.send(request(1, true, "x=1", "SCRIPT_FILENAME", testDocroot+"/index.php", "REQUEST_METHOD", tt.method))
			r := c.read(1)
			codes := router.doneCodes()
			if got := codes[len(codes)-1]; got != tt.wantCode {
				t.Errorf("second request ended with %d (%q), want %d", got, r.stdout, tt.wantCode)
			}
			if n := app.conns.Load(); n != tt.wantConns {
				t.Errorf("the pool saw %d connections, want %d", n, tt.wantConns)
			}
		})
	}
}

// TestBytesAfterEndRequestDropTheConnection: a pool connection on which
// php-fpm sent something unasked after END_REQUEST, in the same write, is
// not reused. (Bytes sent later are not looked for on a unix socket: see
// backendConn.alive. php-fpm sends nothing after END_REQUEST.)
func TestBytesAfterEndRequestDropTheConnection(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{
		resp: append(pageResponse("page"), appendRecord(nil, typeStdout, 1, []byte("late"))...),
	})
	_, front := startAppServer(t, app, 4)
	c := dialRaw(t, front)
	for i := range 3 {
		c.send(getRequest(1))
		if r := c.read(1); r.stdout != "Content-type: text/html; charset=UTF-8\r\n\r\npage" {
			t.Fatalf("response %d: %q", i, r.stdout)
		}
	}
	if n := app.conns.Load(); n != 3 {
		t.Errorf("the pool saw %d connections for 3 requests, want 3 (none reused)", n)
	}
}

// TestResponseRecordsPassThrough: STDOUT and STDERR reach the web server
// as php-fpm sent them, and a record type that has no place in a response
// is dropped.
func TestResponseRecordsPassThrough(t *testing.T) {
	var extra []byte
	extra = appendRecord(extra, typeStderr, 1, []byte("PHP Notice: x"))
	extra = appendRecord(extra, typeGetValuesResult, 1, []byte("junk"))
	extra = appendStream(extra, typeStdout, 1, []byte(strings.Repeat("b", 70000)))
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("a", extra)})
	_, front := startAppServer(t, app, 4)
	c := dialRaw(t, front)
	c.send(getRequest(1))
	r := c.read(1) // read fails the test on a record type other than STDOUT, STDERR, END
	if want := "Content-type: text/html; charset=UTF-8\r\n\r\na" + strings.Repeat("b", 70000); r.stdout != want {
		t.Errorf("stdout: %d bytes, want %d", len(r.stdout), len(want))
	}
	if r.stderr != "PHP Notice: x" {
		t.Errorf("stderr %q", r.stderr)
	}
}

// TestIdlePoolConnectionsExpire: a kept pool connection unused for the
// idle timeout is closed, giving php-fpm its child back.
func TestIdlePoolConnectionsExpire(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page")})
	router, front := startAppServer(t, app, 4)
	b := router.pin.Backend
	b.idleTimeout = 50 * time.Millisecond
	c := dialRaw(t, front)
	c.send(getRequest(1))
	c.read(1)
	if n := b.Idle(); n != 1 {
		t.Fatalf("%d idle pool connections after a request, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Idle() > 0 || app.openConns() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d idle, %d open at the pool", b.Idle(), app.openConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.send(getRequest(1)) // and the next request dials again
	if r := c.read(1); !strings.HasSuffix(r.stdout, "page") {
		t.Fatalf("response after expiry %q", r.stdout)
	}
	if n := app.conns.Load(); n != 2 {
		t.Errorf("the pool saw %d connections, want 2", n)
	}
}

// TestBackendKeepsAtMostMaxIdle: however many requests ran at once, no more
// than maxIdle connections stay open afterwards.
func TestBackendKeepsAtMostMaxIdle(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page")})
	router, front := startAppServer(t, app, 2)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialRaw(t, front)
			for range 20 {
				c.send(getRequest(1))
				c.read(1)
			}
		}()
	}
	wg.Wait()
	if n := router.pin.Backend.Idle(); n > 2 {
		t.Errorf("%d idle pool connections, want at most 2", n)
	}
	router.pin.Backend.Close()
	deadline := time.Now().Add(5 * time.Second)
	for app.openConns() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d pool connections still open 5s after Close", app.openConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBackendBoundsOpenConnections: with maxOpen set (pm.max_children), 8
// clients at once share 2 pool connections: requests beyond them wait in
// fpmux and take over a connection as it finishes, instead of each dialing
// one that php-fpm would close after a single request.
func TestBackendBoundsOpenConnections(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page")})
	router, front := startAppServerBounded(t, app, 2, 1)
	var wg sync.WaitGroup
	var peakMu sync.Mutex
	peak := 0
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialRaw(t, front)
			for range 50 {
				c.send(getRequest(1))
				if r := c.read(1); !strings.HasSuffix(r.stdout, "page") {
					errs <- fmt.Sprintf("response %q", r.stdout)
					return
				}
				peakMu.Lock()
				peak = max(peak, router.pin.Backend.Open())
				peakMu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if peak > 2 {
		t.Errorf("fpmux had %d pool connections open at once, want at most 2", peak)
	}
	// A connection beyond maxIdle (1) is closed when no request waits for
	// it, so a lull between clients costs a dial, and lulls grow with the
	// machine's load (45 dials seen at load average 7, 10 to 20 on a quiet
	// machine); without the hand-over to waiting requests, about every
	// other request would dial (each freed place goes to a new dial).
	if n := app.conns.Load(); n > 150 {
		t.Errorf("the pool saw %d connections for 400 requests: they were not handed over", n)
	}
	if n := len(router.doneCodes()); n != 400 {
		t.Errorf("%d requests ended, want 400", n)
	}
}

// warmRequest sends one request made of params on c and reads its answer
// to END_REQUEST, which must say the request completed: what the
// supervisor's warm-up does on a lent connection, with this package's own
// codec.
func warmRequest(c net.Conn, params map[string]string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var pairs []byte
	for k, v := range params {
		pairs = appendPair(pairs, k, v)
	}
	req := appendBeginRequest(nil, 1, true)
	req = appendRecord(req, typeParams, 1, pairs)
	req = appendRecord(req, typeParams, 1, nil)
	req = appendRecord(req, typeStdin, 1, nil)
	if _, err := c.Write(req); err != nil {
		return err
	}
	rr := newRecordReader(c)
	for {
		h, content, err := rr.next()
		if err != nil {
			return err
		}
		if h.Type == typeEndRequest {
			if er, err := parseEndRequest(content); err != nil || er.ProtocolStatus != statusRequestComplete || rr.buffered() > 0 {
				return errors.New("request not completed")
			}
			return nil
		}
	}
}

// TestWarm lends n connections open at once, so each reaches a child of
// its own, and keeps up to maxIdle of them for reuse; a pool that fails to
// answer makes Warm fail and leaves nothing open. first runs alone on the
// first connection before the others are dialed, and its failure ends the
// warm-up there.
func TestWarm(t *testing.T) {
	params := map[string]string{"SCRIPT_FILENAME": "/fpmux-ping", "SCRIPT_NAME": "/fpmux-ping"}
	ping := func(_ int, c net.Conn) error { return warmRequest(c, params) }
	t.Run("answered", func(t *testing.T) {
		app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("pong")})
		network, addr := app.addr()
		b := NewBackend(network, addr, 4, 3)
		defer b.Close()
		if err := b.Warm(4, nil, ping); err != nil {
			t.Fatal(err)
		}
		app.mu.Lock()
		peak := app.peak
		app.mu.Unlock()
		if n := app.requests.Load(); n != 4 || peak != 4 {
			t.Errorf("the pool answered %d requests on %d connections open at once, want 4 and 4", n, peak)
		}
		if n := b.Idle(); n != 3 {
			t.Errorf("%d connections kept after warming, want 3 (maxIdle)", n)
		}
	})
	t.Run("not answered", func(t *testing.T) {
		// an empty response: the connection closes with no END_REQUEST
		app2 := startRecordApp(t, "unix", recordAppOptions{resp: nil, closeAfter: true})
		network, addr := app2.addr()
		b2 := NewBackend(network, addr, 4, 3)
		defer b2.Close()
		if err := b2.Warm(3, nil, ping); err == nil {
			t.Fatal("Warm against a pool that closes without answering succeeded")
		}
		if n := b2.Idle(); n != 0 {
			t.Errorf("%d connections kept after a failed warm", n)
		}
		deadline := time.Now().Add(5 * time.Second)
		for app2.openConns() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections left open at the pool", app2.openConns())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("first alone", func(t *testing.T) {
		app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("pong")})
		network, addr := app.addr()
		b := NewBackend(network, addr, 4, 4)
		defer b.Close()
		var firstPeak int
		first := func(c net.Conn) error {
			err := warmRequest(c, params)
			app.mu.Lock()
			firstPeak = app.peak
			app.mu.Unlock()
			return err
		}
		var lent [4]net.Conn
		if err := b.Warm(4, first, func(i int, c net.Conn) error { lent[i] = c; return warmRequest(c, params) }); err != nil {
			t.Fatal(err)
		}
		if firstPeak != 1 {
			t.Errorf("%d connections open while first ran, want 1", firstPeak)
		}
		if n := app.conns.Load(); n != 4 || b.Idle() != 4 {
			t.Errorf("%d connections dialed, %d kept; want 4 and 4", n, b.Idle())
		}
		if lent[0] == nil || lent[1] == nil || lent[0] == lent[1] {
			t.Errorf("warm was lent %v: want first's connection as the first of 4", lent)
		}
	})
	t.Run("first fails", func(t *testing.T) {
		app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("pong")})
		network, addr := app.addr()
		b := NewBackend(network, addr, 4, 3)
		defer b.Close()
		stop := errors.New("stop here")
		first := func(c net.Conn) error {
			if err := warmRequest(c, params); err != nil {
				return err
			}
			return stop
		}
		err := b.Warm(4, first, func(int, net.Conn) error {
			t.Error("warm ran after first failed")
			return nil
		})
		if !errors.Is(err, stop) || app.conns.Load() != 1 || b.Idle() != 0 || b.Open() != 0 {
			t.Errorf("Warm: %v, %d dialed, %d idle, %d open; want first's error, 1, 0, 0", err, app.conns.Load(), b.Idle(), b.Open())
		}
	})
}

// TestDialWaitsForARestartingPool: while nothing listens on a pool's socket
// (its master being restarted), a request's dial is tried again until the
// socket is back; a closed Backend (a draining pool) is not waited for, and
// one that never comes back gives up.
func TestDialWaitsForARestartingPool(t *testing.T) {
	tests := []struct {
		name     string
		listenIn time.Duration // -1: never
		closed   bool
		wantErr  bool
	}{
		{"socket back after 200ms", 200 * time.Millisecond, false, false},
		{"socket never back", -1, false, true},
		{"draining pool", 200 * time.Millisecond, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := filepath.Join(t.TempDir(), "fpm.sock")
			b := NewBackend("unix", addr, 1, 0)
			if tt.closed {
				b.Close()
			}
			if tt.listenIn >= 0 {
				timer := time.AfterFunc(tt.listenIn, func() {
					ln, err := net.Listen("unix", addr)
					if err != nil {
						t.Error(err)
						return
					}
					t.Cleanup(func() { ln.Close() })
				})
				t.Cleanup(func() { timer.Stop() })
			}
			bc, err := b.get()
			if (err != nil) != tt.wantErr {
				t.Fatalf("get: %v, want error %v", err, tt.wantErr)
			}
			if bc != nil {
				bc.Close()
			}
			if n := backendOpen(b); n != 0 {
				t.Errorf("%d connections counted open after the dial, want 0", n)
			}
		})
	}
}

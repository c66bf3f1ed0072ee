package fcgimux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startLimitedServer runs a Server with options o (Docroot and Router
// filled in) on a unix socket and shuts it down at cleanup.
func startLimitedServer(t *testing.T, router Router, o Options) (*Server, string) {
	t.Helper()
	o.Docroot, o.Router = testDocroot, router
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	addr, served := serveUnix(t, s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, addr
}

// waitOpen waits until the server holds want connections.
func waitOpen(t *testing.T, s *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := s.ConnStats()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server holds %d connections, want %d", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closedByServer tells whether the server closed c (EOF or reset) before
// the test's own bound.
func closedByServer(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [64]byte
	for {
		_, err := c.Read(b[:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return errors.New("server did not close the connection in 10s")
			}
			return nil
		}
	}
}

// TestSlowClientsAreCut: a client that sends nothing, or its request a
// little at a time, is cut after the read timeout and holds nothing after;
// the server goes on serving.
func TestSlowClientsAreCut(t *testing.T) {
	const readTO = 300 * time.Millisecond
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("ok")})
	network, addr := app.addr()
	router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: NewBackend(network, addr, 2, 1)}}
	s, front := startLimitedServer(t, router, Options{ReadTimeout: readTO})

	req := request(1, false, "body", phpParams("/index.php")...)
	paramsEnd := bytes.Index(req, appendRecord(nil, typeStdin, 1, []byte("body")))
	tests := []struct {
		name string
		send func(c net.Conn) error // returns when the server cut it, or it gave up
	}{
		{"nothing at all", func(c net.Conn) error { return nil }},
		{"one byte at a time", func(c net.Conn) error {
			for _, b := range req {
				if _, err := c.Write([]byte{b}); err != nil {
					return nil
				}
				time.Sleep(readTO / 4)
			}
			return errors.New("the whole request went through a byte at a time")
		}},
		{"one params record at a time", func(c net.Conn) error {
			// Each record is on time; the params as a whole are not.
			var b bytes.Buffer
			writeBeginRequest(&b, 1, false)
			if _, err := c.Write(b.Bytes()); err != nil {
				return nil
			}
			for i := 0; i < 40; i++ {
				rec := appendRecord(nil, typeParams, 1, encodePairs("X_PAD", strings.Repeat("p", i)))
				if _, err := c.Write(rec); err != nil {
					return nil
				}
				time.Sleep(readTO / 3)
			}
			return errors.New("params trickled for 40 records")
		}},
		{"params then a silent body", func(c net.Conn) error {
			_, err := c.Write(req[:paramsEnd])
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", front)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sent := make(chan error, 1)
			go func() { sent <- tt.send(c) }()
			if err := closedByServer(c); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			waitOpen(t, s, 0)
			// A well-behaved client is still served.
			rc := dialRaw(t, front)
			rc.send(request(1, false, "", phpParams("/index.php")...))
			if r := rc.read(1); !strings.Contains(r.stdout, "ok") {
				t.Fatalf("after the slow client, a request got %q", r.stdout)
			}
		})
	}
}

// TestMaxConnsClosesTheOneOver: a connection over MaxConns is closed at
// once and counted; once one goes, a new one is served.
func TestMaxConnsClosesTheOneOver(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("ok")})
	network, addr := app.addr()
	router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: NewBackend(network, addr, 2, 1)}}
	s, front := startLimitedServer(t, router, Options{MaxConns: 2})

	first, second := dialRaw(t, front), dialRaw(t, front)
	waitOpen(t, s, 2)
	over, err := net.Dial("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := closedByServer(over); err != nil {
		t.Fatal(err)
	}
	if open, refused := s.ConnStats(); open != 2 || refused != 1 {
		t.Errorf("ConnStats = %d open, %d refused; want 2, 1", open, refused)
	}
	// The two held connections are served as usual.
	second.send(request(1, true, "", phpParams("/index.php")...))
	if r := second.read(1); !strings.Contains(r.stdout, "ok") {
		t.Fatalf("held connection got %q", r.stdout)
	}
	first.nc.Close()
	waitOpen(t, s, 1)
	third := dialRaw(t, front)
	third.send(request(1, false, "", phpParams("/index.php")...))
	if r := third.read(1); !strings.Contains(r.stdout, "ok") {
		t.Fatalf("new connection after one closed got %q", r.stdout)
	}
}

// TestMaxInFlightAnswers503: with the pool's connections busy and its
// queue full, one more request is answered 503 at once, and those queued
// are served once the pool frees up.
func TestMaxInFlightAnswers503(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Int64
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
		io.WriteString(w, "served")
	})
	backend := NewBackend("unix", b.addr, 1, 1)
	backend.SetMaxInFlight(2) // one on the pool's connection, one waiting
	router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: backend}}
	_, front := startLimitedServer(t, router, Options{})

	results := make(chan string, 2)
	for range 2 {
		c := dialRaw(t, front)
		c.send(request(1, false, "", phpParams("/index.php")...))
		go func() { results <- c.read(1).stdout }()
		if started.Load() == 0 {
			// Let the first reach the pool, so the second is the one waiting.
			deadline := time.Now().Add(10 * time.Second)
			for started.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	// The second waits in fpmux: give it time to queue before the third.
	deadline := time.Now().Add(10 * time.Second)
	for {
		backend.mu.Lock()
		waiting := len(backend.waiters)
		backend.mu.Unlock()
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests wait for the pool, want 1", waiting)
		}
		time.Sleep(time.Millisecond)
	}
	over := dialRaw(t, front)
	over.send(request(1, false, "", phpParams("/index.php")...))
	r := over.read(1)
	if !strings.HasPrefix(r.stdout, "Status: 503") || !strings.Contains(r.stdout, "too many requests in flight") {
		t.Errorf("request over the bound got %q, want a 503 saying why", r.stdout)
	}
	close(release)
	for range 2 {
		if out := <-results; !strings.Contains(out, "served") {
			t.Errorf("a request within the bound got %q", out)
		}
	}
	if codes := router.doneCodes(); len(codes) != 3 {
		t.Errorf("Done codes %v, want three (two 200, one 503)", codes)
	}
}

// TestRequestBodyIsStreamed: a body reaches the pool while the web server
// is still sending it, and a large one costs fpmux no memory in proportion
// to its size.
func TestRequestBodyIsStreamed(t *testing.T) {
	t.Run("reaches the pool before it ends", func(t *testing.T) {
		var got atomic.Int64
		b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
			buf := make([]byte, 32<<10)
			for {
				n, err := r.Body.Read(buf)
				got.Add(int64(n))
				if err != nil {
					break
				}
			}
			io.WriteString(w, "read it all")
		})
		_, front := startServer(t, newTestRouter(b, 1))
		c := dialRaw(t, front)
		var head bytes.Buffer
		writeBeginRequest(&head, 1, false)
		writeRecord(&head, typeParams, 1, encodePairs(phpParams("/upload.php")...))
		writeRecord(&head, typeParams, 1, nil)
		c.send(head.Bytes())
		const part = 4 << 20
		chunk := appendStream(nil, typeStdin, 1, bytes.Repeat([]byte("b"), 64<<10))
		for range part / (64 << 10) {
			c.send(chunk)
		}
		// Nothing more is sent until the pool has most of it: were the
		// body held until its end, this would never happen.
		deadline := time.Now().Add(10 * time.Second)
		for got.Load() < part*3/4 {
			if time.Now().After(deadline) {
				t.Fatalf("the pool has %d of the %d bytes sent so far", got.Load(), part)
			}
			time.Sleep(time.Millisecond)
		}
		c.send(chunk)
		c.send(appendRecord(nil, typeStdin, 1, nil))
		if r := c.read(1); !strings.Contains(r.stdout, "read it all") || got.Load() != part+64<<10 {
			t.Fatalf("response %q after %d body bytes", r.stdout, got.Load())
		}
	})
	t.Run("memory does not grow with its size", func(t *testing.T) {
		app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("ok")})
		network, addr := app.addr()
		router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: NewBackend(network, addr, 1, 1)}}
		_, front := startServer(t, router)
		c := dialRaw(t, front)
		c.nc.SetDeadline(time.Now().Add(60 * time.Second))
		var head bytes.Buffer
		writeBeginRequest(&head, 1, false)
		writeRecord(&head, typeParams, 1, encodePairs(phpParams("/upload.php")...))
		writeRecord(&head, typeParams, 1, nil)
		chunk := appendStream(nil, typeStdin, 1, bytes.Repeat([]byte("b"), 256<<10))
		end := appendRecord(nil, typeStdin, 1, nil)

		const body = 256 << 20
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c.send(head.Bytes())
		for range body / (256 << 10) {
			c.send(chunk)
		}
		c.send(end)
		r := c.read(1)
		runtime.ReadMemStats(&after)
		if !strings.Contains(r.stdout, "ok") {
			t.Fatalf("response %q", r.stdout)
		}
		// The test's own reading and the runtime allocate a little; a
		// body held whole would be 256 MiB.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("relaying a %d MiB body allocated %d KiB", body>>20, alloc>>10)
		}
	})
}

// TestSymlinkOutOfTheReleaseIsRefused: a script reached through a symlink
// that leads out of the release root is answered 404 and never reaches
// the pool; scripts inside, also through links that stay inside, are run.
func TestSymlinkOutOfTheReleaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "releases", "r1")
	shared := filepath.Join(dir, "shared", "uploads")
	for _, d := range []string{filepath.Join(root, "lib"), shared} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(root, "index.php"), filepath.Join(root, "lib", "a.php"), filepath.Join(shared, "evil.php")} {
		if err := os.WriteFile(f, []byte("<?php"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		filepath.Join(root, "uploads"):     shared,                            // a directory outside
		filepath.Join(root, "evil.php"):    filepath.Join(shared, "evil.php"), // a file outside
		filepath.Join(root, "inside.php"):  "lib/a.php",                       // a file inside
		filepath.Join(root, "up.php"):      "../r1/index.php",                 // out and back in
		filepath.Join(root, "release.php"): "../../releases",                  // out, a directory
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	b := startTestBackend(t, echoHandler)
	router := &testRouter{pin: Pin{Release: "r1", Root: real, Backend: NewBackend("unix", b.addr, 0, 1)}}
	_, front := startServer(t, router)

	tests := []struct {
		script string
		served bool
	}{
		{"/index.php", true},
		{"/inside.php", true},
		{"/up.php", true},
		{"/missing.php", true}, // php-fpm answers it with its own 404
		{"/evil.php", false},
		{"/uploads/evil.php", false},
		{"/uploads/missing.php", false}, // may appear there later
		{"/lib/missing/deeper.php", true},
		{"/nodir/missing.php", true},
		{"/release.php", false},
	}
	for range 2 { // the second time from the remembered verdicts
		for _, tt := range tests {
			before := b.requests.Load()
			c := dialRaw(t, front)
			c.send(request(1, false, "", phpParams(tt.script)...))
			r := c.read(1)
			reached := b.requests.Load() > before
			if reached != tt.served {
				t.Errorf("%s: reached the pool %v, want %v (response %q)", tt.script, reached, tt.served, r.stdout)
			}
			if !tt.served && !strings.HasPrefix(r.stdout, "Status: 404") {
				t.Errorf("%s: got %q, want a 404", tt.script, r.stdout)
			}
		}
	}
}

// TestClientThatStopsReadingIsCut: a web server connection that stops
// reading a large response is cut after WriteTimeout, and the request's pin
// and its pool connection are let go.
func TestClientThatStopsReadingIsCut(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{
		resp:   appendStream(nil, typeStdout, 1, bytes.Repeat([]byte("z"), 256<<10)),
		repeat: 256, // 64 MiB, far more than the sockets buffer
	})
	network, addr := app.addr()
	backend := NewBackend(network, addr, 2, 1)
	router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: backend}}
	s, front := startLimitedServer(t, router, Options{WriteTimeout: 300 * time.Millisecond})

	c, err := net.Dial("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(request(1, false, "", phpParams("/big.php")...)); err != nil {
		t.Fatal(err)
	}
	// Never read. The server must let go of everything on its own.
	deadline := time.Now().Add(10 * time.Second)
	for len(router.doneCodes()) == 0 || backendOpen(backend) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: Done codes %v, %d pool connections open", router.doneCodes(), backendOpen(backend))
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitOpen(t, s, 0)
	// The pool serves the next request, read this time.
	rc := dialRaw(t, front)
	rc.send(request(1, false, "", phpParams("/big.php")...))
	got := 0
	for {
		h, content, err := rc.rr.next()
		if err != nil {
			t.Fatalf("after the stalled client, reading a response: %v after %d bytes", err, got)
		}
		if h.Type == typeEndRequest {
			break
		}
		got += len(content)
	}
	if got != 64<<20 {
		t.Errorf("after the stalled client, a response of %d bytes, want %d", got, 64<<20)
	}
}

func backendOpen(b *Backend) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// TestAbortAfterTheEndLeavesThePoolConnectionAlone: an FCGI_ABORT_REQUEST
// for a request whose response is complete must not close the pool
// connection that request gave back, which another request may be using.
func TestAbortAfterTheEndLeavesThePoolConnectionAlone(t *testing.T) {
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow.php" {
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "done "+r.URL.Path)
	})
	// One pool connection: the second request takes over the first's.
	router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: NewBackend("unix", b.addr, 1, 1)}}
	_, front := startServer(t, router)

	a := dialRaw(t, front)
	a.send(request(1, true, "", phpParams("/index.php")...))
	if r := a.read(1); !strings.Contains(r.stdout, "done /index.php") {
		t.Fatalf("first request: %q", r.stdout)
	}
	other := dialRaw(t, front)
	other.send(request(1, false, "", phpParams("/slow.php")...))
	deadline := time.Now().Add(10 * time.Second)
	for b.requests.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the pool")
		}
		time.Sleep(time.Millisecond)
	}
	// The web server aborts the request it already has the answer to.
	a.send(appendRecord(nil, typeAbortRequest, 1, nil))
	if r := other.read(1); !strings.Contains(r.stdout, "done /slow.php") {
		t.Fatalf("the request on the reused pool connection got %q", r.stdout)
	}
	// The aborting connection goes on serving.
	a.send(request(1, true, "", phpParams("/index.php")...))
	if r := a.read(1); !strings.Contains(r.stdout, "done /index.php") {
		t.Fatalf("after the late abort: %q", r.stdout)
	}
	if codes := router.doneCodes(); len(codes) != 3 || codes[0] != 200 || codes[1] != 200 || codes[2] != 200 {
		t.Errorf("Done codes %v, want three 200s", codes)
	}
}

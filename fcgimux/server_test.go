package fcgimux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testBackend is an in-process FastCGI application (net/http/fcgi) on a unix
// socket, standing in for php-fpm in the unit tests. It counts requests and
// connections so tests can see what reached it.
type testBackend struct {
	addr     string
	requests atomic.Int64
	conns    atomic.Int64
	ln       net.Listener
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startTestBackend(t *testing.T, h http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{addr: filepath.Join(t.TempDir(), "php.sock")}
	ln, err := net.Listen("unix", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	b.ln = ln
	done := make(chan struct{})
	go func() {
		defer close(done)
		fcgi.Serve(countingListener{ln, &b.conns}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.requests.Add(1)
			h(w, r)
		}))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return b
}

// testRouter pins every request to one release, or fails with err.
type testRouter struct {
	pin   Pin
	err   error
	mu    sync.Mutex
	codes []int
}

func (r *testRouter) Pin() (Pin, error) {
	if r.err != nil {
		return Pin{}, r.err
	}
	p := r.pin
	p.Tracker = r
	return p, nil
}

func (r *testRouter) Done(status int, _ time.Duration) {
	r.mu.Lock()
	r.codes = append(r.codes, status)
	r.mu.Unlock()
}

func (r *testRouter) doneCodes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.codes...)
}

const testDocroot = "/var/www/app/current"

// serveUnix runs s on a new unix socket and returns its path and Serve's
// result channel.
func serveUnix(t testing.TB, s *Server) (string, <-chan error) {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "front.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	return addr, served
}

// startServer runs a Server on a unix socket and shuts it down at cleanup.
func startServer(t *testing.T, router Router) (*Server, string) {
	t.Helper()
	return startLimitedServer(t, router, Options{ReadTimeout: 5 * time.Second})
}

// rawClient speaks FastCGI the way a web server does, byte by byte, so
// tests can also send what a web server never would.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	rr *recordReader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, rr: newRecordReader(nc)}
}

func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// request builds a whole request: BEGIN, params, body.
func request(id uint16, keep bool, body string, kv ...string) []byte {
	var b bytes.Buffer
	writeBeginRequest(&b, id, keep)
	writeRecord(&b, typeParams, id, encodePairs(kv...))
	writeRecord(&b, typeParams, id, nil)
	writeStream(&b, typeStdin, id, []byte(body))
	writeRecord(&b, typeStdin, id, nil)
	return b.Bytes()
}

func phpParams(script string, extra ...string) []string {
	return append([]string{"SCRIPT_FILENAME", testDocroot + script, "DOCUMENT_ROOT", testDocroot,
		"REQUEST_METHOD", "POST", "REQUEST_URI", script, "SERVER_PROTOCOL", "HTTP/1.1",
		"CONTENT_TYPE", "text/plain"}, extra...)
}

type response struct {
	stdout, stderr string
	appStatus      uint32
	protocolStatus uint8
}

// read reads records for id until its END_REQUEST.
func (c *rawClient) read(id uint16) response {
	c.t.Helper()
	var r response
	var out, errb bytes.Buffer
	for {
		h, content, err := c.rr.next()
		if err != nil {
			c.t.Fatalf("reading response: %v (so far %q)", err, out.String())
		}
		if h.ID != id {
			c.t.Fatalf("record for id %d, want %d", h.ID, id)
		}
		switch h.Type {
		case typeStdout:
			out.Write(content)
		case typeStderr:
			errb.Write(content)
		case typeEndRequest:
			er, err := parseEndRequest(content)
			if err != nil {
				c.t.Fatal(err)
			}
			r.stdout, r.stderr, r.appStatus, r.protocolStatus = out.String(), errb.String(), er.AppStatus, er.ProtocolStatus
			return r
		default:
			c.t.Fatalf("unexpected record type %d", h.Type)
		}
	}
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	env := fcgi.ProcessEnv(r)
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "script=%s\nrelease=%s\ndocroot=%s\nbody=%s\n",
		env["SCRIPT_FILENAME"], env["FPMUX_RELEASE"], env["DOCUMENT_ROOT"], body)
}

func newTestRouter(b *testBackend, maxIdle int) *testRouter {
	return &testRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: NewBackend("unix", b.addr, 0, maxIdle)}}
}

func TestServerRelaysRequest(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	router := newTestRouter(b, 4)
	_, addr := startServer(t, router)
	c := dialRaw(t, addr)
	c.send(request(1, false, "hello body", phpParams("/index.php")...))
	r := c.read(1)
	for _, want := range []string{"script=/srv/releases/r7/index.php", "release=r7", "docroot=/srv/releases/r7", "body=hello body"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("response lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.appStatus != 0 || r.protocolStatus != statusRequestComplete {
		t.Errorf("end request: app %d, protocol %d", r.appStatus, r.protocolStatus)
	}
	// Without FCGI_KEEP_CONN the front closes its side after the response.
	if _, _, err := c.rr.next(); err != io.EOF {
		t.Errorf("after a request without keep-conn: got %v, want EOF", err)
	}
	if got := router.doneCodes(); len(got) != 1 || got[0] != 200 {
		t.Errorf("Done codes %v, want [200]", got)
	}
}

func TestServerKeepConnReusesPoolConnection(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	router := newTestRouter(b, 4)
	_, addr := startServer(t, router)
	c := dialRaw(t, addr)
	const n = 5
	for i := range n {
		body := fmt.Sprintf("request %d", i)
		c.send(request(1, true, body, phpParams("/index.php")...))
		if r := c.read(1); !strings.Contains(r.stdout, "body="+body) {
			t.Fatalf("request %d: %q", i, r.stdout)
		}
	}
	if got := b.requests.Load(); got != n {
		t.Errorf("backend saw %d requests, want %d", got, n)
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("backend saw %d connections for %d sequential requests, want 1", got, n)
	}
}

func TestServerLargeBodyAndResponse(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
		w.Write(body)
	})
	_, addr := startServer(t, newTestRouter(b, 1))
	c := dialRaw(t, addr)
	c.send(request(1, true, big, phpParams("/big.php")...))
	r := c.read(1)
	i := strings.Index(r.stdout, "\r\n\r\n")
	if i < 0 || r.stdout[i+4:] != big+big {
		t.Fatalf("response body of %d bytes, want %d", len(r.stdout)-i-4, 2*len(big))
	}
}

func TestServerAnswersItself(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	tests := []struct {
		name   string
		router *testRouter
		params []string
		want   string
	}{
		{"no active release", &testRouter{err: ErrNoRelease}, phpParams("/index.php"), "Status: 503"},
		{"script outside docroot", newTestRouter(b, 1), phpParams("/../../etc/passwd"), "Status: 404"},
		{"foreign script", newTestRouter(b, 1), []string{"SCRIPT_FILENAME", "/etc/passwd"}, "Status: 404"},
		{"pool down", &testRouter{pin: Pin{Release: "r1", Root: "/r1", Backend: NewBackend("unix", "/nonexistent/fpm.sock", 0, 1)}}, phpParams("/index.php"), "Status: 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.requests.Load()
			_, addr := startServer(t, tt.router)
			c := dialRaw(t, addr)
			c.send(request(1, true, "", tt.params...))
			r := c.read(1)
			if !strings.HasPrefix(r.stdout, tt.want) || !strings.Contains(r.stdout, "fpmux: ") {
				t.Fatalf("got %q, want %s with a body", r.stdout, tt.want)
			}
			if b.requests.Load() != before {
				t.Fatal("the request reached the backend")
			}
			// The connection still serves the next request.
			tt.router.err = nil
			if tt.router.pin.Backend == nil || strings.Contains(tt.name, "pool down") {
				return
			}
			c.send(request(1, true, "", phpParams("/index.php")...))
			if r := c.read(1); !strings.Contains(r.stdout, "release=r7") {
				t.Fatalf("next request: %q", r.stdout)
			}
		})
	}
}

func TestServerManagementRecords(t *testing.T) {
	_, addr := startServer(t, &testRouter{err: ErrNoRelease})
	c := dialRaw(t, addr)
	var b bytes.Buffer
	writeRecord(&b, typeGetValues, 0, encodePairs("FCGI_MPXS_CONNS", "", "FCGI_MAX_REQS", "", "OTHER", ""))
	writeRecord(&b, recType(42), 0, nil)
	c.send(b.Bytes())
	h, content, err := c.rr.next()
	if err != nil || h.Type != typeGetValuesResult {
		t.Fatalf("get values: %+v %v", h, err)
	}
	got := decodePairs(t, content)
	if got["FCGI_MPXS_CONNS"] != "0" || got["FCGI_MAX_REQS"] == "" || len(got) != 2 {
		t.Fatalf("get values result %v", got)
	}
	h, content, err = c.rr.next()
	if err != nil || h.Type != typeUnknownType || content[0] != 42 {
		t.Fatalf("unknown type: %+v % x %v", h, content, err)
	}
}

func TestServerRefusesMultiplexing(t *testing.T) {
	block := make(chan struct{})
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-block
		io.WriteString(w, "slow done")
	})
	_, addr := startServer(t, newTestRouter(b, 1))
	c := dialRaw(t, addr)
	c.send(request(1, true, "", phpParams("/slow.php")...))
	var second bytes.Buffer
	writeBeginRequest(&second, 2, true)
	c.send(second.Bytes())
	r := c.read(2)
	if r.protocolStatus != statusCantMpxConn {
		t.Fatalf("second request: protocol status %d, want FCGI_CANT_MPX_CONN", r.protocolStatus)
	}
	close(block)
	if r := c.read(1); !strings.Contains(r.stdout, "slow done") {
		t.Fatalf("first request: %q", r.stdout)
	}
}

func TestServerBackendDiesBeforeResponse(t *testing.T) {
	// A backend that accepts and closes: a php-fpm child killed mid-request.
	addr := filepath.Join(t.TempDir(), "dying.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.CopyN(io.Discard, c, 8)
			c.Close()
		}
	}()
	router := &testRouter{pin: Pin{Release: "r1", Root: "/r1", Backend: NewBackend("unix", addr, 0, 1)}}
	_, front := startServer(t, router)
	c := dialRaw(t, front)
	c.send(request(1, true, "", phpParams("/index.php")...))
	if r := c.read(1); !strings.HasPrefix(r.stdout, "Status: 502") {
		t.Fatalf("got %q, want a 502", r.stdout)
	}
	if got := router.doneCodes(); len(got) != 1 || got[0] != 502 {
		t.Fatalf("Done codes %v, want [502]", got)
	}
}

func TestServerAbortRequest(t *testing.T) {
	started := make(chan struct{})
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	router := newTestRouter(b, 1)
	_, addr := startServer(t, router)
	c := dialRaw(t, addr)
	c.send(request(1, true, "", phpParams("/slow.php")...))
	<-started
	var abort bytes.Buffer
	writeRecord(&abort, typeAbortRequest, 1, nil)
	c.send(abort.Bytes())
	r := c.read(1)
	if r.protocolStatus != statusRequestComplete {
		t.Fatalf("abort: protocol status %d", r.protocolStatus)
	}
	if got := router.doneCodes(); len(got) != 1 {
		t.Fatalf("Done called %d times, want 1", len(got))
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	release := make(chan struct{})
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished")
	})
	s, err := NewServer(Options{Docroot: testDocroot, Router: newTestRouter(b, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr, served := serveUnix(t, s)
	busy := dialRaw(t, addr)
	idle := dialRaw(t, addr)
	busy.send(request(1, true, "", phpParams("/slow.php")...))
	for b.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The idle connection is closed at once; the busy one gets its answer.
	if _, _, err := idle.rr.next(); err == nil {
		t.Fatal("idle connection still open during shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := busy.read(1); !strings.Contains(r.stdout, "finished") {
		t.Fatalf("in-flight request: %q", r.stdout)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
}

// childLimitedListener models php-fpm's children: at most n connections are
// served at a time, each until it closes; the rest wait in the backlog.
type childLimitedListener struct {
	net.Listener
	slots  chan struct{}
	closed chan struct{}
}

func (l *childLimitedListener) Close() error {
	close(l.closed)
	return l.Listener.Close()
}

type slotConn struct {
	net.Conn
	once  sync.Once
	slots chan struct{}
}

func (c *slotConn) Close() error {
	c.once.Do(func() { <-c.slots })
	return c.Conn.Close()
}

func (l *childLimitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}: // a free child
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &slotConn{Conn: c, slots: l.slots}, nil
}

// TestKeptConnectionsDoNotStarveNewOnes runs a pool of 2 children with as
// many idle connections kept as children: the case where reuse could pin
// every child while a new connection waits in the backlog. Backend either
// opens any number of connections, or as many as there are children. (With
// a bound above the children, a pool that never grows, the wait would last
// until the idle timeout closes a kept connection; php-fpm's pm dynamic
// grows, and the supervisor's bound is pm.max_children.)
func TestKeptConnectionsDoNotStarveNewOnes(t *testing.T) {
	for _, maxOpen := range []int{0, 2} {
		t.Run(fmt.Sprintf("maxOpen=%d", maxOpen), func(t *testing.T) { keptConnectionsDoNotStarve(t, maxOpen) })
	}
}

func keptConnectionsDoNotStarve(t *testing.T, maxOpen int) {
	addr := filepath.Join(t.TempDir(), "children.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	const children = 2
	cl := &childLimitedListener{Listener: ln, slots: make(chan struct{}, children), closed: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fcgi.Serve(cl, http.HandlerFunc(echoHandler))
	}()
	t.Cleanup(func() {
		cl.Close()
		<-done
	})
	router := &testRouter{pin: Pin{Release: "r1", Root: "/r1", Backend: NewBackend("unix", addr, maxOpen, children)}}
	t.Cleanup(router.pin.Backend.Close)
	_, front := startServer(t, router)
	var wg sync.WaitGroup
	errs := make(chan string, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialRaw(t, front)
			for j := range 20 {
				body := fmt.Sprintf("client %d request %d", i, j)
				c.send(request(1, true, body, phpParams("/index.php")...))
				h, _, err := c.rr.next()
				for err == nil && h.Type != typeEndRequest {
					h, _, err = c.rr.next()
				}
				if err != nil {
					errs <- fmt.Sprintf("%s: %v", body, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := len(router.doneCodes()); n != 120 {
		t.Errorf("%d requests ended, want 120", n)
	}
}

func TestClientGoneMidRequestReleasesThePin(t *testing.T) {
	started := make(chan struct{})
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		// A big response the client will never read.
		for range 64 {
			if _, err := w.Write(bytes.Repeat([]byte("x"), 64<<10)); err != nil {
				return
			}
		}
	})
	router := newTestRouter(b, 1)
	_, addr := startServer(t, router)
	c := dialRaw(t, addr)
	c.send(request(1, true, "", phpParams("/big.php")...))
	<-started
	c.nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(router.doneCodes()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pin of a request whose client went away was never released")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// startServer's cleanup checks that Shutdown then returns at once.
}

func TestNoGoroutineOutlivesShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		b := startTestBackend(t, echoHandler)
		router := newTestRouter(b, 2)
		s, err := NewServer(Options{Docroot: testDocroot, Router: router})
		if err != nil {
			t.Fatal(err)
		}
		addr, served := serveUnix(t, s)
		for i := range 10 {
			c := dialRaw(t, addr)
			for range 5 {
				c.send(request(1, true, "x", phpParams("/index.php")...))
				c.read(1)
			}
			if i%2 == 0 {
				c.send(request(1, true, "", phpParams("/../escape.php")...))
				c.read(1)
			}
			if i%3 == 0 {
				c.nc.Close() // some clients leave, others stay idle until shutdown
			}
			// A connection per request: its goroutines wait for the next
			// as spares, until shutdown.
			once := dialRaw(t, addr)
			once.send(request(1, false, "x", phpParams("/index.php")...))
			once.read(1)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-served
		router.pin.Backend.Close()
		b.ln.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after shutdown:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInFlightListsRequestsOldestFirst: InFlight names the requests being
// relayed to a release, with method and URI, oldest first, and forgets
// each once it ends.
func TestInFlightListsRequestsOldestFirst(t *testing.T) {
	release := make(chan struct{})
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprint(w, "done")
	})
	s, front := startServer(t, newTestRouter(b, 2))
	var clients []*rawClient
	for i, uri := range []string{"/first?x=1", "/second"} {
		c := dialRaw(t, front)
		c.send(request(1, true, "", "SCRIPT_FILENAME", testDocroot+"/index.php", "REQUEST_METHOD", "GET", "REQUEST_URI", uri, "SERVER_PROTOCOL", "HTTP/1.1"))
		clients = append(clients, c)
		deadline := time.Now().Add(5 * time.Second)
		for len(s.InFlight("r7")) != i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("after request %d: InFlight = %+v", i+1, s.InFlight("r7"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	got := s.InFlight("r7")
	if len(got) != 2 || got[0].URI != "/first?x=1" || got[1].URI != "/second" || got[0].Method != "GET" || got[0].Started.After(got[1].Started) {
		t.Fatalf("InFlight = %+v, want /first?x=1 then /second, GET", got)
	}
	if other := s.InFlight("r8"); len(other) != 0 {
		t.Errorf("InFlight of another release = %+v", other)
	}
	close(release)
	for _, c := range clients {
		c.read(1)
	}
	// A request leaves the list just after its END_REQUEST is written, so
	// the client can read its answer a moment before that.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.InFlight("r7")) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(s.InFlight("r7")); n != 0 {
		t.Errorf("%d requests listed 5s after every one ended", n)
	}
}

// TestShutdownServesARequestThatCrossedIt: a web server may send the next
// request on a kept connection just as fpmux shuts down. That request is
// answered whole before the connection closes, rather than met with a
// reset, which nginx would not retry for a POST.
func TestShutdownServesARequestThatCrossedIt(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	for i := range 40 {
		s, err := NewServer(Options{Docroot: testDocroot, Router: newTestRouter(b, 2), ReadTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		front, served := serveUnix(t, s)
		c := dialRaw(t, front)
		c.send(request(1, true, "one", phpParams("/index.php")...))
		c.read(1) // the connection is idle and kept now
		c.send(request(1, true, fmt.Sprintf("crossing %d", i), phpParams("/index.php")...))
		if i%2 == 1 {
			time.Sleep(time.Millisecond) // let the request be read first, half the time
		}
		if err := s.Shutdown(t.Context()); err != nil {
			t.Fatalf("round %d: shutdown: %v", i, err)
		}
		if r := c.read(1); !strings.Contains(r.stdout, fmt.Sprintf("body=crossing %d", i)) {
			t.Fatalf("round %d: the crossing request got %q", i, r.stdout)
		}
		if _, _, err := c.rr.next(); !errors.Is(err, io.EOF) {
			t.Fatalf("round %d: after the answer: %v, want the connection closed", i, err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Fatalf("round %d: serve returned %v", i, err)
		}
	}
}

// TestKeptRequestsAllocateNothing: once warm, a request on a kept
// connection allocates nothing: the goroutine that streams its response is
// a spare one the server kept, with the stack it grew, not a new one.
func TestKeptRequestsAllocateNothing(t *testing.T) {
	if raceAllocSlack > 1 {
		t.Skip("the race detector's runtime allocates for goroutines and channels")
	}
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse(strings.Repeat("h", 1024))})
	c := dialBench(t, benchServer(t, app), benchRequest(1024, true))
	for range 20 { // dial php-fpm, grow buffers and stacks
		if _, err := c.do(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(500, func() {
		if n, err := c.do(); err != nil || n < 1024 {
			t.Fatalf("response: %d bytes, %v", n, err)
		}
	})
	// The server's idle-connection timer may allocate now and then.
	if allocs > 0.2 {
		t.Errorf("%.2f allocations per kept request, want none", allocs)
	}
}

// TestInFlightWhileConnectionsChurn: InFlight may look at a conn as it is
// reused for a new connection (the server keeps conns for the next); run
// with -race, this catches a reuse that is not under the conn's lock.
func TestInFlightWhileConnectionsChurn(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	router := newTestRouter(b, 2)
	t.Cleanup(router.pin.Backend.Close)
	s, addr := startServer(t, router)
	stop := make(chan struct{})
	looked := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				looked <- n
				return
			default:
				n += len(s.InFlight("r7")) + 1
			}
		}
	}()
	for i := range 50 {
		c := dialRaw(t, addr)
		c.send(request(1, false, "x", phpParams("/index.php")...))
		if r := c.read(1); !strings.Contains(r.stdout, "body=x") {
			t.Fatalf("request %d: %q", i, r.stdout)
		}
		c.nc.Close()
	}
	close(stop)
	if n := <-looked; n == 0 {
		t.Error("InFlight was never called while connections came and went")
	}
}

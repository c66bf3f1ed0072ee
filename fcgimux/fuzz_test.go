// This file holds fcgimux's native fuzz targets: the record reader, the
// params decoder, the params rewrite, the docroot check, and a whole web
// server connection to a Server. Their seed corpus is in
// testdata/fuzz/<target>/: the named seeds of fuzzSeeds (in fuzzseeds_test.go),
// and inputs the fuzzer found that added coverage, named by their hash.

package fcgimux

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// FuzzRecordReader feeds arbitrary bytes to the record reader, whole and a
// few bytes per read, releasing its buffer between records as a connection
// does. It must never panic, and the records it returns must be exactly the
// ones in the input: header, content, padding skipped, in order, and the
// error at the end must say where the input stopped making sense.
func FuzzRecordReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.HalfReader(bytes.NewReader(in))} {
			checkRecordReader(t, in, r)
		}
	})
}

func checkRecordReader(t *testing.T, in []byte, r io.Reader) {
	rr := newRecordReader(r)
	defer func() {
		rr.rpos = rr.wpos // whatever is left, give the large buffer back
		rr.release()
	}()
	off := 0 // where the next record starts in the input
	for {
		h, c, err := rr.next()
		rest := in[off:]
		badVersion := len(rest) >= headerLen && rest[0] != version1
		whole := len(rest) >= headerLen && !badVersion && len(rest) >= recordLen(rest)
		switch {
		case err == nil && whole:
		case errors.Is(err, io.EOF) && len(rest) == 0:
			return
		case errors.Is(err, errBadVersion) && badVersion:
			return
		case errors.Is(err, io.ErrUnexpectedEOF) && len(rest) > 0 && !badVersion && !whole:
			return
		default:
			t.Fatalf("at offset %d, before % x: error %v", off, rest[:min(len(rest), headerLen)], err)
		}
		want, _ := parseHeader(rest)
		if h != want || !bytes.Equal(c, rest[headerLen:headerLen+int(h.ContentLength)]) {
			t.Fatalf("record at offset %d: %+v with %d bytes, want %+v", off, h, len(c), want)
		}
		off += recordLen(rest)
		if rr.buffered() == 0 {
			rr.release()
		}
	}
}

// recordLen is the length on the wire of the record whose header starts b.
func recordLen(b []byte) int {
	return headerLen + int(binary.BigEndian.Uint16(b[4:6])) + int(b[6])
}

// FuzzEachPair feeds arbitrary bytes to the params decoder: it must never
// panic; every pair it yields must lie within the input, in order; its only
// error is errParamsFormat; and the pairs, encoded again with appendPair,
// must decode to the same pairs, in no more bytes than the input took.
func FuzzEachPair(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		in = in[:len(in):len(in)] // so that cap tells a subslice's offset
		var pairs [][2]string
		next := 0 // where the next pair may start
		err := eachPair(in, func(name, value []byte) error {
			n, v := offsetIn(t, in, name), offsetIn(t, in, value)
			if n < next+2 || v != n+len(name) {
				t.Fatalf("pair %d: name at %d (%d bytes), value at %d, after a pair ending at %d", len(pairs), n, len(name), v, next)
			}
			next = v + len(value)
			pairs = append(pairs, [2]string{string(name), string(value)})
			return nil
		})
		if err != nil && !errors.Is(err, errParamsFormat) {
			t.Fatalf("error %v, want errParamsFormat", err)
		}
		var again []byte
		for _, p := range pairs {
			again = appendPair(again, p[0], p[1])
		}
		if len(again) > next {
			t.Fatalf("%d pairs take %d bytes encoded again, %d in the input", len(pairs), len(again), next)
		}
		if len(again) == next && !bytes.Equal(again, in[:next]) {
			t.Fatalf("encoded again in as many bytes, but not the same: % x, input % x", again, in[:next])
		}
		i := 0
		if err := eachPair(again, func(name, value []byte) error {
			if i >= len(pairs) || string(name) != pairs[i][0] || string(value) != pairs[i][1] {
				t.Fatalf("pair %d decodes again as %q=%q", i, name, value)
			}
			i++
			return nil
		}); err != nil || i != len(pairs) {
			t.Fatalf("encoded again: %d of %d pairs, %v", i, len(pairs), err)
		}
	})
}

// offsetIn returns where s starts in in (whose len is its cap), failing the
// test when s is not a part of in.
func offsetIn(t *testing.T, in, s []byte) int {
	t.Helper()
	off := len(in) - cap(s)
	if off < 0 || off+len(s) > len(in) || len(s) > 0 && &in[off] != &s[0] {
		t.Fatalf("a slice of %d bytes (cap %d) is not within the %d bytes of input", len(s), cap(s), len(in))
	}
	return off
}

// fuzzPaths is what FuzzRewriteParams rewrites with.
var fuzzPaths = pinnedPaths{docroot: testDocroot, root: "/srv/releases/42", release: "42", reserved: []string{"/fpmux-ping"}}

// FuzzRewriteParams feeds arbitrary params to the rewrite: it must never
// panic. What it accepts must keep the web server's pairs in order (less
// any FPMUX_RELEASE and the routing hint params), map SCRIPT_FILENAME (the
// path php-fpm reads from it, after the Apache prefix it keeps),
// PATH_TRANSLATED and DOCUMENT_ROOT to clean paths under the release root,
// end with fpmux's FPMUX_RELEASE, and go into PARAMS records that each
// decode on their own, as php-fpm reads them.
func FuzzRewriteParams(f *testing.F) {
	p := fuzzPaths
	f.Fuzz(func(t *testing.T, in []byte) {
		out, ends, _, err := rewriteParams(nil, nil, in, p)
		if err != nil {
			var rej *rejectError
			if !errors.Is(err, errParamsFormat) && !(errors.As(err, &rej) && rej.status == 404) {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		if len(ends) == 0 || ends[len(ends)-1] != len(out) {
			t.Fatalf("ends %v do not cover %d bytes", ends, len(out))
		}
		var sent [][2]string
		eachPair(in, func(n, v []byte) error {
			if name := string(n); name != "FPMUX_RELEASE" && name != paramHintRelease && name != paramHintToken {
				sent = append(sent, [2]string{string(n), string(v)})
			}
			return nil
		})
		i := 0
		if err := eachPair(out, func(n, v []byte) error {
			name, value := string(n), string(v)
			if i == len(sent) {
				if name != "FPMUX_RELEASE" || value != p.release {
					t.Fatalf("last pair %q=%q, want FPMUX_RELEASE=%s", name, value, p.release)
				}
				i++
				return nil
			}
			if i > len(sent) || name != sent[i][0] {
				t.Fatalf("pair %d is %q, want %q", i, name, sent[min(i, len(sent)-1)][0])
			}
			switch name {
			case "SCRIPT_FILENAME":
				prefix, script := phpFPMScript(value)
				if !inRoot(script, p.root) || !strings.HasPrefix(value, prefix) || prefix+script != value || !strings.HasPrefix(sent[i][1], prefix) {
					t.Fatalf("accepted SCRIPT_FILENAME %q becomes %q", sent[i][1], value)
				}
			case "DOCUMENT_ROOT", "PATH_TRANSLATED":
				if !inRoot(value, p.root) {
					t.Fatalf("accepted %s %q becomes %q", name, sent[i][1], value)
				}
			default:
				if value != sent[i][1] {
					t.Fatalf("%s %q becomes %q", name, sent[i][1], value)
				}
			}
			i++
			return nil
		}); err != nil || i != len(sent)+1 {
			t.Fatalf("rewritten params: %d pairs of %d decode, %v", i, len(sent)+1, err)
		}
		recs, err := appendParams(nil, 1, out, ends)
		if err != nil {
			var rej *rejectError
			if !errors.As(err, &rej) || rej.status != 431 {
				t.Fatalf("appendParams: %v", err)
			}
			return
		}
		checkParamsRecords(t, recs, out)
	})
}

// phpFPMScript splits a SCRIPT_FILENAME as php-fpm 8.2's init_request_info
// reads it: Apache's "proxy:fcgi://host" or "proxy:balancer://host" prefix
// (in any case) and the path after it up to a '?', or no prefix and the
// whole value.
func phpFPMScript(v string) (prefix, script string) {
	for _, pp := range []string{"proxy:fcgi://", "proxy:balancer://"} {
		if len(v) >= len(pp) && strings.EqualFold(v[:len(pp)], pp) {
			if i := strings.IndexByte(v[len(pp):], '/'); i >= 0 {
				prefix, script = v[:len(pp)+i], v[len(pp)+i:]
				script, _, _ = strings.Cut(script, "?")
				return prefix, script
			}
		}
	}
	return "", v
}

// inRoot tells whether p is root or a clean path under it, with no NUL,
// and perhaps one trailing slash (fpmux keeps the one a web server sent:
// php-fpm reads it).
func inRoot(p, root string) bool {
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return (p == root || strings.HasPrefix(p, root+"/")) && path.Clean(p) == p && strings.IndexByte(p, 0) < 0
}

// checkParamsRecords checks that recs is PARAMS records for request 1
// carrying params, each of whole pairs, then the empty record.
func checkParamsRecords(t *testing.T, recs, params []byte) {
	t.Helper()
	rr := newRecordReader(bytes.NewReader(recs))
	var got []byte
	for {
		h, c, err := rr.next()
		if err != nil {
			t.Fatalf("after %d bytes of params: %v", len(got), err)
		}
		if h.Type != typeParams || h.ID != 1 {
			t.Fatalf("record %+v among the params", h)
		}
		if len(c) == 0 {
			break
		}
		if err := eachPair(c, func(_, _ []byte) error { return nil }); err != nil {
			t.Fatalf("a PARAMS record of %d bytes does not decode alone: %v", len(c), err)
		}
		got = append(got, c...)
	}
	if !bytes.Equal(got, params) {
		t.Fatalf("records carry %d bytes of params, want %d", len(got), len(params))
	}
	if rr.buffered() != 0 {
		t.Fatalf("%d bytes after the empty PARAMS record", rr.buffered())
	}
}

// FuzzUnderDocroot checks the byte-level path check against path.Clean:
// a path is under the docroot exactly when its cleaned form is.
func FuzzUnderDocroot(f *testing.F) {
	const docroot = testDocroot
	f.Fuzz(func(t *testing.T, s string) {
		rest, ok := underDocroot([]byte(s), docroot)
		c := path.Clean(s)
		wantOK := strings.HasPrefix(s, "/") && (c == docroot || strings.HasPrefix(c, docroot+"/"))
		if ok != wantOK {
			t.Fatalf("underDocroot(%q) ok=%v, path.Clean gives %q", s, ok, c)
		}
		if ok && docroot+string(rest) != c {
			t.Fatalf("underDocroot(%q) rest %q, path.Clean gives %q", s, rest, c)
		}
	})
}

// The Server FuzzServeConn runs: params over fuzzMaxParams are refused (so
// the fuzzer reaches that path), and a connection waiting for input is
// given up within fuzzTimeout, so that an input that stops mid-request
// costs little.
const (
	fuzzMaxParams = 4 << 10
	fuzzTimeout   = 2 * time.Millisecond
	fuzzRelease   = "r1"
	fuzzRoot      = "/nonexistent/fpmux-fuzz/releases/r1"
	// hangBound is how long an input may take before it counts as hung:
	// far beyond what one takes, so that only a connection or a Shutdown
	// that never ends reaches it.
	hangBound = 10 * time.Second
)

// FuzzServeConn feeds arbitrary bytes as one web server connection to a
// real Server in front of fuzzApp. With hold false the web server shuts
// its side for writing after the input; with hold true it keeps it open,
// so the Server's own timeouts have to end the connection. Either way:
// nothing panics; the connection ends; Shutdown then returns at once and
// leaves no goroutine of the Server behind; every byte written back is
// whole FastCGI records of the kinds fpmux sends, for requests the input
// began; every request pinned to the release is done exactly once; and
// what reached php-fpm is records it can read, with a SCRIPT_FILENAME in
// the release.
func FuzzServeConn(f *testing.F) {
	app := startFuzzApp(f)
	f.Fuzz(func(t *testing.T, in []byte, hold bool) {
		before := goroutineIDs()
		b := NewBackend("unix", app.addr, 0, 2)
		router := &fuzzRouter{pin: Pin{Release: fuzzRelease, Root: fuzzRoot, Backend: b}}
		s, err := NewServer(Options{
			Docroot: testDocroot, Router: router, Logger: slog.New(slog.DiscardHandler),
			MaxParamsBytes: fuzzMaxParams, ReadTimeout: fuzzTimeout, IdleTimeout: fuzzTimeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		client, server := socketPair(t)
		defer client.Close()
		ln := newOneConnListener(server)
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()

		client.SetDeadline(time.Now().Add(hangBound))
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			client.Write(in) // fails when the Server closed first: that is its call
			if !hold {
				client.CloseWrite()
			}
		}()
		out, err := io.ReadAll(client)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the connection was still open after %v:\n%s", hangBound, allStacks())
		}
		client.Close()
		<-wrote

		ctx, cancel := context.WithTimeout(context.Background(), hangBound)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown after the connection ended: %v\n%s", err, allStacks())
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Fatalf("serve returned %v", err)
		}
		b.Close()
		waitFor(t, "the Server's goroutines to end", func() string { return serverGoroutines(before) })
		waitFor(t, "php-fpm's connections to close", app.openConns)

		checkOutput(t, in, out)
		if pins, dones := router.pins.Load(), router.dones.Load(); pins != dones {
			t.Fatalf("%d requests pinned, %d done", pins, dones)
		}
		if bad := router.badStatus.Load(); bad != 0 {
			t.Fatalf("a request was done with status %d", bad)
		}
		if open := b.Open(); open != 0 {
			t.Fatalf("the Backend counts %d connections open after Close", open)
		}
		if msg := app.takeBad(); msg != "" {
			t.Fatal(msg)
		}
	})
}

// checkOutput parses what the Server wrote back to the web server: whole
// records of the kinds fpmux writes, each for a request the input began or,
// for management records, for id 0.
func checkOutput(t *testing.T, in, out []byte) {
	t.Helper()
	began := map[uint16]bool{}
	rr := newRecordReader(bytes.NewReader(in))
	for {
		h, _, err := rr.next()
		if err != nil {
			break
		}
		if h.Type == typeBeginRequest {
			began[h.ID] = true
		}
	}
	rr = newRecordReader(bytes.NewReader(out))
	for n := 0; ; n++ {
		h, c, err := rr.next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("response record %d: %v; the response is % x", n, err, out)
		}
		switch h.Type {
		case typeStdout, typeStderr, typeEndRequest:
			if !began[h.ID] {
				t.Fatalf("response record %d (type %d) for request %d, which the input never began", n, h.Type, h.ID)
			}
			if er, err := parseEndRequest(c); h.Type == typeEndRequest && (err != nil || er.ProtocolStatus > statusUnknownRole) {
				t.Fatalf("END_REQUEST % x: %v", c, err)
			}
		case typeGetValuesResult:
			if err := eachPair(c, func(_, _ []byte) error { return nil }); h.ID != 0 || err != nil {
				t.Fatalf("GET_VALUES_RESULT for id %d: %v", h.ID, err)
			}
		case typeUnknownType:
			if h.ID != 0 || len(c) != 8 {
				t.Fatalf("UNKNOWN_TYPE for id %d, % x", h.ID, c)
			}
		default:
			t.Fatalf("response record %d is of type %d", n, h.Type)
		}
	}
}

// waitFor polls cond, which describes what is still wrong or returns "",
// until it holds, and fails the test after hangBound.
func waitFor(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(hangBound)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %s", hangBound, what, msg)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// goroutineIDs returns the ids of the goroutines running now.
func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for _, g := range strings.Split(allStacks(), "\n\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		ids[id] = true
	}
	return ids
}

// serverGoroutines returns the stacks of goroutines, not among those of
// before, that run the Server's code (a connection, a relay, Serve,
// Shutdown, a Backend), or "" when there are none.
func serverGoroutines(before map[string]bool) string {
	var left []string
	for _, g := range strings.Split(allStacks(), "\n\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		if before[id] {
			continue
		}
		for _, fn := range []string{"fcgimux.(*conn).", "fcgimux.(*relay).", "fcgimux.(*Server).", "fcgimux.(*Backend)."} {
			if strings.Contains(g, fn) {
				left = append(left, g)
				break
			}
		}
	}
	return strings.Join(left, "\n\n")
}

func allStacks() string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// socketPair returns the two ends of a connected unix socket pair.
func socketPair(t *testing.T) (*net.UnixConn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return conns[0].(*net.UnixConn), conns[1]
}

// oneConnListener hands Serve one connection, then waits to be closed.
type oneConnListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.conns <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }

// fuzzRouter pins every request to one release and counts pins and dones.
// It is a HintRouter.
type fuzzRouter struct {
	pin         Pin
	pins, dones atomic.Int64
	badStatus   atomic.Int64 // a status done with that is no HTTP status
}

func (r *fuzzRouter) Pin() (Pin, error) {
	r.pins.Add(1)
	p := r.pin
	p.Tracker = r
	return p, nil
}

// PinHint honours a routing hint that carries the token "preview", and
// refuses any other (a 503), so both ways are fuzzed.
func (r *fuzzRouter) PinHint(h RouteHint) (Pin, error) {
	if h.Conflict || string(h.Token) != "preview" {
		return Pin{}, errors.New("preview refused")
	}
	return r.Pin()
}

func (r *fuzzRouter) Done(status int, _ time.Duration) {
	r.dones.Add(1)
	if status < 100 || status > 599 {
		r.badStatus.Store(int64(status))
	}
}

// fuzzApp stands in for php-fpm behind FuzzServeConn: it answers each
// request with a short page once its body has ended, keeps the connection
// as fpmux asks, and notes anything fpmux sends that php-fpm could not
// take: a record it cannot read, params that do not decode record by
// record, a script outside the release, a missing FPMUX_RELEASE.
type fuzzApp struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	open atomic.Int64 // connections from fpmux not yet closed

	mu  sync.Mutex
	bad []string
}

// startFuzzApp starts a fuzzApp; at cleanup it stops accepting and waits
// for its connections, which each input's Backend.Close has ended.
func startFuzzApp(tb testing.TB) *fuzzApp {
	tb.Helper()
	a := &fuzzApp{addr: tb.TempDir() + "/php.sock"}
	ln, err := net.Listen("unix", a.addr)
	if err != nil {
		tb.Fatal(err)
	}
	a.ln = ln
	a.wg.Add(1)
	go a.serve()
	tb.Cleanup(func() {
		ln.Close()
		a.wg.Wait()
	})
	return a
}

func (a *fuzzApp) serve() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.open.Add(1)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer a.open.Add(-1)
			defer c.Close()
			a.serveConn(c)
		}()
	}
}

func (a *fuzzApp) serveConn(c net.Conn) {
	rr := newRecordReader(c)
	var id uint16
	var params, resp []byte
	for {
		h, content, err := rr.next()
		if errors.Is(err, errBadVersion) {
			a.note("fpmux sent php-fpm a record it cannot read: %v", err)
		}
		if err != nil {
			return
		}
		switch h.Type {
		case typeBeginRequest:
			br, err := parseBeginRequest(content)
			if err != nil || br.Role != roleResponder || !br.KeepConn {
				a.note("fpmux sent php-fpm BEGIN_REQUEST % x", content)
			}
			id, params = h.ID, params[:0]
		case typeParams:
			if h.ID != id {
				a.note("fpmux sent PARAMS for request %d in request %d", h.ID, id)
			}
			if len(content) > 0 {
				if err := eachPair(content, func(_, _ []byte) error { return nil }); err != nil {
					a.note("fpmux sent a PARAMS record php-fpm cannot decode alone: % x", content)
				}
				params = append(params, content...)
				continue
			}
			a.checkParams(params)
		case typeStdin:
			if h.ID != id {
				a.note("fpmux sent STDIN for request %d in request %d", h.ID, id)
			}
			if len(content) > 0 {
				continue
			}
			resp = appendStream(resp[:0], typeStdout, id, []byte("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n"))
			resp = appendRecord(resp, typeStdout, id, nil)
			resp = appendEndRequest(resp, id, 0, statusRequestComplete)
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	}
}

// checkParams checks the whole params of one request as fpmux sent them.
func (a *fuzzApp) checkParams(params []byte) {
	var script, release string
	if err := eachPair(params, func(n, v []byte) error {
		switch string(n) {
		case "SCRIPT_FILENAME":
			script = string(v)
		case "FPMUX_RELEASE":
			release = string(v)
		case paramHintRelease, paramHintToken:
			a.note("fpmux sent php-fpm the routing hint param %s", n)
		}
		return nil
	}); err != nil {
		a.note("fpmux sent php-fpm params that do not decode: % x", params)
	}
	if _, path := phpFPMScript(script); !inRoot(path, fuzzRoot) || release != fuzzRelease {
		a.note("fpmux sent php-fpm SCRIPT_FILENAME %q, FPMUX_RELEASE %q", script, release)
	}
}

func (a *fuzzApp) note(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bad = append(a.bad, fmt.Sprintf(format, args...))
}

// takeBad returns what was noted since the last call, or "".
func (a *fuzzApp) takeBad() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	msg := strings.Join(a.bad, "\n")
	a.bad = nil
	return msg
}

// openConns describes the connections fpmux left open to the app, or "".
func (a *fuzzApp) openConns() string {
	if n := a.open.Load(); n != 0 {
		return strconv.FormatInt(n, 10) + " open"
	}
	return ""
}

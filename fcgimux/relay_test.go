package fcgimux

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAbandonRacingFinishLeavesNoClosedConnectionInThePool: the web server
// goes away while php-fpm is answering, so abandon (the connection
// goroutine) and finish (the relay's) run at once. cutHook parks abandon
// after it has decided to close the pool connection; finish then runs to its
// end; then abandon goes on. Whatever the order, the pool must never hold a
// connection that is closed, or the next request on it fails or redials.
func TestAbandonRacingFinishLeavesNoClosedConnectionInThePool(t *testing.T) {
	gate := make(chan struct{})
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page"), gate: gate})
	network, addr := app.addr()
	router := &testRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: NewBackend(network, addr, 0, 4)}}
	s, front := startServer(t, router)
	t.Cleanup(router.pin.Backend.Close)
	parked, resume := make(chan struct{}), make(chan struct{})
	cutHook = func() {
		parked <- struct{}{}
		<-resume
	}
	t.Cleanup(func() { cutHook = nil })

	c := dialRaw(t, front)
	c.send(getRequest(1))
	waitFor(t, "the app to hold the request", func() string {
		if app.requests.Load() == 1 {
			return ""
		}
		return "not yet"
	})
	c.nc.Close() // the web server goes away: the connection goroutine abandons
	select {
	case <-parked:
	case <-time.After(10 * time.Second):
		t.Fatal("abandon never reached the point where it closes the pool connection")
	}
	close(gate) // php-fpm answers: finish runs while abandon is parked
	waitFor(t, "finish to end the request", func() string {
		if len(router.doneCodes()) == 1 {
			return ""
		}
		return "no request ended yet"
	})
	close(resume)
	b := router.pin.Backend
	waitFor(t, "the front connection to go", func() string {
		if open, _ := s.ConnStats(); open != 0 {
			return "still open"
		}
		return ""
	})

	b.mu.Lock()
	for _, bc := range b.idle {
		if bc.closed.Load() {
			t.Error("the pool holds a connection abandon closed after finish handed it back")
		}
	}
	b.mu.Unlock()
	// The pool goes on serving.
	c2 := dialRaw(t, front)
	c2.send(getRequest(1))
	if r := c2.read(1); !strings.HasSuffix(r.stdout, "page") {
		t.Errorf("next request: %q", r.stdout)
	}
}

// TestBodiesAfterParamsSurviveAnExitingChild: the kept connection a POST is
// given was ended by php-fpm in the window after END_REQUEST (the app shuts
// it for writing and drains it when the next request begins, so the peek
// before reuse sees it alive). Whether its body comes after the params (a
// web server that does not buffer bodies) or is too large to hold for a
// resend, no such POST may fail: a small one is held and sent again, a
// large one goes on a new connection from the start.
func TestBodiesAfterParamsSurviveAnExitingChild(t *testing.T) {
	tests := []struct {
		name          string
		body          int
		contentLength bool
	}{
		{"3 B after the params", 3, true},
		{"100 KB announced", 100 << 10, true},
		{"200 KB announced", 200 << 10, true},
		{"200 KB not announced", 200 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page"), drainSecond: true})
			router, front := startAppServer(t, app, 4)
			c := dialRaw(t, front)
			c.send(getRequest(1)) // leaves the connection kept
			if r := c.read(1); !strings.HasSuffix(r.stdout, "page") {
				t.Fatalf("first response %q", r.stdout)
			}
			kv := []string{"SCRIPT_FILENAME", testDocroot + "/index.php", "REQUEST_METHOD", "POST"}
			if tt.contentLength {
				kv = append(kv, "CONTENT_LENGTH", strconv.Itoa(tt.body))
			}
			var head bytes.Buffer
			writeBeginRequest(&head, 1, true)
			writeRecord(&head, typeParams, 1, encodePairs(kv...))
			writeRecord(&head, typeParams, 1, nil)
			c.send(head.Bytes())
			time.Sleep(20 * time.Millisecond) // the params go out alone
			body := bytes.Repeat([]byte("b"), tt.body)
			for len(body) > 0 {
				n := min(len(body), 8<<10)
				var rec bytes.Buffer
				writeRecord(&rec, typeStdin, 1, body[:n])
				c.send(rec.Bytes())
				body = body[n:]
			}
			var end bytes.Buffer
			writeRecord(&end, typeStdin, 1, nil)
			c.send(end.Bytes())
			r := c.read(1)
			codes := router.doneCodes()
			if got := codes[len(codes)-1]; got != 200 || !strings.HasSuffix(r.stdout, "page") {
				t.Errorf("the POST ended with %d (%q), want 200", got, r.stdout)
			}
		})
	}
}

// TestKeptConnectionShutByPHPFPMIsNotReused: a kept unix-socket connection
// php-fpm has shut for writing (its child served pm.max_requests and now
// discards what arrives) is seen as ended before reuse, so the next
// request goes on a new connection and not one byte of it is thrown away.
func TestKeptConnectionShutByPHPFPMIsNotReused(t *testing.T) {
	app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page"), shutAfter: true})
	router, front := startAppServer(t, app, 4)
	c := dialRaw(t, front)
	for i := range 3 {
		c.send(request(1, true, "x=1", "SCRIPT_FILENAME", testDocroot+"/index.php", "REQUEST_METHOD", "POST", "CONTENT_LENGTH", "3"))
		if r := c.read(1); !strings.HasSuffix(r.stdout, "page") {
			t.Fatalf("response %d: %q", i, r.stdout)
		}
		waitFor(t, "the app to shut the connection", func() string {
			if app.shut.Load() == int64(i+1) {
				return ""
			}
			return "not yet"
		})
	}
	if n := app.discarded.Load(); n != 0 {
		t.Errorf("%d bytes were written to connections php-fpm had shut", n)
	}
	if n := app.conns.Load(); n != 3 {
		t.Errorf("the app saw %d connections, want 3", n)
	}
	for _, code := range router.doneCodes() {
		if code != 200 {
			t.Errorf("a request ended with %d", code)
		}
	}
}

// TestBackendTimeout: with BackendTimeout, php-fpm that sends nothing for
// that long once it has the whole request gets the request answered 504
// with a body, or, when its response had started, the web server
// connection cut; either way it is counted and the pool connection is
// closed (its child may still be running the script).
func TestBackendTimeout(t *testing.T) {
	tests := []struct {
		name    string
		before  []byte
		want504 bool
	}{
		{"nothing answered", nil, true},
		{"response started, then silent", appendStream(nil, typeStdout, 1, []byte("Content-type: text/plain\r\n\r\nstart")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			app := startRecordApp(t, "unix", recordAppOptions{resp: pageResponse("page"), gate: gate, before: tt.before})
			t.Cleanup(func() { close(gate) }) // before the app's own cleanup
			network, addr := app.addr()
			backend := NewBackend(network, addr, 0, 4)
			router := &testRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: backend}}
			t.Cleanup(backend.Close)
			s, front := startLimitedServer(t, router, Options{BackendTimeout: 300 * time.Millisecond})
			c := dialRaw(t, front)
			c.send(getRequest(1))
			if tt.want504 {
				r := c.read(1)
				if !strings.HasPrefix(r.stdout, "Status: 504") || !strings.Contains(r.stdout, "did not answer within 300ms") {
					t.Errorf("got %q, want a 504 naming the bound", r.stdout)
				}
			} else {
				var got []byte
				for {
					h, content, err := c.rr.next()
					if err != nil {
						break // cut, as wanted
					}
					if h.Type == typeEndRequest {
						t.Fatalf("the stalled response ended cleanly after %q", got)
					}
					got = append(got, content...)
				}
				if !strings.HasSuffix(string(got), "start") {
					t.Errorf("before the cut: %q", got)
				}
			}
			if n := s.Refused(RefusedTimeout); n != 1 {
				t.Errorf("Refused(RefusedTimeout) = %d, want 1", n)
			}
			waitFor(t, "the pool connection to close", func() string {
				if n := backendOpen(backend); n != 0 {
					return strconv.Itoa(n) + " open"
				}
				return ""
			})
			if codes := router.doneCodes(); len(codes) != 1 || tt.want504 && codes[0] != 504 {
				t.Errorf("done codes %v", codes)
			}
		})
	}
}

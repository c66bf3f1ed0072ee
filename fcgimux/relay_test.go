package fcgimux

import (
	"strings"
	"testing"
	"time"
)

// TestAbandonRacingFinishLeavesNoClosedConnectionInThePool: the web server
// goes away while php-fpm is answering, so abandon (the connection
// goroutine) and finish (the relay's) run at once. abandonHook parks abandon
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
	abandonHook = func() {
		parked <- struct{}{}
		<-resume
	}
	t.Cleanup(func() { abandonHook = nil })

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

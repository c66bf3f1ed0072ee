package main

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMaxInFlightAnswers503ThroughNginx: with a pool's workers all busy and
// its queue in fpmux full, the next requests get a 503 with a body at once,
// not a place in an unbounded queue, while those within the bound are
// served.
func TestMaxInFlightAnswers503ThroughNginx(t *testing.T) {
	// The harness's pools have pm.max_children 4: four run, two wait.
	s := newStack(t, stackOptions{yaml: "limits:\n  max_in_flight: 6\n"})
	s.deploy("r1")

	const clients = 10
	type result struct {
		code int
		body string
		err  error
	}
	var mu sync.Mutex
	var order []result // in the order the answers came
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each on its own connection to nginx, so all ten are in
			// flight at once.
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: newHTTPClient().Timeout}
			code, body, err := s.get(c, "/index.php?ms=1500")
			mu.Lock()
			order = append(order, result{code, body, err})
			mu.Unlock()
		}()
	}
	wg.Wait()

	served, refused := 0, 0
	for i, r := range order {
		switch {
		case r.err != nil:
			t.Errorf("answer %d: %v", i, r.err)
		case r.code == 200 && strings.Contains(r.body, "param=r1"):
			served++
		case r.code == 503 && strings.Contains(r.body, "too many requests in flight"):
			refused++
			// A refusal does not wait for the slow requests.
			if i >= clients-6 {
				t.Errorf("a 503 came as answer %d of %d, after requests that took 1.5 s", i+1, clients)
			}
		default:
			t.Errorf("answer %d: %d %q", i, r.code, r.body)
		}
	}
	if served != 6 || refused != 4 {
		t.Errorf("served %d, refused %d; want 6 and 4 (max_in_flight 6)", served, refused)
	}
	if got := s.metric(`fpmux_requests_total{code="503",release="r1"}`); got != 4 {
		t.Errorf("fpmux_requests_total for 503 is %v, want 4", got)
	}
	// Once the load is gone, the pool serves as before.
	if code, body, err := s.get(newHTTPClient(), "/index.php?ms=0"); err != nil || code != 200 {
		t.Errorf("after the burst: %d %q %v", code, body, err)
	}
}

// TestBackendTimeoutThroughNginx: with limits.backend_timeout, a script
// that gives nothing for longer is answered 504 with a body, at about the
// bound rather than when it ends, and counted; one that streams its
// response in parts, each within the bound though all of it takes longer,
// is served whole; and the pool goes on serving.
func TestBackendTimeoutThroughNginx(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "limits:\n  backend_timeout: 1500ms\n"})
	s.deploy("r1")
	c := newHTTPClient()
	start := time.Now()
	code, body, err := s.get(c, "/index.php?ms=8000")
	took := time.Since(start)
	if err != nil || code != 504 || !strings.Contains(body, "did not answer within 1.5s") {
		t.Errorf("a script sleeping 8 s: %d %q %v, want a 504 naming the bound", code, body, err)
	}
	if took > 7*time.Second {
		t.Errorf("the 504 came after %v, when the script ended rather than at the bound", took)
	}
	if got := s.metric(`fpmux_requests_refused_total{reason="backend_timeout"}`); got != 1 {
		t.Errorf("fpmux_requests_refused_total for backend_timeout is %v, want 1", got)
	}
	if got := s.metric(`fpmux_requests_total{code="504",release="r1"}`); got != 1 {
		t.Errorf("fpmux_requests_total for 504 is %v, want 1", got)
	}
	// 5 parts 800 ms apart: 4 s in all, no gap as long as the bound.
	code, body, err = s.get(c, "/stream.php?n=5&ms=800")
	if err != nil || code != 200 || !strings.HasSuffix(body, "part 4\n") {
		t.Errorf("a response streamed in parts: %d %q %v, want all 5 parts", code, body, err)
	}
	code, body, err = s.get(c, "/index.php?ms=0")
	if rel, _, _ := servedBy(body); err != nil || code != 200 || rel != "r1" {
		t.Errorf("after the timeout: %d %q %v", code, body, err)
	}
}

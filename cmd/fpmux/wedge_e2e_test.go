// This file tests the wedge check end to end: a pool that is alive but
// answers nothing is replaced, through nginx, with the default settings.

package main

import (
	"syscall"
	"testing"
	"time"
)

// TestFaultWedgedPool stops the active release's master and every worker
// (kill -STOP of its process group): php-fpm is alive and answers nothing.
// With the default wedge check (php_fpm.wedge_check_interval 5s,
// wedge_misses 3), fpmux must kill the group and start a new master,
// count it in fpmux_pool_wedged_total, end the request the wedged pool
// held with an error instead of leaving it to nginx's timeout (120s here),
// and serve the next request.
func TestFaultWedgedPool(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	if v := s.metric(`fpmux_pool_wedged_total{release="r1"}`); v != 0 {
		t.Errorf("fpmux_pool_wedged_total before any wedge = %v, want 0", v)
	}
	old := s.releasesByID()["r1"].Pool.Pid
	t.Cleanup(func() { syscall.Kill(-old, syscall.SIGCONT) }) // if fpmux never replaced it
	stoppedAt := time.Now()
	if err := syscall.Kill(-old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	type result struct {
		status int
		err    error
		took   time.Duration
	}
	held := make(chan result, 1)
	go func() {
		c := newHTTPClient()
		defer c.CloseIdleConnections()
		start := time.Now()
		st, _, err := s.post(c, "/index.php?ms=0", "a=1")
		held <- result{st, err, time.Since(start)}
	}()

	var pid int
	s.waitFor("a new php-fpm master for r1", 90*time.Second, func() bool {
		p := s.releasesByID()["r1"].Pool
		if p != nil && p.Pid != 0 && p.Pid != old {
			pid = p.Pid
			return true
		}
		return false
	})
	replaced := time.Since(stoppedAt)
	s.servesNow("r1")
	t.Logf("wedged master %d replaced by %d %v after SIGSTOP; serving again %v after it", old, pid, replaced.Round(time.Millisecond), time.Since(stoppedAt).Round(time.Millisecond))
	s.notePgids()

	select {
	case r := <-held:
		t.Logf("the POST held by the wedged pool: status %d err %v after %v", r.status, r.err, r.took.Round(time.Millisecond))
		if r.err != nil || r.status != 502 {
			t.Errorf("the POST held by the wedged pool: status %d err %v, want a 502 from nginx once fpmux replaced the pool", r.status, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the POST held by the wedged pool had not ended 30s after the pool was replaced")
	}
	if v := s.metric(`fpmux_pool_wedged_total{release="r1"}`); v != 1 {
		t.Errorf("fpmux_pool_wedged_total{release=\"r1\"} = %v, want 1", v)
	}
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v != 1 {
		t.Errorf("fpmux_pool_restarts_total{release=\"r1\"} = %v, want 1", v)
	}
}

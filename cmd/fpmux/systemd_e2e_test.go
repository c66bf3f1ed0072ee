// End-to-end tests of fpmux under systemd, with systemd played by the test:
// socket activation (the test holds the sockets and passes them), the
// notify socket (READY, STATUS, RELOADING, STOPPING, WATCHDOG), reload on
// SIGHUP, and a restart that loses no request.

package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// signal sends sig to the running fpmux.
func (s *stack) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.fpmux
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("fpmux is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

func TestSocketActivationServesOnPassedSockets(t *testing.T) {
	s := newStack(t, stackOptions{activation: true})
	// The deploy goes through the passed admin socket, the page through
	// nginx to the passed FastCGI socket.
	s.deploy("r1")
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	_, body, err := s.get(c, "/index.php?ms=0")
	if rel, mixed, ok := servedBy(body); err != nil || !ok || mixed || rel != "r1" {
		t.Fatalf("through the passed FastCGI socket: %q %v, want r1", body, err)
	}
	log := s.logBuf.String()
	for _, want := range []string{"using the FastCGI socket systemd passed", "using the admin socket systemd passed"} {
		if !strings.Contains(log, want) {
			t.Errorf("fpmux's log lacks %q", want)
		}
	}
	for _, p := range []string{s.cfgSock, strings.TrimPrefix(s.cfgAdmin, "unix:")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("fpmux created its own socket at the configured %s although systemd passed one (stat: %v)", p, err)
		}
	}

	// Stopped, fpmux leaves the socket unit's files in place, and the
	// sockets still take connections (they wait in the backlog).
	s.stopFpmux(syscall.SIGTERM)
	for _, p := range []string{s.sock, strings.TrimPrefix(s.admin, "unix:")} {
		c, err := net.DialTimeout("unix", p, 5*time.Second)
		if err != nil {
			t.Errorf("passed socket %s after fpmux stopped: %v", p, err)
			continue
		}
		c.Close()
	}
}

func TestSystemdNotify(t *testing.T) {
	s := newStack(t, stackOptions{notify: true, watchdog: 2 * time.Second})
	const bound = 20 * time.Second

	// Nothing to restore: READY=1 at once, with a status that says so.
	_, m := s.waitNotify("READY=1", 0, bound, lineIs("READY=1"))
	if !m.hasLine(lineIs("STATUS=no active release")) {
		t.Errorf("READY=1 with no release came as %q, want STATUS=no active release with it", m.text)
	}
	// A healthy fpmux pings the watchdog.
	s.waitNotify("WATCHDOG=1", 0, bound, lineIs("WATCHDOG=1"))

	s.deploy("r1")
	s.waitNotify("STATUS naming r1 active", 0, bound, lineIs("STATUS=active r1"))
	// While r1 drains a slow request, the status names both.
	slow := s.slowRequestInFlight("r1", 3000)
	from := s.notes.len()
	s.deploy("r2")
	s.waitNotify("STATUS naming r2 active and r1 draining", from, bound, lineIs("STATUS=active r2; draining r1"))
	if r := <-slow; r.err != nil || r.status != 200 {
		t.Errorf("the slow request on r1: %d %v", r.status, r.err)
	}
	s.waitNotify("STATUS once r1 retired", from, bound, lineIs("STATUS=active r2"))

	// SIGHUP re-reads the file: RELOADING=1 with MONOTONIC_USEC=, then
	// READY=1. A changed listen keeps its running value and is named.
	good := strings.Replace(s.cfgText, "drain_timeout: 30s", "drain_timeout: 45s", 1)
	good = strings.Replace(good, "listen: unix:"+s.cfgSock, "listen: unix:"+s.cfgSock+".new", 1)
	if good == s.cfgText {
		t.Fatal("the test's config edit changed nothing")
	}
	if err := os.WriteFile(s.cfgPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	from = s.notes.len()
	s.signal(syscall.SIGHUP)
	i, m := s.waitNotify("RELOADING=1", from, bound, lineIs("RELOADING=1"))
	if !m.hasLine(func(l string) bool { return strings.HasPrefix(l, "MONOTONIC_USEC=") }) {
		t.Errorf("RELOADING=1 came as %q, without MONOTONIC_USEC=", m.text)
	}
	s.waitNotify("READY=1 after the reload", i+1, bound, lineIs("READY=1"))
	s.waitFor("the reload in fpmux's log", bound, func() bool {
		log := s.logBuf.String()
		return strings.Contains(log, "configuration reloaded") && strings.Contains(log, "drain_timeout=45s")
	})
	if log := s.logBuf.String(); !strings.Contains(log, "keep their running values until fpmux restarts") || !strings.Contains(log, "keys=listen") {
		t.Errorf("no warning naming listen as needing a restart in:\n%s", log)
	}

	// A bad file: the error names the key and line, the config in force
	// stays, and fpmux still answers READY=1 and serves.
	if err := os.WriteFile(s.cfgPath, []byte(good+"bogus_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from = s.notes.len()
	s.signal(syscall.SIGHUP)
	i, _ = s.waitNotify("RELOADING=1 for the bad file", from, bound, lineIs("RELOADING=1"))
	s.waitNotify("READY=1 after the failed reload", i+1, bound, lineIs("READY=1"))
	s.waitFor("the failed reload in fpmux's log", bound, func() bool {
		log := s.logBuf.String()
		return strings.Contains(log, "reload failed") && strings.Contains(log, "bogus_key (line ")
	})
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	if _, body, err := s.get(c, "/index.php?ms=0"); err != nil || !strings.HasPrefix(body, "param=r2 ") {
		t.Fatalf("after a failed reload: %q %v, want r2", body, err)
	}

	from = s.notes.len()
	s.stopFpmux(syscall.SIGTERM)
	s.waitNotify("STOPPING=1", from, bound, lineIs("STOPPING=1"))
	if err := os.WriteFile(s.cfgPath, []byte(s.cfgText), 0o644); err != nil {
		t.Fatal(err)
	}

	// Restarted, fpmux says READY=1 only once r2 serves again.
	from = s.notes.len()
	s.startFpmux()
	s.notePgids()
	_, m = s.waitNotify("READY=1 after the restart", from, bound, lineIs("READY=1"))
	if !m.hasLine(lineIs("STATUS=active r2")) {
		t.Errorf("READY=1 after the restart came as %q, want STATUS=active r2 with it", m.text)
	}
	if _, body, err := s.get(c, "/index.php?ms=0"); err != nil || !strings.HasPrefix(body, "param=r2 ") {
		t.Fatalf("after the restart: %q %v, want r2", body, err)
	}
}

// TestRestartWithPassedSocketsLosesNothing restarts fpmux under load the way
// systemd does with socket activation: the sockets stay open in the test
// (systemd's socket unit), the old fpmux finishes what it accepted and
// exits, connections meanwhile wait in the backlog, and the new fpmux
// restores r1 from state.json before it accepts them. With kept
// connections, nginx's idle ones to the old fpmux are closed under it;
// with a connection per request, some were accepted by the old fpmux a
// moment before it stopped.
func TestRestartWithPassedSocketsLosesNothing(t *testing.T) {
	for _, tt := range []struct {
		name           string
		connPerRequest bool
	}{
		{"kept connections", false},
		{"a connection per request", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{activation: true, notify: true, connPerRequest: tt.connPerRequest})
			restartUnderLoad(t, s)
		})
	}
}

func restartUnderLoad(t *testing.T, s *stack) {
	s.deploy("r1")
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	if _, body, err := s.get(c, "/index.php?ms=0"); err != nil || !strings.HasPrefix(body, "param=r1 ") {
		t.Fatalf("before the restart: %q %v", body, err)
	}

	stop := make(chan struct{})
	wait := s.runLoad(4, "/index.php?ms=0", stop)
	// POSTs beside them, counted apart: nginx sends a POST again only if
	// it never went out, so one written on a kept connection in the
	// instant fpmux closes it fails. fpmux answers any such request that
	// reached it before the close (crossedShutdown); one that crosses the
	// close itself cannot be told from a request never sent.
	posts := s.runLoadWith(2, stop, func(c *http.Client) (int, string, error) { return s.post(c, "/index.php?ms=0", "x=1") })
	time.Sleep(time.Second) // load before the restart

	s.mu.Lock()
	cmd, exited := s.fpmux, s.exited
	s.fpmux = nil
	s.mu.Unlock()
	termAt := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the old fpmux did not exit within 60s of SIGTERM")
	}
	exitAt := time.Now()
	from := s.notes.len()
	s.startFpmux()
	s.notePgids()
	_, ready := s.waitNotify("READY=1 from the new fpmux", from, 30*time.Second, lineIs("READY=1"))

	time.Sleep(3 * time.Second) // load after the restart
	close(stop)
	results := wait()
	postsFailed, postResults := 0, posts()
	for _, r := range postResults {
		if _, _, ok := servedBy(r.body); r.err != nil || r.status != 200 || !ok {
			postsFailed++
		}
	}

	var failed, before, across, after int
	var longest time.Duration
	var examples []string
	perRelease := map[string]int{}
	for _, r := range results {
		rel, mixed, ok := servedBy(r.body)
		if r.err != nil || r.status != 200 || !ok || mixed {
			failed++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("at %v: status %d err %v body %q",
					r.start.Sub(termAt).Round(time.Millisecond), r.status, r.err, r.body))
			}
			continue
		}
		perRelease[rel]++
		switch {
		case r.end.Before(termAt):
			before++
		case r.start.After(ready.at):
			after++
		default:
			across++
			longest = max(longest, r.end.Sub(r.start))
		}
	}
	t.Logf("restart: %d requests, %d failed, all from %v; %d before SIGTERM, %d across the restart, %d after the new READY=1; "+
		"old fpmux exited %v after SIGTERM, new fpmux READY=1 %v after that; longest request across the restart %v; "+
		"beside them %d POSTs, %d failed",
		len(results), failed, perRelease, before, across, after,
		exitAt.Sub(termAt).Round(time.Millisecond), ready.at.Sub(exitAt).Round(time.Millisecond), longest.Round(time.Millisecond),
		len(postResults), postsFailed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed across the restart; first ones: %v", failed, len(results), examples)
	}
	if perRelease["r1"] != len(results)-failed {
		t.Errorf("responses came from %v, want r1 only", perRelease)
	}
	if before == 0 || across == 0 || after == 0 {
		t.Errorf("the load did not span the restart: %d requests before SIGTERM, %d across, %d after the new READY=1", before, across, after)
	}
}

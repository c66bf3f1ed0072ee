// End-to-end tests of the guard after a switch, with real nginx and real
// php-fpm under load: a release that answers 500 to a share of its real
// requests is rolled back to the previous pool, still warm; a good one
// passes and the previous pool is retired after the window; an operator's
// switch during the window ends the guard.

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// flakyPHP answers "flaky=<id> ok", or, for a bad release, 500 to about
// 30% of its requests: a release that passes every check before the
// switch and fails only under real traffic.
const flakyPHP = `<?php
header('Content-Type: text/plain');
if (%t && mt_rand(1, 100) <= 30) {
    http_response_code(500);
    echo "flaky=%[2]s error\n";
    return;
}
echo "flaky=%[2]s ok\n";
`

// guardRelease writes release id with flaky.php, bad or not.
func (s *stack) guardRelease(id string, bad bool) string {
	s.t.Helper()
	root := s.newRelease(id)
	if err := os.WriteFile(filepath.Join(root, "flaky.php"), []byte(fmt.Sprintf(flakyPHP, bad, id)), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return root
}

// guardJSON is a release's guard in status -json.
type guardJSON struct {
	State    string     `json:"state"`
	Previous string     `json:"previous"`
	Since    time.Time  `json:"since"`
	EndedAt  *time.Time `json:"ended_at"`
	LeftMS   int64      `json:"left_ms"`
	Reason   string     `json:"reason"`
	Answered int64      `json:"answered"`
	Errors   int64      `json:"errors"`
	Fatals   int64      `json:"fatals"`
}

type guardedJSON struct {
	ID    string     `json:"id"`
	State string     `json:"state"`
	Error string     `json:"error"`
	Guard *guardJSON `json:"guard"`
	Pool  *struct {
		Pid int `json:"pid"`
	} `json:"pool"`
	KeptUntil *time.Time `json:"kept_until"`
}

// guarded returns status -json's releases by id, as a script reads them.
func (s *stack) guarded() map[string]guardedJSON {
	s.t.Helper()
	code, out, errs := s.cli("status", "-json")
	if code != 0 {
		s.t.Fatalf("status -json: %d %s", code, errs)
	}
	var rs []guardedJSON
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		s.t.Fatalf("status -json: %v: %s", err, out)
	}
	m := map[string]guardedJSON{}
	for _, r := range rs {
		m[r.ID] = r
	}
	return m
}

// cachedScripts returns the scripts the opcache of the active release's
// pool holds (opcache.php), through nginx.
func (s *stack) cachedScripts() (release string, scripts []string) {
	s.t.Helper()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	code, body, err := s.get(c, "/opcache.php")
	if err != nil || code != 200 {
		s.t.Fatalf("opcache.php: %d %v %s", code, err, body)
	}
	var st struct {
		Release string   `json:"release"`
		Enabled bool     `json:"enabled"`
		Scripts []string `json:"scripts"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || !st.Enabled {
		s.t.Fatalf("opcache.php: %v %s", err, body)
	}
	return st.Release, st.Scripts
}

// TestGuardRollsBackAReleaseThatErrorsUnderLoad: r2 passes its pool's
// checks but answers 500 to about 30% of real requests. Deployed under
// load with -wait-guard, it is switched back from within the window: the
// deploy exits 1 saying so, r1 serves again on the same php-fpm master
// with its opcache still holding the scripts it ran before, r2 is failed
// with the figures and its pool stopped, and the rollback is counted. The
// test logs how many requests r2 answered and how long from the switch to
// the rollback.
func TestGuardRollsBackAReleaseThatErrorsUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "guard:\n  window: 60s\n  max_error_ratio: 0.05\n  min_requests: 20\n",
		// opcache skips files younger than 2s, and the test writes its
		// releases a moment before deploying them.
		ini: map[string]string{"opcache.file_update_protection": "0"}})
	root1 := s.guardRelease("r1", false)
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", root1); code != 0 {
		t.Fatalf("deploy r1: %d %s %s", code, out, errs)
	}
	s.notePgids()
	pid1 := s.releasesByID()["r1"].Pool.Pid

	stop := make(chan struct{})
	wait := s.runLoad(4, "/flaky.php", stop)
	s.waitFor("r1 to answer flaky.php", 10*time.Second, func() bool { return s.metric(`fpmux_requests_total{code="200",release="r1"}`) >= 20 })
	if rel, scripts := s.cachedScripts(); rel != "r1" || !containsPath(scripts, "/r1/flaky.php") {
		t.Fatalf("before the deploy: opcache of %s holds %v, want r1's flaky.php", rel, scripts)
	}

	root2 := s.guardRelease("r2", true)
	code, out, errs := s.cli("deploy", "-id", "r2", "-root", root2, "-wait-guard")
	s.notePgids()
	back := time.Now()
	if code != 1 || !strings.Contains(errs, "guard rolled release r2 back to r1") || !strings.Contains(out, "guard watching release r2") {
		t.Errorf("deploy -wait-guard of r2: exit %d, stdout %q, stderr %q; want 1, the guard's rollback named", code, out, errs)
	}
	rs := s.guarded()
	r2 := rs["r2"]
	if s.activeID() != "r1" || r2.Guard == nil || r2.Guard.State != "rolled_back" || r2.Guard.EndedAt == nil {
		t.Fatalf("after the rollback: active %s, r2 %+v guard %+v; want r1 active, r2's guard rolled_back", s.activeID(), r2, r2.Guard)
	}
	took := r2.Guard.EndedAt.Sub(r2.Guard.Since)
	s.waitFor("r2 to be failed once drained", 30*time.Second, func() bool { return s.guarded()["r2"].State == "failed" })
	r2 = s.guarded()["r2"]
	if !strings.Contains(r2.Error, "guard rolled back to r1") || !strings.Contains(r2.Error, "status 500 or more") {
		t.Errorf("r2's error %q does not give the guard's reason and figures", r2.Error)
	}
	if got := s.releasesByID()["r1"].Pool.Pid; got != pid1 || s.spawns("r1") != 1 {
		t.Errorf("r1 serves on master %d (was %d), spawned %d times; want the same master, never restarted", got, pid1, s.spawns("r1"))
	}
	if rel, scripts := s.cachedScripts(); rel != "r1" || !containsPath(scripts, "/r1/flaky.php") || !containsPath(scripts, "/r1/opcache.php") {
		t.Errorf("after the rollback: opcache of %s holds %v; want r1's scripts from before the deploy, still cached", rel, scripts)
	}
	if v := s.metric("fpmux_guard_rollbacks_total"); v != 1 {
		t.Errorf("fpmux_guard_rollbacks_total = %v, want 1", v)
	}
	time.Sleep(300 * time.Millisecond) // load on r1 after the rollback, judged below
	close(stop)
	results := wait()

	served := map[string]int{}
	var lateBad []string
	for _, r := range results {
		rel, _, _ := strings.Cut(strings.TrimPrefix(r.body, "flaky="), " ")
		served[rel+" "+fmt.Sprint(r.status)]++
		if r.start.After(back) && (r.status != 200 || rel != "r1") {
			lateBad = append(lateBad, fmt.Sprintf("%d %q %v", r.status, r.body, r.err))
		}
	}
	answeredByR2 := served["r2 200"] + served["r2 500"]
	t.Logf("guard (5xx): r2 answered %d requests (%d of them 500) in %v from the switch to the rollback; the guard counted %d answers, %d 5xx; load sent %d, per release and status %v",
		answeredByR2, served["r2 500"], took.Round(time.Millisecond), r2.Guard.Answered, r2.Guard.Errors, len(results), served)
	if answeredByR2 == 0 || took <= 0 || took > 60*time.Second {
		t.Errorf("r2 answered %d requests, rolled back %v after the switch: want some, within the 60s window", answeredByR2, took)
	}
	if len(lateBad) > 0 {
		t.Errorf("%d requests begun after the rollback were not answered 200 by r1: %v", len(lateBad), lateBad[:min(5, len(lateBad))])
	}
}

// activeID returns the active release's id in status.
func (s *stack) activeID() string {
	for id, r := range s.releasesByID() {
		if r.State == "active" {
			return id
		}
	}
	return ""
}

// TestGuardPassesAGoodRelease: a good release under the guard is not
// rolled back; through the window the previous release stays ready on its
// master and status shows the guard with its time left; after the window
// the previous pool is retired (keep_previous 0) and no request failed.
func TestGuardPassesAGoodRelease(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "guard:\n  window: 4s\n  min_requests: 5\n"})
	root1 := s.guardRelease("r1", false)
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", root1); code != 0 {
		t.Fatalf("deploy r1: %d %s %s", code, out, errs)
	}
	s.notePgids()
	pid1 := s.releasesByID()["r1"].Pool.Pid
	stop := make(chan struct{})
	wait := s.runLoad(4, "/flaky.php", stop)

	root2 := s.guardRelease("r2", false)
	code, out, errs := s.cli("deploy", "-id", "r2", "-root", root2)
	s.notePgids()
	if code != 0 || !strings.Contains(out, "guard watching release r2 for 4s") {
		t.Fatalf("deploy r2: exit %d %q %q, want 0 and the guard announced", code, out, errs)
	}
	rs := s.guarded()
	if g := rs["r2"].Guard; g == nil || g.State != "watching" || g.LeftMS <= 0 || g.Previous != "r1" {
		t.Errorf("r2's guard in status -json: %+v, want watching, time left, r1 as the way back", g)
	}
	if r1 := rs["r1"]; r1.State != "ready" || r1.Pool == nil || r1.Pool.Pid != pid1 || r1.KeptUntil == nil {
		t.Errorf("r1 in r2's window: %+v, want ready on master %d, kept until the window ends", r1, pid1)
	}
	if _, st, _ := s.cli("status"); !strings.Contains(st, "r2: guard watching, ") || !strings.Contains(st, " left of 4s: ") {
		t.Errorf("status does not show r2's guard with its time left:\n%s", st)
	}
	s.waitFor("the guard to pass", 30*time.Second, func() bool {
		g := s.guarded()["r2"].Guard
		return g != nil && g.State != "watching"
	})
	s.waitFor("r1 to be retired after the window", 30*time.Second, func() bool { return s.releasesByID()["r1"].State == "retired" })
	close(stop)
	results := wait()
	g := s.guarded()["r2"].Guard
	if g.State != "passed" || g.Answered == 0 || g.Errors != 0 || s.activeID() != "r2" || s.metric("fpmux_guard_rollbacks_total") != 0 {
		t.Errorf("after the window: guard %+v, active %s; want passed with answers and no error, r2 active, no rollback", g, s.activeID())
	}
	if pidAlive(pid1) {
		t.Errorf("r1's master %d outlived the window (keep_previous 0)", pid1)
	}
	failed := 0
	for _, r := range results {
		if r.err != nil || r.status != 200 {
			failed++
		}
	}
	if failed > 0 || len(results) == 0 {
		t.Errorf("%d of %d requests failed across the guarded deploy", failed, len(results))
	}
}

// TestGuardEndsWhenAnOperatorSwitches: a rollback, an activate or a deploy
// during r2's window ends its guard; after it no automatic switch happens,
// even when the release serving then errors (r3 answers 500 to about 30%).
func TestGuardEndsWhenAnOperatorSwitches(t *testing.T) {
	tests := []struct {
		name   string
		act    func(s *stack)
		active string
	}{
		{"rollback", func(s *stack) { s.rollback("r1") }, "r1"},
		{"activate", func(s *stack) {
			if code, out, errs := s.cli("deploy", "-id", "r3", "-root", s.guardRelease("r3", true), "-no-activate"); code != 0 {
				s.t.Fatalf("deploy r3: %d %s %s", code, out, errs)
			}
			if code, out, errs := s.cli("activate", "r3"); code != 0 {
				s.t.Fatalf("activate r3: %d %s %s", code, out, errs)
			}
		}, "r3"},
		{"deploy", func(s *stack) {
			if code, out, errs := s.cli("deploy", "-id", "r3", "-root", s.guardRelease("r3", true), "-no-guard"); code != 0 {
				s.t.Fatalf("deploy r3: %d %s %s", code, out, errs)
			}
		}, "r3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{yaml: "guard:\n  window: 60s\n  min_requests: 5\n"})
			if code, out, errs := s.cli("deploy", "-id", "r1", "-root", s.guardRelease("r1", false)); code != 0 {
				t.Fatalf("deploy r1: %d %s %s", code, out, errs)
			}
			if code, out, errs := s.cli("deploy", "-id", "r2", "-root", s.guardRelease("r2", false)); code != 0 {
				t.Fatalf("deploy r2: %d %s %s", code, out, errs)
			}
			tt.act(s)
			s.notePgids()
			if g := s.guarded()["r2"].Guard; g == nil || g.State != "ended" || !strings.Contains(g.Reason, "was activated during the window") {
				t.Fatalf("r2's guard after the %s: %+v, want ended by the switch", tt.name, g)
			}
			c := newHTTPClient()
			defer c.CloseIdleConnections()
			var statuses []int
			for range 60 {
				code, _, err := s.get(c, "/flaky.php")
				if err != nil {
					t.Fatal(err)
				}
				statuses = append(statuses, code)
			}
			if got := s.activeID(); got != tt.active || s.metric("fpmux_guard_rollbacks_total") != 0 {
				t.Errorf("active %s after 60 requests (statuses %v), want %s: the guard switched after an operator acted", got, statuses, tt.active)
			}
			if tt.active == "r3" && !slices.Contains(statuses, 500) {
				t.Errorf("r3 answered no 500 in 60 requests: the test did not make it err")
			}
		})
	}
}

// shutdownFatalPHP answers 200 and then, for a bad release, dies of a
// fatal error in work done after the response (as apps do once
// fastcgi_finish_request sent it): the page looks fine, and only PHP's
// log says it broke.
const shutdownFatalPHP = `<?php
header('Content-Type: text/plain');
echo "flaky=%[2]s ok\n";
if (%[1]t) {
    fastcgi_finish_request();
    fpmux_no_such_function();
}
`

// TestGuardRollsBackOnPHPFatals: r2's pages all answer 200 but PHP logs a
// fatal error for each; under max_fatal 0 (and a min_requests the load
// never reaches, so the ratio rule cannot act) the guard rolls it back.
func TestGuardRollsBackOnPHPFatals(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "guard:\n  window: 60s\n  min_requests: 100000\n  max_fatal: 0\n"})
	write := func(id string, bad bool) string {
		root := s.newRelease(id)
		if err := os.WriteFile(filepath.Join(root, "page.php"), []byte(fmt.Sprintf(shutdownFatalPHP, bad, id)), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", write("r1", false)); code != 0 {
		t.Fatalf("deploy r1: %d %s %s", code, out, errs)
	}
	s.notePgids()
	pid1 := s.releasesByID()["r1"].Pool.Pid
	stop := make(chan struct{})
	wait := s.runLoad(2, "/page.php", stop)
	code, out, errs := s.cli("deploy", "-id", "r2", "-root", write("r2", true), "-wait-guard")
	s.notePgids()
	if code != 1 || !strings.Contains(errs, "guard rolled release r2 back to r1: PHP logged 1 fatal error for it (over max_fatal 0)") {
		t.Errorf("deploy -wait-guard of r2: exit %d, stdout %q, stderr %q; want 1 and the fatal named", code, out, errs)
	}
	close(stop)
	results := wait()
	if s.activeID() != "r1" || s.releasesByID()["r1"].Pool.Pid != pid1 {
		t.Errorf("active %s after the rollback, want r1 on master %d", s.activeID(), pid1)
	}
	byR2, non200 := 0, 0
	for _, r := range results {
		if strings.HasPrefix(r.body, "flaky=r2 ") {
			byR2++
		}
		if r.err != nil || r.status != 200 {
			non200++
		}
	}
	if byR2 == 0 || non200 > 0 {
		t.Errorf("r2 answered %d requests and %d of %d answers were not 200; want some by r2, all 200 (the fatals show only in PHP's log)",
			byR2, non200, len(results))
	}
	g := s.guarded()["r2"].Guard
	if g == nil || g.EndedAt == nil || g.Fatals < 1 {
		t.Fatalf("r2's guard: %+v, want ended with the fatal counted", g)
	}
	t.Logf("guard (fatal): r2 answered %d requests (all 200) in %v from the switch to the rollback; the guard counted %d answers, %d fatal",
		byR2, g.EndedAt.Sub(g.Since).Round(100*time.Microsecond), g.Answered, g.Fatals)
	if !strings.Contains(s.logBuf.String(), "fpmux_no_such_function") {
		t.Error("fpmux's log does not show PHP's fatal error")
	}
}

// TestRestartEndsTheGuard: state.json names the active release and the
// ones before it, not a guard: after a restart of fpmux during a window,
// the new release serves unguarded, the previous pool is not started
// again, and a later error share switches nothing.
func TestRestartEndsTheGuard(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "guard:\n  window: 60s\n  min_requests: 5\n"})
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", s.guardRelease("r1", false)); code != 0 {
		t.Fatalf("deploy r1: %d %s %s", code, out, errs)
	}
	if code, out, errs := s.cli("deploy", "-id", "r2", "-root", s.guardRelease("r2", true)); code != 0 {
		t.Fatalf("deploy r2: %d %s %s", code, out, errs)
	}
	s.notePgids()
	if g := s.guarded()["r2"].Guard; g == nil || g.State != "watching" {
		t.Fatalf("r2's guard before the restart: %+v, want watching", g)
	}
	s.stopFpmux(syscall.SIGTERM)
	if left := s.phpFPMProcesses(); len(left) > 0 {
		t.Fatalf("php-fpm left after SIGTERM, the guard's previous pool included: %v", left)
	}
	s.startFpmux()
	s.notePgids()
	rs := s.guarded()
	if rs["r2"].State != "active" || rs["r2"].Guard != nil || len(rs) != 1 || s.spawns("r1") != 1 {
		t.Fatalf("after the restart: %+v, r1 spawned %d times; want only r2, active, unguarded, r1 not started again", rs, s.spawns("r1"))
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	var statuses []int
	for range 40 {
		code, _, err := s.get(c, "/flaky.php")
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, code)
	}
	if s.activeID() != "r2" || s.metric("fpmux_guard_rollbacks_total") != 0 || !slices.Contains(statuses, 500) {
		t.Errorf("after 40 requests (%v): active %s; want r2 still, no guard switch", statuses, s.activeID())
	}
}

// TestUpgradeEndsTheGuard: an in-place upgrade during a window ends the
// guard (the next fpmux adopts the active pool only): the fpmux before
// logs the end and stops the previous release's pool, the next one serves
// the new release unguarded, and a later error share switches nothing.
func TestUpgradeEndsTheGuard(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "guard:\n  window: 60s\n  min_requests: 5\n"})
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", s.guardRelease("r1", false)); code != 0 {
		t.Fatalf("deploy r1: %d %s %s", code, out, errs)
	}
	pid1 := s.releasesByID()["r1"].Pool.Pid
	if code, out, errs := s.cli("deploy", "-id", "r2", "-root", s.guardRelease("r2", true)); code != 0 {
		t.Fatalf("deploy r2: %d %s %s", code, out, errs)
	}
	s.notePgids()
	master2 := s.releasesByID()["r2"].Pool.Pid
	old := s.fpmuxPid()
	pid, _ := s.upgrade()
	t.Cleanup(func() { stopPid(t, pid) })
	if processLives(old) {
		t.Errorf("the fpmux before the upgrade (%d) still runs", old)
	}
	if !strings.Contains(s.logBuf.String(), `msg="guard ended" release=r2 previous=r1 reason="fpmux is upgrading"`) {
		t.Error(`no "guard ended" line with reason "fpmux is upgrading" from the fpmux before`)
	}
	s.waitFor("r1's master to be stopped", 30*time.Second, func() bool { return !pidAlive(pid1) })
	rs := s.guarded()
	if rs["r2"].State != "active" || rs["r2"].Guard != nil || rs["r2"].Pool == nil || rs["r2"].Pool.Pid != master2 {
		t.Fatalf("after the upgrade: %+v, want r2 active on master %d, unguarded", rs["r2"], master2)
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	var statuses []int
	for range 40 {
		code, _, err := s.get(c, "/flaky.php")
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, code)
	}
	if s.activeID() != "r2" || !slices.Contains(statuses, 500) {
		t.Errorf("after 40 requests (%v): active %s; want r2 still (no guard after the upgrade)", statuses, s.activeID())
	}
}

// End-to-end tests of rollback with kept releases (keep_previous,
// keep_for): an instant switch back to a kept pool under load, a rollback
// past the window that starts the pool again, and what a restart of fpmux
// keeps.

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// switchMark is one switch of the active release: begun when the command
// was called, returned when it came back.
type switchMark struct {
	id              string
	begun, returned time.Time
}

// staleAcross counts the responses served by another release than the one
// active when their request started: after a switch returned and before
// the next one began, only that switch's release may answer. Requests
// started while a switch ran may be answered by either side.
func staleAcross(results []loadResult, switches []switchMark) (stale int, examples []string) {
	for _, r := range results {
		rel, _, ok := servedBy(r.body)
		if r.err != nil || r.status != 200 || !ok {
			continue // judge counts these as failed
		}
		for i, sw := range switches {
			next := time.Now().Add(time.Hour)
			if i+1 < len(switches) {
				next = switches[i+1].begun
			}
			if r.start.After(sw.returned) && r.start.Before(next) && rel != sw.id {
				stale++
				examples = append(examples, fmt.Sprintf("started after %s was active, served by %s", sw.id, rel))
			}
		}
	}
	return stale, examples
}

// rollbackJSON is what status -json says of a release's rollback.
type rollbackJSON struct {
	ID             string     `json:"id"`
	State          string     `json:"state"`
	Rollback       string     `json:"rollback"`
	KeptUntil      *time.Time `json:"kept_until"`
	RollbackTarget bool       `json:"rollback_target"`
	Pool           *struct {
		Pid int `json:"pid"`
	} `json:"pool"`
}

func (s *stack) rollbackInfo() map[string]rollbackJSON {
	s.t.Helper()
	code, out, errs := s.cli("status", "-json")
	if code != 0 {
		s.t.Fatalf("status -json: %d %s", code, errs)
	}
	var rs []rollbackJSON
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		s.t.Fatalf("status -json: %v: %s", err, out)
	}
	m := map[string]rollbackJSON{}
	for _, r := range rs {
		m[r.ID] = r
	}
	return m
}

// rollback runs `fpmux rollback` and returns its switch mark.
func (s *stack) rollback(wantID string) switchMark {
	s.t.Helper()
	sw := switchMark{id: wantID, begun: time.Now()}
	code, out, errs := s.cli("rollback")
	sw.returned = time.Now()
	if code != 0 || !strings.Contains(out, "release "+wantID+" active") {
		s.t.Fatalf("rollback: exit %d %q %q, want %s active", code, out, errs, wantID)
	}
	s.notePgids()
	return sw
}

// spawns counts the php-fpm masters fpmux spawned for release id.
func (s *stack) spawns(id string) int {
	return strings.Count(s.logBuf.String(), `msg="php-fpm spawned" release=`+id+" ")
}

// TestRollbackToKeptReleaseUnderLoad: with keep_previous 1, the release a
// deploy switched away from stays ready with its master running; under
// load, rollback to it is an instant switch (no php-fpm spawned, same
// master pid) with no failed, mixed or stale request. After a reload sets
// keep_for to 1s, the next kept release is retired when its window ends,
// status says its rollback restarts it, and rollback starts it again from
// its root. The time each rollback took is logged.
func TestRollbackToKeptReleaseUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "keep_previous: 1\nkeep_for: 30s\n"})
	switches := []switchMark{{id: "r1", begun: time.Now()}}
	s.deploy("r1")
	switches[0].returned = time.Now()
	pid1 := s.releasesByID()["r1"].Pool.Pid

	stop := make(chan struct{})
	wait := s.runLoad(4, "/index.php?ms=30", stop)
	time.Sleep(300 * time.Millisecond)
	sw := switchMark{id: "r2", begun: time.Now()}
	s.deploy("r2")
	sw.returned = time.Now()
	switches = append(switches, sw)
	pid2 := s.releasesByID()["r2"].Pool.Pid
	s.waitFor("r1 to be kept", 30*time.Second, func() bool { return s.releasesByID()["r1"].State == "ready" })
	info := s.rollbackInfo()["r1"]
	if info.Rollback != "instant" || info.KeptUntil == nil || !info.RollbackTarget || info.Pool == nil || info.Pool.Pid != pid1 {
		t.Errorf("kept r1 in status -json: %+v, want rollback instant, kept_until, rollback_target, master %d", info, pid1)
	}
	if _, out, _ := s.cli("status"); !strings.Contains(out, "r1: kept until ") || !strings.Contains(out, "rollback instant") {
		t.Errorf("status does not mark r1 as kept with an instant rollback:\n%s", out)
	}
	if v := s.metric(`fpmux_release_state{release="r1",state="ready"}`); v != 1 {
		t.Errorf(`fpmux_release_state{release="r1",state="ready"} = %v, want 1`, v)
	}
	if !strings.Contains(s.logBuf.String(), `msg="release kept" release=r1 step=kept`) {
		t.Error("no step=kept line for r1")
	}
	time.Sleep(300 * time.Millisecond)

	instant := s.rollback("r1")
	switches = append(switches, instant)
	if got := s.releasesByID()["r1"].Pool.Pid; got != pid1 || s.spawns("r1") != 1 {
		t.Errorf("rollback to kept r1: master %d (was %d), %d php-fpm spawned for r1; want the same master, spawned once",
			got, pid1, s.spawns("r1"))
	}
	time.Sleep(300 * time.Millisecond)

	// A short window: the release kept next (r2) is retired when it ends.
	s.writeConfig(strings.Replace(s.cfgFile(), "keep_for: 30s", "keep_for: 1s", 1))
	s.signalFpmux(syscall.SIGHUP)
	s.waitFor("the reload", 10*time.Second, func() bool {
		return strings.Contains(s.logBuf.String(), "configuration reloaded")
	})
	back := s.rollback("r2") // r2 was kept at keep_for 30s: instant
	switches = append(switches, back)
	if got := s.releasesByID()["r2"].Pool.Pid; got != pid2 || s.spawns("r2") != 1 {
		t.Errorf("rollback to kept r2: master %d (was %d), spawned %d times", got, pid2, s.spawns("r2"))
	}
	s.waitFor("r1 to be kept and then retired when its 1s window ends", 30*time.Second, func() bool {
		return s.releasesByID()["r1"].State == "retired"
	})
	if !strings.Contains(s.logBuf.String(), `msg="release retired" release=r1 step=retired`) ||
		!strings.Contains(s.logBuf.String(), `reason="keep_for ended"`) {
		t.Error(`no step=retired line with reason "keep_for ended" for r1`)
	}
	if pidAlive(pid1) {
		t.Errorf("r1's master %d outlived its window", pid1)
	}
	if info := s.rollbackInfo()["r1"]; info.Rollback != "restart" || info.KeptUntil != nil || !info.RollbackTarget {
		t.Errorf("retired r1 in status -json: %+v, want rollback restart, no kept_until, rollback_target", info)
	}
	restart := s.rollback("r1")
	switches = append(switches, restart)
	if got := s.releasesByID()["r1"].Pool.Pid; got == pid1 || s.spawns("r1") != 2 {
		t.Errorf("rollback past the window: master %d (old %d), spawned %d times; want a new master", got, pid1, s.spawns("r1"))
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	results := wait()

	// judge counts failed and mixed responses; staleAcross, which knows a
	// release may come back, counts the stale ones.
	never := time.Now().Add(time.Hour)
	f, examples := judge(results, []deployMark{{"r1", never}, {"r2", never}})
	stale, staleEx := staleAcross(results, switches)
	t.Logf("rollback: to a kept release %v, %v; to a retired one (pool started again) %v; load sent=%d failed=%d mixed=%d stale=%d",
		instant.returned.Sub(instant.begun).Round(time.Millisecond), back.returned.Sub(back.begun).Round(time.Millisecond),
		restart.returned.Sub(restart.begun).Round(time.Millisecond), f.sent, f.failed, f.mixed, stale)
	if f.failed+f.mixed+stale > 0 {
		examples = append(examples, staleEx...)
		t.Errorf("failed=%d mixed=%d stale=%d; first ones: %v", f.failed, f.mixed, stale, examples[:min(len(examples), 5)])
	}
	perRelease := map[string]int{}
	for _, r := range results {
		if rel, _, ok := servedBy(r.body); ok && r.start.After(instant.returned) && r.end.Before(back.begun) {
			perRelease[rel]++
		}
	}
	if perRelease["r1"] == 0 {
		t.Error("no request was served by r1 between the rollback to it and the next switch: the load did not cover it")
	}
}

// TestRestartForgetsKeptReleases: a kept release is not carried across a
// restart of fpmux (state.json names the active release and the ones
// before it, not running pools): after the restart only the active
// release runs, and rollback starts the previous one from its root.
func TestRestartForgetsKeptReleases(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "keep_previous: 2\nkeep_for: 10m\n"})
	s.deploy("r1")
	s.deploy("r2")
	s.waitFor("r1 to be kept", 30*time.Second, func() bool { return s.releasesByID()["r1"].State == "ready" })
	pid1 := s.releasesByID()["r1"].Pool.Pid

	s.stopFpmux(syscall.SIGTERM)
	if left := s.phpFPMProcesses(); len(left) > 0 {
		t.Fatalf("php-fpm left after SIGTERM, kept pool included: %v", left)
	}
	s.startFpmux()
	rs := s.releasesByID()
	if rs["r2"].State != "active" || len(rs) != 1 {
		t.Fatalf("after restart: %+v, want only r2, active", rs)
	}
	s.notePgids()
	spawned := s.spawns("r1")
	s.rollback("r1")
	if got := s.releasesByID()["r1"].Pool.Pid; got == pid1 || s.spawns("r1") != spawned+1 {
		t.Errorf("rollback after restart: r1 on master %d (before the restart %d), spawned %d more; want it started again",
			got, pid1, s.spawns("r1")-spawned)
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	s.wantServedBy(c, "r1")
	// r2, switched away from after the restart, is kept again.
	s.waitFor("r2 to be kept", 30*time.Second, func() bool { return s.releasesByID()["r2"].State == "ready" })
}

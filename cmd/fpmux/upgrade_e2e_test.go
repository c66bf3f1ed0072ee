// This file owns the end-to-end tests of the in-place upgrade: 10 upgrades
// in a row under GET and POST load through nginx with keep-alive (nothing
// fails, the same php-fpm master serves with its opcache warm), an upgrade
// whose next fpmux cannot start (the one before serves on), and kill -9 of
// the fpmux an upgrade started (the lifeline takes php-fpm along).

package main

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// upgradeResult is one request of the upgrade load.
type upgradeResult struct {
	kind string // "GET", "POST 1KB", "POST 1MB"
	end  time.Time
	ok   bool
	err  string
}

// upgradeLoad runs GET and POST clients (bodies of 1 KB and 1,000,000
// bytes) on upgrade.php through nginx until stop is closed, each request
// bounded by its client's timeout, and at most 200,000 in all.
func (s *stack) upgradeLoad(stop <-chan struct{}) func() []upgradeResult {
	var mu sync.Mutex
	var results []upgradeResult
	var wg sync.WaitGroup
	client := func(kind string, size int) {
		defer wg.Done()
		c := newHTTPClient()
		body := make([]byte, size)
		rand.New(rand.NewSource(int64(size))).Read(body)
		want := fmt.Sprintf("len=%d md5=%x", size, md5.Sum(body))
		for n := 0; n < 40000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			var resp *http.Response
			var err error
			if size == 0 {
				resp, err = c.Get(s.nginxURL + "/upgrade.php")
			} else {
				resp, err = c.Post(s.nginxURL+"/upgrade.php", "application/octet-stream", bytes.NewReader(body))
			}
			r := upgradeResult{kind: kind}
			if err != nil {
				r.err = err.Error()
			} else {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case rerr != nil:
					r.err = rerr.Error()
				case resp.StatusCode != 200 || !strings.Contains(string(b), want):
					r.err = fmt.Sprintf("%d %q", resp.StatusCode, b)
				default:
					r.ok = true
				}
			}
			r.end = time.Now()
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}
	}
	for _, c := range []struct {
		kind string
		size int
		n    int
	}{{"GET", 0, 2}, {"POST 1KB", 1024, 2}, {"POST 1MB", 1_000_000, 1}} {
		for range c.n {
			wg.Add(1)
			go client(c.kind, c.size)
		}
	}
	return func() []upgradeResult {
		wg.Wait()
		return results
	}
}

var upgradedRe = regexp.MustCompile(`upgraded: pid (\d+) serves`)

// upgrade runs `fpmux upgrade` and returns the new fpmux's pid.
func (s *stack) upgrade() (newPid int, out string) {
	s.t.Helper()
	code, stdout, stderr := s.cli("upgrade", "-timeout", "90s")
	if code != 0 {
		s.t.Fatalf("fpmux upgrade: exit %d: %s%s", code, stdout, stderr)
	}
	m := upgradedRe.FindStringSubmatch(stdout)
	if m == nil {
		s.t.Fatalf("fpmux upgrade said %q", stdout)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid, stdout
}

// stopPid stops an fpmux this test did not start itself (one an upgrade
// started) with SIGTERM and waits until it is gone (SIGKILL after 60s).
func stopPid(t *testing.T, pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(60 * time.Second)
	for processLives(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("fpmux %d did not exit within 60s of SIGTERM", pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var startRe = regexp.MustCompile(`start=(\d+) hits=(\d+)`)

// opcacheFigures returns upgrade.php's opcache start time and hits.
func (s *stack) opcacheFigures() (start, hits int64) {
	s.t.Helper()
	code, body, err := s.get(newHTTPClient(), "/upgrade.php")
	m := startRe.FindStringSubmatch(body)
	if err != nil || code != 200 || m == nil {
		s.t.Fatalf("upgrade.php: %d %v %q", code, err, body)
	}
	start, _ = strconv.ParseInt(m[1], 10, 64)
	hits, _ = strconv.ParseInt(m[2], 10, 64)
	return start, hits
}

// TestUpgradeUnderLoad upgrades fpmux 10 times in a row under GET and POST
// load through nginx with keep-alive: no request may fail, the same php-fpm
// master serves throughout with its opcache (same start time, hits going
// on), no master is restarted, each old fpmux exits, and no php-fpm process
// is left after the test. It logs the longest gap in served requests
// around each upgrade and how long each took (upgrade asked to old exit).
func TestUpgradeUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	master := s.releasesByID()["r1"].Pool.Pid
	startBefore, hitsBefore := s.opcacheFigures()
	cur := s.fpmuxPid()
	t.Cleanup(func() { stopPid(t, cur) })

	stop := make(chan struct{})
	wait := s.upgradeLoad(stop)
	time.Sleep(time.Second)
	const upgrades = 10
	type mark struct{ from, to time.Time }
	var marks []mark
	for i := range upgrades {
		old := cur
		from := time.Now()
		pid, out := s.upgrade() // waits until the old fpmux exited
		to := time.Now()
		cur = pid
		marks = append(marks, mark{from, to})
		if processLives(old) {
			t.Errorf("upgrade %d: the old fpmux %d still runs after `fpmux upgrade` returned: %s", i+1, old, out)
		}
		if !processLives(pid) {
			t.Fatalf("upgrade %d: the new fpmux %d does not run: %s", i+1, pid, out)
		}
		if got := s.releasesByID()["r1"]; got.State != "active" || got.Pool == nil || got.Pool.Pid != master {
			t.Fatalf("upgrade %d: r1 is %s with pool %+v, want active on master %d", i+1, got.State, got.Pool, master)
		}
		time.Sleep(700 * time.Millisecond) // load on the new fpmux alone
	}
	close(stop)
	results := wait()

	failed := map[string]int{}
	served := map[string]int{}
	var firstBad []string
	var ends []time.Time
	for _, r := range results {
		if r.ok {
			served[r.kind]++
			ends = append(ends, r.end)
			continue
		}
		failed[r.kind]++
		if len(firstBad) < 5 {
			firstBad = append(firstBad, r.kind+": "+r.err)
		}
	}
	t.Logf("served %v, failed %v", served, failed)
	for _, k := range []string{"GET", "POST 1KB", "POST 1MB"} {
		if served[k] == 0 {
			t.Errorf("no %s request was served: the load did not run", k)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%v requests failed across %d upgrades, want 0; first: %v", failed, upgrades, firstBad)
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	var gaps, durations []time.Duration
	for _, m := range marks {
		var gap time.Duration
		for i := 1; i < len(ends); i++ {
			if ends[i].After(m.from.Add(-200*time.Millisecond)) && ends[i-1].Before(m.to.Add(200*time.Millisecond)) {
				gap = max(gap, ends[i].Sub(ends[i-1]))
			}
		}
		gaps = append(gaps, gap)
		durations = append(durations, m.to.Sub(m.from))
	}
	t.Logf("longest gap in served requests around each upgrade: %v (median %v, max %v)", roundAll(gaps), median(gaps), slices.Max(gaps))
	t.Logf("upgrade duration, asked to old fpmux exited: %v (median %v, max %v)", roundAll(durations), median(durations), slices.Max(durations))

	if got := s.releasesByID()["r1"].Pool.Pid; got != master {
		t.Errorf("r1's master after %d upgrades: %d, want %d (the same, opcache warm)", upgrades, got, master)
	}
	startAfter, hitsAfter := s.opcacheFigures()
	if startAfter != startBefore || hitsAfter <= hitsBefore {
		t.Errorf("opcache after the upgrades: start %d hits %d, before: start %d hits %d; want the same start and more hits", startAfter, hitsAfter, startBefore, hitsBefore)
	}
	// Absent (-1) until a first restart, like any release's.
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v > 0 {
		t.Errorf(`fpmux_pool_restarts_total{release="r1"} = %v, want none`, v)
	}
	stopPid(t, cur)
	s.assertNoPHPFPM()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestUpgradeFailsCleanly: an upgrade whose next fpmux cannot start (its
// config file became invalid) fails with the reason, and the fpmux asked
// serves on, with its pool, and upgrades once the config is fixed.
func TestUpgradeFailsCleanly(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	master := s.releasesByID()["r1"].Pool.Pid
	old := s.fpmuxPid()
	if err := os.WriteFile(s.cfgPath, []byte(s.cfgText+"no_such_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	code, stdout, stderr := s.cli("upgrade", "-timeout", "60s")
	t.Logf("the failed upgrade answered in %v: %s", time.Since(asked).Round(time.Millisecond), strings.TrimSpace(stderr))
	if code == 0 || !strings.Contains(stderr, "upgrade failed") || !strings.Contains(stderr, "keeps serving") || !strings.Contains(stderr, "no_such_key") {
		t.Errorf("upgrade with a bad config: exit %d, %q %q; want a failure that says the old fpmux keeps serving", code, stdout, stderr)
	}
	if !processLives(old) {
		t.Fatalf("the fpmux asked to upgrade exited")
	}
	c := newHTTPClient()
	if code, body, err := s.get(c, "/upgrade.php"); err != nil || code != 200 || !strings.Contains(body, "release=r1") {
		t.Errorf("after the failed upgrade: %d %v %q, want r1 serving", code, err, body)
	}
	if got := s.releasesByID()["r1"]; got.State != "active" || got.Pool.Pid != master {
		t.Errorf("after the failed upgrade r1 is %s on %d, want active on %d", got.State, got.Pool.Pid, master)
	}
	// Not frozen: a deploy works, and once the config is good again, an
	// upgrade does.
	s.deploy("r2")
	if err := os.WriteFile(s.cfgPath, []byte(s.cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	pid, _ := s.upgrade()
	t.Cleanup(func() { stopPid(t, pid) })
	if code, body, err := s.get(c, "/upgrade.php"); err != nil || code != 200 || !strings.Contains(body, "release=r2") {
		t.Errorf("after the upgrade: %d %v %q, want r2 serving", code, err, body)
	}
}

// TestUpgradeThenKillNewFpmux: kill -9 of the fpmux an upgrade started
// leaves no php-fpm process behind (the lifeline it inherited).
func TestUpgradeThenKillNewFpmux(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	pid, _ := s.upgrade()
	if len(s.phpFPMProcesses()) == 0 {
		t.Fatal("no php-fpm runs after the upgrade")
	}
	killed := time.Now()
	syscall.Kill(pid, syscall.SIGKILL)
	s.waitFor("every php-fpm of the killed fpmux to exit", 10*time.Second, func() bool {
		return len(s.phpFPMProcesses()) == 0
	})
	t.Logf("php-fpm gone %v after kill -9 of the upgraded fpmux", time.Since(killed).Round(time.Millisecond))
}

// TestUpgradeTellsSystemdTheNewMainPID: under Type=notify (NOTIFY_SOCKET),
// an upgrade through SIGUSR2 (what `systemctl kill -s USR2
// --kill-whom=main` sends) has the fpmux before send MAINPID=<new pid>, the
// only one NotifyAccess=main accepts, and the new one READY=1 with its own
// MAINPID=; the one before never says STOPPING=1, which would have systemd
// stop the service.
func TestUpgradeTellsSystemdTheNewMainPID(t *testing.T) {
	s := newStack(t, stackOptions{notify: true, activation: true})
	s.deploy("r1")
	from, _ := s.waitNotify("READY=1", 0, 20*time.Second, lineIs("READY=1"))
	old := s.fpmuxPid()
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	_, m := s.waitNotify("MAINPID= from the fpmux before", from+1, 60*time.Second, func(l string) bool {
		return strings.HasPrefix(l, "MAINPID=") && l != "MAINPID="+strconv.Itoa(old)
	})
	var pid int
	for _, l := range strings.Split(m.text, "\n") {
		if v, ok := strings.CutPrefix(l, "MAINPID="); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	t.Cleanup(func() { stopPid(t, pid) })
	s.waitNotify("READY=1 from the new fpmux", from+1, 30*time.Second, lineIs("READY=1"))
	s.waitFor("the fpmux before to exit", 60*time.Second, func() bool { return !processLives(old) })
	for _, m := range s.notes.all()[from+1:] {
		if m.hasLine(func(l string) bool { return strings.HasPrefix(l, "STOPPING=1") }) {
			t.Errorf("an upgrade told systemd %q", m.text)
		}
	}
	if !processLives(pid) {
		t.Fatalf("the new main pid %d does not run", pid)
	}
	if code, body, err := s.get(newHTTPClient(), "/upgrade.php"); err != nil || code != 200 || !strings.Contains(body, "release=r1") {
		t.Errorf("after the upgrade: %d %v %q, want r1", code, err, body)
	}
}

// TestUpgradeAdoptedMasterRestarts: the fpmux an upgrade started is not
// the adopted master's parent, yet sees it die (pidfd) and starts a new
// one, counted in fpmux_pool_restarts_total, as for a master it spawned.
func TestUpgradeAdoptedMasterRestarts(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	master := s.releasesByID()["r1"].Pool.Pid
	pid, _ := s.upgrade()
	t.Cleanup(func() { stopPid(t, pid) })
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now int
	s.waitFor("a new master for r1", 30*time.Second, func() bool {
		r := s.releasesByID()["r1"]
		if r.Pool != nil && r.Pool.Pid != 0 && r.Pool.Pid != master {
			now = r.Pool.Pid
			return true
		}
		return false
	})
	s.notePgids()
	s.waitFor("r1 to serve on its new master", 30*time.Second, func() bool {
		code, body, err := s.get(newHTTPClient(), "/upgrade.php")
		return err == nil && code == 200 && strings.Contains(body, "release=r1")
	})
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v != 1 {
		t.Errorf(`fpmux_pool_restarts_total{release="r1"} = %v, want 1`, v)
	}
	// Its orphaned workers: the harness's cleanup checks that no process of
	// either master's group outlives the test.
	t.Logf("adopted master %d killed; new master %d", master, now)
}

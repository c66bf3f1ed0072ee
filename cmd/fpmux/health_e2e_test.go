// End-to-end tests of what a new release must pass before it is ready
// (issue 12, section 1): health checks, warm-up paths as checks, and the
// workers' access to the release, each refused under load through nginx
// while the active release serves on.

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// poolProcesses lists the live processes of release id's php-fpm pool:
// its master (whose config lies in the state dir's pools/<id>/) and its
// workers (titled "php-fpm: pool <id>").
func (s *stack) poolProcesses(id string) []string {
	var found []string
	ps, _ := proc.Processes()
	for _, p := range ps {
		if strings.Contains(p.Cmdline, filepath.Join(s.stateDir, "pools", id)+"/") || p.Cmdline == "php-fpm: pool "+id {
			found = append(found, strconv.Itoa(p.Pid)+" "+p.Cmdline)
		}
	}
	return found
}

// releaseHealth reads one release's health results from the admin API.
func (s *stack) releaseHealth(id string) (state string, health []struct {
	Path   string `json:"path"`
	Status int    `json:"status"`
	MS     int64  `json:"ms"`
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
}) {
	s.t.Helper()
	b, err := s.adminGet("/v1/releases/" + id)
	if err != nil {
		s.t.Fatal(err)
	}
	var r struct {
		State  string          `json:"state"`
		Health json.RawMessage `json:"health"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		s.t.Fatalf("release %s: %v: %s", id, err, b)
	}
	if len(r.Health) > 0 {
		if err := json.Unmarshal(r.Health, &health); err != nil {
			s.t.Fatalf("release %s health: %v: %s", id, err, r.Health)
		}
	}
	return r.State, health
}

// TestHealthCheckRefusesASyntaxErrorUnderLoad is the first case:
// a release whose front controller has a PHP syntax error, deployed with
// a health path (the config's health key), while nginx carries a
// concurrent load to the active release. The deploy exits non-zero with one
// line quoting PHP's parse error, no request of the load fails, the active
// release (same master) serves on, and no php-fpm process of the bad
// release is left.
func TestHealthCheckRefusesASyntaxErrorUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "health:\n  - path: /?ms=0\n    body: \"files=\"\n"})
	root := s.newRelease("r1")
	code, out, errs := s.cli("deploy", "-id", "r1", "-root", root)
	if code != 0 || !strings.Contains(out, "passed 1 health checks in ") {
		t.Fatalf("deploy r1: exit %d: %s%s; want it active with its check passed", code, out, errs)
	}
	s.notePgids()
	pid := s.releasesByID()["r1"].Pool.Pid

	bad := s.newRelease("bad")
	front := filepath.Join(bad, "index.php")
	if err := os.WriteFile(front, []byte("<?php\n$parts = [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wait := s.runLoad(4, "/index.php?ms=10", stop)
	time.Sleep(300 * time.Millisecond) // the load is under way before the deploy
	start := time.Now()
	code, out, errs = s.cli("deploy", "-id", "bad", "-root", bad)
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // and goes on after it
	close(stop)
	results := wait()

	line := strings.TrimSpace(errs)
	if code == 0 {
		t.Fatalf("deploy of a release with a syntax error succeeded: %s", out)
	}
	want := "fpmux deploy: release bad: health check /?ms=0 failed: answered 500 with an empty body (want 200): PHP Parse error:  "
	if !strings.HasPrefix(line, want) || !strings.Contains(line, " in "+front+" on line ") || strings.Contains(line, "\n") {
		t.Errorf("deploy said %q\nwant one line starting %q and naming %s", line, want, front)
	}
	f, examples := judge(results, []deployMark{{"r1", time.Time{}}})
	if f.sent == 0 || f.failed+f.mixed+f.stale > 0 {
		t.Errorf("the active release did not serve every request: %+v %v", f, examples[:min(len(examples), 5)])
	}
	rs := s.releasesByID()
	if rs["r1"].State != "active" || rs["r1"].Pool == nil || rs["r1"].Pool.Pid != pid || rs["bad"].State != "failed" {
		t.Errorf("after the refusal: r1 %+v (master was %d), bad %s; want r1 active on the same master, bad failed", rs["r1"], pid, rs["bad"].State)
	}
	state, health := s.releaseHealth("bad")
	if state != "failed" || len(health) != 1 || health[0].OK || health[0].Status != 500 || !strings.Contains(health[0].Error, "PHP Parse error") {
		t.Errorf("bad's health in its release JSON: %+v", health)
	}
	if left := s.poolProcesses("bad"); len(left) > 0 {
		t.Errorf("php-fpm processes of the refused release are left: %v", left)
	}
	if v := s.metric("fpmux_health_check_failures_total"); v != 1 {
		t.Errorf("fpmux_health_check_failures_total = %v, want 1", v)
	}
	if v := s.metric(`fpmux_deploys_total{outcome="failed"}`); v != 1 {
		t.Errorf(`fpmux_deploys_total{outcome="failed"} = %v, want 1`, v)
	}
	t.Logf("syntax error refused: deploy returned in %v, the check took %d ms; load sent=%d failed=%d mixed=%d stale=%d",
		took.Round(time.Millisecond), health[0].MS, f.sent, f.failed, f.mixed, f.stale)
}

// TestChecksRefuseBadReleasesUnderLoad deploys, one after another under a
// load through nginx, releases that php-fpm's ping alone would pass: a
// check answered 200 with the wrong body, a check that hangs past its
// timeout, a root the pool's workers cannot enter, and warm-up paths
// answered 404 and 500 (warmup_failures is fail by default). Each deploy
// is refused with the reason, its pool is gone, and the active release
// serves every request of the load on the same master.
func TestChecksRefuseBadReleasesUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	pid := s.releasesByID()["r1"].Pool.Pid
	closedMode := os.FileMode(0o700) // of root, the workers being www-data
	if os.Geteuid() != 0 {
		closedMode = 0 // of the test's own user, who is also the workers'
	}
	tests := []struct {
		name    string
		health  any      // the deploy's "health"; nil: none
		warmup  []string // the deploy's "warmup"
		script  string   // written as health.php
		mode    os.FileMode
		status  int
		want    string
		timeout time.Duration // the check's; the deploy must return within it and a slack
	}{
		{name: "200 with the wrong body", health: []map[string]string{{"path": "/health.php", "body": "database ok"}},
			script: `<?php echo "database down\n";`, status: 502,
			want: `health check /health.php failed: answered 200 with body "database down" (want "database ok" in the body)`},
		{name: "hangs past its timeout", health: []map[string]string{{"path": "/health.php", "timeout": "2s"}},
			script: `<?php sleep(60); echo "late\n";`, status: 502, timeout: 2 * time.Second,
			want: "health check /health.php failed: no answer within its timeout of 2s"},
		{name: "unreadable release root", health: []map[string]string{{"path": "/health.php"}},
			script: `<?php echo "ok\n";`, mode: closedMode, status: 422,
			want: fmt.Sprintf("(mode %04o, owner ", closedMode)},
		{name: "warm-up answered 404", warmup: []string{"/", "/nope.php"}, status: 502,
			want: "warm-up /nope.php failed (1 of 1 requests): answered 404"},
		{name: "warm-up answered 500", warmup: []string{"/warmup.php?fail=1"}, status: 502,
			want: "warm-up /warmup.php?fail=1 failed (1 of 1 requests): answered 500"},
	}
	stop := make(chan struct{})
	wait := s.runLoad(4, "/index.php?ms=10", stop)
	type figure struct {
		name string
		took time.Duration
	}
	var figures []figure
	for i, tt := range tests {
		id := fmt.Sprintf("bad%d", i)
		root := s.newRelease(id)
		if tt.script != "" {
			if err := os.WriteFile(filepath.Join(root, "health.php"), []byte(tt.script), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if tt.mode != 0 || tt.name == "unreadable release root" {
			if err := os.Chmod(root, tt.mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(root, 0o755) })
		}
		body := map[string]any{"id": id, "root": root, "warmup": tt.warmup}
		if tt.warmup == nil {
			body["warmup"] = []string{}
		}
		if tt.health != nil {
			body["health"] = tt.health
		}
		start := time.Now()
		status, msg := s.adminPost("/v1/releases", body)
		took := time.Since(start)
		figures = append(figures, figure{tt.name, took})
		if status != tt.status || !strings.Contains(msg, tt.want) {
			t.Errorf("%s: %d %q\nwant %d saying %q", tt.name, status, msg, tt.status, tt.want)
		}
		if tt.name == "unreadable release root" && !strings.Contains(msg, "release root "+root+" (mode") {
			t.Errorf("%s: %q does not name the root", tt.name, msg)
		}
		if tt.timeout > 0 && took > tt.timeout+20*time.Second {
			t.Errorf("%s: the deploy returned %v after it began, past the check's timeout of %v and a slack of 20s", tt.name, took, tt.timeout)
		}
		if st := s.releasesByID()[id].State; st != "failed" {
			t.Errorf("%s: release is %s, want failed", tt.name, st)
		}
		if left := s.poolProcesses(id); len(left) > 0 {
			t.Errorf("%s: php-fpm processes of the refused release are left: %v", tt.name, left)
		}
	}
	close(stop)
	results := wait()
	f, examples := judge(results, []deployMark{{"r1", time.Time{}}})
	if f.sent == 0 || f.failed+f.mixed+f.stale > 0 {
		t.Errorf("the active release did not serve every request: %+v %v", f, examples[:min(len(examples), 5)])
	}
	if r1 := s.releasesByID()["r1"]; r1.State != "active" || r1.Pool == nil || r1.Pool.Pid != pid {
		t.Errorf("r1 after the refusals: %+v, want active on master %d", r1, pid)
	}
	if v := s.metric(`fpmux_deploys_total{outcome="failed"}`); v != float64(len(tests)) {
		t.Errorf(`fpmux_deploys_total{outcome="failed"} = %v, want %d`, v, len(tests))
	}
	if v := s.metric("fpmux_health_check_failures_total"); v != 2 {
		t.Errorf("fpmux_health_check_failures_total = %v, want 2 (the body and the timeout)", v)
	}
	for _, fg := range figures {
		t.Logf("refused %-24s in %v", fg.name+":", fg.took.Round(time.Millisecond))
	}
	t.Logf("load during the refusals: sent=%d failed=%d mixed=%d stale=%d", f.sent, f.failed, f.mixed, f.stale)
}

// TestDeployWithoutChecksSaysOnlyThePingRan: with neither health checks
// nor warm-up paths, fpmux deploy says plainly that only php-fpm's ping
// was checked, so a deploy script's log does not read as if the app had
// been tried.
func TestDeployWithoutChecksSaysOnlyThePingRan(t *testing.T) {
	s := newStack(t, stackOptions{})
	root := s.newRelease("r1")
	code, out, errs := s.cli("deploy", "-id", "r1", "-root", root)
	if code != 0 || !strings.Contains(out, "only php-fpm's ping was checked: no health check or warm-up path ran PHP") {
		t.Errorf("deploy without checks: exit %d: %q %q", code, out, errs)
	}
	root = s.newRelease("r2")
	code, out, errs = s.cli("deploy", "-id", "r2", "-root", root, "-health", "/a.php")
	if code != 0 || strings.Contains(out, "only php-fpm's ping") || !strings.Contains(out, "passed 1 health checks") {
		t.Errorf("deploy with -health: exit %d: %q %q", code, out, errs)
	}
	if pgid := s.releasesByID()["r2"].Pool.Pid; syscall.Kill(pgid, 0) != nil {
		t.Errorf("r2's master %d is not running", pgid)
	}
}

// End-to-end tests: nginx -> fpmux -> per-release php-fpm pools, all real,
// proving the contract's promises (atomic switch, isolation, drain, refused
// releases, crash recovery, clean stop and restart).

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loadResult is one request of a load run.
type loadResult struct {
	start, end time.Time
	status     int
	body       string
	err        error
}

// runLoad sends GET requests to path from n clients until stop is closed
// and returns every result.
func (s *stack) runLoad(n int, path string, stop <-chan struct{}) func() []loadResult {
	return s.runLoadWith(n, stop, func(c *http.Client) (int, string, error) { return s.get(c, path) })
}

// runLoadWith runs do from n clients until stop is closed and returns
// every result.
func (s *stack) runLoadWith(n int, stop <-chan struct{}, do func(c *http.Client) (int, string, error)) func() []loadResult {
	var mu sync.Mutex
	var all []loadResult
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newHTTPClient()
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := loadResult{start: time.Now()}
				r.status, r.body, r.err = do(c)
				r.end = time.Now()
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		}()
	}
	return func() []loadResult {
		wg.Wait()
		return all
	}
}

var probeLine = regexp.MustCompile(`^param=(\S+) files=(\S+)\n$`)

// servedBy parses an index.php answer: the release every part names, or
// mixed=true when they disagree.
func servedBy(body string) (release string, mixed, ok bool) {
	m := probeLine.FindStringSubmatch(body)
	if m == nil {
		return "", false, false
	}
	release = m[1]
	for _, part := range strings.Split(m[2], ",") {
		_, rel, _ := strings.Cut(part, "@")
		if rel != release {
			mixed = true
		}
	}
	return release, mixed, true
}

type deployMark struct {
	id       string
	returned time.Time
}

type loadFigures struct{ sent, failed, mixed, stale int }

// judge counts failed, mixed and stale responses. A response is stale when
// its request started after a deploy had returned but was served by an
// older release.
func judge(results []loadResult, deploys []deployMark) (f loadFigures, examples []string) {
	order := map[string]int{}
	for i, d := range deploys {
		order[d.id] = i
	}
	for _, r := range results {
		f.sent++
		if r.err != nil || r.status != 200 {
			f.failed++
			examples = append(examples, fmt.Sprintf("status %d err %v body %q", r.status, r.err, r.body))
			continue
		}
		rel, mixed, ok := servedBy(r.body)
		if !ok {
			f.failed++
			examples = append(examples, fmt.Sprintf("unparsable body %q", r.body))
			continue
		}
		if mixed {
			f.mixed++
			examples = append(examples, "mixed: "+r.body)
		}
		latest := -1
		for i, d := range deploys {
			if d.returned.Before(r.start) {
				latest = i
			}
		}
		if idx, known := order[rel]; !known || idx < latest {
			f.stale++
			examples = append(examples, fmt.Sprintf("stale: started after %s was active, served by %s", deploys[latest].id, rel))
		}
	}
	return f, examples
}

func TestAtomicDeploysUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{})
	deploys := []deployMark{{"r1", time.Now()}}
	s.deploy("r1")
	deploys[0].returned = time.Now()

	stop := make(chan struct{})
	wait := s.runLoad(8, "/index.php?ms=30", stop)
	var took []time.Duration
	for i := 2; i <= 6; i++ {
		time.Sleep(400 * time.Millisecond)
		id := fmt.Sprintf("r%d", i)
		took = append(took, s.deploy(id))
		deploys = append(deploys, deployMark{id, time.Now()})
	}
	time.Sleep(400 * time.Millisecond)
	close(stop)
	results := wait()

	f, examples := judge(results, deploys)
	perRelease := map[string]int{}
	for _, r := range results {
		if rel, _, ok := servedBy(r.body); ok {
			perRelease[rel]++
		}
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	t.Logf("atomicity: sent=%d failed=%d mixed=%d stale=%d; per release %v; deploy->active median %v of %v",
		f.sent, f.failed, f.mixed, f.stale, perRelease, sorted[len(sorted)/2].Round(time.Millisecond), took)
	if f.failed+f.mixed+f.stale > 0 {
		t.Errorf("failed=%d mixed=%d stale=%d; first ones: %v", f.failed, f.mixed, f.stale, examples[:min(len(examples), 5)])
	}
	for _, d := range deploys[1:] {
		if perRelease[d.id] == 0 {
			t.Errorf("release %s served no request: the load did not cover every switch", d.id)
		}
	}
	// Every release but the last retires, and its php-fpm goes with it.
	s.waitFor("old releases to retire", 30*time.Second, func() bool {
		rs := s.releasesByID()
		for _, d := range deploys[:len(deploys)-1] {
			if rs[d.id].State != "retired" {
				return false
			}
		}
		return rs["r6"].State == "active"
	})
}

func getJSON(t *testing.T, s *stack, path string, v any) {
	t.Helper()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	status, body, err := s.get(c, path)
	if err != nil || status != 200 {
		t.Fatalf("GET %s: %d %v %q", path, status, err, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v: %q", path, err, body)
	}
}

func TestReleasesAreIsolated(t *testing.T) {
	s := newStack(t, stackOptions{ini: map[string]string{
		"include_path": ".:{release_root}/lib",
		// opcache skips files younger than 2s, and the test writes its
		// releases a moment before deploying them.
		"opcache.file_update_protection": "0",
	}})
	s.deploy("r1")

	// r1 warms its opcache, stores a value in APCu, loads lib/ via include_path.
	var op struct {
		Release string   `json:"release"`
		Enabled bool     `json:"enabled"`
		Scripts []string `json:"scripts"`
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	if st, body, err := s.get(c, "/index.php?ms=0"); err != nil || st != 200 {
		t.Fatalf("r1 index: %d %v %q", st, err, body)
	}
	getJSON(t, s, "/opcache.php", &op)
	if !op.Enabled || op.Release != "r1" || !containsPath(op.Scripts, "/releases/r1/index.php") {
		t.Fatalf("r1 opcache does not hold r1's scripts: %+v", op)
	}
	var ap struct {
		Release string `json:"release"`
		Value   any    `json:"value"`
	}
	getJSON(t, s, "/apcu.php?set=1", &ap)
	getJSON(t, s, "/apcu.php", &ap)
	if ap.Value != "r1" {
		t.Fatalf("r1 cannot read back its own APCu value: %+v", ap)
	}
	var inc struct {
		Release     string   `json:"release"`
		Inc         string   `json:"inc"`
		IncludePath string   `json:"include_path"`
		Files       []string `json:"files"`
	}
	getJSON(t, s, "/includes.php", &inc)
	if inc.Inc != "r1" {
		t.Fatalf("r1 include_path found %+v", inc)
	}

	s.deploy("r2")
	// r2's pool starts with none of r1's scripts in opcache.
	getJSON(t, s, "/opcache.php", &op)
	if op.Release != "r2" || !op.Enabled {
		t.Fatalf("after the switch: %+v", op)
	}
	for _, script := range op.Scripts {
		if !strings.Contains(script, "/releases/r2/") {
			t.Errorf("r2's opcache holds a script outside r2: %s", script)
		}
	}
	// r1's APCu value is invisible to r2.
	getJSON(t, s, "/apcu.php", &ap)
	if ap.Release != "r2" || ap.Value != false {
		t.Errorf("r2 sees APCu value %v (want false: nothing stored in r2)", ap.Value)
	}
	// include_path is r2's own lib, and every file r2 loads is r2's.
	getJSON(t, s, "/includes.php", &inc)
	if inc.Inc != "r2" || !strings.Contains(inc.IncludePath, "/releases/r2/lib") {
		t.Errorf("r2 include_path: %+v", inc)
	}
	for _, f := range inc.Files {
		if !strings.Contains(f, "/releases/r2/") {
			t.Errorf("r2 loaded a file outside its release: %s", f)
		}
	}
	// After r2 ran its pages, its opcache holds only r2's scripts still.
	getJSON(t, s, "/opcache.php", &op)
	if !containsPath(op.Scripts, "/releases/r2/includes.php") {
		t.Errorf("r2's opcache does not hold its own scripts: %v", op.Scripts)
	}
	for _, script := range op.Scripts {
		if !strings.Contains(script, "/releases/r2/") {
			t.Errorf("r2's opcache holds a script outside r2: %s", script)
		}
	}
}

func containsPath(paths []string, suffix string) bool {
	for _, p := range paths {
		if strings.HasSuffix(p, suffix) {
			return true
		}
	}
	return false
}

// slowRequestInFlight starts a request of ms milliseconds in the background
// and returns once release id counts it in flight.
func (s *stack) slowRequestInFlight(id string, ms int) <-chan loadResult {
	s.t.Helper()
	ch := s.slowRequest(ms)
	s.waitFor("the slow request to be in flight on "+id, 10*time.Second, func() bool {
		return s.releasesByID()[id].InFlight == 1
	})
	return ch
}

// slowRequest starts a request for ms milliseconds in the background.
func (s *stack) slowRequest(ms int) <-chan loadResult {
	ch := make(chan loadResult, 1)
	go func() {
		c := newHTTPClient()
		defer c.CloseIdleConnections()
		r := loadResult{start: time.Now()}
		r.status, r.body, r.err = s.get(c, fmt.Sprintf("/index.php?ms=%d", ms))
		r.end = time.Now()
		ch <- r
	}()
	return ch
}

func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestDrainFinishesSlowRequestOnOldRelease(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	r1pid := s.releasesByID()["r1"].Pool.Pid
	slow := s.slowRequestInFlight("r1", 1500)
	s.deploy("r2")
	// New requests go to r2 at once while r1 drains.
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	_, body, err := s.get(c, "/index.php?ms=0")
	if rel, _, _ := servedBy(body); err != nil || rel != "r2" {
		t.Fatalf("request after the switch: %q %v", body, err)
	}
	if st := s.releasesByID()["r1"].State; st != "draining" {
		t.Errorf("r1 is %s while its slow request runs, want draining", st)
	}
	r := <-slow
	if rel, mixed, ok := servedBy(r.body); r.err != nil || r.status != 200 || !ok || mixed || rel != "r1" {
		t.Fatalf("slow request: status %d err %v body %q, want all of r1", r.status, r.err, r.body)
	}
	s.waitFor("r1 to retire and its master to exit", 15*time.Second, func() bool {
		return s.releasesByID()["r1"].State == "retired" && !pidAlive(r1pid)
	})
	if v := s.metric("fpmux_drains_forced_total"); v != 0 {
		t.Errorf("fpmux_drains_forced_total = %v, want 0", v)
	}
}

func TestDrainTimeoutCutsAndCounts(t *testing.T) {
	s := newStack(t, stackOptions{drainTimeout: "1s"})
	s.deploy("r1")
	r1pid := s.releasesByID()["r1"].Pool.Pid
	slow := s.slowRequestInFlight("r1", 8000)
	s.deploy("r2")
	r := <-slow
	if r.err == nil && r.status == 200 {
		t.Fatalf("the request that outlived drain_timeout was not cut: %q", r.body)
	}
	s.waitFor("r1 to retire", 15*time.Second, func() bool {
		return s.releasesByID()["r1"].State == "retired" && !pidAlive(r1pid)
	})
	if v := s.metric("fpmux_drains_forced_total"); v != 1 {
		t.Errorf("fpmux_drains_forced_total = %v, want 1", v)
	}
}

// writeWrapper writes a php-fpm wrapper script that misbehaves for one
// release (named by its pool directory) and runs the real php-fpm otherwise.
func writeWrapper(t *testing.T, dir, realFPM string) string {
	t.Helper()
	path := filepath.Join(dir, "php-fpm-wrapper")
	script := fmt.Sprintf(`#!/bin/sh
case "$*" in
  */pools/crashes/*) echo "ERROR: wrapper: this release's php-fpm refuses to start" >&2; exit 78 ;;
  */pools/hangs/*) exec sleep 3600 ;;
esac
exec %s "$@"
`, realFPM)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRefusedReleasesKeepTheActiveOneServing(t *testing.T) {
	realFPM, _ := needTools(t)
	wrapDir := tempDir(t)
	s := newStack(t, stackOptions{phpFPM: writeWrapper(t, wrapDir, realFPM), startTimeout: "5s"})
	s.deploy("good")

	outside := tempDir(t)
	os.MkdirAll(filepath.Join(outside, "evil"), 0o755)
	symlinkOut := filepath.Join(s.releases, "link-out")
	os.Symlink(filepath.Join(outside, "evil"), symlinkOut)
	aFile := filepath.Join(s.releases, "a-file")
	os.WriteFile(aFile, []byte("x"), 0o644)

	stop := make(chan struct{})
	wait := s.runLoad(4, "/index.php?ms=10", stop)
	tests := []struct {
		name, id, root, want string
	}{
		{"missing root", "missing", filepath.Join(s.releases, "nope"), "no such file"},
		{"outside allowed_roots", "outside", filepath.Join(outside, "evil"), "not under allowed_roots"},
		{"symlink out of allowed_roots", "linked", symlinkOut, "not under allowed_roots"},
		{"not a directory", "file", aFile, "not a directory"},
		{"bad id", "../x", s.releases, "release id"},
		{"pool fails to start", "crashes", s.newRelease("crashes"), "this release's php-fpm refuses to start"},
		{"pool never healthy", "hangs", s.newRelease("hangs"), "health check"},
	}
	for _, tt := range tests {
		code, out, errs := s.cli("deploy", "-id", tt.id, "-root", tt.root)
		if code == 0 {
			t.Errorf("%s: deploy succeeded: %s", tt.name, out)
			continue
		}
		if !strings.Contains(errs, tt.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%s: want one line containing %q, got %q", tt.name, tt.want, errs)
		}
	}
	close(stop)
	results := wait()
	f, examples := judge(results, []deployMark{{"good", time.Time{}}})
	t.Logf("refused releases under load: sent=%d failed=%d mixed=%d stale=%d", f.sent, f.failed, f.mixed, f.stale)
	if f.sent == 0 || f.failed+f.mixed+f.stale > 0 {
		t.Errorf("the active release did not keep serving: %+v %v", f, examples[:min(len(examples), 5)])
	}
	rs := s.releasesByID()
	if rs["good"].State != "active" || rs["crashes"].State != "failed" || rs["hangs"].State != "failed" {
		t.Errorf("states after refusals: good=%s crashes=%s hangs=%s", rs["good"].State, rs["crashes"].State, rs["hangs"].State)
	}
}

func TestKilledMasterIsRestarted(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	pid := s.releasesByID()["r1"].Pool.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	s.waitFor("the pool to be restarted and serve", 20*time.Second, func() bool {
		r := s.releasesByID()["r1"]
		if r.Pool == nil || r.Pool.Restarts < 1 || r.Pool.Pid == pid || r.Pool.Pid == 0 {
			return false
		}
		st, body, err := s.get(c, "/index.php?ms=0")
		rel, _, _ := servedBy(body)
		return err == nil && st == 200 && rel == "r1"
	})
	s.notePgids()
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v != 1 {
		t.Errorf(`fpmux_pool_restarts_total{release="r1"} = %v, want 1`, v)
	}
	// The killed master's workers went with it.
	s.waitFor("the killed master's workers to exit", 10*time.Second, func() bool {
		return syscall.Kill(-pid, 0) == syscall.ESRCH
	})
}

func TestStopLeavesNothingAndRestartRestores(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	s.deploy("r2")
	s.stopFpmux(syscall.SIGTERM)
	if left := s.phpFPMProcesses(); len(left) > 0 {
		t.Fatalf("php-fpm processes left after SIGTERM: %v", left)
	}
	if _, err := os.Stat(s.sock); !os.IsNotExist(err) {
		t.Errorf("FastCGI socket still there after stop: %v", err)
	}
	s.startFpmux()
	rs := s.releasesByID()
	if rs["r2"].State != "active" {
		t.Fatalf("after restart: %+v, want r2 active", rs)
	}
	s.notePgids()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	_, body, err := s.get(c, "/index.php?ms=0")
	if rel, mixed, ok := servedBy(body); err != nil || !ok || mixed || rel != "r2" {
		t.Fatalf("after restart: %q %v, want r2", body, err)
	}
	// Rollback starts r1 again from its root.
	if code, out, errs := s.cli("rollback"); code != 0 {
		t.Fatalf("rollback: %d %s %s", code, out, errs)
	}
	s.notePgids()
	_, body, _ = s.get(c, "/index.php?ms=0")
	if rel, _, _ := servedBy(body); rel != "r1" {
		t.Fatalf("after rollback: %q, want r1", body)
	}
}

func TestKilledFpmuxTakesItsPoolsAlongAndNextOneCleansUp(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	s.stopFpmux(syscall.SIGKILL)
	s.waitFor("php-fpm to follow the killed fpmux", 15*time.Second, func() bool {
		return len(s.phpFPMProcesses()) == 0
	})
	s.startFpmux()
	if st := s.releasesByID()["r1"].State; st != "active" {
		t.Fatalf("after a kill -9 and restart r1 is %s", st)
	}
	s.notePgids()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	if _, body, err := s.get(c, "/index.php?ms=0"); err != nil || !strings.HasPrefix(body, "param=r1 ") {
		t.Fatalf("after restart: %q %v", body, err)
	}
}

func TestTwoPhaseDeployActivateRetireAndStatus(t *testing.T) {
	s := newStack(t, stackOptions{})
	if code, out, errs := s.cli("status"); code != 0 || !strings.Contains(out, "no releases") {
		t.Fatalf("status before any deploy: %d %q %q", code, out, errs)
	}
	if _, err := s.adminGet("/v1/healthz"); err == nil {
		t.Fatal("healthz answered 2xx with no active release")
	}
	s.deploy("r1")
	if _, err := s.adminGet("/v1/healthz"); err != nil {
		t.Fatalf("healthz with r1 active: %v", err)
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	servedNow := func() string {
		t.Helper()
		_, body, err := s.get(c, "/index.php?ms=0")
		rel, _, ok := servedBy(body)
		if err != nil || !ok {
			t.Fatalf("request: %q %v", body, err)
		}
		return rel
	}

	root := s.newRelease("r2")
	if code, out, errs := s.cli("deploy", "-no-activate", "-id", "r2", "-root", root); code != 0 {
		t.Fatalf("deploy -no-activate: %d %s %s", code, out, errs)
	}
	s.notePgids()
	if st := s.releasesByID()["r2"].State; st != "ready" {
		t.Fatalf("r2 after deploy -no-activate is %s, want ready", st)
	}
	if got := servedNow(); got != "r1" {
		t.Fatalf("a ready release got traffic: served by %s", got)
	}
	if code, _, errs := s.cli("deploy", "-id", "r2", "-root", root); code == 0 || !strings.Contains(errs, "already known") {
		t.Errorf("deploying a live id again: exit %d %q, want a 409 refusal", code, errs)
	}
	if code, out, errs := s.cli("activate", "r2"); code != 0 {
		t.Fatalf("activate r2: %d %s %s", code, out, errs)
	}
	if got := servedNow(); got != "r2" {
		t.Fatalf("after activate: served by %s, want r2", got)
	}
	if code, _, errs := s.cli("retire", "r2"); code == 0 || !strings.Contains(errs, "active") {
		t.Errorf("retiring the active release: exit %d %q, want a refusal", code, errs)
	}
	if code, _, errs := s.cli("activate", "nope"); code == 0 || !strings.Contains(errs, "not known") {
		t.Errorf("activating an unknown release: exit %d %q", code, errs)
	}

	root3 := s.newRelease("r3")
	if code, out, errs := s.cli("deploy", "-no-activate", "-id", "r3", "-root", root3); code != 0 {
		t.Fatalf("deploy r3: %d %s %s", code, out, errs)
	}
	s.notePgids()
	r3pid := s.releasesByID()["r3"].Pool.Pid
	if code, out, errs := s.cli("retire", "r3"); code != 0 {
		t.Fatalf("retire r3: %d %s %s", code, out, errs)
	}
	s.waitFor("r3 to retire", 15*time.Second, func() bool {
		return s.releasesByID()["r3"].State == "retired" && !pidAlive(r3pid)
	})
	code, out, _ := s.cli("status")
	for _, want := range []string{"r1", "r2", "r3", "active", "retired"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	if v := s.metric(`fpmux_active_release_info{release="r2"}`); v != 1 {
		t.Errorf("fpmux_active_release_info for r2 = %v, want 1", v)
	}
	if v := s.metric(`fpmux_release_state{release="r3",state="retired"}`); v != 1 {
		t.Errorf("fpmux_release_state r3 retired = %v, want 1", v)
	}
}

func TestSIGTERMLetsInFlightRequestsFinish(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	slow := s.slowRequestInFlight("r1", 1500)
	s.stopFpmux(syscall.SIGTERM)
	r := <-slow
	if rel, mixed, ok := servedBy(r.body); r.err != nil || r.status != 200 || !ok || mixed || rel != "r1" {
		t.Fatalf("in-flight request across SIGTERM: status %d err %v body %q", r.status, r.err, r.body)
	}
	if left := s.phpFPMProcesses(); len(left) > 0 {
		t.Fatalf("php-fpm left after SIGTERM: %v", left)
	}
}

func TestSecondSignalCutsTheWait(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	slow := s.slowRequestInFlight("r1", 20000)
	s.mu.Lock()
	cmd, exited := s.fpmux, s.exited
	s.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	// fpmux now waits for the slow request; a second signal ends the wait.
	select {
	case <-exited:
		t.Fatal("fpmux exited on the first SIGTERM with a request in flight")
	case <-time.After(300 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	r := <-slow
	if r.err == nil && r.status == 200 {
		t.Fatalf("the slow request finished although fpmux was stopped hard: %q", r.body)
	}
	s.waitFor("php-fpm to follow fpmux", 15*time.Second, func() bool {
		return len(s.phpFPMProcesses()) == 0
	})
}

// TestPoolMaxRequestsLosesNothing runs php-fpm with pm.max_requests = 3:
// every child exits, closing the connection fpmux keeps to it, after its
// third request. Through nginx with keep-alive on both hops, no GET or POST
// may fail for meeting such a connection.
func TestPoolMaxRequestsLosesNothing(t *testing.T) {
	s := newStack(t, stackOptions{pool: map[string]string{"pm.max_requests": "3"}})
	s.deploy("r1")
	const clients, each = 4, 100
	var wg sync.WaitGroup
	var failed, posts atomic.Int64
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newHTTPClient()
			defer c.CloseIdleConnections()
			for j := range each {
				var st int
				var body string
				var err error
				if (i+j)%2 == 0 {
					st, body, err = s.get(c, "/index.php?ms=0")
				} else {
					posts.Add(1)
					st, body, err = s.post(c, "/index.php?ms=0", "x=1")
				}
				if rel, _, _ := servedBy(body); err != nil || st != 200 || rel != "r1" {
					if failed.Add(1) <= 3 {
						t.Errorf("request %d of client %d: %d %v %q", j, i, st, err, body)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("pm.max_requests=3: %d requests (%d POST), %d failed", clients*each, posts.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed", n, clients*each)
	}
}

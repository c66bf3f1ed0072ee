// Fault tests: what nginx, and a deploy script, see when part of the stack
// dies or misbehaves under load: a php-fpm worker, the active or a draining
// pool's master, or fpmux itself killed with SIGKILL; a pool that never
// becomes ready; a release directory removed while its pool drains; a
// state_dir fpmux cannot write. Every answer must be bounded (200, or 502
// or 503 with a body, within faultClientTimeout), no php-fpm process may
// outlive fpmux, and fpmux must recover by itself where it can.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// faultClientTimeout bounds every request of a fault test: a request still
// unanswered after it is a hang, and counts as a transport error.
const faultClientTimeout = 20 * time.Second

// faultClients is how many clients send the steady load of a fault test.
const faultClients = 3

// boundedGet is get with faultClientTimeout.
func (s *stack) boundedGet(c *http.Client, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), faultClientTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.nginxURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// faultLoad runs the steady load of a fault test: faultClients clients
// sending GET /index.php?ms=20, each bounded by faultClientTimeout.
func (s *stack) faultLoad(stop <-chan struct{}) func() []loadResult {
	return s.runLoadWith(faultClients, stop, func(c *http.Client) (int, string, error) {
		return s.boundedGet(c, "/index.php?ms=20")
	})
}

// boundedSlow starts one GET of path in the background, bounded by
// faultClientTimeout.
func (s *stack) boundedSlow(path string) <-chan loadResult {
	ch := make(chan loadResult, 1)
	go func() {
		c := newHTTPClient()
		defer c.CloseIdleConnections()
		r := loadResult{start: time.Now()}
		r.status, r.body, r.err = s.boundedGet(c, path)
		r.end = time.Now()
		ch <- r
	}()
	return ch
}

// outcomes tallies a load run by the kind of answer.
type outcomes struct {
	ok        int // 200 with a whole, unmixed answer of one release
	mixed     int // 200 naming two releases
	s502      int // 502 with a body
	s503      int // 503 with a body
	emptyBody int // 502 or 503 without a body
	other     int // any other status, or a 200 that is not index.php's
	transport int // no HTTP answer at all: reset, cut or timed out
	lastBad   time.Time
	examples  []string
}

func (o outcomes) String() string {
	return fmt.Sprintf("200=%d 502=%d 503=%d mixed=%d empty-body=%d other=%d transport-errors=%d",
		o.ok, o.s502, o.s503, o.mixed, o.emptyBody, o.other, o.transport)
}

// bad is every answer that breaks the fault tests' promise: each answer is
// a whole 200 or a 502 or 503 with a body.
func (o outcomes) bad() int { return o.mixed + o.emptyBody + o.other + o.transport }

func tally(results []loadResult) outcomes {
	var o outcomes
	note := func(r loadResult, what string) {
		if len(o.examples) < 5 {
			o.examples = append(o.examples, fmt.Sprintf("%s: status %d err %v body %q", what, r.status, r.err, r.body))
		}
	}
	for _, r := range results {
		if r.status != 200 || r.err != nil {
			o.lastBad = maxTime(o.lastBad, r.end)
		}
		switch {
		case r.err != nil:
			o.transport++
			note(r, "transport error")
		case r.status == 200:
			if _, mixed, ok := servedBy(r.body); !ok {
				o.other++
				note(r, "unparsable 200")
			} else if mixed {
				o.mixed++
				note(r, "mixed")
			} else {
				o.ok++
			}
		case (r.status == 502 || r.status == 503) && strings.TrimSpace(r.body) == "":
			o.emptyBody++
			note(r, "no body")
		case r.status == 502:
			o.s502++
		case r.status == 503:
			o.s503++
		default:
			o.other++
			note(r, "other status")
		}
	}
	return o
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// checkBounded fails the test unless every answer of a load run kept the
// promise and some were served.
func checkBounded(t *testing.T, what string, o outcomes) {
	t.Helper()
	t.Logf("%s: %v", what, o)
	if o.bad() > 0 {
		t.Errorf("%s: %d answers neither a whole 200 nor a 502/503 with a body: %v", what, o.bad(), o.examples)
	}
	if o.ok == 0 {
		t.Errorf("%s: no request was served", what)
	}
}

// checkNoneFailed is checkBounded for a load the fault must not touch:
// every answer is a whole 200.
func checkNoneFailed(t *testing.T, what string, o outcomes) {
	t.Helper()
	checkBounded(t, what, o)
	if o.s502+o.s503 > 0 {
		t.Errorf("%s: %d requests failed", what, o.s502+o.s503)
	}
}

// waitOnlySlowHolds waits until the slow request is all that release id
// holds: the load's requests on it end within their 20 ms.
func (s *stack) waitOnlySlowHolds(id string) {
	s.t.Helper()
	s.waitFor(id+" to hold only the slow request", 10*time.Second, func() bool {
		return s.releasesByID()[id].InFlight == 1
	})
}

// servesNow fails the test unless a plain request is served by release id.
func (s *stack) servesNow(id string) {
	s.t.Helper()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	st, body, err := s.boundedGet(c, "/index.php?ms=0")
	if rel, mixed, ok := servedBy(body); err != nil || st != 200 || !ok || mixed || rel != id {
		s.t.Fatalf("a plain request: status %d err %v body %q, want a whole answer of %s", st, err, body, id)
	}
}

// fpmuxPid returns the running fpmux's pid.
func (s *stack) fpmuxPid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fpmux == nil {
		s.t.Fatal("fpmux is not running")
	}
	return s.fpmux.Process.Pid
}

// procParent returns a live process's parent pid, or 0 when it is gone or a
// zombie.
func procParent(pid int) int {
	if st, err := proc.ReadStat(pid); err == nil && st.Live() {
		return st.PPid
	}
	return 0
}

// liveChildren returns the live children of pid, but for those of
// php-fpm's hidden status pool ("php-fpm: pool <id>_status", forked on
// demand for fpmux's status requests: see pool/status.go).
func liveChildren(pid int) []int {
	var kids []int
	ps, _ := proc.Processes()
	for _, p := range ps {
		if p.PPid == pid && !strings.HasSuffix(p.Cmdline, "_status") {
			kids = append(kids, p.Pid)
		}
	}
	return kids
}

// liveProcess tells whether pid is a process that is not a zombie.
func liveProcess(pid int) bool { return procParent(pid) != 0 }

// poolDirs lists the pool directories in state_dir.
func (s *stack) poolDirs() []string {
	ents, _ := os.ReadDir(filepath.Join(s.stateDir, "pools"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// wantPoolDirs fails the test unless state_dir holds the pool directories
// of exactly the releases ids, in order.
func (s *stack) wantPoolDirs(when string, ids ...string) {
	s.t.Helper()
	if dirs := s.poolDirs(); !slices.Equal(dirs, ids) {
		s.t.Errorf("pool dirs %s: %v, want %v", when, dirs, ids)
	}
}

// deployMarked deploys release id and appends its mark to marks, stamped
// when the deploy returned, for judge.
func (s *stack) deployMarked(marks []deployMark, id string) []deployMark {
	s.t.Helper()
	s.deploy(id)
	return append(marks, deployMark{id, time.Now()})
}

// checkJudged fails the test if judge finds a failed, mixed or stale
// answer among results.
func checkJudged(t *testing.T, what string, results []loadResult, deploys []deployMark) loadFigures {
	t.Helper()
	f, examples := judge(results, deploys)
	if f.failed+f.mixed+f.stale > 0 {
		t.Errorf("%s: failed=%d mixed=%d stale=%d; first ones: %v", what, f.failed, f.mixed, f.stale, examples[:min(len(examples), 5)])
	}
	return f
}

// markScript is tag.php: it writes the pid of the worker running it to
// marks/<tag>, then runs index.php, so a test knows which worker serves a
// request and can kill it.
const markScript = `<?php
file_put_contents('MARKS/' . basename($_GET['tag']), (string)getmypid());
require __DIR__ . '/index.php';
`

// deployWithTag deploys release id with tag.php added, writing marks into
// the returned directory.
func (s *stack) deployWithTag(id string) (marks string) {
	s.t.Helper()
	marks = filepath.Join(s.dir, "marks")
	if err := os.MkdirAll(marks, 0o777); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chmod(marks, 0o777); err != nil { // workers run as www-data under root
		s.t.Fatal(err)
	}
	root := s.newRelease(id)
	script := strings.ReplaceAll(markScript, "MARKS", marks)
	if err := os.WriteFile(filepath.Join(root, "tag.php"), []byte(script), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if code, out, errs := s.cli("deploy", "-id", id, "-root", root); code != 0 {
		s.t.Fatalf("deploy %s: exit %d: %s%s", id, code, out, errs)
	}
	s.notePgids()
	return marks
}

// TestFaultKilledWorker kills, with SIGKILL, the php-fpm worker serving a
// slow GET, three times, with load running. php-fpm replaces the worker;
// no other request fails; the one the worker was serving is either sent
// again on another worker (fcgimux's retry rule: a GET that met a dead
// connection fpmux had kept and reused, before any answer) or answered
// 502 with a body (it was on a connection dialed for it: the request may
// be what killed the worker, and fpmux, like nginx, does not repeat that).
func TestFaultKilledWorker(t *testing.T) {
	s := newStack(t, stackOptions{})
	marks := s.deployWithTag("r1")
	master := s.releasesByID()["r1"].Pool.Pid
	s.waitFor("r1's 4 workers", 10*time.Second, func() bool { return len(liveChildren(master)) == 4 })

	stop := make(chan struct{})
	wait := s.faultLoad(stop)
	const kills = 3
	var slow []loadResult
	for i := range kills {
		tag := fmt.Sprintf("w%d", i)
		ch := s.boundedSlow("/tag.php?ms=2000&tag=" + tag)
		var worker int
		s.waitFor("the slow request to name its worker", 10*time.Second, func() bool {
			b, err := os.ReadFile(filepath.Join(marks, tag))
			worker, _ = strconv.Atoi(string(b))
			return err == nil && worker > 0
		})
		if p := procParent(worker); p != master {
			t.Fatalf("worker %d has parent %d, want the master %d", worker, p, master)
		}
		if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		r := <-ch
		slow = append(slow, r)
		s.waitFor("php-fpm to replace the killed worker", 15*time.Second, func() bool {
			kids := liveChildren(master)
			return len(kids) == 4 && !liveProcess(worker)
		})
	}
	s.servesNow("r1")
	close(stop)
	checkNoneFailed(t, "load while workers were killed (only the killed workers' own requests may fail)", tally(wait()))

	retried, failed := 0, 0
	for i, r := range slow {
		rel, mixed, ok := servedBy(r.body)
		switch {
		case r.err == nil && r.status == 200 && ok && !mixed && rel == "r1":
			retried++
		case r.err == nil && r.status == 502 && strings.Contains(r.body, "fpmux: the pool of release r1 failed"):
			failed++
		default:
			t.Errorf("request %d on the killed worker: status %d err %v body %q, want a whole 200 (sent again) or fpmux's 502", i, r.status, r.err, r.body)
		}
	}
	t.Logf("the killed workers' own requests: %d sent again and served, %d answered 502", retried, failed)
	if v := s.metric(`fpmux_requests_total{code="502",release="r1"}`); max(v, 0) != float64(failed) {
		t.Errorf(`fpmux_requests_total{code="502",release="r1"} = %v, want %d (the killed workers' requests that were not sent again)`, v, failed)
	}
	r := s.releasesByID()["r1"]
	if r.Pool.Pid != master || r.Pool.Restarts != 0 {
		t.Errorf("r1's pool after killed workers: pid %d restarts %d, want the same master %d and no restart", r.Pool.Pid, r.Pool.Restarts, master)
	}
}

// TestFaultKilledActiveMaster kills the active pool's master with SIGKILL
// under load. fpmux kills its orphaned workers, answers 502 with a body
// until a new master serves, and restarts the master by itself.
func TestFaultKilledActiveMaster(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	master := s.releasesByID()["r1"].Pool.Pid

	stop := make(chan struct{})
	wait := s.faultLoad(stop)
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	s.waitFor("a new master to serve r1", 20*time.Second, func() bool {
		r := s.releasesByID()["r1"]
		if r.Pool == nil || r.Pool.Restarts != 1 || r.Pool.Pid == 0 || r.Pool.Pid == master {
			return false
		}
		st, body, err := s.boundedGet(c, "/index.php?ms=0")
		rel, _, _ := servedBy(body)
		return err == nil && st == 200 && rel == "r1"
	})
	s.notePgids()
	served := time.Since(killed)
	time.Sleep(300 * time.Millisecond) // load on the new master
	close(stop)
	load := tally(wait())
	checkBounded(t, "load across the killed master", load)
	recovery := time.Duration(0)
	if !load.lastBad.IsZero() {
		recovery = load.lastBad.Sub(killed)
	}
	t.Logf("killed master %d: the new one served %v after the kill; the last failed answer came %v after it",
		master, served.Round(time.Millisecond), recovery.Round(time.Millisecond))
	if load.s503 > 0 {
		t.Errorf("%d answers were 503: a killed master is a 502 (the pool failed), not a refusal", load.s503)
	}
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v != 1 {
		t.Errorf(`fpmux_pool_restarts_total{release="r1"} = %v, want 1`, v)
	}
	s.waitFor("the killed master's workers to be gone", 10*time.Second, func() bool {
		return syscall.Kill(-master, 0) == syscall.ESRCH
	})
	if st := s.releasesByID()["r1"].State; st != "active" {
		t.Errorf("r1 is %s after its master was restarted, want active", st)
	}
}

// TestFaultKilledDrainingMaster kills the master of a draining pool while a
// slow request holds its drain. The slow request is answered 502 at once,
// the drain ends then (not at the slow request's end, nor at
// drain_timeout), and the master is not started again for a pool that
// takes no new request.
func TestFaultKilledDrainingMaster(t *testing.T) {
	s := newStack(t, stackOptions{})
	deploys := s.deployMarked(nil, "r1")
	r1pid := s.releasesByID()["r1"].Pool.Pid
	slow := s.slowRequestInFlight("r1", 20000)
	drainsBefore := max(s.metric("fpmux_drain_duration_seconds_count"), 0)

	stop := make(chan struct{})
	wait := s.faultLoad(stop)
	deploys = s.deployMarked(deploys, "r2")
	if st := s.releasesByID()["r1"].State; st != "draining" {
		t.Fatalf("r1 is %s, want draining (held by the slow request)", st)
	}
	s.waitOnlySlowHolds("r1")
	killed := time.Now()
	if err := syscall.Kill(r1pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-slow
	if r.err != nil || r.status != 502 || !strings.Contains(r.body, "r1") {
		t.Errorf("the slow request on the killed draining master: status %d err %v body %q, want fpmux's 502", r.status, r.err, r.body)
	}
	// Well before the slow request's 20 s: the kill ended the drain.
	s.waitFor("r1 to retire after its master was killed", 10*time.Second, func() bool {
		return s.releasesByID()["r1"].State == "retired"
	})
	retired := time.Since(killed)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	results := wait()
	checkBounded(t, "load on r2 while r1's master was killed", tally(results))
	checkJudged(t, "load on r2", results, deploys)
	t.Logf("slow request answered %d after %v; r1 retired %v after the kill",
		r.status, r.end.Sub(killed).Round(time.Millisecond), retired.Round(time.Millisecond))
	if v := s.metric("fpmux_drain_duration_seconds_count"); v != drainsBefore+1 {
		t.Errorf("fpmux_drain_duration_seconds_count = %v, want %v (the drain the kill ended)", v, drainsBefore+1)
	}
	if v := s.metric("fpmux_drains_forced_total"); v != 0 {
		t.Errorf("fpmux_drains_forced_total = %v, want 0: the drain ended with nothing in flight", v)
	}
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v > 0 {
		t.Errorf(`fpmux_pool_restarts_total{release="r1"} = %v: a draining pool's master was started again`, v)
	}
	if strings.Contains(s.logBuf.String(), "php-fpm master restarted") {
		t.Errorf("fpmux restarted a draining pool's master")
	}
	s.waitFor("r1's process group to be gone", 10*time.Second, func() bool {
		return syscall.Kill(-r1pid, 0) == syscall.ESRCH
	})
	s.wantPoolDirs("after r1 retired", "r2")
}

// sleeperWrapper writes a php-fpm wrapper that, for release ids starting
// with "hangs", writes its pid to <dir>/<id>.pid and sleeps instead of
// starting php-fpm: a pool that never answers its health check.
func sleeperWrapper(t *testing.T, dir, realFPM string) string {
	t.Helper()
	path := filepath.Join(dir, "php-fpm-sleeper")
	script := fmt.Sprintf(`#!/bin/sh
case "$*" in
  */pools/hangs*) id=${*##*/pools/}; id=${id%%%%/*}; echo $$ > %s/$id.pid; exec sleep 3600 ;;
esac
exec %s "$@"
`, dir, realFPM)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// logLines returns the lines of log that contain sub.
func logLines(log, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// adminPost posts a JSON body to the admin API and returns the status and
// the answer's "error".
func (s *stack) adminPost(path string, body any) (int, string) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	c := s.adminClient()
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://fpmux"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Error
}

// TestFaultPoolNeverReady deploys releases whose "php-fpm" never answers
// its health check, under load: each deploy fails within start_timeout with
// a 502 that says so (and `fpmux deploy` exits non-zero with one line), the
// active release serves on without a failure, and the sleeping process is
// gone by the time the deploy returns.
func TestFaultPoolNeverReady(t *testing.T) {
	realFPM, _ := needTools(t)
	wrapDir := tempDir(t)
	s := newStack(t, stackOptions{phpFPM: sleeperWrapper(t, wrapDir, realFPM), startTimeout: "2s"})
	s.deploy("r1")

	stop := make(chan struct{})
	wait := s.faultLoad(stop)

	start := time.Now()
	code, out, errs := s.cli("deploy", "-id", "hangs1", "-root", s.newRelease("hangs1"))
	took := time.Since(start)
	if code == 0 {
		t.Errorf("deploy of a pool that never gets ready succeeded: %s", out)
	}
	for _, want := range []string{"release hangs1", "health check", "within 2s"} {
		if !strings.Contains(errs, want) {
			t.Errorf("deploy's message %q lacks %q", errs, want)
		}
	}
	if strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("deploy's message is not one line: %q", errs)
	}
	status, msg := s.adminPost("/v1/releases", map[string]any{"id": "hangs2", "root": s.newRelease("hangs2")})
	if status != 502 || !strings.Contains(msg, "health check") {
		t.Errorf("POST /v1/releases of a pool that never gets ready: %d %q, want 502 naming the health check", status, msg)
	}
	for _, id := range []string{"hangs1", "hangs2"} {
		b, err := os.ReadFile(filepath.Join(wrapDir, id+".pid"))
		if err != nil {
			// The pid is the wrapper's first write: without it, the
			// wrapper was stopped before it could start a sleeper.
			t.Logf("the wrapper of %s was stopped before it wrote its pid (%v); fpmux said:\n%s", id, err, logLines(s.logBuf.String(), "release="+id+" "))
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid <= 0 || liveProcess(pid) {
			t.Errorf("%s's sleeper (pid %d) is still alive after its deploy failed", id, pid)
		}
	}
	s.servesNow("r1")
	close(stop)
	checkNoneFailed(t, "load on the active release while others failed to start", tally(wait()))
	t.Logf("deploy of a never-ready pool: exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(errs))
	rs := s.releasesByID()
	if rs["r1"].State != "active" || rs["hangs1"].State != "failed" || rs["hangs2"].State != "failed" {
		t.Errorf("states: r1=%s hangs1=%s hangs2=%s, want active, failed, failed", rs["r1"].State, rs["hangs1"].State, rs["hangs2"].State)
	}
	if v := s.metric(`fpmux_deploys_total{outcome="failed"}`); v != 2 {
		t.Errorf(`fpmux_deploys_total{outcome="failed"} = %v, want 2`, v)
	}
	s.wantPoolDirs("after the failed deploys", "r1")
}

// TestFaultReleaseRemovedWhileDraining removes r1's directory (rm -rf)
// while a slow request holds its drain. The slow request gets a bounded
// answer (PHP's own 500 for the file it can no longer include, or a whole
// 200 of r1 from opcache), the drain ends, r2 serves on without a failure,
// and a rollback to r1 is refused with the reason.
func TestFaultReleaseRemovedWhileDraining(t *testing.T) {
	s := newStack(t, stackOptions{})
	deploys := s.deployMarked(nil, "r1")
	slow := s.slowRequestInFlight("r1", 4000)

	stop := make(chan struct{})
	wait := s.faultLoad(stop)
	deploys = s.deployMarked(deploys, "r2")
	s.waitOnlySlowHolds("r1")
	if err := os.RemoveAll(filepath.Join(s.releases, "r1")); err != nil {
		t.Fatal(err)
	}
	var r loadResult
	select {
	case r = <-slow:
		t.Fatalf("the slow request ended before r1 was removed: %d %q", r.status, r.body)
	default:
	}
	if st := s.releasesByID()["r1"].State; st != "draining" {
		t.Fatalf("r1 is %s once removed, want draining", st)
	}
	r = <-slow
	// index.php included a.php and b.php before r1 went; after its sleep
	// it includes r1's late file, which is gone: PHP fails the request,
	// unless opcache still holds the file (the load ran it on r1 before
	// the switch) and has not checked it since (opcache.revalidate_freq).
	rel, mixed, ok := servedBy(r.body)
	switch {
	case r.err != nil:
		t.Errorf("the slow request on the removed release: %v", r.err)
	case r.status == 200 && (!ok || mixed || rel != "r1"):
		t.Errorf("the slow request on the removed release: 200 %q, want all of r1", r.body)
	case r.status != 200 && r.status != 500:
		t.Errorf("the slow request on the removed release: status %d %q, want PHP's 500 (or a whole 200)", r.status, r.body)
	}
	t.Logf("slow request on the removed release: status %d body %q", r.status, r.body)
	s.waitFor("r1 to retire", 15*time.Second, func() bool {
		return s.releasesByID()["r1"].State == "retired"
	})
	code, _, errs := s.cli("rollback")
	if code == 0 || !strings.Contains(errs, "r1") || !strings.Contains(errs, "no such file") {
		t.Errorf("rollback to the removed r1: exit %d %q, want a refusal naming the missing root", code, errs)
	}
	s.servesNow("r2")
	close(stop)
	results := wait()
	checkBounded(t, "load on r2 while r1 was removed", tally(results))
	checkJudged(t, "load on r2", results, deploys)
	if v := s.metric("fpmux_drains_forced_total"); v != 0 {
		t.Errorf("fpmux_drains_forced_total = %v, want 0", v)
	}
	s.wantPoolDirs("after r1 retired", "r2")
}

// TestFaultStateDirNotWritable makes state_dir unwritable in two ways that
// stop root too (the tests run as root in CI, and mode bits do not stop
// root): a directory where state.json is to be replaced (rename(2) of a
// file over a directory fails with EISDIR), and state_dir remounted
// read-only (a bind mount; only where the test may mount). A deploy that
// cannot record its release as the active one is refused: the release
// would otherwise be active until fpmux restarts and then silently give
// way to the one state.json still names. The active release serves on,
// and once state_dir is writable again the same deploy succeeds.
func TestFaultStateDirNotWritable(t *testing.T) {
	s := newStack(t, stackOptions{})
	deploys := s.deployMarked(nil, "r1")
	stop := make(chan struct{})
	wait := s.faultLoad(stop)

	// state.json cannot be replaced.
	state := filepath.Join(s.stateDir, "state.json")
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	root2 := s.newRelease("r2")
	code, out, errs := s.cli("deploy", "-id", "r2", "-root", root2)
	t.Logf("deploy with state.json not replaceable: exit %d: %s%s", code, out, errs)
	if code == 0 || !strings.Contains(errs, "state.json") || !strings.Contains(errs, "r1 keeps serving") {
		t.Errorf("deploy with state.json not replaceable: exit %d %q, want a refusal naming state.json", code, errs)
	}
	rs := s.releasesByID()
	if rs["r1"].State != "active" || rs["r2"].State != "failed" {
		t.Errorf("after the refused deploy: r1=%s r2=%s, want active and failed", rs["r1"].State, rs["r2"].State)
	}
	s.servesNow("r1")
	s.wantPoolDirs("after the refused deploy (r2's pool stopped)", "r1")
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := s.cli("deploy", "-id", "r2", "-root", root2); code != 0 {
		t.Fatalf("deploy r2 once state.json could be written: exit %d %s%s", code, out, errs)
	}
	s.notePgids()
	deploys = append(deploys, deployMark{"r2", time.Now()})
	if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), `"id": "r2"`) {
		t.Errorf("state.json after the deploy: %q %v, want r2 in it", b, err)
	}
	s.waitFor("r1 to retire", 15*time.Second, func() bool { return s.releasesByID()["r1"].State == "retired" })

	// state_dir read-only.
	if roMount(t, s.stateDir) {
		root3 := s.newRelease("r3")
		code, out, errs := s.cli("deploy", "-id", "r3", "-root", root3)
		t.Logf("deploy with state_dir read-only: exit %d: %s%s", code, out, errs)
		if code == 0 || !strings.Contains(errs, "read-only file system") {
			t.Errorf("deploy with state_dir read-only: exit %d %q, want a refusal that says read-only file system", code, errs)
		}
		s.servesNow("r2")
		unmount(t, s.stateDir)
		if code, out, errs := s.cli("deploy", "-id", "r3", "-root", root3); code != 0 {
			t.Fatalf("deploy r3 once state_dir was writable: exit %d %s%s", code, out, errs)
		}
		s.notePgids()
		deploys = append(deploys, deployMark{"r3", time.Now()})
	}
	close(stop)
	results := wait()
	checkBounded(t, "load while state_dir could not be written", tally(results))
	checkJudged(t, "load while state_dir could not be written", results, deploys)
}

// roMount makes dir a read-only bind mount of itself, undone at cleanup.
// It returns false, and the test goes on without it, where mounting is not
// allowed (an unprivileged container).
func roMount(t *testing.T, dir string) bool {
	t.Helper()
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Logf("no read-only state_dir case: cannot bind-mount: %v: %s", err, out)
		return false
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		t.Logf("no read-only state_dir case: cannot remount read-only: %v: %s", err, out)
		unmount(t, dir)
		return false
	}
	return true
}

func unmount(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", dir, err, out)
	}
}

// TestFaultKilledFpmuxUnderLoad kills fpmux with SIGKILL while load runs
// and r1 drains a slow request. nginx answers 502 (fpmux's socket takes no
// connection), the pools of both releases follow fpmux within seconds
// (the lifeline), and a new fpmux on the same state_dir clears the
// old pool directories, brings r2 back and serves.
func TestFaultKilledFpmuxUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	slow := s.slowRequestInFlight("r1", 20000)
	s.deploy("r2")

	stop := make(chan struct{})
	wait := s.faultLoad(stop)
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	s.stopFpmux(syscall.SIGKILL)
	s.waitFor("every php-fpm of the killed fpmux to exit", 5*time.Second, func() bool {
		return len(s.phpFPMProcesses()) == 0
	})
	gone := time.Since(killed)
	r := <-slow
	if r.err != nil || r.status != 502 || r.body == "" {
		t.Errorf("the slow request when fpmux was killed: status %d err %v body %q, want nginx's 502", r.status, r.err, r.body)
	}
	time.Sleep(300 * time.Millisecond) // load meets the dead socket
	s.wantPoolDirs("left by the killed fpmux", "r1", "r2")
	s.startFpmux()
	s.notePgids()
	back := time.Since(killed)
	s.servesNow("r2")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	load := tally(wait())
	checkBounded(t, "load across the killed fpmux", load)
	t.Logf("php-fpm gone %v after the kill; fpmux back and serving %v after it", gone.Round(time.Millisecond), back.Round(time.Millisecond))
	if load.s502 == 0 {
		t.Errorf("no request met the killed fpmux: the test did not cover the fault")
	}
	rs := s.releasesByID()
	if rs["r2"].State != "active" {
		t.Errorf("after the restart r2 is %s, want active", rs["r2"].State)
	}
	s.wantPoolDirs("after the restart", "r2")
}

// TestFaultNextFpmuxStopsPoolLeftBehind: after fpmux was killed, a
// php-fpm master runs on one of its pool directories, as one would that
// escaped the lifeline (the test starts it on the directory the
// killed fpmux left). The next fpmux on the same state_dir must kill that
// master and its workers, found by the pool directory's pid file, before
// it starts the release again and serves.
func TestFaultNextFpmuxStopsPoolLeftBehind(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	s.stopFpmux(syscall.SIGKILL)
	s.waitFor("php-fpm to follow the killed fpmux", 5*time.Second, func() bool {
		return len(s.phpFPMProcesses()) == 0
	})
	dir := filepath.Join(s.stateDir, "pools", "r1")
	cmd := exec.Command(s.phpFPM, "--nodaemonize", "--force-stderr", "--fpm-config", filepath.Join(dir, "php-fpm.conf"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = s.logBuf, s.logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stale := cmd.Process.Pid
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-stale, syscall.SIGKILL)
		<-waited
	})
	var workers []int
	s.waitFor("the master left behind to write its pid file and start its workers", 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "php-fpm.pid"))
		workers = liveChildren(stale)
		return strings.TrimSpace(string(b)) == strconv.Itoa(stale) && len(workers) == 4
	})
	s.startFpmux()
	s.notePgids()
	if !strings.Contains(s.logBuf.String(), "stopped a php-fpm master left by a previous fpmux") {
		t.Errorf("the new fpmux did not say it stopped the master left behind")
	}
	s.waitFor("the master left behind to be reaped", 5*time.Second, func() bool {
		select {
		case <-waited:
			return true
		default:
			return false
		}
	})
	for _, pid := range workers {
		if liveProcess(pid) {
			t.Errorf("worker %d of the master left behind is alive after the next fpmux started", pid)
		}
	}
	s.servesNow("r1")
	if pid := s.releasesByID()["r1"].Pool.Pid; pid == stale {
		t.Errorf("r1 is served by the master left behind")
	}
}

// nonExecWrapper writes a php-fpm wrapper that runs php-fpm as its child
// instead of exec'ing it, as a careless operator's script would.
func nonExecWrapper(t *testing.T, dir, realFPM string) string {
	t.Helper()
	path := filepath.Join(dir, "php-fpm-no-exec")
	script := fmt.Sprintf("#!/bin/sh\n%s \"$@\"\n", realFPM)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFaultWrapperWithoutExecIsRefused deploys with a php_fpm.binary that
// runs php-fpm as its child. php-fpm leads a session of its own, so fpmux,
// which signals the process group of what it spawned, could not stop it,
// and it would watch the wrapper's exit, not php-fpm's: the
// deploy must fail, saying why, and leave no php-fpm behind.
func TestFaultWrapperWithoutExecIsRefused(t *testing.T) {
	realFPM, _ := needTools(t)
	s := newStack(t, stackOptions{phpFPM: nonExecWrapper(t, tempDir(t), realFPM)})
	code, out, errs := s.cli("deploy", "-id", "r1", "-root", s.newRelease("r1"))
	t.Logf("deploy through a wrapper without exec: exit %d: %s%s", code, out, errs)
	if code == 0 || !strings.Contains(errs, "must exec php-fpm") {
		t.Errorf("deploy through a wrapper without exec: exit %d %q, want a refusal that says the wrapper must exec php-fpm", code, errs)
	}
	if left := s.phpFPMProcesses(); len(left) > 0 {
		t.Errorf("php-fpm left by the refused deploy: %v", left)
	}
	s.wantPoolDirs("after the refused deploy")
}

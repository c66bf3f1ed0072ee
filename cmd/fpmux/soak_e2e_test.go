// Soak test: many deploys in a row under steady load, then a check that
// fpmux is back where it started: goroutines, open files, php-fpm
// processes and state_dir.

package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// soakDeploys is how many releases TestSoakDeploys deploys:
// FPMUX_SOAK_DEPLOYS, or 100.
func soakDeploys(t *testing.T) int {
	v := os.Getenv("FPMUX_SOAK_DEPLOYS")
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		t.Fatalf("FPMUX_SOAK_DEPLOYS=%q: want a whole number of at least 2", v)
	}
	return n
}

// selfFigures is what fpmux holds, as its /metrics says.
type selfFigures struct {
	goroutines, fds, conns float64
}

// selfFigures scrapes go_goroutines, process_open_fds and
// fpmux_connections_open on a connection of its own, closed after the
// answer, so that no scrape's kept connection counts.
func (s *stack) selfFigures() selfFigures {
	s.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	f := selfFigures{-1, -1, -1}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			f.goroutines = v
		case "process_open_fds":
			f.fds = v
		case "fpmux_connections_open":
			f.conns = v
		}
	}
	if f.goroutines < 0 || f.fds < 0 || f.conns < 0 {
		s.t.Fatalf("/metrics lacks go_goroutines, process_open_fds or fpmux_connections_open: %+v", f)
	}
	return f
}

// reloadNginx has nginx start new workers (SIGHUP to its master): the old
// ones close the connections they kept to fpmux.
func (s *stack) reloadNginx() {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "nginx.pid"))
	if err != nil {
		s.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		s.t.Fatal(err)
	}
}

// quiet brings fpmux to a state it can be compared in: nginx holds no
// connection to it (reloaded), and it holds none to php-fpm (its idle pool
// connections close after 2 s). Both depend on how the load happened to
// interleave, not on what fpmux leaks, so the soak compares without them.
func (s *stack) quiet(active string) {
	s.t.Helper()
	s.reloadNginx()
	s.waitFor("nginx's connections to fpmux to close", 30*time.Second, func() bool {
		return s.selfFigures().conns == 0
	})
	s.waitFor("fpmux's idle connections to php-fpm to close", 30*time.Second, func() bool {
		return s.metric(`fpmux_pool_connections{release="`+active+`",state="open"}`) == 0
	})
}

// settledFigures is the least of selfFigures over a second: what fpmux
// holds without the admin and metrics connections of a moment before.
func (s *stack) settledFigures() selfFigures {
	s.t.Helper()
	least := s.selfFigures()
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		f := s.selfFigures()
		least.goroutines = min(least.goroutines, f.goroutines)
		least.fds = min(least.fds, f.fds)
	}
	return least
}

// TestSoakDeploys deploys soakDeploys releases in a row, each with its own
// content, under steady load from a few clients, then checks that no
// request failed, none was served by two releases or by a release older
// than the one active when it began, and that fpmux is back at its
// baseline (taken after the first deploy): goroutines, open fds, php-fpm
// processes, and nothing of the retired releases left in state_dir.
func TestSoakDeploys(t *testing.T) {
	n := soakDeploys(t)
	s := newStack(t, stackOptions{pprof: true})
	began := time.Now()
	id := func(i int) string { return fmt.Sprintf("s%04d", i) }

	deploys := s.deployMarked(nil, id(1))
	// Baseline: after the first deploy and some load, quiet.
	stop := make(chan struct{})
	wait := s.runLoad(3, "/index.php?ms=5", stop)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	warmup := wait()
	s.quiet(id(1))
	base := s.settledFigures()
	baseFDs, _ := proc.FDs(s.fpmuxPid())
	baseGoroutines := s.goroutineDump()
	baseFPM := len(withoutStatusWorkers(s.phpFPMProcesses()))

	stop = make(chan struct{})
	wait = s.runLoad(3, "/index.php?ms=5", stop)
	var took []time.Duration
	for i := 2; i <= n; i++ {
		took = append(took, s.deploy(id(i)))
		deploys = append(deploys, deployMark{id(i), time.Now()})
	}
	time.Sleep(200 * time.Millisecond) // some load on the last release
	close(stop)
	results := append(warmup, wait()...)
	deploying := time.Since(began)

	f := checkJudged(t, "soak", results, deploys)
	served := map[string]bool{}
	for _, r := range results {
		if rel, _, ok := servedBy(r.body); ok {
			served[rel] = true
		}
	}
	slices.Sort(took)
	t.Logf("soak: %d deploys in %v (deploy median %v, max %v); %d requests: failed=%d mixed=%d stale=%d; %d releases served requests",
		n, deploying.Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		f.sent, f.failed, f.mixed, f.stale, len(served))

	last := id(n)
	s.waitFor("every release but the last to retire", 60*time.Second, func() bool {
		for _, r := range s.releasesByID() {
			if r.ID != last && r.State != "retired" {
				return false
			}
		}
		return true
	})
	if v := s.metric("fpmux_drains_forced_total"); v != 0 {
		t.Errorf("fpmux_drains_forced_total = %v, want 0", v)
	}
	if v := s.metric(`fpmux_deploys_total{outcome="ok"}`); v != float64(n) {
		t.Errorf(`fpmux_deploys_total{outcome="ok"} = %v, want %d`, v, n)
	}

	// Back to the baseline. Goroutines and fds may lag a moment behind the
	// last stop (a pool's output reader ends at EOF), so they get a
	// bounded wait; no slack: nginx's and php-fpm's connections, which
	// vary with the load, are closed on both sides of the comparison.
	s.quiet(last)
	var end selfFigures
	settled := true
	deadline := time.Now().Add(20 * time.Second)
	for end = s.selfFigures(); end.goroutines > base.goroutines || end.fds > base.fds; end = s.selfFigures() {
		if time.Now().After(deadline) {
			settled = false
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	endFPM := withoutStatusWorkers(s.phpFPMProcesses())
	t.Logf("soak: baseline goroutines=%v fds=%v php-fpm=%d; end goroutines=%v fds=%v php-fpm=%d; whole test %v",
		base.goroutines, base.fds, baseFPM, end.goroutines, end.fds, len(endFPM), time.Since(began).Round(time.Millisecond))
	if !settled {
		endFDs, _ := proc.FDs(s.fpmuxPid())
		t.Errorf("fpmux did not come back to its baseline: goroutines %v (baseline %v), open fds %v (baseline %v)\nfds at the baseline: %v\nfds at the end: %v",
			end.goroutines, base.goroutines, end.fds, base.fds, baseFDs, endFDs)
		t.Logf("goroutines at the baseline:\n%s\ngoroutines at the end:\n%s", baseGoroutines, s.goroutineDump())
	}
	if len(endFPM) != baseFPM {
		t.Errorf("%d php-fpm processes at the end, %d at the baseline: %v", len(endFPM), baseFPM, endFPM)
	}
	s.wantPoolDirs("at the end", last)
	ents, _ := os.ReadDir(s.stateDir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"pools", "state.json"}) {
		t.Errorf("state_dir holds %v, want only pools and state.json", names)
	}
}

// withoutStatusWorkers drops the workers of php-fpm's hidden status pool
// ("php-fpm: pool <id>_status") from a process list: forked on demand for
// fpmux's status requests and gone after 10s idle, how many there are says
// nothing of what a deploy left behind.
func withoutStatusWorkers(procs []string) []string {
	return slices.DeleteFunc(procs, func(p string) bool { return strings.HasSuffix(strings.TrimSpace(p), "_status") })
}

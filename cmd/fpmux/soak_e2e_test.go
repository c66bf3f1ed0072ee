// Soak test: many deploys in a row under steady load, then a check that
// fpmux is back where it started: goroutines, open files, php-fpm
// processes and state_dir.

package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fcgimux"
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

// selfFigures is what fpmux holds.
type selfFigures struct {
	// goroutines counts fpmux's goroutines but fcgimux's spare workers:
	// those wait for the next connection or relay, as many as were busy
	// at once before (up to fcgimuxMaxSpare), a number the load decides
	// and no leak. spare counts them.
	goroutines, spare float64
	fds, conns        float64
}

// fcgimuxMaxSpare is fcgimux's maxSpare (fcgimux/server.go): the most spare
// workers a Server keeps.
const fcgimuxMaxSpare = 128

// spareWorker is the function a spare fcgimux worker waits in, parked (in
// a select) until a connection or a relay is handed to it.
const spareWorker = "github.com/fpmux/fpmux/fcgimux.(*Server).worker"

// goroutineCounts reads a goroutine profile in pprof's debug=1 form
// ("goroutine profile: total N", then each stack as "count @ pcs" and one
// "#\tpc\tfunc+offset\tfile:line" line a frame, innermost first): how many
// goroutines there are, and how many of them are spare fcgimux workers,
// whose first frame outside the runtime is spareWorker. A worker at work
// has the frames of what it serves above that one.
func goroutineCounts(dump string) (total, spare int, err error) {
	counted := 0
	n, decided := 0, true // the goroutines of the stack being read; whether its first frame outside the runtime was seen
	for line := range strings.SplitSeq(dump, "\n") {
		switch {
		case strings.HasPrefix(line, "goroutine profile: total "):
			if total, err = strconv.Atoi(strings.TrimPrefix(line, "goroutine profile: total ")); err != nil {
				return 0, 0, fmt.Errorf("goroutine profile: %q: %w", line, err)
			}
		case strings.Contains(line, " @ "):
			count, _, _ := strings.Cut(line, " @ ")
			if n, err = strconv.Atoi(count); err != nil {
				return 0, 0, fmt.Errorf("goroutine profile: %q: %w", line, err)
			}
			counted += n
			decided = false
		case !decided && strings.HasPrefix(line, "#\t"):
			f := strings.Fields(line) // #, pc, func+offset, file:line (tabwriter may pad with more tabs)
			if len(f) < 3 || strings.HasPrefix(f[2], "runtime.") {
				continue
			}
			decided = true
			if strings.HasPrefix(f[2], spareWorker+"+") {
				spare += n
			}
		}
	}
	if total == 0 || counted != total {
		return 0, 0, fmt.Errorf("goroutine profile: %d goroutines in its stacks, total %d:\n%s", counted, total, dump)
	}
	return total, spare, nil
}

// selfFigures counts fpmux's goroutines in its goroutine profile (which
// needs stackOptions.pprof), then scrapes process_open_fds and
// fpmux_connections_open, each on a connection of its own, closed after
// the answer, so that no kept connection counts.
func (s *stack) selfFigures() selfFigures {
	s.t.Helper()
	total, spare, err := goroutineCounts(s.goroutineDump())
	if err != nil {
		s.t.Fatal(err)
	}
	f := selfFigures{goroutines: float64(total - spare), spare: float64(spare), fds: -1, conns: -1}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
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
		case "process_open_fds":
			f.fds = v
		case "fpmux_connections_open":
			f.conns = v
		}
	}
	if f.fds < 0 || f.conns < 0 {
		s.t.Fatalf("/metrics lacks process_open_fds or fpmux_connections_open: %+v", f)
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
		least.spare = min(least.spare, f.spare)
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
	// vary with the load, are closed on both sides of the comparison, and
	// fcgimux's spare workers, as many as the load had busy at once, are
	// counted apart (TestSpareWorkersAreNoLeak) and bounded by fcgimux's.
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
	t.Logf("soak: baseline goroutines=%v (and %v spare fcgimux workers) fds=%v php-fpm=%d; end goroutines=%v (and %v spare) fds=%v php-fpm=%d; whole test %v",
		base.goroutines, base.spare, base.fds, baseFPM, end.goroutines, end.spare, end.fds, len(endFPM), time.Since(began).Round(time.Millisecond))
	if !settled {
		endFDs, _ := proc.FDs(s.fpmuxPid())
		t.Errorf("fpmux did not come back to its baseline: goroutines %v (baseline %v), open fds %v (baseline %v)\nfds at the baseline: %v\nfds at the end: %v",
			end.goroutines, base.goroutines, end.fds, base.fds, baseFDs, endFDs)
		t.Logf("goroutines at the baseline:\n%s\ngoroutines at the end:\n%s", baseGoroutines, s.goroutineDump())
	}
	if end.spare > fcgimuxMaxSpare {
		t.Errorf("%v spare fcgimux workers at the end, more than fcgimux keeps (%d)", end.spare, fcgimuxMaxSpare)
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

// TestSpareWorkersAreNoLeak is how TestSoakDeploys once failed without a
// leak (23 goroutines against 22 at the baseline; the dump showed 8 idle
// fcgimux workers where the baseline had 6): an fcgimux.Server keeps the
// workers of past connections waiting for the next, as many as were busy
// at once, so more connections in parallel after the baseline leave more
// goroutines. selfFigures' count must come back to its baseline all the
// same, the workers show in its count of spare ones, and a worker still
// serving a connection is counted.
func TestSpareWorkersAreNoLeak(t *testing.T) {
	srv, err := fcgimux.NewServer(fcgimux.Options{Docroot: t.TempDir(), Router: noRelease{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "fpmux.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 10s: %s", what)
			}
		}
	}
	// connect holds n connections open at once, then closes them.
	connect := func(n int) {
		t.Helper()
		var conns []net.Conn
		for range n {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		until(fmt.Sprintf("%d connections open", n), func() bool { open, _ := srv.ConnStats(); return open == n })
		for _, c := range conns {
			c.Close()
		}
		until("no connection open", func() bool { open, _ := srv.ConnStats(); return open == 0 })
	}
	// figures is selfFigures' count of this process's goroutines.
	figures := func() (f selfFigures) {
		t.Helper()
		var dump strings.Builder
		if err := pprof.Lookup("goroutine").WriteTo(&dump, 1); err != nil {
			t.Fatal(err)
		}
		total, spare, err := goroutineCounts(dump.String())
		if err != nil {
			t.Fatal(err)
		}
		return selfFigures{goroutines: float64(total - spare), spare: float64(spare)}
	}

	before := figures().spare // of other tests' servers, if any
	connect(1)
	until("the first connection's worker waiting", func() bool { return figures().spare == before+1 })
	base := figures()
	connect(8)
	until("8 workers waiting", func() bool { return figures().spare == before+8 })
	end := figures()
	for deadline := time.Now().Add(10 * time.Second); end.goroutines > base.goroutines; end = figures() {
		if time.Now().After(deadline) {
			t.Fatalf("after 8 connections at once and 10s: %v goroutines, %v at the baseline (%v spare workers, %v at the baseline)",
				end.goroutines, base.goroutines, end.spare, base.spare)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("baseline: %v goroutines, %v spare workers; after 8 connections at once: %v, %v spare", base.goroutines, base.spare, end.goroutines, end.spare)

	// A worker left serving a connection is what a leak looks like: it
	// counts.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	until("the worker serving a connection left open counted", func() bool { return figures().goroutines > base.goroutines })
}

// noRelease is a Router with no active release: fcgimux answers each
// request itself.
type noRelease struct{}

func (noRelease) Pin() (fcgimux.Pin, error) { return fcgimux.Pin{}, fcgimux.ErrNoRelease }

// withoutStatusWorkers drops the workers of php-fpm's hidden status pool
// ("php-fpm: pool <id>_status") from a process list: forked on demand for
// fpmux's status requests and gone after 10s idle, how many there are says
// nothing of what a deploy left behind.
func withoutStatusWorkers(procs []string) []string {
	return slices.DeleteFunc(procs, func(p string) bool { return strings.HasSuffix(strings.TrimSpace(p), "_status") })
}

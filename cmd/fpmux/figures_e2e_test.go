package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdPHP serves a request until the file "go" appears in its root:
// a worker busy for as long as the test wants, asleep (in nanosleep, as
// ps shows it) nearly all that time.
const holdPHP = `<?php
while (!file_exists(__DIR__ . '/go')) { usleep(200000); }
echo "done\n";
`

// psWorkers is what ps says of a pool's workers: how many, and how many
// of them sleep in PHP (busy: usleep is nanosleep), wait in accept (idle)
// or wait to read a connection kept open to them (held: idle too).
type psWorkers struct {
	total, busy, held int
	text              string // ps's output, for failure messages
}

// psPool runs ps over the children of master titled "php-fpm: pool <id>"
// (not those of php-fpm's hidden "<id>_status" pool).
func psPool(t *testing.T, master int, id string) psWorkers {
	t.Helper()
	out, err := exec.Command("ps", "-o", "pid=,stat=,wchan:40=,args=", "--ppid", strconv.Itoa(master)).Output()
	if err != nil && len(out) == 0 {
		// ps exits 1 when it lists nothing.
		return psWorkers{text: fmt.Sprintf("ps: %v", err)}
	}
	w := psWorkers{text: string(out)}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || strings.Join(f[3:], " ") != "php-fpm: pool "+id || strings.HasPrefix(f[1], "Z") {
			continue
		}
		w.total++
		switch wchan := f[2]; {
		// A busy worker past request_slowlog_timeout is stopped a moment
		// while the master dumps its stack into the slowlog (t).
		case strings.Contains(wchan, "nanosleep") || strings.HasPrefix(f[1], "t") || strings.HasPrefix(f[1], "T"):
			w.busy++
		case strings.Contains(wchan, "unix_stream"):
			w.held++
		}
	}
	return w
}

// poolFigures is what fpmux's admin API says of a release's pool.
type poolFigures struct {
	Pid         int    `json:"pid"`
	Total       *int64 `json:"total_processes"`
	Active      *int64 `json:"active_processes"`
	Idle        *int64 `json:"idle_processes"`
	Held        *int64 `json:"held_processes"`
	StatusError string `json:"status_error"`
}

func (s *stack) poolFigures(id string) poolFigures {
	s.t.Helper()
	b, err := s.adminGet("/v1/releases/" + id)
	if err != nil {
		s.t.Fatal(err)
	}
	var r struct {
		Pool *poolFigures `json:"pool"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Pool == nil {
		s.t.Fatalf("release %s: %v: %s", id, err, b)
	}
	return *r.Pool
}

func (f poolFigures) String() string {
	n := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	return fmt.Sprintf("processes %s (active %s, idle %s, held %s) status_error %q", n(f.Total), n(f.Active), n(f.Idle), n(f.Held), f.StatusError)
}

// TestPoolFiguresMatchPs compares the process counts fpmux reports for a
// pool with what ps sees of its workers, for an idle pool whose workers
// wait on fpmux's kept connections, a half-busy and a saturated one (more
// requests than workers), all behind nginx, right after the deploy too.
func TestPoolFiguresMatchPs(t *testing.T) {
	s := newStack(t, stackOptions{pool: map[string]string{"slowlog": "{release_root}.slow.log", "request_slowlog_timeout": "1s"}})
	root := s.newRelease("r1")
	if err := os.WriteFile(filepath.Join(root, "hold.php"), []byte(holdPHP), 0o644); err != nil {
		t.Fatal(err)
	}
	release := func() { os.WriteFile(filepath.Join(root, "go"), nil, 0o644) }
	t.Cleanup(release)
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", root); code != 0 {
		t.Fatalf("deploy: exit %d: %s%s", code, out, errs)
	}
	s.notePgids()

	// Right after the deploy, its warm-up's connections hold workers: the
	// status page answers all the same.
	f := s.poolFigures("r1")
	if f.StatusError != "" || f.Total == nil {
		t.Errorf("right after the deploy: %v, want the pool's figures", f)
	}
	master := f.Pid
	// Every per-release series exists from the first scrape, at 0 where
	// it counts what has not happened yet.
	for _, series := range []string{
		`fpmux_pool_restarts_total{release="r1"}`, `fpmux_pool_wedged_total{release="r1"}`,
		`fpmux_pool_processes{release="r1",state="active"}`, `fpmux_pool_processes{release="r1",state="idle"}`,
		`fpmux_pool_listen_queue{release="r1"}`, `fpmux_pool_max_children_reached{release="r1"}`,
		`fpmux_pool_slow_requests{release="r1"}`, `fpmux_pool_memory_bytes{kind="pss",release="r1"}`,
		`fpmux_requests_in_flight{release="r1"}`,
	} {
		if v := s.metric(series); v < 0 {
			t.Errorf("%s: absent after the deploy", series)
		}
	}
	if v := s.metric(`fpmux_pool_restarts_total{release="r1"}`); v != 0 {
		t.Errorf("fpmux_pool_restarts_total before any restart = %v, want 0", v)
	}

	// check waits until ps shows want busy workers (and, with wantHeld,
	// some held by a kept connection: prepare makes them), then reads
	// fpmux's figures once, between two identical ps readings, and wants
	// them to agree with ps.
	check := func(name string, want int, wantHeld bool, prepare func()) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var last psWorkers
		for {
			if time.Now().After(deadline) {
				t.Fatalf("%s: ps never showed %d busy workers (held wanted: %v); last:\n%s", name, want, wantHeld, last.text)
			}
			if prepare != nil {
				prepare()
			}
			before := psPool(t, master, "r1")
			last = before
			if before.total != 4 || before.busy != want || wantHeld && before.held == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			f := s.poolFigures("r1")
			after := psPool(t, master, "r1")
			if after.total != before.total || after.busy != before.busy {
				continue
			}
			idle := int64(before.total - before.busy)
			if f.StatusError != "" || f.Total == nil || *f.Total != int64(before.total) || *f.Active != int64(before.busy) || *f.Idle != idle {
				t.Errorf("%s: fpmux says %v; ps says %d workers, %d busy, %d idle (%d held):\n%s",
					name, f, before.total, before.busy, idle, before.held, before.text)
			}
			return
		}
	}

	c := newHTTPClient()
	defer c.CloseIdleConnections()
	burst := func() {
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.get(c, "/index.php?ms=1")
			}()
		}
		wg.Wait()
	}
	check("idle pool", 0, true, burst)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	errs := make(chan error, 6)
	hold := func(n int) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body, err := s.get(c, fmt.Sprintf("/hold.php?n=%d&token=s3cret", i))
				if err == nil && (code != 200 || body != "done\n") {
					err = fmt.Errorf("hold.php: %d %q", code, body)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	hold(2)
	check("half-busy pool", 2, false, nil)
	hold(4)
	check("saturated pool", 4, false, nil)

	code, out, stderr := s.cli("status", "r1", "-full")
	if code != 0 || strings.Count(out, "/hold.php?n=") != 4 || strings.Contains(out, "s3cret") || !strings.Contains(out, "token=REDACTED") {
		t.Errorf("status r1 -full: exit %d, want the 4 busy workers' requests listed with the token redacted:\n%s%s", code, out, stderr)
	}
	t.Logf("fpmux status r1 -full, saturated:\n%s", out)
	// The held requests run past request_slowlog_timeout: the slowlog's
	// entries come with the processes.
	s.waitFor("status r1 -full to list slow requests", 30*time.Second, func() bool {
		_, out, _ = s.cli("status", "r1", "-full")
		return strings.Contains(out, "slow requests, the last ") && strings.Contains(out, root+"/hold.php: ") && strings.Contains(out, "usleep()")
	})
	t.Logf("fpmux status r1 -full, with slow requests:\n%s", out)

	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

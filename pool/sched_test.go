package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// schedOf reads a process's nice value and scheduling policy; ok is false
// once it is gone.
func schedOf(t *testing.T, pid int) (nice, policy int, ok bool) {
	t.Helper()
	st, err := proc.ReadStat(pid)
	if errors.Is(err, proc.ErrMalformed) {
		t.Fatal(err)
	}
	if err != nil {
		return 0, 0, false
	}
	return st.Nice, st.Policy, true
}

// groupSched returns "nice/policy" of the master and each worker.
func groupSched(t *testing.T, pgid int) []string {
	t.Helper()
	var out []string
	for _, pid := range append([]int{pgid}, groupMembers(pgid)...) {
		n, pol, ok := schedOf(t, pid)
		if !ok {
			continue // exited meanwhile
		}
		out = append(out, strconv.Itoa(n)+"/"+strconv.Itoa(pol))
	}
	return out
}

// slowRelease writes a release whose slow.php marks marks/started, then
// takes secs seconds to answer "slept"; it returns the root and marks.
func slowRelease(t *testing.T, secs string) (root, marks string) {
	t.Helper()
	root = newRelease(t, map[string]string{
		// A loop, not one sleep(): signals cut sleep() short.
		"slow.php": `<?php
file_put_contents(__DIR__ . "/marks/started", "1");
$t0 = microtime(true);
while (microtime(true) - $t0 < ` + secs + `) { usleep(10000); }
echo "slept";`,
	})
	marks = filepath.Join(root, "marks")
	if err := os.Mkdir(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	return root, marks
}

// setIdleFor sets how long pools run at SCHED_IDLE in one go, until the
// test ends.
func setIdleFor(t *testing.T, d time.Duration) {
	old := idleFor.Swap(int64(d))
	t.Cleanup(func() { idleFor.Store(old) })
}

func allAre(got []string, want string) bool {
	for _, g := range got {
		if g != want {
			return false
		}
	}
	return len(got) > 0
}

// TestStartingAndStoppingPoolsRunIdle: run as root, a pool's master and
// workers run at nice 19 and SCHED_IDLE from Start until Foreground (a
// starting pool gets only the CPU the serving one leaves), at fpmux's own
// priority and SCHED_OTHER from then on, and at nice 19 and SCHED_IDLE
// again while Stop waits for their last request and tears them down (for
// at most idleFor: see TestIdleIsBounded), so that the old pool's module
// shutdown does not delay the serving release's requests. Not root: the
// pool always runs as fpmux does (it could not be given its priority
// back).
func TestStartingAndStoppingPoolsRunIdle(t *testing.T) {
	bin := phpFPM(t)
	setIdleFor(t, time.Hour)
	root, marks := slowRelease(t, "1.5")
	p := startPool(t, Options{ID: "idle1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Directives: map[string]string{"pm": "static", "pm.max_children": "3"}})
	pgid := p.Pid()
	prio, _ := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	own := strconv.Itoa(20-prio) + "/0"
	background, foreground, stopping := own, own, own
	if os.Geteuid() == 0 {
		background = "19/5" // SCHED_IDLE
		stopping = background
	}
	eventually(t, 10*time.Second, "3 workers", func() bool { return len(groupMembers(pgid)) == 3 })
	if got := groupSched(t, pgid); !allAre(got, background) {
		t.Fatalf("nice/policy of master and workers after Start: %v, want all %s", got, background)
	}
	p.Foreground()
	if got := groupSched(t, pgid); !allAre(got, foreground) {
		t.Fatalf("nice/policy after Foreground: %v, want all %s", got, foreground)
	}

	// The stop sets the nice value and the policy in two steps (and a
	// worker at a time): wait for the whole group to get there.
	var last []string
	stopWhileSlow(t, p, marks, func() bool {
		if got := groupSched(t, pgid); len(got) > 0 { // the last seen before the group went
			last = got
		}
		return allAre(last, stopping)
	})
	if !allAre(last, stopping) {
		t.Errorf("nice/policy while the pool stops: %v, want all %s", last, stopping)
	}
}

// stopWhileSlow stops p gracefully while slow.php runs, and polls cond
// until it holds, the pool is gone or 10 s have passed.
func stopWhileSlow(t *testing.T, p *Pool, marks string, cond func() bool) {
	t.Helper()
	release, ok := p.Acquire()
	if !ok {
		t.Fatal("Acquire refused on a fresh pool")
	}
	done := make(chan error, 1)
	go func() {
		defer release()
		res, err := runScript(context.Background(), p, "slow.php", "")
		if err == nil && string(res.Body) != "slept" {
			err = fmt.Errorf("slow.php answered %q", string(res.Body))
		}
		done <- err
	}()
	eventually(t, 10*time.Second, "slow.php to start", func() bool {
		_, err := os.Stat(filepath.Join(marks, "started"))
		return err == nil
	})
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(false) }()
	for deadline := time.Now().Add(10 * time.Second); !cond() && !isDone(p.Done()) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Errorf("the request in flight at Stop: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// TestIdleIsBounded: run as root, a pool that has been starting for
// idleFor leaves SCHED_IDLE for fpmux's own priority, so that a busy
// machine cannot starve a deploy (nor its app warm-up, which runs after
// the start); a kept pool (Background) and one that stops leave it for
// nice 5 (lateNice) after idleFor, so that a stop on a busy machine does
// not hold the old pool's memory for as long as the load lasts.
func TestIdleIsBounded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root lowers a pool's priority")
	}
	setIdleFor(t, 50*time.Millisecond)
	bin := phpFPM(t)
	root, marks := slowRelease(t, "3")
	p := startPool(t, Options{ID: "idle2", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Directives: map[string]string{"pm": "static", "pm.max_children": "2"}})
	pgid := p.Pid()
	eventually(t, 10*time.Second, "2 workers", func() bool { return len(groupMembers(pgid)) == 2 })
	prio, _ := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	own := strconv.Itoa(20-prio) + "/0"
	eventually(t, 10*time.Second, "the starting pool at "+own, func() bool { return allAre(groupSched(t, pgid), own) })

	p.Foreground()
	p.Background()
	late := strconv.Itoa(lateNice) + "/0"
	eventually(t, 10*time.Second, "the kept pool at "+late, func() bool { return allAre(groupSched(t, pgid), late) })
	p.Foreground()
	setIdleFor(t, time.Hour)
	p.Background()
	if got := groupSched(t, pgid); !allAre(got, "19/5") {
		t.Fatalf("nice/policy of a kept pool: %v, want all 19/5", got)
	}
	p.Foreground()
	setIdleFor(t, 300*time.Millisecond)
	// Each of the two the stopping pool was seen at, in order (a change
	// sets the nice value and the policy in two steps, so others pass by).
	var seen []string
	stopWhileSlow(t, p, marks, func() bool {
		got := groupSched(t, pgid)
		if len(got) > 0 && (allAre(got, "19/5") || allAre(got, late)) && (len(seen) == 0 || seen[len(seen)-1] != got[0]) {
			seen = append(seen, got[0])
		}
		return allAre(got, late)
	})
	if want := []string{"19/5", late}; !slices.Equal(seen, want) {
		t.Errorf("nice/policy of the stopping pool, in order: %v, want %v", seen, want)
	}
}

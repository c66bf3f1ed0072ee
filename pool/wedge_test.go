package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// wedgeOptions are a pool's options with a quick wedge check.
func wedgeOptions(t *testing.T, id string, files map[string]string, wedged *atomic.Int64) Options {
	return Options{
		ID: id, Root: newRelease(t, files), Dir: poolDir(t), Binary: phpFPM(t), Logger: testLogger(t),
		Directives:    map[string]string{"pm": "static", "pm.max_children": "2"},
		WedgeInterval: 200 * time.Millisecond, WedgeMisses: 3,
		OnWedged: func() { wedged.Add(1) },
	}
}

// TestWedgedPoolIsReplaced stops a pool's master and every worker
// (kill -STOP of the group): php-fpm is alive but answers nothing. The
// wedge check must kill the group and start a new master, which serves.
func TestWedgedPoolIsReplaced(t *testing.T) {
	var wedged atomic.Int64
	p := startPool(t, wedgeOptions(t, "wedged", map[string]string{"index.php": `<?php echo "up";`}, &wedged))
	old := p.Pid()
	t.Cleanup(func() { syscall.Kill(-old, syscall.SIGCONT) }) // if the check never came
	if err := syscall.Kill(-old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := p.Ping(ctx)
	cancel()
	if err == nil {
		t.Fatal("a pool whose processes are all stopped answered a ping")
	}
	eventually(t, 30*time.Second, "the wedged pool was not replaced", func() bool {
		pid := p.Pid()
		return pid != 0 && pid != old
	})
	groupGoneESRCH(t, old)
	if got := mustRun(t, p, "index.php", ""); got != "up" {
		t.Errorf("the new master serves %q, want up", got)
	}
	if n, r := wedged.Load(), p.Restarts(); n != 1 || r != 1 {
		t.Errorf("OnWedged called %d times, restarts %d; want 1 and 1", n, r)
	}
}

// TestBusyPoolIsNotWedged keeps every worker of a pool busy in PHP, with
// more requests waiting, for many wedge check intervals. php-fpm answers
// ping.path from a worker, so the pool misses pings all that time, but it
// is busy, not wedged: its master must not be replaced, and every request
// is served.
func TestBusyPoolIsNotWedged(t *testing.T) {
	var wedged atomic.Int64
	p := startPool(t, wedgeOptions(t, "busy", map[string]string{"sleep.php": `<?php usleep(3000000); echo "slept";`}, &wedged))
	old := p.Pid()
	var wg sync.WaitGroup
	bodies := make([]string, 4) // two running, two waiting for a worker
	errs := make([]error, len(bodies))
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := runScript(t.Context(), p, "sleep.php", "")
			if err == nil {
				bodies[i] = string(res.Body)
			}
			errs[i] = err
		}()
	}
	// The pings miss while the requests run.
	eventually(t, 10*time.Second, "the busy pool still answers pings", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		return p.Ping(ctx) != nil
	})
	wg.Wait()
	for i := range bodies {
		if errs[i] != nil || bodies[i] != "slept" {
			t.Errorf("request %d on the busy pool: %q %v, want slept", i, bodies[i], errs[i])
		}
	}
	if pid, n := p.Pid(), wedged.Load(); pid != old || n != 0 || p.Restarts() != 0 {
		t.Errorf("after the busy spell: pid %d (was %d), OnWedged %d, restarts %d; want the same master, 0, 0", pid, old, n, p.Restarts())
	}
}

// TestWedgeMiss pins which failed pings count as a miss.
func TestWedgeMiss(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		master   byte
		workers  []byte
		wantMiss bool
	}{
		{"nothing listens", syscall.ECONNREFUSED, 'S', []byte{'S'}, true},
		{"socket gone", syscall.ENOENT, 'S', []byte{'S'}, true},
		{"master stopped", context.DeadlineExceeded, 'T', []byte{'S', 'S'}, true},
		{"master traced", context.DeadlineExceeded, 't', nil, true},
		{"every worker stopped", context.DeadlineExceeded, 'S', []byte{'T', 'T'}, true},
		{"busy workers", context.DeadlineExceeded, 'S', []byte{'S', 'R'}, false},
		{"one worker stopped, one busy", context.DeadlineExceeded, 'S', []byte{'T', 'S'}, false},
		{"backlog full", syscall.EAGAIN, 'S', []byte{'S'}, false},
		{"no worker yet", context.DeadlineExceeded, 'S', nil, false},
		{"worker in disk wait", context.DeadlineExceeded, 'S', []byte{'D'}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why, miss := wedgeMissOf(tt.err, tt.master, tt.workers)
			if miss != tt.wantMiss {
				t.Errorf("miss = %v (%q), want %v", miss, why, tt.wantMiss)
			}
			if miss && why == "" {
				t.Error("a miss without a reason")
			}
		})
	}
}

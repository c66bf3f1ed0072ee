package pool

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/logtest"
)

// TestGateReopen: a gate reopens only once its drain has finished, then
// counts requests again, and its next drain closes a new idle channel.
func TestGateReopen(t *testing.T) {
	g := newGate()
	if g.reopen() {
		t.Fatal("reopen succeeded on a gate that was never drained")
	}
	release, _ := g.acquire()
	g.drain()
	if g.reopen() {
		t.Fatal("reopen succeeded with a request in flight")
	}
	if _, ok := g.acquire(); ok {
		t.Fatal("acquire succeeded on a draining gate after a refused reopen")
	}
	release()
	first := g.idleCh()
	if !isClosed(first) {
		t.Fatal("idle not closed after the last release")
	}
	if !g.reopen() {
		t.Fatal("reopen refused on a drained, idle gate")
	}
	if g.reopen() {
		t.Fatal("reopen succeeded twice")
	}
	second := g.idleCh()
	if isClosed(second) || g.draining() {
		t.Fatal("a reopened gate is still draining or idle")
	}
	release, ok := g.acquire()
	if !ok {
		t.Fatal("acquire failed on a reopened gate")
	}
	g.drain()
	if isClosed(second) {
		t.Fatal("the new idle channel closed with a request in flight")
	}
	release()
	if !isClosed(second) {
		t.Fatal("the new idle channel did not close after the second drain")
	}
	// A drain of a reopened gate with nothing in flight closes at once.
	if !g.reopen() {
		t.Fatal("second reopen refused")
	}
	g.drain()
	if !isClosed(g.idleCh()) {
		t.Fatal("idle not closed by a drain with nothing in flight")
	}
}

// TestGateReopenConcurrent drains and reopens a gate over and over while
// 16 goroutines enter and leave it: no idle channel may close while a
// request is in flight, and none may be closed twice (a panic).
func TestGateReopenConcurrent(t *testing.T) {
	g := newGate()
	var (
		outstanding atomic.Int64
		early       atomic.Int64
		stop        atomic.Bool
		wg          sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if !g.enter() {
					continue
				}
				outstanding.Add(1)
				outstanding.Add(-1)
				g.leave()
			}
		}()
	}
	for round := range 2000 {
		g.drain()
		idle := g.idleCh()
		<-idle
		if n := outstanding.Load(); n != 0 {
			early.Add(1)
		}
		if !g.reopen() {
			t.Fatalf("round %d: reopen refused after idle closed", round)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := early.Load(); n != 0 {
		t.Fatalf("idle closed %d times with requests outstanding", n)
	}
}

// TestUndrainKeepsTheMaster drains a pool, undrains it once idle, and
// serves from the same master; after Stop, Undrain refuses.
func TestUndrainKeepsTheMaster(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	p := startPool(t, Options{ID: "kept1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t)})
	pid := p.Pid()
	if p.Undrain() {
		t.Fatal("Undrain succeeded on a pool that was not draining")
	}
	if !p.Enter() {
		t.Fatal("Enter failed on a fresh pool")
	}
	p.Drain()
	if p.Undrain() {
		t.Fatal("Undrain succeeded with a request in flight")
	}
	p.Leave()
	<-p.Idle()
	if !p.Undrain() {
		t.Fatal("Undrain refused on an idle drained pool")
	}
	if !p.Enter() {
		t.Fatal("Enter failed on an undrained pool")
	}
	p.Leave()
	if got := mustRun(t, p, "index.php", ""); got != "up" || p.Pid() != pid {
		t.Fatalf("after Undrain: %q from master %d, want \"up\" from %d", got, p.Pid(), pid)
	}
	p.Drain()
	select {
	case <-p.Idle():
	case <-time.After(5 * time.Second):
		t.Fatal("the second drain's Idle did not close")
	}
	if err := p.Stop(false); err != nil {
		t.Fatal(err)
	}
	if p.Undrain() {
		t.Fatal("Undrain succeeded after Stop")
	}
}

// TestUndrainRefusedAfterMasterDiedDraining: the master of a draining pool
// is not restarted when it dies, so the pool cannot be undrained; an
// undrained pool's master is restarted as usual.
func TestUndrainRefusedAfterMasterDiedDraining(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	var log logtest.Buffer
	p := startPool(t, Options{ID: "kept2", Root: root, Dir: poolDir(t), Binary: bin,
		Logger: log.Logger(slog.LevelInfo)})

	// Undrained first: a death is restarted.
	p.Drain()
	<-p.Idle()
	if !p.Undrain() {
		t.Fatal("Undrain refused")
	}
	old := p.Pid()
	if err := syscallKill(old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the undrained pool's master to be restarted", func() bool {
		return p.Restarts() == 1 && p.Pid() != 0 && p.Pid() != old
	})

	// Drained: a death is final, and Undrain says so.
	p.Drain()
	<-p.Idle()
	if err := syscallKill(p.Pid()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the pool to note its master's death while draining", func() bool {
		return strings.Contains(log.String(), "master died while the pool drains")
	})
	if p.Undrain() {
		t.Fatal("Undrain succeeded on a pool whose master died while draining")
	}
	if p.Restarts() != 1 {
		t.Errorf("restarts %d, want 1", p.Restarts())
	}
}

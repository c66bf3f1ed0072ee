package pool

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestGateSequential(t *testing.T) {
	g := newGate()
	r1, ok := g.acquire()
	if !ok {
		t.Fatal("acquire on a fresh gate failed")
	}
	r2, ok := g.acquire()
	if !ok {
		t.Fatal("second acquire failed")
	}
	if n := g.inFlight(); n != 2 {
		t.Fatalf("inFlight = %d, want 2", n)
	}
	r1()
	r1() // a second call must not count out another request
	if n := g.inFlight(); n != 1 {
		t.Fatalf("inFlight after double release = %d, want 1", n)
	}
	if isClosed(g.idle) {
		t.Fatal("idle closed before drain")
	}
	g.drain()
	g.drain()
	if _, ok := g.acquire(); ok {
		t.Fatal("acquire succeeded after drain")
	}
	if isClosed(g.idle) {
		t.Fatal("idle closed with a request in flight")
	}
	r2()
	if !isClosed(g.idle) {
		t.Fatal("idle not closed after the last release")
	}
	r2()
	if n := g.inFlight(); n != 0 {
		t.Fatalf("inFlight = %d, want 0", n)
	}
}

func TestGateDrainIdleAtOnce(t *testing.T) {
	g := newGate()
	g.drain()
	if !isClosed(g.idle) {
		t.Fatal("draining an unused gate did not close idle")
	}
	g.drain() // must not close twice (would panic)
}

// TestGateConcurrent races many acquirers against Drain: no acquire may
// succeed once Drain has returned, and idle must close exactly when the
// last release runs, not before.
func TestGateConcurrent(t *testing.T) {
	for round := 0; round < 50; round++ {
		g := newGate()
		var (
			drained     atomic.Bool
			lateAcquire atomic.Int64
			outstanding atomic.Int64 // acquired and not yet released
			early       atomic.Int64 // idle seen closed while outstanding > 0
			wg          sync.WaitGroup
			start       = make(chan struct{})
		)
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for j := 0; ; j++ {
					wasDrained := drained.Load()
					release, ok := g.acquire()
					if !ok {
						return
					}
					if wasDrained {
						lateAcquire.Add(1)
					}
					outstanding.Add(1)
					if j%3 == 0 {
						time.Sleep(time.Microsecond)
					}
					if isClosed(g.idle) {
						early.Add(1)
					}
					outstanding.Add(-1)
					release()
				}
			}()
		}
		close(start)
		time.Sleep(time.Millisecond)
		g.drain()
		drained.Store(true)
		<-g.idle
		if n := outstanding.Load(); n != 0 {
			t.Fatalf("round %d: idle closed with %d requests outstanding", round, n)
		}
		wg.Wait()
		if n := lateAcquire.Load(); n != 0 {
			t.Fatalf("round %d: %d acquires succeeded after Drain returned", round, n)
		}
		if n := early.Load(); n != 0 {
			t.Fatalf("round %d: idle was closed while %d requests were in flight", round, n)
		}
		if n := g.inFlight(); n != 0 {
			t.Fatalf("round %d: inFlight = %d after all releases", round, n)
		}
	}
}

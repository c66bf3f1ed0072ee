// gate.go owns the request counting behind Acquire, Drain, Idle and Undrain.

package pool

import (
	"sync"
	"sync/atomic"
)

// drainingBit marks a draining gate in gate.state; the low bits count the
// requests in flight.
const drainingBit = int64(1) << 62

// gate counts requests in and out of a pool and refuses new ones once
// draining. It is lock-free: one int64 holds both the count and the draining
// flag, so "not draining" and "count in" are decided by a single
// compare-and-swap, and Drain cannot slip between them.
//
// A drained gate that has gone idle may be reopened (reopen), which gives it
// a new idle channel for its next drain; idleMu guards idle for that, and is
// taken only off the per-request path (a drain, the last leave of one, Idle).
//
// The zero value is not usable; use newGate.
type gate struct {
	state  atomic.Int64
	idleMu sync.Mutex
	idle   chan struct{} // closed once draining and the count is zero
}

func newGate() *gate {
	return &gate{idle: make(chan struct{})}
}

// enter counts a request in. It returns false once drain has been called.
func (g *gate) enter() bool {
	for {
		s := g.state.Load()
		if s&drainingBit != 0 {
			return false
		}
		if g.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// leave counts out a request that entered. Each successful enter is
// matched by exactly one leave.
func (g *gate) leave() {
	// Only the leave that takes a draining gate to zero sees exactly
	// drainingBit, so idle is closed once.
	if g.state.Add(-1) == drainingBit {
		g.closeIdle()
	}
}

func (g *gate) closeIdle() {
	g.idleMu.Lock()
	close(g.idle)
	g.idleMu.Unlock()
}

// idleCh returns the channel closed once the gate is draining and idle.
func (g *gate) idleCh() <-chan struct{} {
	g.idleMu.Lock()
	defer g.idleMu.Unlock()
	return g.idle
}

// reopen makes a drained gate count requests in again. It succeeds only
// once the drain has finished (idle is closed, nothing is in flight), so no
// leave or drain is closing idle meanwhile, and gives the gate a new idle
// channel for the next drain.
func (g *gate) reopen() bool {
	g.idleMu.Lock()
	defer g.idleMu.Unlock()
	select {
	case <-g.idle:
	default:
		return false
	}
	if !g.state.CompareAndSwap(drainingBit, 0) {
		return false
	}
	// A drain or a leave that would close the new channel waits for
	// idleMu, held until it is in place.
	g.idle = make(chan struct{})
	return true
}

// acquire is enter with a release that may safely be called more than once.
func (g *gate) acquire() (release func(), ok bool) {
	if !g.enter() {
		return nil, false
	}
	var released atomic.Bool
	return func() {
		if released.CompareAndSwap(false, true) {
			g.leave()
		}
	}, true
}

// drain makes every later acquire fail. It is idempotent.
func (g *gate) drain() {
	old := g.state.Or(drainingBit)
	if old == 0 { // first drain, nothing in flight
		g.closeIdle()
	}
}

// inFlight returns the number of requests counted in and not yet released.
func (g *gate) inFlight() int64 {
	return g.state.Load() &^ drainingBit
}

// draining reports whether drain has been called.
func (g *gate) draining() bool {
	return g.state.Load()&drainingBit != 0
}

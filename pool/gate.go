// gate.go owns the request counting behind Acquire, Drain and Idle.

package pool

import (
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
// The zero value is not usable; use newGate.
type gate struct {
	state atomic.Int64
	idle  chan struct{} // closed once draining and the count is zero
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
		close(g.idle)
	}
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
		close(g.idle)
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

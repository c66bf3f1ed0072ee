// This file owns the connections to one php-fpm pool: dialing, keeping idle
// ones for reuse, and dropping them when the pool drains.

package fcgimux

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Backend is the way to one php-fpm pool. It keeps up to maxIdle idle
// connections for reuse. A php-fpm child serves one connection at a time and
// a kept connection pins its child, so reuse must never starve a new
// connection waiting in php-fpm's accept queue: a connection is dialed only
// when no idle one is left (every open one is busy), and while such a new
// connection has not been answered yet, each busy connection that finishes
// is closed instead of kept, which frees its child for the waiting one. For
// the same reason an idle connection unused for idleTimeout is closed: a
// pool whose traffic fell gets its children back (pm dynamic and ondemand
// can retire them, and php-fpm's status page counts them idle).
// Close drops the idle ones and makes every connection handed back later
// close too, which is what a draining pool needs.
type Backend struct {
	network, addr string
	maxIdle       int
	dialTimeout   time.Duration
	idleTimeout   time.Duration
	unanswered    atomic.Int64 // dialed connections php-fpm has not answered on yet

	mu     sync.Mutex
	idle   []*backendConn // most recently used last
	sweep  *time.Timer    // armed while idle is not empty
	closed bool
}

// backendIdleTimeout is how long an idle pool connection is kept.
const backendIdleTimeout = 2 * time.Second

// NewBackend returns a Backend for the pool listening at network/addr
// ("unix", "/var/lib/fpmux/pools/42/fpm.sock"). maxIdle <= 0 keeps none; a
// caller passes fewer than pm.max_children so that one child stays free for
// the pool's ping and status pages.
func NewBackend(network, addr string, maxIdle int) *Backend {
	return &Backend{network: network, addr: addr, maxIdle: max(maxIdle, 0),
		dialTimeout: 5 * time.Second, idleTimeout: backendIdleTimeout}
}

// Addr returns the pool's address, for messages.
func (b *Backend) Addr() string { return b.addr }

// backendConn is one connection to php-fpm. It has no buffers of its own:
// a request is written from the front connection's buffer and its response
// read into the relay's, so a connection can go back to the pool the moment
// php-fpm ends a request.
type backendConn struct {
	net.Conn
	raw      syscall.RawConn // for alive's peek; nil when Conn is not a socket
	peekFn   func(fd uintptr) bool
	peekLive bool
	reused   bool
	lastUsed time.Time
	b        *Backend
	// waiting is true from dial until php-fpm's first answer on it.
	waiting atomic.Bool
}

// answered notes php-fpm's first answer on a connection: a child took it.
func (bc *backendConn) answered() {
	if bc.waiting.Load() && bc.waiting.CompareAndSwap(true, false) {
		bc.b.unanswered.Add(-1)
	}
}

// Close closes the connection, and stops counting it as waiting.
func (bc *backendConn) Close() error {
	bc.answered()
	return bc.Conn.Close()
}

// get returns an idle connection that is still open, or a new one.
func (b *Backend) get() (*backendConn, error) {
	for {
		b.mu.Lock()
		n := len(b.idle)
		if n == 0 {
			b.mu.Unlock()
			break
		}
		bc := b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		b.mu.Unlock()
		if bc.alive() {
			bc.reused = true
			return bc, nil
		}
		bc.Close()
	}
	return b.dial()
}

func (b *Backend) dial() (*backendConn, error) {
	nc, err := net.DialTimeout(b.network, b.addr, b.dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial php-fpm %s: %w", b.addr, err)
	}
	b.unanswered.Add(1)
	bc := &backendConn{Conn: nc, b: b}
	if sc, ok := nc.(syscall.Conn); ok {
		if bc.raw, err = sc.SyscallConn(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("dial php-fpm %s: %w", b.addr, err)
		}
		bc.peekFn = bc.peek
	}
	bc.waiting.Store(true)
	return bc, nil
}

// alive tells whether php-fpm still holds the idle connection open: a child
// that exited (pm.max_requests, a pool that scaled down) has closed it. It
// peeks without blocking: nothing to read is the sign of a live, clean
// connection; end of file, an error or bytes php-fpm sent unasked are not.
func (bc *backendConn) alive() bool {
	if bc.raw == nil {
		return true // not a socket (tests): a dead one fails on write and is redialed
	}
	bc.peekLive = false
	err := bc.raw.Read(bc.peekFn)
	return err == nil && bc.peekLive
}

// peek is alive's look at the socket, kept as a method value made once per
// connection so that the check allocates nothing.
func (bc *backendConn) peek(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	bc.peekLive = err == syscall.EAGAIN
	return true
}

// put hands back a connection whose last request ended cleanly.
func (b *Backend) put(bc *backendConn) {
	bc.answered()
	b.mu.Lock()
	if b.closed || len(b.idle) >= b.maxIdle || b.unanswered.Load() > 0 {
		b.mu.Unlock()
		bc.Close()
		return
	}
	bc.lastUsed = time.Now()
	b.idle = append(b.idle, bc)
	if b.sweep == nil {
		b.sweep = time.AfterFunc(b.idleTimeout, b.closeStale)
	}
	b.mu.Unlock()
}

// closeStale closes the idle connections unused for idleTimeout; it runs
// on a timer while any are kept.
func (b *Backend) closeStale() {
	now := time.Now()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	n := 0 // idle is in order of use: the stale ones come first
	for n < len(b.idle) && now.Sub(b.idle[n].lastUsed) >= b.idleTimeout {
		n++
	}
	stale := make([]*backendConn, n)
	copy(stale, b.idle[:n])
	rest := copy(b.idle, b.idle[n:])
	clear(b.idle[rest:])
	b.idle = b.idle[:rest]
	if len(b.idle) > 0 {
		b.sweep.Reset(b.idle[0].lastUsed.Add(b.idleTimeout).Sub(now))
	} else {
		b.sweep = nil
	}
	b.mu.Unlock()
	for _, bc := range stale {
		bc.Close()
	}
}

// Close closes the idle connections and makes Backend close every
// connection handed back from now on. Requests in flight keep theirs.
func (b *Backend) Close() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.closed = true
	if b.sweep != nil {
		b.sweep.Stop()
		b.sweep = nil
	}
	b.mu.Unlock()
	for _, bc := range idle {
		bc.Close()
	}
}

// Idle returns how many idle connections the backend holds.
func (b *Backend) Idle() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.idle)
}

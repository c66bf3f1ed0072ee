// This file owns the connections to one php-fpm pool: dialing, keeping idle
// ones for reuse, and dropping them when the pool drains.

package fcgimux

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is the way to one php-fpm pool. It keeps up to maxIdle idle
// connections for reuse. A php-fpm child serves one connection at a time and
// a kept connection pins its child, so reuse must never starve a new
// connection waiting in php-fpm's accept queue: a connection is dialed only
// when no idle one is left (every open one is busy), and while such a new
// connection has not been answered yet, each busy connection that finishes
// is closed instead of kept, which frees its child for the waiting one.
// Close drops the idle ones and makes every connection handed back later
// close too, which is what a draining pool needs.
type Backend struct {
	network, addr string
	maxIdle       int
	dialTimeout   time.Duration
	unanswered    atomic.Int64 // dialed connections php-fpm has not answered on yet

	mu     sync.Mutex
	idle   []*backendConn
	closed bool
}

// NewBackend returns a Backend for the pool listening at network/addr
// ("unix", "/var/lib/fpmux/pools/42/fpm.sock"). maxIdle <= 0 keeps none; a
// caller passes fewer than pm.max_children so that one child stays free for
// the pool's ping and status pages.
func NewBackend(network, addr string, maxIdle int) *Backend {
	return &Backend{network: network, addr: addr, maxIdle: max(maxIdle, 0), dialTimeout: 5 * time.Second}
}

// Addr returns the pool's address, for messages.
func (b *Backend) Addr() string { return b.addr }

// backendConn is one connection to php-fpm with its buffers.
type backendConn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	recs   *recordReader
	b      *Backend
	// waiting is true from dial until php-fpm's first answer on it.
	waiting atomic.Bool
}

// answered notes php-fpm's first answer on a connection: a child took it.
func (bc *backendConn) answered() {
	if bc.waiting.CompareAndSwap(true, false) {
		bc.b.unanswered.Add(-1)
	}
}

// Close closes the connection, and stops counting it as waiting.
func (bc *backendConn) Close() error {
	bc.answered()
	return bc.Conn.Close()
}

// rr returns the connection's record reader, made on first use and kept
// with the connection so its buffer is reused across requests.
func (bc *backendConn) rr() *recordReader {
	if bc.recs == nil {
		bc.recs = newRecordReader(bc.br)
	}
	return bc.recs
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
	bc := &backendConn{Conn: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 16<<10), b: b}
	bc.waiting.Store(true)
	return bc, nil
}

// alive tells whether php-fpm still holds the idle connection open: a child
// that exited (pm.max_requests, a pool that scaled down) has closed it, and
// a read that would block is the sign it is still there.
func (bc *backendConn) alive() bool {
	if bc.br.Buffered() > 0 {
		return false // php-fpm said something unasked: the stream is not clean
	}
	bc.SetReadDeadline(time.Now())
	_, err := bc.br.Peek(1)
	bc.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
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
	b.idle = append(b.idle, bc)
	b.mu.Unlock()
}

// Close closes the idle connections and makes Backend close every
// connection handed back from now on. Requests in flight keep theirs.
func (b *Backend) Close() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.closed = true
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

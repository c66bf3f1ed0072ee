// This file owns the connections to one php-fpm pool: dialing, keeping idle
// ones for reuse, and dropping them when the pool drains.

package fcgimux

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Backend is the way to one php-fpm pool.
//
// A php-fpm child serves one connection at a time, and a kept connection
// pins its child. So Backend opens at most maxOpen connections (the pool's
// pm.max_children): a request that finds them all busy waits here, in
// order, for one to finish, and takes it over as it is, rather than dialing
// a connection that would wait in php-fpm's accept queue and be torn down
// after one request. Idle connections are kept for reuse, up to maxIdle.
//
// Reuse must never starve a connection waiting in php-fpm's accept queue.
// With maxOpen at pm.max_children that cannot last: a connection is dialed
// only when every open one is busy, and php-fpm has a child for each of up
// to max_children connections (under pm dynamic it spawns one within its
// one-second maintenance tick, since no child is idle). Without a bound,
// while a dialed connection has not been answered yet, each busy connection
// that finishes is closed instead of kept, which frees its child for the
// waiting one. And an idle connection unused for idleTimeout is closed, so
// a pool whose traffic fell gets its children back (pm dynamic and ondemand
// can retire them).
//
// Close drops the idle ones and makes every connection handed back later
// close too, unless a request is waiting for it: what a draining pool needs.
type Backend struct {
	network, addr string
	maxOpen       int // 0: no bound
	maxIdle       int
	maxWaiting    int // 0: no bound
	dialTimeout   time.Duration
	idleTimeout   time.Duration
	unanswered    atomic.Int64 // dialed connections php-fpm has not answered on yet

	mu      sync.Mutex
	open    int                 // connections open or being dialed
	idle    []*backendConn      // most recently used last
	waiters []chan *backendConn // requests waiting for a connection, oldest first
	sweep   *time.Timer         // armed while idle is not empty
	closed  bool
}

// backendIdleTimeout is how long an idle pool connection is kept.
const backendIdleTimeout = 2 * time.Second

// NewBackend returns a Backend for the pool listening at network/addr
// ("unix", "/var/lib/fpmux/pools/42/fpm.sock") that opens at most maxOpen
// connections (<= 0: no bound) and keeps at most maxIdle idle. A caller
// passes pm.max_children and one less, so that when the pool is idle a
// child stays free for its ping and status pages.
func NewBackend(network, addr string, maxOpen, maxIdle int) *Backend {
	return &Backend{network: network, addr: addr, maxOpen: max(maxOpen, 0), maxIdle: max(maxIdle, 0),
		dialTimeout: 5 * time.Second, idleTimeout: backendIdleTimeout}
}

// ErrPoolBusy is returned for a request that would exceed the pool's bound
// on requests in flight (SetMaxInFlight): it is answered 503 at once rather
// than queued without end behind a pool that cannot keep up.
var ErrPoolBusy = errors.New("pool at its limit of requests in flight")

// SetMaxInFlight bounds the requests the Backend holds at once, those on
// its maxOpen connections plus those waiting for one, to n (<= 0: no
// bound). A request over it gets ErrPoolBusy. It takes effect only with a
// bound on open connections, since without one nothing waits here. Call it
// before the Backend is used.
func (b *Backend) SetMaxInFlight(n int) {
	b.maxWaiting = 0
	if n > 0 && b.maxOpen > 0 {
		b.maxWaiting = max(n-b.maxOpen, 1)
	}
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
	closed  atomic.Bool
}

// answered notes php-fpm's first answer on a connection: a child took it.
func (bc *backendConn) answered() {
	if bc.waiting.Load() && bc.waiting.CompareAndSwap(true, false) {
		bc.b.unanswered.Add(-1)
	}
}

// Close closes the connection and gives its place to a waiting request.
// Closing twice is harmless.
func (bc *backendConn) Close() error {
	if !bc.closed.CompareAndSwap(false, true) {
		return nil
	}
	bc.answered()
	err := bc.Conn.Close()
	bc.b.closedOne()
	return err
}

// closedOne frees the place of a connection that was closed (or never
// dialed): the oldest waiting request, if any, takes it and dials.
func (b *Backend) closedOne() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) > 0 {
		b.popWaiter() <- nil // its place is now the waiter's: it dials
		return
	}
	b.open--
}

func (b *Backend) popWaiter() chan *backendConn {
	w := b.waiters[0]
	b.waiters[0] = nil
	b.waiters = b.waiters[1:]
	return w
}

// get returns an idle connection that is still open, a new one, or, when
// maxOpen are open, the first of them to be handed back.
func (b *Backend) get() (*backendConn, error) {
	for {
		b.mu.Lock()
		var bc *backendConn
		switch n := len(b.idle); {
		case n > 0:
			bc = b.idle[n-1]
			b.idle[n-1] = nil
			b.idle = b.idle[:n-1]
			b.mu.Unlock()
		case b.maxOpen == 0 || b.open < b.maxOpen:
			b.open++
			b.mu.Unlock()
			return b.dialOpen()
		case b.maxWaiting > 0 && len(b.waiters) >= b.maxWaiting:
			b.mu.Unlock()
			return nil, ErrPoolBusy
		default:
			w := make(chan *backendConn, 1)
			b.waiters = append(b.waiters, w)
			b.mu.Unlock()
			if bc = <-w; bc == nil {
				return b.dialOpen() // a connection closed: its place is ours
			}
		}
		if bc.alive() {
			bc.reused = true
			return bc, nil
		}
		bc.Close()
	}
}

// dial opens a connection in addition to those counted in open: the one
// that replaces a dead kept connection for a request already under way.
func (b *Backend) dial() (*backendConn, error) {
	b.mu.Lock()
	b.open++
	b.mu.Unlock()
	return b.dialOpen()
}

// redial closes bc and dials a connection in its place: for a request that
// must not go on the kept connection it was given, or whose kept connection
// php-fpm turned out to have ended. Unlike Close then dial, the place is not
// offered to a waiting request in between, so open stays within maxOpen.
func (b *Backend) redial(bc *backendConn) (*backendConn, error) {
	if bc.closed.CompareAndSwap(false, true) {
		bc.answered()
		bc.Conn.Close()
		return b.dialOpen()
	}
	return b.dial() // closed meanwhile (abandon, abort): its place is gone
}

// dialRetryFor bounds how long a dial is tried again while nothing listens
// on the pool's socket: the supervisor restarts a master that died within
// about half a second, and a request that waits that long is better served
// late than answered 502 at once.
const dialRetryFor = time.Second

// dialWait dials the pool, and while the socket is missing or refuses
// (a master being restarted) tries again, backing off from 10 to 100 ms,
// for up to dialRetryFor. A closed Backend (a draining pool, whose master
// is not restarted) is not waited for.
func (b *Backend) dialWait() (net.Conn, error) {
	var give time.Time
	wait := 10 * time.Millisecond
	for {
		nc, err := net.DialTimeout(b.network, b.addr, b.dialTimeout)
		if err == nil || !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EAGAIN)) {
			return nc, err
		}
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		now := time.Now()
		if give.IsZero() {
			give = now.Add(dialRetryFor)
		}
		if closed || now.After(give) {
			return nil, err
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// dialOpen dials a connection whose place in open is already taken.
func (b *Backend) dialOpen() (*backendConn, error) {
	nc, err := b.dialWait()
	if err != nil {
		b.closedOne()
		return nil, fmt.Errorf("dial php-fpm %s: %w", b.addr, err)
	}
	b.unanswered.Add(1)
	bc := &backendConn{Conn: nc, b: b}
	bc.waiting.Store(true)
	if sc, ok := nc.(syscall.Conn); ok {
		if bc.raw, err = sc.SyscallConn(); err != nil {
			bc.Close()
			return nil, fmt.Errorf("dial php-fpm %s: %w", b.addr, err)
		}
		bc.peekFn = bc.peek
	}
	return bc, nil
}

// alive tells whether php-fpm still holds the idle connection open: a child
// that exited (pm.max_requests, a pool that scaled down) has closed it. It
// peeks without blocking: nothing to read is the sign of a live, clean
// connection; end of file, an error or bytes php-fpm sent unasked are not.
//
// It is the main defence for kept connections whose php-fpm child served
// its pm.max_requests: the child sends END_REQUEST, finishes its request
// (access log line, cleanup), then shuts its side for writing and discards
// what arrives until fpmux closes. Once that shutdown has come, the peek
// sees end of file, and the request goes on a new connection before any of
// it was written. A connection taken in the window before it (handed back
// and taken at once by a waiting request) is met by retry, or, for a
// request too large to hold for that, never taken: see conn.holdUp. It
// costs one system call per reused connection.
func (bc *backendConn) alive() bool {
	if bc.raw == nil {
		return true
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

// Warm lends the pool's first connections, one per php-fpm child, to warm
// them before the pool takes traffic: a child's first requests cost it
// milliseconds (php-fpm and opcache set themselves up on first use, the
// app fills its caches), and warmed here that cost is not paid by the
// first requests of a switch, queued behind them. The connections that
// warmed the children are the ones then kept for reuse, up to maxIdle.
//
// first, when not nil, runs alone on the first connection: the round
// that fills what the children share, which the others then find done. An
// error from it ends the warm-up there, its connection closed and no other
// dialed. Then warm runs on n connections at once, the first among them
// and n-1 dialed now, and every connection stays open until every warm has
// returned, so that each is served by a child of its own. A function may
// close its connection (it broke): it is not lent again, and a fresh one
// takes its place for warm. The connections warm returned nil for are kept,
// the others closed. Warm returns the errors, joined: first's, the dials',
// warm's. The functions bound their own requests (with deadlines): Warm
// waits for them.
func (b *Backend) Warm(n int, first func(c net.Conn) error, warm func(i int, c net.Conn) error) error {
	if n <= 0 {
		return nil
	}
	conns := make([]*backendConn, n)
	if first != nil {
		bc, err := b.dial()
		if err != nil {
			return err
		}
		if err := first(bc); err != nil {
			bc.Close()
			return err
		}
		conns[0] = bc
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if conns[i] == nil || conns[i].closed.Load() {
				bc, err := b.dial()
				if err != nil {
					conns[i], errs[i] = nil, err
					return
				}
				conns[i] = bc
			}
			errs[i] = warm(i, conns[i])
		}()
	}
	wg.Wait()
	for i, bc := range conns {
		switch {
		case bc == nil || bc.closed.Load():
		case errs[i] != nil:
			bc.Close()
		default:
			bc.SetDeadline(time.Time{})
			b.put(bc)
		}
	}
	return errors.Join(errs...)
}

// peerDraining tells, after a read saw end of file, whether php-fpm's child
// is still there, reading and discarding: a write to the connection
// succeeds only if its side is still open for reading. On a unix socket a
// write to a closed peer fails at once (EPIPE); over TCP it may succeed, so
// the answer there is always false. What is written is an empty
// FCGI_GET_VALUES, which php-fpm would answer harmlessly were it reading
// records, and which a draining child throws away.
func (bc *backendConn) peerDraining() bool {
	if _, ok := bc.Conn.(*net.UnixConn); !ok {
		return false
	}
	var rec [headerLen]byte
	putHeader(rec[:], typeGetValues, 0, 0, 0)
	_, err := bc.Write(rec[:])
	return err == nil
}

// put hands back a connection whose last request ended cleanly: to the
// oldest waiting request, else to the idle list.
func (b *Backend) put(bc *backendConn) {
	bc.answered()
	b.mu.Lock()
	starving := b.maxOpen == 0 && b.unanswered.Load() > 0
	if starving || len(b.waiters) == 0 && (b.closed || len(b.idle) >= b.maxIdle) {
		b.mu.Unlock()
		bc.Close()
		return
	}
	if len(b.waiters) > 0 {
		b.popWaiter() <- bc
		b.mu.Unlock()
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

// Open returns how many connections to the pool are open or being dialed.
func (b *Backend) Open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// Idle returns how many idle connections the backend holds.
func (b *Backend) Idle() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.idle)
}

// This file owns the FastCGI listener's bookkeeping of fresh connections:
// accepted, but what the web server sent on them not handled yet. At
// shutdown serve stops accepting and waits for these before fcgimux closes
// the connections that carry no request: nginx writes its request right
// after connecting, so a connection accepted a moment before shutdown
// usually holds a whole request fcgimux has not read. Closing it unread
// resets it, and nginx answers 502 rather than retry on a new connection.

package main

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// beginRequestLen is a FastCGI record header and a BEGIN_REQUEST body: once
// that much was read and fcgimux reads again, it has handled the
// BEGIN_REQUEST and counts the connection as carrying a request.
const beginRequestLen = 16

// freshListener counts the connections it accepted that are still fresh.
type freshListener struct {
	net.Listener
	fresh sync.WaitGroup
}

func (l *freshListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.fresh.Add(1)
	return &freshConn{Conn: c, done: l.fresh.Done}, nil
}

// wait waits, at most bound, until no connection is fresh. Call it only
// once Accept will not be called again (the listener is closed and the
// accept loop has returned). It tells whether none was left.
func (l *freshListener) wait(bound time.Duration) bool {
	done := make(chan struct{})
	go func() {
		l.fresh.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(bound):
		return false
	}
}

// freshConn stops being fresh when fcgimux reads again after a
// BEGIN_REQUEST's worth of bytes (fcgimux reads more only once it has
// handled the records it holds), when a read fails, or when it is closed.
type freshConn struct {
	net.Conn
	read    int // bytes read while fresh; only the reading goroutine touches it
	settled atomic.Bool
	once    sync.Once
	done    func()
}

func (c *freshConn) Read(b []byte) (int, error) {
	fresh := !c.settled.Load()
	if fresh && c.read >= beginRequestLen {
		c.settle()
		fresh = false
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		c.settle()
	} else if fresh {
		c.read += n
	}
	return n, err
}

func (c *freshConn) settle() {
	c.once.Do(func() {
		c.settled.Store(true)
		c.done()
	})
}

func (c *freshConn) Close() error {
	c.settle()
	return c.Conn.Close()
}

// CloseWrite keeps fcgimux's half-close (a response without keep-conn)
// working through the wrapper.
func (c *freshConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

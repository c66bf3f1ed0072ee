// Package fcgitest runs a FastCGI application inside a test's process, for
// the tests of code that makes FastCGI requests, as net/http/httptest does
// for HTTP: an http.Handler served by net/http/fcgi on a unix socket, in
// place of a php-fpm pool.
package fcgitest

import (
	"net"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// Server is a FastCGI application listening on a unix socket.
type Server struct {
	// Sock is the socket's path.
	Sock     string
	accepted atomic.Int64
}

// NewServer serves h on a unix socket under tb.TempDir until the test
// ends. h sees each request's CGI params through fcgi.ProcessEnv, its
// REQUEST_URI as the URL.
func NewServer(tb testing.TB, h http.Handler) *Server {
	tb.Helper()
	s := &Server{Sock: filepath.Join(tb.TempDir(), "app.sock")}
	ln, err := net.Listen("unix", s.Sock)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fcgi.Serve(countingListener{ln, &s.accepted}, h)
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	return s
}

// Conns returns how many connections the server has accepted.
func (s *Server) Conns() int64 { return s.accepted.Load() }

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

package fcgimux

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// recordApp is a FastCGI application written on fcgimux's own codec, for
// the benchmarks (it allocates nothing per request) and for tests that need
// php-fpm's behaviour at the record level: a connection closed after each
// request whatever FCGI_KEEP_CONN said (pm.max_requests), or bytes sent
// after END_REQUEST.
type recordApp struct {
	ln        net.Listener
	o         recordAppOptions
	tail      []byte
	conns     atomic.Int64 // connections accepted
	peak      int          // most connections open at once; guarded by mu
	requests  atomic.Int64 // requests answered
	shut      atomic.Int64 // connections shut for writing (shutAfter)
	discarded atomic.Int64 // bytes read and thrown away after that
	wg        sync.WaitGroup
	mu        sync.Mutex
	open      map[net.Conn]struct{}
}

type recordAppOptions struct {
	// resp is the whole response for request id 1. With repeat > 1 it is
	// only STDOUT records, sent repeat times and then ended: how a large
	// response is made without holding it.
	resp   []byte
	repeat int
	// closeAfter closes the connection after each response.
	closeAfter bool
	// dropSecond reads the second request of each connection and closes
	// the connection without answering.
	dropSecond bool
	// drainSecond, on the second BEGIN_REQUEST of a connection, shuts it
	// for writing and reads until end of file, discarding: what php-fpm
	// does when its child reached pm.max_requests, here crossing the next
	// request on the way.
	drainSecond bool
	// shutAfter, after each connection's first response, shuts it for
	// writing and reads until end of file, counting what it throws away:
	// php-fpm's child after its pm.max_requests-th request.
	shutAfter bool
	// gate, when set, holds the answer to the app's first request until
	// a value is received from it (or it is closed).
	gate chan struct{}
	// before is written as the first request's answer begins, ahead of
	// the wait on gate: a response that starts and then stalls.
	before []byte
}

func startRecordApp(tb testing.TB, network string, o recordAppOptions) *recordApp {
	tb.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(tb.TempDir(), "app.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	a := &recordApp{ln: ln, o: o, open: map[net.Conn]struct{}{}}
	if o.repeat > 1 {
		a.tail = appendRecord(nil, typeStdout, 1, nil)
		a.tail = appendEndRequest(a.tail, 1, 0, statusRequestComplete)
	}
	a.wg.Add(1)
	go a.serve()
	tb.Cleanup(func() {
		ln.Close()
		a.mu.Lock()
		for c := range a.open {
			c.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
	return a
}

func (a *recordApp) addr() (network, addr string) {
	return a.ln.Addr().Network(), a.ln.Addr().String()
}

func (a *recordApp) serve() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.conns.Add(1)
		a.mu.Lock()
		a.open[c] = struct{}{}
		a.peak = max(a.peak, len(a.open))
		a.mu.Unlock()
		a.wg.Add(1)
		go a.serveConn(c)
	}
}

func (a *recordApp) serveConn(c net.Conn) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		delete(a.open, c)
		a.mu.Unlock()
		c.Close()
	}()
	rr := newRecordReader(c)
	keep, n := true, 0
	for {
		h, content, err := rr.next()
		if err != nil {
			return
		}
		switch {
		case h.Type == typeBeginRequest:
			br, _ := parseBeginRequest(content)
			keep = br.KeepConn
			if n == 1 && a.o.drainSecond {
				c.(interface{ CloseWrite() error }).CloseWrite()
				io.Copy(io.Discard, c)
				return
			}
		case h.Type == typeStdin && len(content) == 0:
			if n++; n == 2 && a.o.dropSecond {
				return
			}
			if a.requests.Add(1) == 1 && a.o.gate != nil { // before the answer, which a test may act on at once
				c.Write(a.o.before)
				<-a.o.gate
			}
			err := a.respond(c)
			if err != nil || !keep || a.o.closeAfter {
				return
			}
			if a.o.shutAfter {
				c.(interface{ CloseWrite() error }).CloseWrite()
				a.shut.Add(1)
				n, _ := io.Copy(io.Discard, c)
				a.discarded.Add(n)
				return
			}

		}
	}
}

func (a *recordApp) respond(w io.Writer) error {
	if a.o.repeat <= 1 {
		_, err := w.Write(a.o.resp)
		return err
	}
	for range a.o.repeat {
		if _, err := w.Write(a.o.resp); err != nil {
			return err
		}
	}
	_, err := w.Write(a.tail)
	return err
}

// pageResponse is a page as php-fpm frames it for request id 1: its
// headers and body on STDOUT, then any extra records, then the end.
func pageResponse(body string, extra ...[]byte) []byte {
	b := appendStream(nil, typeStdout, 1, []byte("Content-type: text/html; charset=UTF-8\r\n\r\n"+body))
	for _, e := range extra {
		b = append(b, e...)
	}
	b = appendRecord(b, typeStdout, 1, nil)
	return appendEndRequest(b, 1, 0, statusRequestComplete)
}

// openConns returns how many connections the application holds open.
func (a *recordApp) openConns() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.open)
}

// Benchmarks of the relay alone: a FastCGI client of the benchmark's own
// sends requests to a Server whose pool is an in-process FastCGI
// application on a unix socket, and the same client talks to that
// application directly for the baseline. Client and application allocate
// nothing per request, so -benchmem's allocs/op is the relay's own, and the
// cpu-ns/op metric (process CPU time, both goroutines of the client and the
// application included) minus the direct figure is what the relay costs.
//
//	go test -run '^$' -bench . -benchmem ./fcgimux
package fcgimux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchApp is a FastCGI application that answers every request with the
// same prebuilt response, without allocating.
type benchApp struct {
	ln   net.Listener
	resp []byte // one whole response for request id 1: STDOUT records, empty STDOUT, END_REQUEST
	// repeat, when > 1, sends resp's STDOUT records that many times
	// before the end: how a large response is made without holding it.
	body   []byte
	repeat int
	tail   []byte
	done   chan struct{}
}

func startBenchApp(b *testing.B, resp []byte, repeat int) *benchApp {
	b.Helper()
	ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "app.sock"))
	if err != nil {
		b.Fatal(err)
	}
	a := &benchApp{ln: ln, resp: resp, repeat: repeat, done: make(chan struct{})}
	if repeat > 1 {
		var tail bytes.Buffer
		writeRecord(&tail, typeStdout, 1, nil)
		writeEndRequest(&tail, 1, 0, statusRequestComplete)
		a.body, a.tail = resp, tail.Bytes()
	}
	go a.serve()
	b.Cleanup(func() {
		ln.Close()
		<-a.done
	})
	return a
}

func (a *benchApp) serve() {
	defer close(a.done)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, c)
		go a.serveConn(c)
	}
}

func (a *benchApp) serveConn(c net.Conn) {
	defer c.Close()
	rr := newRecordReader(c)
	keep := true
	for {
		h, content, err := rr.next()
		if err != nil {
			return
		}
		switch {
		case h.Type == typeBeginRequest:
			br, _ := parseBeginRequest(content)
			keep = br.KeepConn
		case h.Type == typeStdin && len(content) == 0:
			if err := a.respond(c); err != nil || !keep {
				return
			}
		}
	}
}

func (a *benchApp) respond(w io.Writer) error {
	if a.repeat <= 1 {
		_, err := w.Write(a.resp)
		return err
	}
	for range a.repeat {
		if _, err := w.Write(a.body); err != nil {
			return err
		}
	}
	_, err := w.Write(a.tail)
	return err
}

// benchClient is a web server's side of one kept-alive connection.
type benchClient struct {
	nc  net.Conn
	req []byte
	rr  *recordReader
}

func dialBench(b *testing.B, addr string, req []byte) *benchClient {
	b.Helper()
	nc, err := net.Dial("unix", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	return &benchClient{nc: nc, req: req, rr: newRecordReader(nc)}
}

// do sends the request and reads the response; it returns the STDOUT bytes.
func (c *benchClient) do() (int, error) {
	if _, err := c.nc.Write(c.req); err != nil {
		return 0, err
	}
	n := 0
	for {
		h, content, err := c.rr.next()
		if err != nil {
			return n, err
		}
		switch h.Type {
		case typeStdout:
			n += len(content)
		case typeEndRequest:
			return n, nil
		}
	}
}

// benchRequest is what nginx sends for a small POST: 30 params (the ones
// fastcgi_params gives, plus a few headers) and a body of bodyLen bytes.
func benchRequest(bodyLen int, keep bool) []byte {
	kv := []string{
		"SCRIPT_FILENAME", testDocroot + "/index.php",
		"QUERY_STRING", "page=2&sort=name",
		"REQUEST_METHOD", "POST",
		"CONTENT_TYPE", "application/x-www-form-urlencoded",
		"CONTENT_LENGTH", fmt.Sprint(bodyLen),
		"SCRIPT_NAME", "/index.php",
		"REQUEST_URI", "/products/list?page=2&sort=name",
		"DOCUMENT_URI", "/index.php",
		"DOCUMENT_ROOT", testDocroot,
		"SERVER_PROTOCOL", "HTTP/1.1",
		"REQUEST_SCHEME", "http",
		"GATEWAY_INTERFACE", "CGI/1.1",
		"SERVER_SOFTWARE", "nginx/1.22.1",
		"REMOTE_ADDR", "127.0.0.1",
		"REMOTE_PORT", "51234",
		"SERVER_ADDR", "127.0.0.1",
		"SERVER_PORT", "80",
		"SERVER_NAME", "app.example.com",
		"REDIRECT_STATUS", "200",
		"HTTP_HOST", "app.example.com",
		"HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
		"HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5",
		"HTTP_ACCEPT_ENCODING", "gzip, deflate",
		"HTTP_COOKIE", "session=" + strings.Repeat("ab", 24),
		"HTTP_CONNECTION", "keep-alive",
		"HTTP_REFERER", "http://app.example.com/products",
		"HTTP_CACHE_CONTROL", "max-age=0",
		"HTTP_CONTENT_TYPE", "application/x-www-form-urlencoded",
		"HTTP_CONTENT_LENGTH", fmt.Sprint(bodyLen),
	}
	return request(1, keep, strings.Repeat("x", bodyLen), kv...)
}

// smallResponse is a typical PHP page of n bytes, as php-fpm frames it.
func smallResponse(n int) []byte {
	var b bytes.Buffer
	writeStream(&b, typeStdout, 1, []byte("X-Powered-By: PHP/8.2\r\nContent-type: text/html; charset=UTF-8\r\n\r\n"+strings.Repeat("h", n)))
	writeRecord(&b, typeStdout, 1, nil)
	writeEndRequest(&b, 1, 0, statusRequestComplete)
	return b.Bytes()
}

// benchServer runs a Server in front of app and returns its address.
func benchServer(b *testing.B, app *benchApp) string {
	b.Helper()
	router := &benchRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: NewBackend("unix", app.ln.Addr().String(), 8)}}
	s, err := NewServer(Options{Docroot: testDocroot, Router: router})
	if err != nil {
		b.Fatal(err)
	}
	addr, served := serveUnix(b, s)
	b.Cleanup(func() {
		s.Shutdown(b.Context())
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			b.Errorf("serve: %v", err)
		}
		router.pin.Backend.Close()
	})
	return addr
}

// benchRouter pins every request to one release and counts nothing, so
// that what the benchmark sees is the relay.
type benchRouter struct{ pin Pin }

func (r *benchRouter) Pin() (Pin, error) {
	p := r.pin
	p.Tracker = r
	return p, nil
}

func (r *benchRouter) Done(int, time.Duration) {}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelay relays a POST with 30 params and a 1 KB body, answered by
// a 1 KB page, over one kept-alive connection: "direct" is the client
// talking to the application itself, "fpmux" the same through a Server.
func BenchmarkRelay(b *testing.B) {
	for _, mode := range []string{"direct", "fpmux"} {
		b.Run(mode, func(b *testing.B) {
			app := startBenchApp(b, smallResponse(1024), 1)
			addr := app.ln.Addr().String()
			if mode == "fpmux" {
				addr = benchServer(b, app)
			}
			c := dialBench(b, addr, benchRequest(1024, true))
			if _, err := c.do(); err != nil { // dial php-fpm, warm buffers
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				n, err := c.do()
				if err != nil || n < 1024 {
					b.Fatalf("response: %d bytes, %v", n, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkRelayLargeResponse relays a 100 MB response: the figure is the
// relay's throughput (MB/s) beside the direct one.
func BenchmarkRelayLargeResponse(b *testing.B) {
	const size = 100 << 20
	var chunk bytes.Buffer // 1 MiB of STDOUT records as php-fpm writes them
	for chunk.Len() < 1<<20 {
		writeRecord(&chunk, typeStdout, 1, bytes.Repeat([]byte{'z'}, 8184)) // php-fpm's output buffer is 8 KiB
	}
	repeat := size / chunk.Len()
	for _, mode := range []string{"direct", "fpmux"} {
		b.Run(mode, func(b *testing.B) {
			app := startBenchApp(b, chunk.Bytes(), repeat)
			addr := app.ln.Addr().String()
			if mode == "fpmux" {
				addr = benchServer(b, app)
			}
			c := dialBench(b, addr, benchRequest(0, true))
			b.SetBytes(int64(repeat * chunk.Len()))
			b.ReportAllocs()
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.do(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

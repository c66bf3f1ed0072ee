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
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchClient is a web server's side of one kept-alive connection.
type benchClient struct {
	nc  net.Conn
	req []byte
	rr  *recordReader
}

func dialBench(b testing.TB, addr string, req []byte) *benchClient {
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

// benchServer runs a Server in front of app and returns its address.
func benchServer(b testing.TB, app *recordApp) string {
	b.Helper()
	network, addr := app.addr()
	router := &benchRouter{pin: Pin{Release: "r7", Root: "/srv/releases/r7", Backend: NewBackend(network, addr, 0, 8)}}
	s, err := NewServer(Options{Docroot: testDocroot, Router: router})
	if err != nil {
		b.Fatal(err)
	}
	front, served := serveUnix(b, s)
	b.Cleanup(func() {
		s.Shutdown(b.Context())
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			b.Errorf("serve: %v", err)
		}
		router.pin.Backend.Close()
	})
	return front
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
			app := startRecordApp(b, "unix", recordAppOptions{resp: pageResponse(strings.Repeat("h", 1024))})
			_, addr := app.addr()
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
			app := startRecordApp(b, "unix", recordAppOptions{resp: chunk.Bytes(), repeat: repeat})
			_, addr := app.addr()
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

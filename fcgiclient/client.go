// Package fcgiclient is the FastCGI client of every request fpmux makes of
// its own to a php-fpm pool: the ping, the status page, health checks and
// warm-up (and the bench's and tests' well-formed requests). It sends one
// responder request, params and an optional body, on a connection the
// caller gives or dials, and returns the answer's status, headers, the
// start of its body and what php-fpm sent on FCGI_STDERR.
//
// It rests on github.com/yookoala/gofast, which alone waits for ever on a
// silent worker: here the caller's context bounds every request, its
// deadline as the connection's and its end interrupting a read or write
// under way. The relay of the web server's own records is fcgimux's, not
// this package's.
package fcgiclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/yookoala/gofast"
)

// DefaultMaxBody is how much of an answer's body Do keeps when
// Request.MaxBody is 0.
const DefaultMaxBody = 1 << 20

// MaxStderr bounds the FCGI_STDERR text kept of one answer, so that a
// chatty app cannot grow a check's memory.
const MaxStderr = 4096

// Request is one FastCGI responder request.
type Request struct {
	// Params are the CGI params, sent as they are (the client adds none).
	Params map[string]string
	// Body is sent as FCGI_STDIN; nil sends an empty one.
	Body io.Reader
	// MaxBody bounds the bytes of the answer's body kept in
	// Response.Body; the rest is read and thrown away. 0 is
	// DefaultMaxBody.
	MaxBody int
}

// Response is what the application answered.
type Response struct {
	// Status is the answer's HTTP status: its Status header, else 302
	// with a Location header, else 200.
	Status int
	// Header holds the answer's headers but Status.
	Header http.Header
	// Body is the start of the body, at most Request.MaxBody bytes.
	Body []byte
	// Stderr is what the application sent on FCGI_STDERR (php-fpm puts
	// the PHP errors of the request there), at most MaxStderr bytes.
	Stderr string
}

// Do sends req on conn and reads its answer up to FCGI_END_REQUEST. ctx's
// deadline is conn's for the while, and ctx's end interrupts a read or a
// write under way. Give ctx a deadline: without one only its end stops a
// wait on an application that does not answer, or on an answer whose
// headers gofast cannot parse (a header line over 1024 bytes).
//
// The request asks the application to keep the connection
// (FCGI_KEEP_CONN). When Do returns no error, conn is at the end of the
// answer with no deadline, ready for the next request, which php-fpm
// serves on the same worker. After an error conn is in no known state: the
// caller closes it. Do never closes conn.
func Do(ctx context.Context, conn net.Conn, req Request) (*Response, error) {
	what := peer(conn)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fastcgi request to %s: %w", what, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("fastcgi request to %s: %w", what, err)
		}
	}
	// Cancellation (not only the deadline) must unblock gofast's reads
	// and writes: a deadline in the past makes them fail at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	tc := &trackedConn{Conn: conn}
	resp, err := do(ctx, tc, req)
	interrupted := !stop()
	switch ferr := tc.failure(); {
	case ferr != nil && err != nil:
		// Which came first, a failed connection that cut the answer
		// short or an answer that made gofast stop reading, neither
		// says: both are told.
		err = fmt.Errorf("%w (%w)", ferr, err)
	case ferr != nil:
		err = ferr
	}
	if err == nil && interrupted {
		// The interruption ran or is running: its deadline may land
		// after any reset here, so conn cannot be kept.
		err = errConn
	}
	if err != nil {
		_, hasDeadline := ctx.Deadline()
		switch cerr := ctx.Err(); {
		case cerr != nil:
			err = fmt.Errorf("%w (%w)", cerr, err)
		case hasDeadline && errors.Is(err, os.ErrDeadlineExceeded):
			// conn's deadline is ctx's, and may pass a moment before
			// ctx says so.
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return nil, fmt.Errorf("fastcgi request to %s: %w", what, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("fastcgi request to %s: %w", what, err)
	}
	return resp, nil
}

// Fetch dials network/addr ("unix", "/run/php/fpm.sock"), sends req on
// the new connection as Do does, and closes it.
func Fetch(ctx context.Context, network, addr string, req Request) (*Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("fastcgi request to %s: %w", addr, err)
	}
	defer conn.Close()
	return Do(ctx, conn, req)
}

// peer names the application in errors: conn's remote address (a unix
// socket's path), not the request's URI, which may be a secret (a pool's
// random ping path).
func peer(conn net.Conn) string {
	if a := conn.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "(unnamed peer)"
}

// do runs req through gofast on tc. gofast reads and writes on goroutines
// of its own; WriteTo returns once both have ended, so none outlives do.
func do(ctx context.Context, tc *trackedConn, req Request) (*Response, error) {
	client, err := gofast.SimpleClientFactory(func() (net.Conn, error) { return tc, nil })()
	if err != nil {
		return nil, err
	}
	// client.Close would close the caller's connection: it is not called,
	// and the client holds nothing else.
	greq := gofast.NewRequest(nil)
	greq.KeepConn = true
	for k, v := range req.Params {
		greq.Params[k] = v
	}
	if req.Body != nil {
		greq.Stdin = io.NopCloser(req.Body)
	}
	pipe, err := client.Do(greq)
	if err != nil {
		return nil, err
	}
	// gofast stops reading the answer's stdout at a header it cannot
	// parse (a line over 1024 bytes, a bogus Status), and its reader then
	// waits for ever to hand over the rest, deaf to the connection's
	// deadline. Closing the pipe at ctx's end frees it: it reads on,
	// meets the expired deadline and ends.
	stopPipe := context.AfterFunc(ctx, pipe.Close)
	defer stopPipe()
	maxBody := req.MaxBody
	if maxBody == 0 {
		maxBody = DefaultMaxBody
	}
	rw := &recorder{header: http.Header{}, body: limitedBuffer{n: maxBody}}
	stderr := &limitedBuffer{n: MaxStderr}
	werr := pipe.WriteTo(rw, stderr)
	resp := &Response{Status: rw.code, Header: rw.header, Body: rw.body.buf.Bytes(), Stderr: stderr.buf.String()}
	switch {
	case werr != nil:
		return nil, fmt.Errorf("%w (stderr %q)", werr, clip(resp.Stderr))
	case rw.code == 0:
		// gofast reports a broken connection only on its stderr stream,
		// or not at all.
		return nil, fmt.Errorf("%w: no answer (stderr %q)", errConn, clip(resp.Stderr))
	}
	return resp, nil
}

// errConn marks a failure of the connection itself (the application closed
// it, a deadline passed) rather than an answer that made no sense.
var errConn = errors.New("connection failed")

// trackedConn notes the first read or write error gofast met on the
// connection: gofast takes a read error for the end of the answer.
type trackedConn struct {
	net.Conn
	mu  sync.Mutex
	err error
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.note(err)
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.note(err)
	return n, err
}

func (c *trackedConn) note(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// failure returns the first error met, marked errConn, or nil.
func (c *trackedConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return nil
	}
	if errors.Is(c.err, io.EOF) {
		return fmt.Errorf("%w: closed by the application before the end of its answer", errConn)
	}
	return fmt.Errorf("%w: %w", errConn, c.err)
}

// recorder is the http.ResponseWriter gofast writes an answer into.
type recorder struct {
	code   int
	header http.Header
	body   limitedBuffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// limitedBuffer keeps the first n bytes written to it and takes the rest
// without keeping it.
type limitedBuffer struct {
	buf bytes.Buffer
	n   int
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	if room := l.n - l.buf.Len(); room > 0 {
		l.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 200
	s = strings.TrimSpace(s)
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

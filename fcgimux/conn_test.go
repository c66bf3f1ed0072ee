package fcgimux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWriteTimeoutIsNoProgress: WriteTimeout cuts a web server connection
// that makes no progress reading its response for that long, not one that
// reads steadily but slower than a whole relay write (128 KiB) per
// WriteTimeout. The slow reader here takes 4 KiB each 20 ms, about
// 200 KB/s, where 128 KiB per 500 ms is 262 KB/s.
func TestWriteTimeoutIsNoProgress(t *testing.T) {
	const chunk, chunks = 32 << 10, 32 // a 1 MiB response
	tests := []struct {
		name     string
		stopAt   int // the reader stops for stopFor after this many bytes; 0: never
		stopFor  time.Duration
		wantCut  bool
		wantBody int
	}{
		{name: "slow and steady", wantBody: chunk * chunks},
		{name: "stops", stopAt: 64 << 10, stopFor: 5 * time.Second, wantCut: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := startRecordApp(t, "unix", recordAppOptions{
				resp:   appendStream(nil, typeStdout, 1, bytes.Repeat([]byte("z"), chunk)),
				repeat: chunks,
			})
			network, addr := app.addr()
			router := &testRouter{pin: Pin{Release: "r1", Root: "/srv/releases/r1", Backend: NewBackend(network, addr, 2, 1)}}
			t.Cleanup(router.pin.Backend.Close)
			_, front := startLimitedServer(t, router, Options{WriteTimeout: 500 * time.Millisecond})
			c, err := net.Dial("unix", front)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(request(1, true, "", phpParams("/big.php")...)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			sr := &slowReader{r: c, stopAt: tt.stopAt, stopFor: tt.stopFor}
			rr := newRecordReader(sr)
			body, ended := 0, false
			var rerr error
			for !ended {
				h, content, err := rr.next()
				if err != nil {
					rerr = err
					break
				}
				switch h.Type {
				case typeStdout:
					body += len(content)
				case typeEndRequest:
					ended = true
				}
			}
			if tt.wantCut {
				if ended || !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, net.ErrClosed) && !isReset(rerr) {
					t.Errorf("a reader that stopped for %v: response ended %v after %d bytes, err %v; want it cut", tt.stopFor, ended, body, rerr)
				}
				return
			}
			if !ended || body != tt.wantBody {
				t.Errorf("a reader making progress at about 200 KB/s got %d of %d bytes, ended %v, err %v", body, tt.wantBody, ended, rerr)
			}
		})
	}
}

// slowReader reads at most 4 KiB each 20 ms, and pauses once for stopFor
// after stopAt bytes.
type slowReader struct {
	r       io.Reader
	n       int
	stopAt  int
	stopFor time.Duration
	stopped bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	if s.stopAt > 0 && !s.stopped && s.n >= s.stopAt {
		s.stopped = true
		time.Sleep(s.stopFor)
	}
	n, err := s.r.Read(p[:min(len(p), 4<<10)])
	s.n += n
	return n, err
}

// isReset tells whether err is a connection reset by the peer.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// TestNonKeptConnectionClosedOnceDone: a connection without FCGI_KEEP_CONN
// whose body was read to its end is closed by fpmux as soon as its response
// is written, without waiting for the web server to close it (the
// shutdown-and-read linger php-fpm does costs two system calls and a
// wake-up per request); the web server reads a clean end of file. One
// whose body is still coming when fpmux answers (a refusal) keeps the
// linger until that body has come, so the web server can send it without
// a reset; a kept connection stays open.
func TestNonKeptConnectionClosedOnceDone(t *testing.T) {
	tests := []struct {
		name      string
		keep      bool
		script    string
		early     bool // send the body only once the response was read
		wantOpen  int  // connections open once the response is read, the client holding its end
		wantClose bool // the client reads end of file without closing
	}{
		{name: "relayed, body read", script: "/index.php", wantOpen: 0, wantClose: true},
		{name: "refused, body read", script: "/../escape.php", wantOpen: 0, wantClose: true},
		{name: "refused before its body", script: "/../escape.php", early: true, wantOpen: 0, wantClose: true},
		{name: "kept", keep: true, script: "/index.php", wantOpen: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startTestBackend(t, echoHandler)
			router := newTestRouter(b, 2)
			t.Cleanup(router.pin.Backend.Close)
			s, addr := startServer(t, router)
			c := dialRaw(t, addr)
			var head, body bytes.Buffer
			writeBeginRequest(&head, 1, tt.keep)
			writeRecord(&head, typeParams, 1, encodePairs(phpParams(tt.script, "CONTENT_LENGTH", "4")...))
			writeRecord(&head, typeParams, 1, nil)
			writeStream(&body, typeStdin, 1, []byte("body"))
			writeRecord(&body, typeStdin, 1, nil)
			if tt.early {
				c.send(head.Bytes())
			} else {
				c.send(append(head.Bytes(), body.Bytes()...))
			}
			c.read(1)
			if tt.early {
				c.send(body.Bytes()) // no reset: fpmux still reads
			}
			// Poll up to half the linger: a connection left to linger
			// stays open for all of it.
			deadline := time.Now().Add(lingerTimeout / 2)
			open, _ := s.ConnStats()
			for open != tt.wantOpen && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				open, _ = s.ConnStats()
			}
			if open != tt.wantOpen {
				t.Errorf("%d connections open after the response while the client holds its end, want %d", open, tt.wantOpen)
			}
			if !tt.wantClose {
				return
			}
			if _, _, err := c.rr.next(); err != io.EOF {
				t.Errorf("after the response: %v, want end of file", err)
			}
		})
	}
}

// TestDeadlinesLeftInPlace: the read deadline a request was read under is
// left in place while its response is produced and while a kept
// connection idles after it (moving it for every request costs more than
// the rare wake-up); when it passes it is lifted, so a script slower than
// ReadTimeout is not cut and a kept connection lives for IdleTimeout, not
// ReadTimeout. An IdleTimeout shorter than ReadTimeout still closes an
// idle connection in time.
func TestDeadlinesLeftInPlace(t *testing.T) {
	const readTO = 200 * time.Millisecond
	tests := []struct {
		name       string
		o          Options
		slow       time.Duration // how long the script takes
		idle       time.Duration // the wait before a second request on the connection
		wantClosed bool          // the server closes the idle connection (within 10s) instead
	}{
		{name: "script slower than ReadTimeout", o: Options{ReadTimeout: readTO}, slow: 3 * readTO},
		{name: "kept connection idle past ReadTimeout", o: Options{ReadTimeout: readTO, IdleTimeout: time.Minute}, idle: 3 * readTO},
		{name: "both", o: Options{ReadTimeout: readTO, IdleTimeout: time.Minute}, slow: 3 * readTO, idle: 3 * readTO},
		{name: "IdleTimeout shorter than ReadTimeout", o: Options{ReadTimeout: time.Minute, IdleTimeout: readTO}, wantClosed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(tt.slow) // a slow script, not a wait for the test
				io.WriteString(w, "done")
			})
			router := newTestRouter(b, 2)
			t.Cleanup(router.pin.Backend.Close)
			_, addr := startLimitedServer(t, router, tt.o)
			c := dialRaw(t, addr)
			c.send(request(1, true, "", phpParams("/index.php")...))
			if r := c.read(1); !strings.Contains(r.stdout, "done") {
				t.Fatalf("first response %q", r.stdout)
			}
			if tt.wantClosed {
				if err := closedByServer(c.nc); err != nil {
					t.Fatal(err)
				}
				return
			}
			time.Sleep(tt.idle) // idle time is what is tested
			c.send(request(1, true, "", phpParams("/index.php")...))
			if r := c.read(1); !strings.Contains(r.stdout, "done") {
				t.Fatalf("second response %q", r.stdout)
			}
		})
	}
}

package fcgiclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fcgiclient/fcgitest"
)

// serveApp serves h over FastCGI in this process and returns its socket.
func serveApp(t *testing.T, h http.Handler) string {
	return fcgitest.NewServer(t, h).Sock
}

// params are the least net/http/fcgi needs to make a request of them.
func params(uri string, extra ...string) map[string]string {
	p := map[string]string{"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_URI": uri}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i]] = extra[i+1]
	}
	return p
}

func TestDo(t *testing.T) {
	sock := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			w.Header().Set("X-Why", "gone")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "not here\n")
		case "/redirect":
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(http.StatusFound)
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "text/plain")
			w.Write(b)
		case "/param":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, fcgi.ProcessEnv(r)["APP_ENV"])
		case "/big":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, strings.Repeat("x", 100_000))
		default:
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello\n")
		}
	}))
	runFetches(t, sock, []fetchCase{
		{name: "plain answer", req: Request{Params: params("/")}, wantStatus: 200,
			wantHeader: [2]string{"Content-Type", "text/plain"}, wantBody: "hello\n"},
		{name: "status and headers", req: Request{Params: params("/missing")}, wantStatus: 404,
			wantHeader: [2]string{"X-Why", "gone"}, wantBody: "not here\n"},
		{name: "redirect", req: Request{Params: params("/redirect")}, wantStatus: 302,
			wantHeader: [2]string{"Location", "/elsewhere"}},
		{name: "request body", req: Request{Params: params("/echo", "CONTENT_LENGTH", "4"), Body: strings.NewReader("ping")},
			wantStatus: 200, wantBody: "ping"},
		{name: "params passed", req: Request{Params: params("/param", "APP_ENV", "staging")},
			wantStatus: 200, wantBody: "staging"},
		{name: "body cut at MaxBody", req: Request{Params: params("/"), MaxBody: 3}, wantStatus: 200, wantBody: "hel"},
		{name: "a body of many records", req: Request{Params: params("/big")}, wantStatus: 200,
			wantBody: strings.Repeat("x", 100_000)},
	})
}

// fetchCase is one request of a table and what its answer must be.
type fetchCase struct {
	name       string
	req        Request
	wantStatus int
	wantBody   string
	wantHeader [2]string // name, the start of its value; no name: none checked
	wantStderr string    // what Stderr must hold
}

// runFetches sends each case's request to the application on sock, each on
// a connection of its own, and checks its answer.
func runFetches(t *testing.T, sock string, tests []fetchCase) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := Fetch(t.Context(), "unix", sock, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tt.wantStatus || string(resp.Body) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.Status, resp.Body, tt.wantStatus, tt.wantBody)
			}
			if k := tt.wantHeader[0]; k != "" && !strings.HasPrefix(resp.Header.Get(k), tt.wantHeader[1]) {
				t.Errorf("header %s = %q, want %q", k, resp.Header.Get(k), tt.wantHeader[1])
			}
			if !strings.Contains(resp.Stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want it to hold %q", resp.Stderr, tt.wantStderr)
			}
		})
	}
}

// TestDoKeepsConnection: after an answer the connection serves the next
// request, which is what lets the warm-up and the bench reuse it.
func TestDoKeepsConnection(t *testing.T) {
	sock := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, r.URL.Path)
	}))
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range []string{"/one", "/two", "/three"} {
		resp, err := Do(t.Context(), conn, Request{Params: params(p)})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if string(resp.Body) != p {
			t.Fatalf("%s answered %q", p, resp.Body)
		}
	}
}

// rawApp listens on a unix socket under t.TempDir and runs handle on
// each connection, on a goroutine of its own; when the test ends it closes
// the listener and every connection and waits for the goroutines.
func rawApp(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "raw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return sock
}

// silentApp reads what comes and answers nothing until the test ends;
// got is closed once it has read the start of a request.
func silentApp(t *testing.T) (sock string, got chan struct{}) {
	got = make(chan struct{})
	var once sync.Once
	sock = rawApp(t, func(c net.Conn) {
		b := make([]byte, 4096)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			once.Do(func() { close(got) })
		}
	})
	return sock, got
}

// TestDoBoundedByContext: an application that never answers holds a
// request only as long as ctx lasts, whether ctx ends by its deadline or
// is cancelled (gofast alone would wait for ever).
func TestDoBoundedByContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func(got <-chan struct{}) context.Context
		want error
	}{
		{name: "deadline passes", want: context.DeadlineExceeded, ctx: func(<-chan struct{}) context.Context {
			// How soon does not matter: the wait must end, with this error.
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}},
		{name: "cancelled while waiting", want: context.Canceled, ctx: func(got <-chan struct{}) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-got; cancel() }()
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock, got := silentApp(t)
			_, err := Fetch(tt.ctx(got), "unix", sock, Request{Params: params("/")})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDoFailures: answers that are not whole end the request with an
// error, never a hang: the connection is closed before the end, or the
// answer has a header line longer than gofast reads (whose reader then
// waits on the rest until ctx ends).
func TestDoFailures(t *testing.T) {
	closer := func(t *testing.T) string {
		return rawApp(t, func(c net.Conn) {
			c.Read(make([]byte, 64))
			c.Close()
		})
	}
	longHeader := func(t *testing.T) string {
		return serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Long", strings.Repeat("a", 3000))
			io.WriteString(w, strings.Repeat("body", 1000))
		}))
	}
	tests := []struct {
		name    string
		app     func(*testing.T) string
		wantErr string
	}{
		{name: "closed before the answer", app: closer, wantErr: "connection failed"},
		{name: "header line over 1024 bytes", app: longHeader, wantErr: "long header line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// How soon does not matter, only that the request ends.
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			resp, err := Fetch(ctx, "unix", tt.app(t), Request{Params: params("/")})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %+v, %v; want an error saying %q", resp, err, tt.wantErr)
			}
		})
	}
}

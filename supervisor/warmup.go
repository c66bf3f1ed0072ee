// This file owns the app warm-up of a new release: the request paths a
// deploy names (or else the config's warmup key), sent as GET requests to
// the release's pool over FastCGI (a gofast client on the pool's socket)
// after its health check and before it is ready, so that opcache, APCu and
// the app's own caches are filled by fpmux rather than by the first
// requests after the switch.

package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/yookoala/gofast"
)

// warmupTimeout bounds a release's whole app warm-up; the deploy's own
// timeout bounds it too when that is shorter. A warm-up cut short leaves
// the release ready, only partly warm.
const warmupTimeout = 30 * time.Second

// frontController is the script a warm-up path without ".php" goes to, as
// nginx's `try_files $uri /index.php?$query_string` sends it.
const frontController = "/index.php"

// WarmupResult is what the warm-up of one path did, in the release JSON
// (field "warmup", an fpmux extension).
type WarmupResult struct {
	Path string `json:"path"`
	// Status and MS are those of the path's first request, the one that
	// ran cold; Status is 0 when it got no answer.
	Status int   `json:"status"`
	MS     int64 `json:"ms"`
	// Requests is how many times the path was sent (once per worker the
	// pool started with); Failed, how many got no answer, a 404 or a 5xx.
	Requests int `json:"requests"`
	Failed   int `json:"failed"`
	// Error is the first failure: what PHP answered (status, the first
	// line of the body, the PHP errors of that request), or why there was
	// no answer.
	Error string `json:"error,omitempty"`
}

// checkWarmupList checks a deploy's own warm-up list as the config's
// warmup key is checked.
func checkWarmupList(paths []string) error {
	if len(paths) > config.MaxWarmup {
		return newError(ErrInvalid, "request body: warmup lists %d paths: at most %d", len(paths), config.MaxWarmup)
	}
	for i, p := range paths {
		if err := config.CheckWarmupPath(p); err != nil {
			return newError(ErrInvalid, "request body: warmup[%d]: %v", i, err)
		}
	}
	return nil
}

// warmupParams returns the FastCGI params nginx would send for GET target
// (a path and query, as REQUEST_URI) to a release rooted at root. The
// script is the path up to and including its first ".php" segment, the
// rest being PATH_INFO (nginx's fastcgi_split_path_info
// ^(.+?\.php)(/.*)$); a path with no ".php" segment goes to the front
// controller /index.php with its query, as try_files $uri
// /index.php?$query_string sends a route. The script is percent-decoded
// and cleaned, so it always lies under root.
func warmupParams(target, root, id string) map[string]string {
	uriPath, query, _ := strings.Cut(target, "?")
	decoded, err := url.PathUnescape(uriPath)
	if err != nil {
		decoded = uriPath
	}
	script, pathInfo := frontController, ""
	if i := phpSegmentEnd(decoded); i > 0 {
		script, pathInfo = decoded[:i], decoded[i:]
	}
	script = path.Clean("/" + script)
	p := map[string]string{
		"GATEWAY_INTERFACE":   "CGI/1.1",
		"SERVER_SOFTWARE":     "fpmux",
		"SERVER_PROTOCOL":     "HTTP/1.1",
		"REQUEST_METHOD":      "GET",
		"REQUEST_SCHEME":      "http",
		"REQUEST_URI":         target,
		"DOCUMENT_URI":        script,
		"DOCUMENT_ROOT":       root,
		"SCRIPT_NAME":         script,
		"SCRIPT_FILENAME":     filepath.Join(root, filepath.FromSlash(script)),
		"QUERY_STRING":        query,
		"SERVER_NAME":         "localhost",
		"SERVER_ADDR":         "127.0.0.1",
		"SERVER_PORT":         "80",
		"REMOTE_ADDR":         "127.0.0.1",
		"REMOTE_PORT":         "0",
		"CONTENT_TYPE":        "",
		"CONTENT_LENGTH":      "",
		"HTTP_HOST":           "localhost",
		"HTTP_USER_AGENT":     "fpmux-warmup",
		"HTTP_X_FPMUX_WARMUP": "1",
		"FPMUX_RELEASE":       id,
	}
	if pathInfo != "" {
		p["PATH_INFO"] = pathInfo
	}
	return p
}

// phpSegmentEnd returns the end of the first ".php" that ends a path
// segment in p (followed by '/' or the end), or -1.
func phpSegmentEnd(p string) int {
	for i := 0; ; {
		j := strings.Index(p[i:], ".php")
		if j < 0 {
			return -1
		}
		end := i + j + len(".php")
		if end == len(p) || p[end] == '/' {
			return end
		}
		i = end
	}
}

// warmApp sends each of paths to the pool on socket sock, which started
// with started workers: first each path once on one
// connection, which fills what the pool's workers share (opcache, APCu,
// files the app writes) with each script compiled once; then each path
// once more on each other worker php-fpm started with, all at once, each
// on a connection of its own held to the end, so that every worker has run
// every path: what a worker keeps for itself (its realpath cache,
// persistent connections, a framework's per-process state) is warm too,
// and those runs find the scripts compiled already. All the connections
// stay open to the end, so no worker takes two; there are never more than
// workers of them.
//
// It runs before the ping warm-up: that one leaves fpmux's kept
// connections open on the workers it reached, and a kept connection pins
// its worker, so the warm-up's own connections would queue behind them.
//
// A path that gets no answer, a 404 or a 5xx is logged and counted, its
// result quoting what PHP answered. With failFast (warmup_failures: fail,
// where such a path fails the deploy) a failure in the first round ends
// the warm-up there: the release is refused, and warming it further would
// only delay that.
func (s *Supervisor) warmApp(ctx context.Context, r *release, sock string, started int, paths []string, failFast bool) []WarmupResult {
	if len(paths) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	start := time.Now()
	workers := max(1, started)
	results := make([]WarmupResult, len(paths))
	params := make([]map[string]string, len(paths))
	for i, pth := range paths {
		results[i].Path = pth
		params[i] = warmupParams(pth, r.root, r.id)
	}
	var mu sync.Mutex // guards results during the spread
	count := func(i int, ans answer, err error) {
		results[i].Requests++
		if err == nil && !warmupFailed(ans.status) {
			return
		}
		results[i].Failed++
		if results[i].Error == "" {
			if err == nil {
				results[i].Error = ans.quote("")
			} else {
				results[i].Error = err.Error()
			}
		}
	}
	report := func() []WarmupResult {
		requests, failed := 0, 0
		for _, res := range results {
			requests += res.Requests
			failed += res.Failed
			if res.Failed > 0 {
				s.log.Warn("warm-up request failed", "release", r.id, "path", res.Path, "status", res.Status,
					"failed", res.Failed, "of", res.Requests, "err", res.Error)
			}
		}
		s.m.warmupFailures.Add(float64(failed))
		s.step(r, "warmed_app", start, "paths", len(paths), "workers", workers, "requests", requests, "failed", failed)
		return results
	}

	first, err := dialWarm(ctx, sock)
	if err != nil {
		s.log.Warn("warm-up of the app failed; the release serves cold", "release", r.id, "err", err)
		for i := range results {
			count(i, answer{}, err)
		}
		return results
	}
	defer first.close()
	firstFailed := false
	for i := range paths {
		t := time.Now()
		ans, err := first.get(params[i], maxQuotedBody)
		results[i].Status, results[i].MS = ans.status, time.Since(t).Milliseconds()
		count(i, ans, err)
		firstFailed = firstFailed || results[i].Failed > 0
	}
	if failFast && firstFailed {
		return report()
	}

	// Every connection stays open until all are done: one closed early
	// would free its worker to take another connection, and the worker
	// still starting would get none.
	conns := make([]*warmConn, workers-1)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	var wg sync.WaitGroup
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialWarm(ctx, sock)
			conns[k] = c
			for i := range paths {
				var ans answer
				if err == nil {
					ans, err = c.get(params[i], maxQuotedBody)
				}
				mu.Lock()
				count(i, ans, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return report()
}

// warmupFailed tells whether a warm-up answer's status fails its path: a
// 404 (the script is missing, or the workers cannot read it) or a 5xx.
func warmupFailed(status int) bool { return status == 404 || status >= 500 }

// warmupError is the error of a deploy that warmup_failures: fail refuses:
// the first path that failed and what PHP answered it, or nil.
func warmupError(results []WarmupResult) error {
	for _, res := range results {
		if res.Failed > 0 {
			return fmt.Errorf("warm-up %s failed (%d of %d requests): %s", res.Path, res.Failed, res.Requests, res.Error)
		}
	}
	return nil
}

// warmConn is one gofast client on a connection of its own to a pool. gofast
// asks php-fpm to keep the connection (FCGI_KEEP_CONN), so every request
// sent on it runs on the same worker.
type warmConn struct {
	c    gofast.Client
	stop func() bool
}

// dialWarm connects to a pool's socket. ctx's deadline bounds every read
// and write on the connection, and its end interrupts them: gofast alone
// would wait for ever on a silent worker.
func dialWarm(ctx context.Context, sock string) (*warmConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to the pool: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c, err := gofast.SimpleClientFactory(func() (net.Conn, error) { return nc, nil })()
	if err != nil {
		stop()
		nc.Close()
		return nil, fmt.Errorf("connect to the pool: %w", err)
	}
	return &warmConn{c: c, stop: stop}, nil
}

func (w *warmConn) close() {
	w.stop()
	w.c.Close()
}

// answer is what a pool answered one request: its HTTP status, the start
// of its body, and what php-fpm sent on the request's FCGI_STDERR stream,
// where PHP's errors for that request go ("PHP message: PHP Parse error:
// ...").
type answer struct {
	status int
	body   []byte
	stderr string
}

// maxStderr bounds the stderr kept of one answer, so a chatty app cannot
// grow a check's memory.
const maxStderr = 4096

// get sends one GET made of params and returns what php-fpm answered, with
// at most bodyLimit bytes of its body (the rest is read and thrown away).
func (w *warmConn) get(params map[string]string, bodyLimit int) (answer, error) {
	req := gofast.NewRequest(nil)
	req.Params = params
	resp, err := w.c.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("get %s: %w", params["REQUEST_URI"], err)
	}
	var rw capture
	rw.body.n = bodyLimit
	var stderr bytes.Buffer
	werr := resp.WriteTo(&rw, &limitedWriter{w: &stderr, n: maxStderr})
	ans := answer{status: rw.code, body: rw.body.buf.Bytes(), stderr: stderr.String()}
	switch {
	case werr != nil:
		return answer{}, fmt.Errorf("get %s: %w", params["REQUEST_URI"], werr)
	case rw.code == 0:
		// gofast reports a broken connection only on its stderr stream.
		return answer{}, fmt.Errorf("get %s: no answer (%s)", params["REQUEST_URI"], strings.TrimSpace(ans.stderr))
	}
	return ans, nil
}

// capture is the http.ResponseWriter gofast writes an answer into: it
// keeps the status and the start of the body.
type capture struct {
	code   int
	header http.Header
	body   limitedBuffer
}

func (w *capture) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *capture) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *capture) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// limitedBuffer keeps the first n bytes written to it.
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

// limitedWriter keeps the first n bytes written to it and discards the
// rest, so a chatty app's stderr cannot grow a warm-up's memory.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(l.n, len(b))
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

// probe.go owns the client side of FastCGI towards this pool's php-fpm:
// Ping (ping.path) and the requests Status (status.go) sends, through
// gofast.

package pool

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/yookoala/gofast"
)

// PingPath is the pool's ping.path, random per pool start: what a request
// must name as SCRIPT_NAME and SCRIPT_FILENAME to be answered "pong"
// without running PHP (warm-up sends it to every worker).
func (p *Pool) PingPath() string { return p.pages.Ping }

// StatusPath is the pool's pm.status_path, random per pool start.
func (p *Pool) StatusPath() string { return p.pages.Status }

// Ping asks php-fpm for ping.path and wants "pong". php-fpm answers it from
// a worker without running PHP, so when every worker is busy the ping waits
// in the listen queue like any request. Without a deadline on ctx, Ping
// gives up after 5s.
func (p *Pool) Ping(ctx context.Context) error {
	res, err := fcgiGet(ctx, p.sock, p.pages.Ping, "")
	if err != nil {
		return fmt.Errorf("ping pool %s: %w", p.o.ID, err)
	}
	if res.code != http.StatusOK || strings.TrimSpace(res.body.String()) != pingAnswer {
		return fmt.Errorf("ping pool %s: got %d %q, want 200 %q", p.o.ID, res.code, clip(res.body.String()), pingAnswer)
	}
	return nil
}

// fcgiResult is a FastCGI response as gofast hands it over.
type fcgiResult struct {
	code   int
	header http.Header
	body   bytes.Buffer
	stderr bytes.Buffer
}

// fcgiGet sends a GET for scriptName to the php-fpm socket sock, with
// SCRIPT_FILENAME equal to scriptName (what ping.path and pm.status_path
// need).
func fcgiGet(ctx context.Context, sock, scriptName, query string) (*fcgiResult, error) {
	return fcgiDo(ctx, sock, map[string]string{
		"SCRIPT_FILENAME": scriptName,
		"SCRIPT_NAME":     scriptName,
		"QUERY_STRING":    query,
	})
}

// fcgiDo runs one FastCGI GET request on a fresh connection to sock. The
// connection's deadline comes from ctx (probeTimeout when ctx has none) and
// cancelling ctx interrupts it: gofast alone would wait forever on a silent
// peer.
func fcgiDo(ctx context.Context, sock string, params map[string]string) (*fcgiResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	dial := func() (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			return nil, err
		}
		dl, _ := ctx.Deadline()
		if err := c.SetDeadline(dl); err != nil {
			c.Close()
			return nil, err
		}
		// Cancellation (not only the deadline) must unblock reads.
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		return &afterFuncConn{Conn: c, stop: stop}, nil
	}
	client, err := gofast.SimpleClientFactory(dial)()
	if err != nil {
		return nil, err
	}
	defer client.Close()

	req := gofast.NewRequest(nil)
	req.Params["GATEWAY_INTERFACE"] = "CGI/1.1"
	req.Params["SERVER_SOFTWARE"] = "fpmux"
	req.Params["SERVER_PROTOCOL"] = "HTTP/1.1"
	req.Params["REQUEST_METHOD"] = "GET"
	req.Params["REMOTE_ADDR"] = "127.0.0.1"
	for k, v := range params {
		req.Params[k] = v
	}
	if _, ok := req.Params["REQUEST_URI"]; !ok {
		uri := req.Params["SCRIPT_NAME"]
		if q := req.Params["QUERY_STRING"]; q != "" {
			uri += "?" + q
		}
		req.Params["REQUEST_URI"] = uri
	}
	if _, ok := req.Params["DOCUMENT_URI"]; !ok {
		req.Params["DOCUMENT_URI"] = req.Params["SCRIPT_NAME"]
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	res := &fcgiResult{header: http.Header{}}
	werr := resp.WriteTo((*resultWriter)(res), &res.stderr)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fastcgi request on %s: %w", sock, err)
	}
	if werr != nil {
		return nil, fmt.Errorf("fastcgi response on %s: %w (stderr %q)", sock, werr, clip(res.stderr.String()))
	}
	if res.code == 0 {
		// gofast reports a dropped connection only on its stderr stream.
		return nil, fmt.Errorf("fastcgi response on %s: no response (%q)", sock, clip(res.stderr.String()))
	}
	return res, nil
}

// resultWriter is the http.ResponseWriter gofast writes the response into.
type resultWriter fcgiResult

func (w *resultWriter) Header() http.Header { return w.header }

func (w *resultWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(b)
}

func (w *resultWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// afterFuncConn unregisters the cancellation hook when the connection
// closes.
type afterFuncConn struct {
	net.Conn
	stop func() bool
}

func (c *afterFuncConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

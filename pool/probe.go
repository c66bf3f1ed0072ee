// probe.go owns the requests a pool makes of its own php-fpm: Ping
// (ping.path) and the status page Status (status.go) reads, each sent
// through fcgiclient.

package pool

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/fpmux/fpmux/fcgiclient"
)

// Ping asks php-fpm for ping.path and wants "pong". php-fpm answers it from
// a worker without running PHP, so when every worker is busy the ping waits
// in the listen queue like any request. Without a deadline on ctx, Ping
// gives up after 5s.
func (p *Pool) Ping(ctx context.Context) error {
	res, err := fcgiGet(ctx, p.sock, p.pages.Ping, "")
	if err != nil {
		return fmt.Errorf("ping pool %s: %w", p.o.ID, err)
	}
	if body := string(res.Body); res.Status != http.StatusOK || strings.TrimSpace(body) != pingAnswer {
		return fmt.Errorf("ping pool %s: got %d %q, want 200 %q", p.o.ID, res.Status, clip(body), pingAnswer)
	}
	return nil
}

// maxPage bounds the body kept of a page php-fpm answers: the full status
// page of a large pool runs to a few hundred bytes per worker.
const maxPage = 16 << 20

// fcgiGet sends a GET for scriptName to the php-fpm socket sock, with
// SCRIPT_FILENAME equal to scriptName (what ping.path and pm.status_path
// need).
func fcgiGet(ctx context.Context, sock, scriptName, query string) (*fcgiclient.Response, error) {
	return fcgiDo(ctx, sock, map[string]string{
		"SCRIPT_FILENAME": scriptName,
		"SCRIPT_NAME":     scriptName,
		"QUERY_STRING":    query,
	})
}

// fcgiDo runs one FastCGI GET request, made of params and the CGI params
// every request needs, on a fresh connection to sock, bounded by ctx
// (probeTimeout when ctx has no deadline).
func fcgiDo(ctx context.Context, sock string, params map[string]string) (*fcgiclient.Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	p := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "fpmux",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REQUEST_METHOD":    "GET",
		"REMOTE_ADDR":       "127.0.0.1",
	}
	for k, v := range params {
		p[k] = v
	}
	if _, ok := p["REQUEST_URI"]; !ok {
		uri := p["SCRIPT_NAME"]
		if q := p["QUERY_STRING"]; q != "" {
			uri += "?" + q
		}
		p["REQUEST_URI"] = uri
	}
	if _, ok := p["DOCUMENT_URI"]; !ok {
		p["DOCUMENT_URI"] = p["SCRIPT_NAME"]
	}
	return fcgiclient.Fetch(ctx, "unix", sock, fcgiclient.Request{Params: p, MaxBody: maxPage})
}

func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

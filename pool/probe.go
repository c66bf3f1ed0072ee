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

// fcgiGet sends a GET of one of php-fpm's own pages, scriptName (ping.path
// or pm.status_path), to the php-fpm socket sock.
func fcgiGet(ctx context.Context, sock, scriptName, query string) (*fcgiclient.Response, error) {
	return fcgiDo(ctx, sock, fcgiclient.Page(scriptName, query))
}

// fcgiDo runs one FastCGI GET request, made of params on top of the CGI
// params a web server sends (fcgiclient.GET), on a fresh connection to
// sock, bounded by ctx (probeTimeout when ctx has no deadline).
func fcgiDo(ctx context.Context, sock string, params map[string]string) (*fcgiclient.Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	return fcgiclient.Fetch(ctx, "unix", sock, fcgiclient.Request{Params: fcgiclient.GET(params), MaxBody: maxPage})
}

func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

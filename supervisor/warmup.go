// This file owns the warm-up of a new release: the request paths a deploy
// names (or else the config's warmup key), sent as GET requests to the
// release's pool through fcgiclient after its health check and before it
// is ready, then php-fpm's ping to every worker, all on the connections
// the release's Backend then keeps, so that opcache, APCu, the app's own
// caches and each worker's first-request setup are done by fpmux rather
// than by the first requests after the switch.

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgiclient"
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/pool"
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
	// Requests is how many times the path was sent (once, on one of the
	// pool's workers); Failed, how many got no answer, a 404 or a 5xx.
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
	p := fcgiclient.GET(map[string]string{
		"REQUEST_URI":         target,
		"DOCUMENT_URI":        script,
		"DOCUMENT_ROOT":       root,
		"SCRIPT_NAME":         script,
		"SCRIPT_FILENAME":     filepath.Join(root, filepath.FromSlash(script)),
		"QUERY_STRING":        query,
		"HTTP_USER_AGENT":     "fpmux-warmup",
		"HTTP_X_FPMUX_WARMUP": "1",
		"FPMUX_RELEASE":       id,
	})
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

// warmTimeout bounds the ping that ends each worker's warm-up.
const warmTimeout = 2 * time.Second

// warm warms the workers of release r's new pool p before it can take
// traffic, on the connections of b, the Backend that will serve it, which
// then keeps them (see warmApp). Under failFast (warmup_failures: fail) it
// returns the error of a warm-up path that failed, which refuses the
// release.
func (s *Supervisor) warm(ctx context.Context, r *release, p *pool.Pool, b *fcgimux.Backend, paths []string, failFast bool) ([]WarmupResult, error) {
	results := s.warmApp(ctx, r, b, p.StartChildren(), p.PingPath(), paths, failFast)
	if !failFast {
		return results, nil
	}
	return results, warmupError(results)
}

// warmApp warms the workers of a pool that started with started workers,
// on connections b lends, one per worker, all open until the end so that
// no worker takes two.
//
// First each of paths goes once on one connection, which fills what the
// pool's workers share (opcache, APCu, files the app writes) with each
// script compiled once. The paths go to no other worker: once the
// scripts are compiled, a worker's first run of a page costs it little
// more than its next (PHP builds a request's state anew each time).
// Sending every path to every worker as well took a MediaWiki release's
// pool (16 workers, three paths; fpmux-bench's realapp section) from 0.6
// to 2.0 s of CPU before the switch, and the 2 s after it were no faster
// for it. Then every worker gets php-fpm's ping (ping, which runs no PHP;
// "" sends none): without it, each worker's
// first request costs it milliseconds (8 to 12 ms measured on an idle
// machine, several times that under load), and the first requests after a
// switch would pay it, with all the traffic queued behind them. The
// connections that answered their ping stay in b, on the workers they
// warmed. A failed ping is logged; the pool passed its health check and
// serves, only cold.
//
// A path that gets no answer, a 404 or a 5xx is logged and counted, its
// result quoting what PHP answered. With failFast (warmup_failures: fail,
// where such a path fails the deploy) a failure in the first round ends
// the warm-up there: the release is refused, and warming it further would
// only delay that.
func (s *Supervisor) warmApp(ctx context.Context, r *release, b *fcgimux.Backend, started int, ping string, paths []string, failFast bool) []WarmupResult {
	pinging := started > 0 && ping != ""
	if len(paths) == 0 && !pinging {
		return nil
	}
	start := time.Now()
	appCtx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	workers := max(1, started)
	results := make([]WarmupResult, len(paths))
	params := make([]map[string]string, len(paths))
	for i, pth := range paths {
		results[i].Path = pth
		params[i] = warmupParams(pth, r.root, r.id)
	}
	var mu sync.Mutex // guards pingErrs
	count := func(i int, resp *fcgiclient.Response, err error) {
		results[i].Requests++
		if err == nil && !warmupFailed(resp.Status) {
			return
		}
		results[i].Failed++
		if results[i].Error == "" {
			if err == nil {
				results[i].Error = quote(resp, "")
			} else {
				results[i].Error = err.Error()
			}
		}
	}
	// run sends every path on c, the figures going into results; once c
	// fails, the paths left are counted failed with its error, unsent. It
	// returns that error.
	run := func(c net.Conn) error {
		var cerr error
		for i := range paths {
			t := time.Now()
			var resp *fcgiclient.Response
			err := cerr
			if err == nil {
				resp, err = fcgiclient.Do(appCtx, c, fcgiclient.Request{Params: params[i], MaxBody: maxQuotedBody})
				if err != nil {
					err = fmt.Errorf("get %s: %w", paths[i], err)
					cerr = err
				}
			}
			results[i].MS = time.Since(t).Milliseconds()
			if resp != nil {
				results[i].Status = resp.Status
			}
			count(i, resp, err)
		}
		return cerr
	}

	var first func(net.Conn) error
	firstRan, stopped := false, false
	if len(paths) > 0 {
		first = func(c net.Conn) error {
			firstRan = true
			if err := run(c); err != nil {
				c.Close() // broken: b dials another for its ping
			}
			for _, res := range results {
				stopped = stopped || failFast && res.Failed > 0
			}
			if stopped {
				return errors.New("a warm-up path failed")
			}
			return nil
		}
	}
	var pingErrs []error
	var pinged atomic.Int64 // connections that answered their ping
	conns := workers
	if !pinging {
		conns = 1 // the paths' own
	}
	err := b.Warm(conns, first, func(_ int, c net.Conn) error {
		if !pinging {
			return errors.New("not kept: the pool starts no workers")
		}
		pctx, cancel := context.WithTimeout(ctx, warmTimeout)
		defer cancel()
		if _, err := fcgiclient.Do(pctx, c, fcgiclient.Request{Params: fcgiclient.Page(ping, "")}); err != nil {
			mu.Lock()
			pingErrs = append(pingErrs, err)
			mu.Unlock()
			return err
		}
		pinged.Add(1)
		return nil
	})
	if len(paths) > 0 && !firstRan {
		s.log.Warn("warm-up of the app failed; the release serves cold", "release", r.id, "err", err)
		for i := range results {
			count(i, nil, err)
		}
		return results
	}
	if len(paths) > 0 {
		requests, failed := 0, 0
		for _, res := range results {
			requests += res.Requests
			failed += res.Failed
			if res.Failed > 0 {
				s.log.Warn("warm-up request failed", "release", r.id, "path", res.Path, "status", res.Status,
					"failed", res.Failed, "of", res.Requests, "err", res.Error)
			}
		}
		s.m.WarmupFailures.Add(float64(failed))
		s.step(r, "warmed_app", start, "paths", len(paths), "workers", workers, "requests", requests, "failed", failed)
	}
	switch {
	case stopped || !pinging:
	case pinged.Load() < int64(started):
		if len(pingErrs) == 0 {
			pingErrs = append(pingErrs, err)
		}
		s.log.Warn("warming the pool's workers failed; it serves cold", "release", r.id,
			"err", errors.Join(pingErrs...), "in", time.Since(start).Round(time.Millisecond))
	default:
		s.step(r, "warmed", start)
	}
	return results
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

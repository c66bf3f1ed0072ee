// This file owns what a new release must pass before it is ready, beyond
// php-fpm's ping (which runs no PHP): that the pool's workers can read the
// release root and the scripts fpmux will run (checkAccess, before the
// pool starts), then the health checks (checkHealth: the health key or a
// deploy's own list, each sent to the new pool as the warm-up sends its
// paths, with the header X-Fpmux-Health: 1). A release that fails either
// is failed, its pool stopped, and the active release never sees it.

package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgiclient"
	"github.com/fpmux/fpmux/pool"
)

// HealthResult is what one health check found, in the release JSON (field
// "health", an fpmux extension).
type HealthResult struct {
	Path string `json:"path"`
	// Status is what the pool answered, 0 when it did not answer; Want is
	// what the check asked for.
	Status int   `json:"status"`
	Want   int   `json:"want"`
	MS     int64 `json:"ms"`
	OK     bool  `json:"ok"`
	// Error says why the check failed, quoting what PHP answered.
	Error string `json:"error,omitempty"`
}

// maxQuotedBody is how much of an answer's body a failure quotes from (its
// first line, cut at maxQuote).
const maxQuotedBody = 512

// maxQuote bounds each part of a quoted answer, so the deploy's one line
// stays readable.
const maxQuote = 300

// healthParams are the params of a health check of target: the warm-up's
// (nginx's, see warmupParams), marked as a health check rather than a
// warm-up.
func healthParams(target, root, id string) map[string]string {
	p := warmupParams(target, root, id)
	delete(p, "HTTP_X_FPMUX_WARMUP")
	p["HTTP_X_FPMUX_HEALTH"] = "1"
	p["HTTP_USER_AGENT"] = "fpmux-health"
	return p
}

// checkHealth runs checks one after another against the pool on sock and
// returns their results, up to the first that failed, and that failure.
// Each check is bounded by its own timeout (and by ctx).
func (s *Supervisor) checkHealth(ctx context.Context, r *release, sock string, checks []config.HealthCheck) ([]HealthResult, error) {
	if len(checks) == 0 {
		return nil, nil
	}
	start := time.Now()
	var results []HealthResult
	for _, h := range checks {
		res := s.checkOne(ctx, r, sock, h)
		results = append(results, res)
		if !res.OK {
			s.m.HealthFailures.Inc()
			s.log.Warn("health check failed", "release", r.id, "path", h.Path, "status", res.Status, "want", h.Status, "err", res.Error)
			return results, fmt.Errorf("health check %s failed: %s", h.Path, res.Error)
		}
	}
	s.step(r, "checked", start, "checks", len(checks))
	return results, nil
}

// checkOne runs one health check.
func (s *Supervisor) checkOne(ctx context.Context, r *release, sock string, h config.HealthCheck) (res HealthResult) {
	res = HealthResult{Path: h.Path, Want: h.Status}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout))
	defer cancel()
	t := time.Now()
	deadline, _ := cctx.Deadline()
	defer func() { res.MS = time.Since(t).Milliseconds() }()
	ans, err := fcgiclient.Fetch(cctx, "unix", sock, fcgiclient.Request{Params: healthParams(h.Path, r.root, r.id), MaxBody: config.MaxHealthBody})
	if err == nil {
		res.Status = ans.Status
	}
	switch {
	case err != nil && !time.Now().Before(deadline):
		res.Error = fmt.Sprintf("no answer within its timeout of %s", h.Timeout)
		if odl, ok := ctx.Deadline(); ok && !odl.After(deadline) {
			res.Error = "no answer before the deploy's own timeout"
		}
	case err != nil:
		res.Error = err.Error()
	case ans.Status != h.Status:
		res.Error = quote(ans, fmt.Sprint(h.Status))
	case h.Body != "" && !bytes.Contains(ans.Body, []byte(h.Body)):
		res.Error = quote(ans, fmt.Sprintf("%q in the body", h.Body))
	default:
		res.OK = true
	}
	return res
}

// quote says what PHP answered, on one line: the status, the first line of
// the body, what was wanted instead (want, when not ""), and the PHP
// errors php-fpm sent with the answer (its FCGI_STDERR stream, without
// php-fpm's "PHP message: " prefix).
func quote(a *fcgiclient.Response, want string) string {
	q := fmt.Sprintf("answered %d", a.Status)
	line, _, _ := bytes.Cut(bytes.TrimSpace(a.Body), []byte("\n"))
	if len(line) == 0 {
		q += " with an empty body"
	} else {
		q += fmt.Sprintf(" with body %q", cut(strings.TrimSpace(string(line)), maxQuote))
	}
	if want != "" {
		q += " (want " + want + ")"
	}
	var errs []string
	for _, l := range strings.Split(a.Stderr, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "PHP message: "))
		if l != "" {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		q += ": " + cut(strings.Join(errs, "; "), maxQuote)
	}
	return q
}

// cut shortens s to at most n bytes, on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// checkAccess tells whether the workers of release r's pool can reach its
// root and read the scripts its health checks and warm-up paths will run,
// before the pool starts: php-fpm answers its ping whatever they can read,
// and a release its workers cannot read answers every request 404
// ("Primary script unknown"). A script that does not exist is left to its
// request, which the pool answers 404. When who the workers are cannot be
// known, nothing is refused here (php-fpm will say at its start).
func (s *Supervisor) checkAccess(r *release, checks []config.HealthCheck, warmup []string) error {
	directives := pool.ExpandAll(s.phpfpm.Load().Directives, r.id, r.root)
	w, err := pool.WorkerOf(directives)
	if err != nil {
		s.log.Warn("cannot tell who the pool's workers are; their access to the release is not checked", "release", r.id, "err", err)
		return nil
	}
	if err := w.Check(r.root); err != nil {
		return accessError("release root "+r.root, r.root, w, err)
	}
	type script struct{ file, what string }
	var scripts []script
	for _, h := range checks {
		scripts = append(scripts, script{healthParams(h.Path, r.root, r.id)["SCRIPT_FILENAME"], "health check " + h.Path})
	}
	for _, p := range warmup {
		scripts = append(scripts, script{warmupParams(p, r.root, r.id)["SCRIPT_FILENAME"], "warm-up path " + p})
	}
	seen := map[string]bool{}
	for _, sc := range scripts {
		if seen[sc.file] {
			continue
		}
		seen[sc.file] = true
		if err := w.Check(sc.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return accessError("script "+sc.file+" (of "+sc.what+")", sc.file, w, err)
		}
	}
	return nil
}

// accessError phrases a refusal of Worker.Check of path, named what: the
// path itself is not readable, or a directory on its way does not let the
// workers through. It is a 422, as a root fpmux cannot use is.
func accessError(what, path string, w pool.Worker, err error) error {
	var ae *pool.AccessError
	if !errors.As(err, &ae) {
		return newError(ErrUnusable, "%s: %v", what, err)
	}
	need := "read (r)"
	if ae.Dir {
		need = "search (x)"
	}
	if filepath.Clean(ae.Path) == filepath.Clean(path) {
		return newError(ErrUnusable, "%s (mode %04o, owner %s) is not readable by the pool's user %s: it needs %s permission",
			what, ae.Mode.Perm(), ae.Owner, w.Name, need)
	}
	return newError(ErrUnusable, "%s is not readable by the pool's user %s: directory %s (mode %04o, owner %s) does not give it %s permission",
		what, w.Name, ae.Path, ae.Mode.Perm(), ae.Owner, need)
}

// stopRefused stops the pool of release r, which failed a check before it
// was ready. By force: nothing of it is wanted, and the script of a check
// that timed out may still run in a worker.
func (s *Supervisor) stopRefused(r *release, p *pool.Pool) {
	if err := p.Stop(true); err != nil {
		s.log.Error("stop the pool of a refused release", "release", r.id, "err", err)
	}
}

// healthBody is one check of a deploy request's "health" list: the
// config's {path, status, body, timeout}, the timeout as a duration
// string ("5s"). A status of 0 or absent is 200, a timeout "" or absent 5s.
type healthBody struct {
	Path    string `json:"path"`
	Status  int    `json:"status"`
	Body    string `json:"body"`
	Timeout string `json:"timeout"`
}

// healthList turns a deploy request's "health" list into checks with their
// defaults, checked as the config's health key is; nil stays nil (the
// config's list), and a problem is a 400 naming the check and its field.
func healthList(list []healthBody) ([]config.HealthCheck, error) {
	if list == nil {
		return nil, nil
	}
	if len(list) > config.MaxHealth {
		return nil, newError(ErrInvalid, "request body: health lists %d checks: at most %d", len(list), config.MaxHealth)
	}
	checks := make([]config.HealthCheck, len(list))
	for i, b := range list {
		h := config.HealthCheck{Path: b.Path, Status: b.Status, Body: b.Body}
		if b.Timeout != "" {
			d, err := time.ParseDuration(b.Timeout)
			if err != nil {
				return nil, newError(ErrInvalid, "request body: health[%d].timeout: %q is not a duration like 5s", i, b.Timeout)
			}
			if d <= 0 {
				return nil, newError(ErrInvalid, "request body: health[%d].timeout: must be positive, like 5s (got %s)", i, b.Timeout)
			}
			h.Timeout = config.Duration(d)
		}
		h = h.WithDefaults()
		if err := h.Validate(); err != nil {
			return nil, newError(ErrInvalid, "request body: health[%d].%v", i, strings.ReplaceAll(err.Error(), "\n", fmt.Sprintf("; health[%d].", i)))
		}
		checks[i] = h
	}
	return checks, nil
}

// This file owns the admin API: HTTP/1.1 + JSON on the admin listener, as
// the contract lists it, plus GET /v1/releases/{id} and POST /v1/rollback,
// and what guards it: what a browser would send (Origin, a foreign Host, a
// POST that is not JSON), the bearer token (admin_token) and the body limit.

package supervisor

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxAdminBody bounds a request body on the admin API. A deploy request,
// the largest, takes a few hundred bytes.
const maxAdminBody = 64 << 10

// Handler returns the admin API. When admin_token is set, every request but
// GET /v1/healthz must carry it (see guard).
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/releases", s.handleList)
	mux.HandleFunc("POST /v1/releases", s.handleDeploy)
	mux.HandleFunc("GET /v1/releases/{id}", s.handleGet)
	mux.HandleFunc("POST /v1/releases/{id}/activate", s.handleActivate)
	mux.HandleFunc("DELETE /v1/releases/{id}", s.handleRetire)
	mux.HandleFunc("POST /v1/rollback", s.handleRollback)
	mux.HandleFunc("GET /v1/healthz", s.handleHealthz)
	mux.HandleFunc("POST /v1/upgrade", s.handleUpgrade)
	mux.HandleFunc("POST /v1/reload-pools", s.handleReloadPools)
	s.mu.Lock()
	for _, r := range s.routes {
		mux.Handle(r.pattern, r.h)
	}
	s.mu.Unlock()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(404, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return s.guard(mux)
}

// guard lets through to next only what may reach the admin API. With
// admin_token set, a request without "Authorization: Bearer <admin_token>"
// is answered 401; GET /v1/healthz needs no token, since health checks
// (Docker, systemd, load balancers) must not hold the secret and it tells
// only which release is active. The token is read from the configuration in
// force at each request, so one a reload rotated applies to the next
// request. A body over maxAdminBody is answered 413. Before all that,
// refuseBrowser turns away what a web page could send.
func (s *Supervisor) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		healthz := r.URL.Path == "/v1/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead)
		if err := s.refuseBrowser(r, healthz); err != nil {
			s.log.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"host", r.Host, "origin", r.Header.Get("Origin"), "content_type", r.Header.Get("Content-Type"), "reason", err)
			writeError(w, err)
			return
		}
		if want := s.conf().AdminToken; want != "" && !healthz {
			if why := checkBearer(r.Header.Get("Authorization"), want); why != "" {
				// The log names the request, never what it carried.
				s.log.Warn("admin request refused: bad bearer token", "method", r.Method, "path", r.URL.Path,
					"remote", r.RemoteAddr, "reason", why)
				w.Header().Set("WWW-Authenticate", `Bearer realm="fpmux"`)
				writeError(w, errorf(http.StatusUnauthorized, "%s: send \"Authorization: Bearer <admin_token>\" "+
					"(the fpmux client commands take -token or FPMUX_ADMIN_TOKEN)", why))
				return
			}
		}
		if s.frozen.Load() && r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, errUpgrading)
			return
		}
		if r.ContentLength > maxAdminBody {
			writeError(w, errBodyTooLarge(r.ContentLength))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		next.ServeHTTP(w, r)
	})
}

// refuseBrowser returns why a request a web page in a browser on this host
// could have sent is refused, or nil. Without a token, a loopback TCP admin
// is open to every local process, the browser's included: a page can POST a
// "simple" request (a form, text/plain) to it without a preflight, and DNS
// rebinding lets one read its answers under a name of the attacker's. So a
// request that carries Origin (a browser's, for every cross-origin request
// and every POST) gets 403, as does one whose Host does not name this
// listener (hostAllowed; GET /v1/healthz is spared that one, as load
// balancers send a Host of their own and it tells only the active release),
// and a POST whose Content-Type is not application/json, which a page can
// send only after a CORS preflight the API never answers, gets 415.
func (s *Supervisor) refuseBrowser(r *http.Request, healthz bool) error {
	if _, ok := r.Header["Origin"]; ok {
		return errorf(http.StatusForbidden, "a request with an Origin header (sent by web browsers) is refused: "+
			"use the fpmux client commands or curl, which send none")
	}
	if !healthz && !s.hostAllowed(r) {
		return errorf(http.StatusForbidden, "Host %q does not name this admin listener: reach it as %s", r.Host, s.hostNames(r))
	}
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "a POST must carry Content-Type: application/json (got %q), "+
				"with or without a body", r.Header.Get("Content-Type"))
		}
	}
	return nil
}

// hostAllowed tells whether the request's Host names the listener it came
// in on (net/http puts its address in the request's context). Over TCP on
// loopback: 127.0.0.1, localhost or [::1] (or the listener's own loopback
// address) with the listener's port. Over TCP off loopback, where
// admin_token is required: the configured admin address, or the address the
// connection came to. Over a unix socket: localhost (curl --unix-socket
// sends it), fpmux (the fpmux client does) or a loopback address, with any
// port or none, or no Host at all (HTTP/1.0); a request the handler gets
// with no listener behind it counts as a unix socket's.
func (s *Supervisor) hostAllowed(r *http.Request) bool {
	tcp, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]"), "80"
	}
	ip := net.ParseIP(host)
	if !ok {
		return r.Host == "" || strings.EqualFold(host, "localhost") || strings.EqualFold(host, "fpmux") || ip != nil && ip.IsLoopback()
	}
	if !tcp.IP.IsLoopback() {
		return strings.EqualFold(r.Host, s.conf().Admin) || r.Host == tcp.String()
	}
	if port != strconv.Itoa(tcp.Port) {
		return false
	}
	return strings.EqualFold(host, "localhost") || ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback) || ip.Equal(tcp.IP))
}

// hostNames says which Host values hostAllowed takes for r's listener, for
// the error.
func (s *Supervisor) hostNames(r *http.Request) string {
	tcp, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	switch {
	case !ok:
		return "localhost or fpmux (a unix socket; any port)"
	case !tcp.IP.IsLoopback():
		return s.conf().Admin + " or " + tcp.String()
	}
	return fmt.Sprintf("127.0.0.1:%d, localhost:%[1]d or [::1]:%[1]d", tcp.Port)
}

// checkBearer returns why an Authorization header does not carry the bearer
// token want, or "" when it does (compared by tokenMatches).
func checkBearer(header, want string) string {
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "the admin API needs a bearer token"
	}
	if !tokenMatches([]byte(strings.TrimSpace(got)), want) {
		return "the bearer token does not match admin_token"
	}
	return ""
}

// tokenMatches tells whether a token a request carried is want. The tokens
// are compared as SHA-256 digests in constant time, so neither their
// contents nor their lengths show in the time the comparison takes.
// preview_token is checked the same way (preview.go).
func tokenMatches(got []byte, want string) bool {
	g, t := sha256.Sum256(got), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], t[:]) == 1
}

// errBodyTooLarge is the 413 for a request body over maxAdminBody: size
// bytes, or -1 when it came without a Content-Length.
func errBodyTooLarge(size int64) error {
	what := "request body is over"
	if size >= 0 {
		what = fmt.Sprintf("request body is %d bytes, over", size)
	}
	return errorf(http.StatusRequestEntityTooLarge, "%s the admin API's limit of %d KiB: "+
		`a deploy request is {"id": ..., "root": ..., "activate": true}, a few hundred bytes`, what, maxAdminBody>>10)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// errorf returns an error the admin API answers with status: its own
// refusals of a request (auth, origin, body), which are HTTP's concern and
// no domain kind.
func errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// statusOf is the HTTP status the admin API answers a domain error of kind
// with (see errors.go).
func statusOf(kind error) int {
	switch kind {
	case ErrInvalid:
		return http.StatusBadRequest
	case ErrNotFound:
		return http.StatusNotFound
	case ErrConflict:
		return http.StatusConflict
	case ErrUnusable:
		return http.StatusUnprocessableEntity
	case ErrPoolFailed:
		return http.StatusBadGateway
	case ErrUnavailable:
		return http.StatusServiceUnavailable
	case ErrTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError // ErrNotRecorded, and any other
}

// writeRelease answers a request about one release: rel with status, or
// err when the request failed.
func writeRelease(w http.ResponseWriter, status int, rel Release, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, rel)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var e *Error
	if errors.As(err, &e) {
		status = e.Status
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Supervisor) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, s.List(r.Context()))
}

func (s *Supervisor) handleGet(w http.ResponseWriter, r *http.Request) {
	rel, err := s.get(r.Context(), r.PathValue("id"), r.URL.Query().Has("full"))
	writeRelease(w, 200, rel, err)
}

// deployBody is POST /v1/releases.
type deployBody struct {
	ID       string `json:"id"`
	Root     string `json:"root"`
	Activate *bool  `json:"activate"` // default true
	Timeout  string `json:"timeout"`  // default php_fpm.start_timeout
	// Warmup is the deploy's own list of warm-up paths; absent or null
	// takes the config's warmup key, [] warms none. (fpmux extension.)
	Warmup []string `json:"warmup"`
	// Guard turns the guard after the switch on (true) or off (false)
	// for this deploy; absent or null takes the config's guard key.
	// (fpmux extension.)
	Guard *bool `json:"guard"`
	// Health is the deploy's own list of health checks, each {"path",
	// "status", "body", "timeout"} as in the config's health key; absent
	// or null takes the config's list, [] runs none. (fpmux extension.)
	Health []healthBody `json:"health"`
}

func (s *Supervisor) handleDeploy(w http.ResponseWriter, r *http.Request) {
	var body deployBody
	dec := json.NewDecoder(r.Body) // bounded by guard
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	var tooLarge *http.MaxBytesError
	if err == nil {
		if _, terr := dec.Token(); errors.As(terr, &tooLarge) {
			err = terr
		} else if terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, errBodyTooLarge(-1))
		return
	case err != nil:
		writeError(w, errorf(400, "request body: %v; want {\"id\": ..., \"root\": ..., \"activate\": true}", err))
		return
	case body.ID == "" || body.Root == "":
		writeError(w, errorf(400, "request body: id and root are required"))
		return
	}
	if err := checkWarmupList(body.Warmup); err != nil {
		writeError(w, err)
		return
	}
	checks, err := healthList(body.Health)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx := r.Context()
	if body.Timeout != "" {
		d, err := time.ParseDuration(body.Timeout)
		if err != nil || d <= 0 {
			writeError(w, errorf(400, "request body: timeout %q is not a positive duration like 30s", body.Timeout))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	activate := body.Activate == nil || *body.Activate
	rel, err := s.Deploy(ctx, DeployRequest{ID: body.ID, Root: body.Root, Activate: activate, Warmup: body.Warmup, Guard: body.Guard, Health: checks})
	writeRelease(w, 201, rel, err)
}

func (s *Supervisor) handleActivate(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Activate(r.PathValue("id"))
	writeRelease(w, 200, rel, err)
}

func (s *Supervisor) handleRetire(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Retire(r.PathValue("id"))
	writeRelease(w, 202, rel, err)
}

func (s *Supervisor) handleRollback(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Rollback(r.Context())
	writeRelease(w, 200, rel, err)
}

func (s *Supervisor) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if id := s.ActiveID(); id != "" {
		writeJSON(w, 200, map[string]string{"active": id})
		return
	}
	writeJSON(w, 503, map[string]string{"error": fmt.Sprint("no active release")})
}

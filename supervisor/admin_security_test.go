// Tests of what guards the admin API: the bearer token, the body limit, and
// the checks that keep a release id or root from injecting anything into a
// generated php-fpm config.

package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/config"
)

const testToken = "tok-0123456789abcdef"

// adminRequest builds a request as the fpmux client sends one over the
// unix socket: Host fpmux, and Content-Type: application/json on a POST.
func adminRequest(method, path string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, "http://fpmux"+path, body)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// adminCall sends one request through h and returns the status, the
// WWW-Authenticate header and the JSON error ("" when the body has none).
func adminCall(t *testing.T, h http.Handler, method, path, auth string, body io.Reader) (status int, wwwAuth, errMsg string) {
	t.Helper()
	req := adminRequest(method, path, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e struct{ Error string }
	json.Unmarshal(rec.Body.Bytes(), &e)
	return rec.Code, rec.Header().Get("WWW-Authenticate"), e.Error
}

// withToken puts admin_token in force, as a SIGHUP would.
func withToken(t *testing.T, s *Supervisor, token string) {
	t.Helper()
	reconfigure(t, s, func(c *config.Config) { c.AdminToken = token })
}

// reconfigure puts in force a copy of s's configuration that change made.
func reconfigure(t *testing.T, s *Supervisor, change func(*config.Config)) {
	t.Helper()
	next := *s.conf()
	next.PHPFPM.Ini, next.PHPFPM.Pool = maps.Clone(next.PHPFPM.Ini), maps.Clone(next.PHPFPM.Pool)
	change(&next)
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(&next); err != nil {
		t.Fatal(err)
	}
}

func TestAdminToken(t *testing.T) {
	s, _ := newTestSupervisor(t)
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	withToken(t, s, testToken)
	h := s.Handler()

	wrongSameLength := strings.Repeat("x", len(testToken))
	tests := []struct {
		name, method, path, auth string
		status                   int    // 401 means refused; anything else got past the guard
		words                    string // in the 401's error
	}{
		{"no header", "GET", "/v1/releases", "", 401, "needs a bearer token"},
		{"wrong token, same length", "GET", "/v1/releases", "Bearer " + wrongSameLength, 401, "does not match admin_token"},
		{"wrong token, shorter", "GET", "/v1/releases", "Bearer " + testToken[:len(testToken)-1], 401, "does not match"},
		{"wrong token, longer", "GET", "/v1/releases", "Bearer " + testToken + "x", 401, "does not match"},
		{"empty bearer", "GET", "/v1/releases", "Bearer ", 401, "does not match"},
		{"scheme only", "GET", "/v1/releases", "Bearer", 401, "needs a bearer token"},
		{"token without scheme", "GET", "/v1/releases", testToken, 401, "needs a bearer token"},
		{"basic auth", "GET", "/v1/releases", "Basic dXNlcjpwYXNz", 401, "needs a bearer token"},
		{"right token", "GET", "/v1/releases", "Bearer " + testToken, 200, ""},
		{"scheme in lower case", "GET", "/v1/releases", "bearer " + testToken, 200, ""},
		{"deploy without token", "POST", "/v1/releases", "", 401, "needs a bearer token"},
		{"activate without token", "POST", "/v1/releases/r1/activate", "", 401, "needs a bearer token"},
		{"retire without token", "DELETE", "/v1/releases/r1", "", 401, "needs a bearer token"},
		{"rollback without token", "POST", "/v1/rollback", "", 401, "needs a bearer token"},
		{"one release without token", "GET", "/v1/releases/r1", "", 401, "needs a bearer token"},
		{"unknown endpoint without token", "GET", "/v2/anything", "", 401, "needs a bearer token"},
		{"healthz without token", "GET", "/v1/healthz", "", 503, ""},
		{"healthz HEAD without token", "HEAD", "/v1/healthz", "", 503, ""},
		{"healthz with a wrong token", "GET", "/v1/healthz", "Bearer " + wrongSameLength, 503, ""},
		{"healthz through an unclean path", "GET", "/v1//healthz", "", 401, "needs a bearer token"},
		{"healthz by POST", "POST", "/v1/healthz", "", 401, "needs a bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.NewReader(`{"id":"r1","root":"/nowhere"}`)
			status, wwwAuth, msg := adminCall(t, h, tt.method, tt.path, tt.auth, body)
			if status != tt.status {
				t.Fatalf("status %d (%q), want %d", status, msg, tt.status)
			}
			if status != 401 {
				return
			}
			if !strings.HasPrefix(wwwAuth, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge", wwwAuth)
			}
			if !strings.Contains(msg, tt.words) || !strings.Contains(msg, "FPMUX_ADMIN_TOKEN") {
				t.Errorf("error %q, want it to say %q and how to send the token", msg, tt.words)
			}
		})
	}
	if len(s.List(t.Context())) != 0 {
		t.Error("a request refused for its token registered a release")
	}
	if !strings.Contains(logs.String(), "bad bearer token") {
		t.Errorf("refused requests were not logged:\n%s", logs.String())
	}
	for _, secret := range []string{testToken, testToken[:len(testToken)-1], wrongSameLength} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a token that was sent:\n%s", logs.String())
		}
	}
}

func TestAdminTokenOff(t *testing.T) {
	s, _ := newTestSupervisor(t)
	status, _, msg := adminCall(t, s.Handler(), "GET", "/v1/releases", "", nil)
	if status != 200 {
		t.Fatalf("no admin_token, no header: status %d (%q), want 200", status, msg)
	}
}

// TestAdminTokenRotatedByReload changes admin_token through Reload, as
// SIGHUP does, between requests on one handler.
func TestAdminTokenRotatedByReload(t *testing.T) {
	s, _ := newTestSupervisor(t)
	s.log = slog.New(slog.DiscardHandler)
	h := s.Handler()
	const next = "next-0123456789abcdef"
	steps := []struct {
		token string // put in force before the requests
		auth  map[string]int
	}{
		{"", map[string]int{"": 200, "Bearer " + testToken: 200}},
		{testToken, map[string]int{"": 401, "Bearer " + testToken: 200, "Bearer " + next: 401}},
		{next, map[string]int{"": 401, "Bearer " + testToken: 401, "Bearer " + next: 200}},
		{"", map[string]int{"": 200, "Bearer " + next: 200}},
	}
	for i, st := range steps {
		withToken(t, s, st.token)
		for auth, want := range st.auth {
			if status, _, msg := adminCall(t, h, "GET", "/v1/releases", auth, nil); status != want {
				t.Errorf("step %d (admin_token %q), Authorization %q: status %d (%q), want %d", i, st.token, auth, status, msg, want)
			}
		}
	}
}

// chunked hides a reader's length, so the request goes without a
// Content-Length and only reading it shows its size.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestAdminBodyLimit(t *testing.T) {
	s, _ := newTestSupervisor(t)
	h := s.Handler()
	// A valid deploy request padded with spaces to n bytes; its root does
	// not exist, so one that gets through is answered 422.
	padded := func(n int) string {
		b := `{"id":"r1","root":"/nonexistent"}`
		return b + strings.Repeat(" ", n-len(b))
	}
	tests := []struct {
		name, path string
		body       io.Reader
		status     int
	}{
		{"at the limit", "/v1/releases", strings.NewReader(padded(maxAdminBody)), 422},
		{"one byte over", "/v1/releases", strings.NewReader(padded(maxAdminBody + 1)), 413},
		{"a large id", "/v1/releases", strings.NewReader(`{"id":"` + strings.Repeat("a", 70<<10) + `"}`), 413},
		{"over, without Content-Length", "/v1/releases", chunked{strings.NewReader(padded(maxAdminBody + 1))}, 413},
		{"trailing bytes after the object, without Content-Length", "/v1/releases",
			chunked{strings.NewReader(padded(2 * maxAdminBody))}, 413},
		{"over, on an endpoint that reads no body", "/v1/releases/r1/activate", strings.NewReader(padded(maxAdminBody + 1)), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, msg := adminCall(t, h, "POST", tt.path, "", tt.body)
			if status != tt.status {
				t.Fatalf("status %d (%q), want %d", status, msg, tt.status)
			}
			if status == 413 && !strings.Contains(msg, "limit of 64 KiB") {
				t.Errorf("error %q: want the limit named", msg)
			}
		})
	}
}

// TestDeployRefusesInjection tries to get a directive into a generated
// php-fpm config through a deploy's id and root, on a supervisor whose
// php_fpm.ini and php_fpm.pool carry both into the config as well.
func TestDeployRefusesInjection(t *testing.T) {
	s, dir := newTestSupervisor(t)
	s.log = slog.New(slog.DiscardHandler)
	releases := filepath.Join(dir, "releases")
	outside := filepath.Join(dir, "outside")
	mkdirs(t, filepath.Join(releases, "r1"), outside,
		filepath.Join(releases, "nl\nlisten = /tmp/evil"),
		filepath.Join(releases, `q"x`),
		filepath.Join(releases, "d$x"),
		filepath.Join(releases, `b\x`))
	links := map[string]string{
		filepath.Join(releases, "link-out"):   outside,
		filepath.Join(releases, "link-quote"): filepath.Join(releases, `q"x`),
		filepath.Join(dir, "releases-link"):   releases, // allowed_roots goes through it
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(releases, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	reconfigure(t, s, func(c *config.Config) {
		c.AllowedRoots = []string{filepath.Join(dir, "releases-link")}
		c.PHPFPM.Binary = "/bin/false" // a pool that gets this far fails to start, with 502
		c.PHPFPM.Ini["include_path"] = ".:{release_root}/lib"
		c.PHPFPM.Pool["env[APP_RELEASE]"] = "{release_id}"
	})
	stateDir := s.conf().StateDir
	h := s.Handler()

	const idRule = "want 1 to 64 characters from A-Z a-z 0-9 . _ -"
	root := filepath.Join(releases, "r1")
	tests := []struct {
		name, id, root string
		status         int
		words          string
	}{
		{"id with a newline", "x\nlisten = /tmp/evil", root, 400, idRule},
		{"id with ';'", "x;y", root, 400, idRule},
		{"id closing the section", "x]\n[evil", root, 400, idRule},
		{"id with ']'", "x]", root, 400, idRule},
		{"id with '\"'", `x"y`, root, 400, idRule},
		{"id with '$'", "x$y", root, 400, idRule},
		{"id with a space", "x y", root, 400, idRule},
		{"id of 65 characters", strings.Repeat("a", 65), root, 400, idRule},
		{"id ..", "..", root, 400, `release id ".."`},
		{"id .", ".", root, 400, `release id "."`},
		{"id global", "global", root, 400, `release id "global"`},
		{"empty id", "", root, 400, "id and root are required"},
		{"root with a newline", "r-nl", filepath.Join(releases, "nl\nlisten = /tmp/evil"), 422, "cannot be written into a php-fpm config"},
		{"root with a newline that does not exist", "r-nl2", filepath.Join(releases, "r1\nlisten = /tmp/evil"), 422, "no such file"},
		{"root outside allowed_roots", "r-out", outside, 422, "not under allowed_roots"},
		{"root climbing out with ..", "r-up", filepath.Join(releases, "r1", "..", "..", "outside"), 422, "not under allowed_roots"},
		{"root through a symlink inside allowed_roots pointing outside", "r-lo", filepath.Join(releases, "link-out"), 422, "not under allowed_roots"},
		{"root that is allowed_roots itself", "r-self", filepath.Join(dir, "releases-link"), 422, "not under allowed_roots"},
		{"root that is a file", "r-file", filepath.Join(releases, "file"), 422, "not a directory"},
		{"relative root", "r-rel", "releases/r1", 400, "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"id": tt.id, "root": tt.root})
			status, _, msg := adminCall(t, h, "POST", "/v1/releases", "", bytes.NewReader(body))
			if status != tt.status || !strings.Contains(msg, tt.words) {
				t.Fatalf("status %d (%q), want %d saying %q", status, msg, tt.status, tt.words)
			}
			if files := filesUnder(t, stateDir); len(files) > 0 {
				t.Fatalf("a refused deploy left files in state_dir: %q", files)
			}
			if rs := s.List(t.Context()); len(rs) > 0 {
				t.Fatalf("a refused deploy registered release %q", rs[0].ID)
			}
		})
	}

	// The same supervisor takes clean ids and roots, by either path to
	// allowed_roots: they get as far as starting php-fpm (here /bin/false,
	// hence 502), with the root's real path.
	// A root whose name holds '"', '$' or '\' is written escaped, which
	// php-fpm reads back as it is (pool's TestValuesReadBackAsWritten).
	accepted := []struct{ id, root, real string }{
		{strings.Repeat("a", 64), filepath.Join(releases, "r1"), ""},
		{"v1.2_3-x", filepath.Join(dir, "releases-link", "r1"), ""},
		{"r-q", filepath.Join(releases, `q"x`), filepath.Join(releases, `q"x`)},
		{"r-d", filepath.Join(releases, "d$x"), filepath.Join(releases, "d$x")},
		{"r-b", filepath.Join(releases, `b\x`), filepath.Join(releases, `b\x`)},
		{"r-lq", filepath.Join(releases, "link-quote"), filepath.Join(releases, `q"x`)},
	}
	for _, a := range accepted {
		if a.real == "" {
			a.real = filepath.Join(releases, "r1")
		}
		body, _ := json.Marshal(map[string]any{"id": a.id, "root": a.root})
		status, _, msg := adminCall(t, h, "POST", "/v1/releases", "", bytes.NewReader(body))
		if status != 502 {
			t.Errorf("deploy %s from %s: status %d (%q), want 502 from the fake php-fpm", a.id, a.root, status, msg)
			continue
		}
		if rel, err := s.Get(t.Context(), a.id); err != nil || rel.Root != a.real {
			t.Errorf("deploy %s from %s: release %+v, %v; want it failed with root %s", a.id, a.root, rel, err, a.real)
		}
	}
}

func TestDeployRefusesFieldsItDoesNotTake(t *testing.T) {
	s, dir := newTestSupervisor(t)
	body := `{"id":"r1","root":"` + filepath.Join(dir, "releases") + `","ini":{"x":"y\"\nlisten=/tmp/evil"}}`
	status, _, msg := adminCall(t, s.Handler(), "POST", "/v1/releases", "", strings.NewReader(body))
	if status != 400 || !strings.Contains(msg, `unknown field "ini"`) {
		t.Fatalf("status %d (%q), want 400 naming the unknown field", status, msg)
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// filesUnder lists the files (not directories) under dir; none when it does
// not exist.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestAdminRefusesWhatABrowserSends: a web page in a browser on the host
// can send "simple" POSTs (a form, text/plain) to a loopback admin without a
// preflight, and read answers through DNS rebinding under a name of its
// own. Every request carrying Origin is refused (403), as is a Host that
// does not name the listener the request came in on (403), and a POST that
// is not application/json (415); what gets through is answered by the API
// (here 200 for the list, 409 for a rollback with no history, 503 for
// healthz with no release).
func TestAdminRefusesWhatABrowserSends(t *testing.T) {
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}
	offLoopback := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9000}
	unix := &net.UnixAddr{Name: "/run/fpmux/admin.sock", Net: "unix"}
	const jsonType = "application/json"
	tests := []struct {
		name         string
		local        net.Addr // the listener the request came in on; nil: none
		method, path string
		host, ctype  string
		origin       string // "-": no Origin header
		status       int
		words        string // in the error of a refusal
	}{
		// Content-Type on every POST.
		{"rollback as text/plain", loopback, "POST", "/v1/rollback", "127.0.0.1:9000", "text/plain", "-", 415, "Content-Type: application/json"},
		{"deploy as a form", loopback, "POST", "/v1/releases", "127.0.0.1:9000", "application/x-www-form-urlencoded", "-", 415, "application/json"},
		{"deploy as multipart", loopback, "POST", "/v1/releases", "127.0.0.1:9000", "multipart/form-data; boundary=x", "-", 415, "application/json"},
		{"activate with no Content-Type", loopback, "POST", "/v1/releases/r1/activate", "127.0.0.1:9000", "", "-", 415, "application/json"},
		{"rollback as JSON", loopback, "POST", "/v1/rollback", "127.0.0.1:9000", jsonType, "-", 409, ""},
		{"rollback as JSON with a charset", loopback, "POST", "/v1/rollback", "127.0.0.1:9000", "Application/JSON; charset=utf-8", "-", 409, ""},
		{"GET needs no Content-Type", loopback, "GET", "/v1/releases", "127.0.0.1:9000", "", "-", 200, ""},

		// Origin, whatever it names.
		{"rollback from a web page", loopback, "POST", "/v1/rollback", "127.0.0.1:9000", jsonType, "http://evil.example", 403, "Origin"},
		{"list from a web page", loopback, "GET", "/v1/releases", "127.0.0.1:9000", "", "http://127.0.0.1:9000", 403, "Origin"},
		{"Origin null", loopback, "GET", "/v1/releases", "127.0.0.1:9000", "", "null", 403, "Origin"},
		{"empty Origin", unix, "GET", "/v1/releases", "fpmux", "", "", 403, "Origin"},
		{"healthz from a web page", loopback, "GET", "/v1/healthz", "127.0.0.1:9000", "", "http://evil.example", 403, "Origin"},

		// Host over TCP on loopback: the listener's port, a loopback name.
		{"127.0.0.1 and the port", loopback, "GET", "/v1/releases", "127.0.0.1:9000", "", "-", 200, ""},
		{"localhost and the port", loopback, "GET", "/v1/releases", "LocalHost:9000", "", "-", 200, ""},
		{"[::1] and the port", loopback, "GET", "/v1/releases", "[::1]:9000", "", "-", 200, ""},
		{"rebound name", loopback, "GET", "/v1/releases", "evil.example:9000", "", "-", 403, "127.0.0.1:9000, localhost:9000 or [::1]:9000"},
		{"rebound name, POST", loopback, "POST", "/v1/rollback", "evil.example:9000", jsonType, "-", 403, "does not name this admin listener"},
		{"another port", loopback, "GET", "/v1/releases", "127.0.0.1:9001", "", "-", 403, "does not name"},
		{"no port", loopback, "GET", "/v1/releases", "localhost", "", "-", 403, "does not name"},
		{"a name under localhost", loopback, "GET", "/v1/releases", "localhost.evil.example:9000", "", "-", 403, "does not name"},
		{"the unix socket's name", loopback, "GET", "/v1/releases", "fpmux", "", "-", 403, "does not name"},
		{"no Host", loopback, "GET", "/v1/releases", "", "", "-", 403, "does not name"},
		{"healthz under any Host", loopback, "GET", "/v1/healthz", "lb.example", "", "-", 503, ""},

		// Host over a unix socket: what curl and the fpmux client send.
		{"unix: fpmux", unix, "GET", "/v1/releases", "fpmux", "", "-", 200, ""},
		{"unix: localhost (curl --unix-socket)", unix, "POST", "/v1/rollback", "localhost", jsonType, "-", 409, ""},
		{"unix: localhost and a port", unix, "GET", "/v1/releases", "localhost:8080", "", "-", 200, ""},
		{"unix: 127.0.0.1", unix, "GET", "/v1/releases", "127.0.0.1", "", "-", 200, ""},
		{"unix: no Host (HTTP/1.0)", unix, "GET", "/v1/releases", "", "", "-", 200, ""},
		{"unix: rebound name", unix, "GET", "/v1/releases", "evil.example", "", "-", 403, "localhost or fpmux"},
		{"no listener: as a unix socket", nil, "GET", "/v1/releases", "evil.example", "", "-", 403, "localhost or fpmux"},
	}
	s, _ := newTestSupervisor(t)
	h := s.Handler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://fpmux"+tt.path, strings.NewReader("{}"))
			req.Host = tt.host
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			if tt.origin != "-" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.local != nil {
				req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, tt.local))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var e struct{ Error string }
			json.Unmarshal(rec.Body.Bytes(), &e)
			if rec.Code != tt.status {
				t.Fatalf("status %d (%q), want %d", rec.Code, e.Error, tt.status)
			}
			if tt.words != "" && !strings.Contains(e.Error, tt.words) {
				t.Errorf("error %q, want it to say %q", e.Error, tt.words)
			}
		})
	}

	// Off loopback (admin_token required there): the configured address,
	// or the one the connection came to, and the token still applies.
	c := *s.conf()
	c.Admin, c.AdminToken = "10.1.2.3:9000", testToken
	s.cfg.Store(&c)
	for _, tt := range []struct {
		host, auth string
		status     int
	}{
		{"10.1.2.3:9000", "Bearer " + testToken, 200},
		{"10.1.2.3:9000", "", 401},
		{"admin.internal:9000", "Bearer " + testToken, 403},
		{"localhost:9000", "Bearer " + testToken, 403},
	} {
		req := adminRequest("GET", "/v1/releases", nil)
		req.Host = tt.host
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, offLoopback))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("off loopback, Host %q: status %d (%s), want %d", tt.host, rec.Code, rec.Body, tt.status)
		}
	}
	if len(s.List(t.Context())) != 0 {
		t.Error("a refused request registered a release")
	}
}

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgimux"
	dto "github.com/prometheus/client_model/go"
)

// newTestSupervisor returns a Supervisor over a temp state dir whose
// allowed root is <dir>/releases.
func newTestSupervisor(t *testing.T) (*Supervisor, string) {
	t.Helper()
	dir := t.TempDir()
	// The pool's workers (www-data when the tests run as root) must reach
	// the release roots under it, or a deploy is refused before its pool
	// starts (checkAccess).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.AllowedRoots = []string{filepath.Join(dir, "releases")}
	cfg.Admin = "unix:" + filepath.Join(dir, "admin.sock")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.AllowedRoots[0], 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, dir
}

func TestPinWithoutActiveRelease(t *testing.T) {
	s, _ := newTestSupervisor(t)
	if _, err := s.Pin(); !errors.Is(err, fcgimux.ErrNoRelease) {
		t.Fatalf("Pin with no release: %v, want ErrNoRelease", err)
	}
	var m dto.Metric
	if err := s.m.Unrouted.Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetCounter().GetValue(); v != 1 {
		t.Errorf("fpmux_requests_unrouted_total = %v after one request with no release, want 1", v)
	}
}

func TestCheckRoot(t *testing.T) {
	s, dir := newTestSupervisor(t)
	releases := filepath.Join(dir, "releases")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(releases, "r1"), outside} {
		os.MkdirAll(d, 0o755)
	}
	os.Symlink(filepath.Join(releases, "r1"), filepath.Join(releases, "link-in"))
	os.Symlink(outside, filepath.Join(releases, "link-out"))
	os.WriteFile(filepath.Join(releases, "file"), nil, 0o644)
	// An allowed root reached through a symlink still counts.
	os.Symlink(releases, filepath.Join(dir, "releases-link"))

	tests := []struct {
		root     string
		want     string // real path, or "" when refused
		status   int
		errWords string
	}{
		{root: filepath.Join(releases, "r1"), want: filepath.Join(releases, "r1")},
		{root: filepath.Join(releases, "link-in"), want: filepath.Join(releases, "r1")},
		{root: filepath.Join(dir, "releases-link", "r1"), want: filepath.Join(releases, "r1")},
		{root: filepath.Join(releases, "link-out"), status: 422, errWords: "not under allowed_roots"},
		{root: outside, status: 422, errWords: "not under allowed_roots"},
		{root: releases, status: 422, errWords: "not under allowed_roots"},
		{root: filepath.Join(releases, "r1", "..", "..", "outside"), status: 422, errWords: "not under allowed_roots"},
		{root: filepath.Join(releases, "missing"), status: 422, errWords: "no such file"},
		{root: filepath.Join(releases, "file"), status: 422, errWords: "not a directory"},
		{root: "releases/r1", status: 400, errWords: "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			got, err := s.checkRoot(tt.root)
			if tt.status == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != tt.status || !strings.Contains(e.Msg, tt.errWords) {
				t.Fatalf("got %v; want a %d mentioning %q", err, tt.status, tt.errWords)
			}
		})
	}
}

func TestAdminAPIErrors(t *testing.T) {
	s, dir := newTestSupervisor(t)
	h := s.Handler()
	tests := []struct {
		name, method, path, body string
		status                   int
		words                    string
	}{
		{"malformed JSON", "POST", "/v1/releases", `{"id": `, 400, "request body"},
		{"unknown field", "POST", "/v1/releases", `{"id":"a","root":"/x","color":"red"}`, 400, "color"},
		{"missing root", "POST", "/v1/releases", `{"id":"a"}`, 400, "required"},
		{"trailing data", "POST", "/v1/releases", `{"id":"a","root":"/x"} {}`, 400, "trailing"},
		{"bad timeout", "POST", "/v1/releases", `{"id":"a","root":"/x","timeout":"soon"}`, 400, "timeout"},
		{"bad id", "POST", "/v1/releases", `{"id":"a b","root":"/x"}`, 400, "release id"},
		{"injection through the id", "POST", "/v1/releases", `{"id":"x]\nlisten=/tmp/evil","root":"/x"}`, 400, "release id"},
		{"root outside", "POST", "/v1/releases", `{"id":"a","root":"` + dir + `"}`, 422, "allowed_roots"},
		{"body too large", "POST", "/v1/releases", `{"id":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "limit of 64 KiB"},
		{"activate unknown", "POST", "/v1/releases/nope/activate", "", 404, "not known"},
		{"retire unknown", "DELETE", "/v1/releases/nope", "", 404, "not known"},
		{"get unknown", "GET", "/v1/releases/nope", "", 404, "not known"},
		{"rollback with no history", "POST", "/v1/rollback", "", 409, "no previous release"},
		{"health without release", "GET", "/v1/healthz", "", 503, "no active release"},
		{"unknown endpoint", "GET", "/v2/things", "", 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, adminRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.words) {
				t.Fatalf("body %q: want JSON error mentioning %q", rec.Body, tt.words)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, adminRequest(http.MethodGet, "/v1/releases", nil))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("empty list: %d %q", rec.Code, rec.Body)
	}
}

func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := persisted{Active: &histEntry{"r2", "/srv/r2"}, History: []histEntry{{"r1", "/srv/r1"}}}
	if err := osStateFS.write(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Active != *want.Active || len(got.History) != 1 || got.History[0] != want.History[0] {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d files, want only state.json (no temp files)", len(entries))
	}
	os.WriteFile(filepath.Join(dir, stateFile), []byte("{not json"), 0o644)
	if _, err := readState(dir); err == nil || !strings.Contains(err.Error(), stateFile) {
		t.Errorf("corrupt state file: %v, want an error naming it", err)
	}
	if st, err := readState(t.TempDir()); err != nil || st.Active != nil {
		t.Errorf("no state file: %+v %v, want empty and no error", st, err)
	}
}

func TestReload(t *testing.T) {
	s, dir := newTestSupervisor(t)
	old := *s.conf()
	next := old
	next.DrainTimeout = config.Duration(5 * time.Second)
	next.Listen = "127.0.0.1:9999"
	next.StateDir = filepath.Join(dir, "elsewhere")
	next.AllowedRoots = []string{filepath.Join(dir, "other")}
	need, err := s.Reload(&next)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(need, ",") != "listen,state_dir" {
		t.Errorf("needRestart = %v, want [listen state_dir]", need)
	}
	got := s.conf()
	if got.DrainTimeout != next.DrainTimeout || got.AllowedRoots[0] != next.AllowedRoots[0] {
		t.Errorf("drain_timeout %v, allowed_roots %v: the reload did not apply", got.DrainTimeout, got.AllowedRoots)
	}
	if got.Listen != old.Listen || got.StateDir != old.StateDir {
		t.Errorf("listen %q, state_dir %q changed in place; they need a restart", got.Listen, got.StateDir)
	}
	if _, err := s.Reload(nil); err == nil {
		t.Error("Reload(nil) succeeded")
	}
}

func TestRedactURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/index.php", "/index.php"},
		{"/a?page=2&sort=name", "/a?page=2&sort=name"},
		{"/reset?token=abc123&user=7", "/reset?token=REDACTED&user=7"},
		{"/api?api_key=k&Session_ID=s&x", "/api?api_key=REDACTED&Session_ID=REDACTED&x"},
		{"/cb?code=xyz&state=1", "/cb?code=REDACTED&state=1"},
		{"/q?pass%77ord=hunter2", "/q?pass%77ord=REDACTED"},
		{"/s?sig=", "/s?sig=REDACTED"},
	}
	for _, tt := range tests {
		if got := redactURI(tt.in); got != tt.want {
			t.Errorf("redactURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

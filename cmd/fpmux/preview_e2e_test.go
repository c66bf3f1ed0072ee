package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPreviewRoutingThroughNginx: a deploy script tries release r2, deployed
// with -no-activate, through the real nginx while r1 serves everyone else:
// with the right token the request is served by r2 and PHP sees neither
// header; with a wrong token or none, by r1; a retired or unknown release is
// a 503 that names it; once r2 is active, the headers change nothing.
func TestPreviewRoutingThroughNginx(t *testing.T) {
	const token = "preview-e2e-0123456789abcdef"
	s := newStack(t, stackOptions{yaml: "preview_token: " + token + "\n"})
	s.deploy("r1")
	for _, id := range []string{"r2", "r3"} {
		if code, out, errs := s.cli("deploy", "-no-activate", "-id", id, "-root", s.newRelease(id)); code != 0 {
			t.Fatalf("deploy -no-activate %s: exit %d: %s%s", id, code, out, errs)
		}
	}
	s.notePgids()
	if code, out, errs := s.cli("retire", "r3"); code != 0 {
		t.Fatalf("retire r3: exit %d: %s%s", code, out, errs)
	}
	s.waitFor("r3 retired", 30*time.Second, func() bool { return s.releasesByID()["r3"].State == "retired" })

	c := newHTTPClient()
	get := func(release, tok string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", s.nginxURL+"/hints.php", nil)
		if err != nil {
			t.Fatal(err)
		}
		if release != "" {
			req.Header.Set("X-Fpmux-Release", release)
		}
		if tok != "" {
			req.Header.Set("X-Fpmux-Preview-Token", tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	served := func(id string) string {
		return "param=" + id + " file=" + id + " release_header=absent token_header=absent\n"
	}

	tests := []struct {
		name, release, token string
		status               int
		body                 string // the whole body for a 200, words in it for a 503
	}{
		{"right token, ready release", "r2", token, 200, served("r2")},
		{"wrong token", "r2", "preview-e2e-0123456789abcdeX", 200, served("r1")},
		{"no token", "r2", "", 200, served("r1")},
		{"no headers", "", "", 200, served("r1")},
		{"token alone", "", token, 200, served("r1")},
		{"right token, active release", "r1", token, 200, served("r1")},
		{"right token, retired release", "r3", token, 503, "fpmux: preview of release r3 refused: it is retired"},
		{"right token, unknown release", "r9", token, 503, "fpmux: preview of release r9 refused: no such release"},
	}
	for _, tt := range tests {
		status, body := get(tt.release, tt.token)
		if status != tt.status || (status == 200 && body != tt.body) || (status != 200 && !strings.Contains(body, tt.body)) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, status, body, tt.status, tt.body)
		}
	}
	for outcome, want := range map[string]float64{"routed": 1, "bad_token": 2, "active": 1, "not_ready": 2} {
		if got := s.metric(`fpmux_preview_requests_total{outcome="` + outcome + `"}`); got != want {
			t.Errorf("fpmux_preview_requests_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	if got := s.metric(`fpmux_requests_total{code="200",release="r2"}`); got != 1 {
		t.Errorf("r2 counted %v requests, want the 1 preview", got)
	}

	if code, out, errs := s.cli("activate", "r2"); code != 0 {
		t.Fatalf("activate r2: exit %d: %s%s", code, out, errs)
	}
	for _, tt := range []struct{ name, release, token string }{
		{"right token, now active", "r2", token},
		{"wrong token", "r2", "wrong-e2e-0123456789abcdef"},
		{"no headers", "", ""},
	} {
		if status, body := get(tt.release, tt.token); status != 200 || body != served("r2") {
			t.Errorf("after activate r2, %s: %d %q, want 200 %q", tt.name, status, body, served("r2"))
		}
	}
	if strings.Contains(s.logBuf.String(), token) || strings.Contains(s.logBuf.String(), "0123456789abcdeX") {
		t.Errorf("a preview token reached fpmux's log:\n%s", s.logBuf.String())
	}
}

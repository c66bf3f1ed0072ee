package supervisor

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/metrics"
	"github.com/fpmux/fpmux/pool"
	dto "github.com/prometheus/client_model/go"
)

const previewToken = "preview-0123456789abcdef"

// previewCount reads fpmux_preview_requests_total{outcome}.
func previewCount(t *testing.T, s *Supervisor, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.m.Preview.WithLabelValues(outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func hint(release, token string) fcgimux.RouteHint {
	h := fcgimux.RouteHint{Release: []byte(release)}
	if token != "" {
		h.Token = []byte(token)
	}
	return h
}

// TestPreviewWithoutPools covers what needs no php-fpm: with no release at
// all, an ignored hint falls through to Pin (no active release), and an
// honoured one names the release it did not find.
func TestPreviewWithoutPools(t *testing.T) {
	s, _ := newTestSupervisor(t)
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))

	if _, err := s.PinHint(hint("r2", previewToken)); !errors.Is(err, fcgimux.ErrNoRelease) {
		t.Errorf("preview off: %v, want the hint ignored (ErrNoRelease from Pin)", err)
	}
	reconfigure(t, s, func(c *config.Config) { c.PreviewToken = previewToken })
	if _, err := s.PinHint(hint("r2", "wrong-0123456789abcdef")); !errors.Is(err, fcgimux.ErrNoRelease) {
		t.Errorf("wrong token: %v, want the hint ignored (ErrNoRelease from Pin)", err)
	}
	_, err := s.PinHint(hint("r2", previewToken))
	if err == nil || errors.Is(err, fcgimux.ErrNoRelease) || !strings.Contains(err.Error(), "release r2 refused: no such release") {
		t.Errorf("right token, unknown release: %v, want an error naming r2", err)
	}
	for outcome, want := range map[string]float64{metrics.PreviewOff: 1, metrics.PreviewBadToken: 1, metrics.PreviewNotReady: 1, metrics.PreviewRouted: 0} {
		if got := previewCount(t, s, outcome); got != want {
			t.Errorf("fpmux_preview_requests_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	if strings.Contains(logs.String(), "wrong-0123456789abcdef") || strings.Contains(logs.String(), previewToken) {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}
}

// TestBadPreviewTokenLogIsBounded: one line per window, and the next line
// says how many went unlogged.
func TestBadPreviewTokenLogIsBounded(t *testing.T) {
	s, _ := newTestSupervisor(t)
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	s.previewLog.every = time.Hour
	reconfigure(t, s, func(c *config.Config) { c.PreviewToken = previewToken })
	for range 3 {
		s.PinHint(hint("r2", "wrong-0123456789abcdef"))
	}
	s.PinHint(hint("r2", ""))
	if n := strings.Count(logs.String(), "preview hint ignored"); n != 1 {
		t.Fatalf("%d lines for 4 bad tokens in one window, want 1:\n%s", n, logs.String())
	}
	s.previewLog.last.Store(0) // the window has passed
	s.PinHint(hint("r2", ""))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "not_logged_since_last=3") || !strings.Contains(lines[1], "no X-Fpmux-Preview-Token") ||
		!strings.Contains(lines[0], "does not match preview_token") || !strings.Contains(lines[0], "release=r2") {
		t.Errorf("log lines:\n%s\nwant the first bad token, then the fifth with 3 not logged", logs.String())
	}
	if got := previewCount(t, s, metrics.PreviewBadToken); got != 5 {
		t.Errorf("fpmux_preview_requests_total{outcome=\"bad_token\"} = %v, want 5 (all counted)", got)
	}
	if strings.Contains(logs.String(), "wrong-0123456789abcdef") {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}
}

// TestPreviewRouting deploys real pools: r1 active, r2 ready, r3 draining
// (retired while a preview request holds it), r4 retired, and asks for each
// with the right token, a wrong one, none, and preview routing off.
func TestPreviewRouting(t *testing.T) {
	if _, err := pool.FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("php-fpm is required on CI: %v", err)
		}
		t.Skipf("php-fpm not installed: %v", err)
	}
	s, dir := newTestSupervisor(t)
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	s.previewLog.every = time.Hour // one line for the whole test
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deploy := func(id string, activate bool) {
		t.Helper()
		root := filepath.Join(dir, "releases", id)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Deploy(t.Context(), DeployRequest{ID: id, Root: root, Activate: activate}); err != nil {
			t.Fatal(err)
		}
	}
	deploy("r1", true)
	for _, id := range []string{"r2", "r3", "r4"} {
		deploy(id, false)
	}
	reconfigure(t, s, func(c *config.Config) { c.PreviewToken = previewToken })

	// r3: a preview request holds it while it is retired.
	held, err := s.PinHint(hint("r3", previewToken))
	if err != nil || held.Release != "r3" {
		t.Fatalf("preview of ready r3: %+v %v", held, err)
	}
	heldDone := false
	t.Cleanup(func() {
		// Close waits for every pool to be idle: a failure before the
		// held request ends must not leave it pinned.
		if !heldDone {
			held.Done(200, 0)
		}
	})
	if _, err := s.Retire("r3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Retire("r4"); err != nil {
		t.Fatal(err)
	}
	gone := func(id string) <-chan struct{} {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.releases[id].gone
	}
	select {
	case <-gone("r4"):
	case <-time.After(30 * time.Second):
		t.Fatal("r4, retired with nothing in flight, never stopped")
	}

	tests := []struct {
		name    string
		hint    fcgimux.RouteHint
		release string // the release pinned, or "" for a refusal
		words   string // in the refusal
		outcome string
	}{
		{"right token, ready", hint("r2", previewToken), "r2", "", metrics.PreviewRouted},
		{"right token, active", hint("r1", previewToken), "r1", "", metrics.PreviewActive},
		{"wrong token", hint("r2", "preview-0123456789abcdeX"), "r1", "", metrics.PreviewBadToken},
		{"wrong token, shorter", hint("r2", previewToken[:len(previewToken)-1]), "r1", "", metrics.PreviewBadToken},
		{"no token", hint("r2", ""), "r1", "", metrics.PreviewBadToken},
		{"empty token", fcgimux.RouteHint{Release: []byte("r2"), Token: []byte{}}, "r1", "", metrics.PreviewBadToken},
		{"right token, draining", hint("r3", previewToken), "", "release r3 refused: it is draining", metrics.PreviewNotReady},
		{"right token, retired", hint("r4", previewToken), "", "release r4 refused: it is retired", metrics.PreviewNotReady},
		{"right token, unknown", hint("r9", previewToken), "", "release r9 refused: no such release", metrics.PreviewNotReady},
		{"right token, not an id", hint("../r2\n", previewToken), "", `release "../r2\n" refused: no such release`, metrics.PreviewNotReady},
		{"right token, repeated headers", fcgimux.RouteHint{Release: []byte("r2"), Token: []byte(previewToken), Conflict: true},
			"", "more than once with different values", metrics.PreviewConflict},
		{"wrong token, repeated headers", fcgimux.RouteHint{Release: []byte("r2"), Token: []byte("x"), Conflict: true},
			"r1", "", metrics.PreviewBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := previewCount(t, s, tt.outcome)
			pin, err := s.PinHint(tt.hint)
			if tt.release == "" {
				if err == nil {
					pin.Done(200, 0)
					t.Fatalf("pinned to %s, want a refusal", pin.Release)
				}
				if !strings.Contains(err.Error(), tt.words) {
					t.Errorf("refusal %q, want %q in it", err, tt.words)
				}
			} else {
				if err != nil {
					t.Fatalf("refused: %v, want %s", err, tt.release)
				}
				pin.Done(200, time.Millisecond)
				if pin.Release != tt.release {
					t.Errorf("pinned to %s, want %s", pin.Release, tt.release)
				}
			}
			if got := previewCount(t, s, tt.outcome); got != before+1 {
				t.Errorf("fpmux_preview_requests_total{outcome=%q} went from %v to %v, want +1", tt.outcome, before, got)
			}
		})
	}

	// The held request ends: only now may r3 stop.
	select {
	case <-gone("r3"):
		t.Fatal("r3 stopped under a preview request in flight")
	default:
	}
	held.Done(200, time.Millisecond)
	heldDone = true
	select {
	case <-gone("r3"):
	case <-time.After(30 * time.Second):
		t.Fatal("r3 never stopped once its preview request ended")
	}

	// Preview routing off, or a token rotated away: the hint is ignored.
	pinTo := func(what string, h fcgimux.RouteHint, want string) {
		t.Helper()
		pin, err := s.PinHint(h)
		if err != nil {
			t.Errorf("%s: %v, want %s", what, err, want)
			return
		}
		pin.Done(200, 0)
		if pin.Release != want {
			t.Errorf("%s: pinned to %s, want %s", what, pin.Release, want)
		}
	}
	reconfigure(t, s, func(c *config.Config) { c.PreviewToken = "" })
	pinTo("preview off", hint("r2", previewToken), "r1")
	reconfigure(t, s, func(c *config.Config) { c.PreviewToken = "rotated-0123456789abcdef" })
	pinTo("old token after rotation", hint("r2", previewToken), "r1")
	pinTo("new token after rotation", hint("r2", "rotated-0123456789abcdef"), "r2")

	// Requests to r2 count under it like any other; bad tokens are logged
	// once per window, without the token.
	if got, _ := s.Get(t.Context(), "r2"); got.Requests != 2 || got.InFlight != 0 {
		t.Errorf("r2 requests %d, in flight %d; want 2 and 0", got.Requests, got.InFlight)
	}
	if n := strings.Count(logs.String(), "preview hint ignored"); n != 1 {
		t.Errorf("%d log lines for bad preview tokens, want 1 (at most one an hour here):\n%s", n, logs.String())
	}
	for _, secret := range []string{previewToken, "preview-0123456789abcdeX", "rotated-0123456789abcdef"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("token %q reached the log", secret)
		}
	}
}

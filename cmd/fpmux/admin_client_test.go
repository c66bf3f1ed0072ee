package main

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/supervisor"
)

// serveTokenAdmin serves a real supervisor's admin API, with admin_token
// set to token, on a unix socket until the test ends, and returns its
// address.
func serveTokenAdmin(t *testing.T, token string) string {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.AdminToken = token
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(sup.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		sup.Close(context.Background())
	})
	return "unix:" + path
}

// TestClientToken runs every client command against an admin API that
// wants a token, with the token from -token, from FPMUX_ADMIN_TOKEN, from
// both, wrong, or missing.
func TestClientToken(t *testing.T) {
	const token = "client-0123456789abcdef"
	const wrong = "wrong-0123456789abcdefg"
	admin := serveTokenAdmin(t, token)
	commands := [][]string{
		{"status"},
		{"deploy", "-id", "r1", "-root", "/nonexistent"},
		{"activate", "r1"},
		{"retire", "r1"},
		{"rollback"},
	}
	tests := []struct {
		name, flag, env string
		refused         bool // answered 401
		code            int  // when not refused: 0 for status, 1 for the others (no such release)
	}{
		{"no token", "", "", true, 1},
		{"wrong -token", wrong, "", true, 1},
		{"wrong FPMUX_ADMIN_TOKEN", "", wrong, true, 1},
		{"-token", token, "", false, 0},
		{"FPMUX_ADMIN_TOKEN", "", token, false, 0},
		{"-token wins over a wrong FPMUX_ADMIN_TOKEN", token, wrong, false, 0},
		{"a wrong -token wins over FPMUX_ADMIN_TOKEN", wrong, token, true, 1},
		{"FPMUX_ADMIN_TOKEN with a trailing newline", "", token + "\n", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(clientTokenEnv, tt.env)
			for _, cmd := range commands {
				args := append([]string{"-admin", admin}, cmd[1:]...)
				if tt.flag != "" {
					args = append(args, "-token", tt.flag)
				}
				code, _, stderr := runClientTest(cmd[0], args)
				said := strings.Contains(stderr, errClientToken)
				switch {
				case tt.refused && (code != 1 || !said):
					t.Errorf("%s: exit %d, stderr %q; want exit 1 saying %q", cmd[0], code, stderr, errClientToken)
				case !tt.refused && said:
					t.Errorf("%s: the token was refused: %q", cmd[0], stderr)
				case !tt.refused && cmd[0] == "status" && code != 0:
					t.Errorf("status: exit %d, stderr %q; want 0", code, stderr)
				}
				if strings.Contains(stderr, wrong) || strings.Contains(stderr, token) {
					t.Errorf("%s: stderr shows a token: %q", cmd[0], stderr)
				}
			}
		})
	}
}

func TestClientRefusesAMalformedToken(t *testing.T) {
	admin := serveTokenAdmin(t, "client-0123456789abcdef")
	for _, tok := range []string{"two words-0123456789", "tab\there-0123456789", "naïve-0123456789abc"} {
		code, _, stderr := runClientTest("status", []string{"-admin", admin, "-token", tok})
		if code != 2 || !strings.Contains(stderr, "-token: the token must be printable ASCII") || strings.Contains(stderr, tok) {
			t.Errorf("-token %q: exit %d, stderr %q; want exit 2 explaining, without the token", tok, code, stderr)
		}
	}
}

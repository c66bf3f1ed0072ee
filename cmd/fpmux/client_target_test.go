package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientTargetResolve(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fpmux.yaml")
	if err := os.WriteFile(cfg, []byte("admin: unix:/run/app/admin.sock\nadmin_token: from-the-config-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noToken := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(noToken, []byte("admin: 127.0.0.1:9070\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("admin: unix:/x.sock\ndrain_timeout: -1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                     string
		target                   clientTarget
		envAdmin, envToken       string
		wantAdmin, wantToken     string
		wantAdminFrom, wantError string
	}{
		{"defaults", clientTarget{}, "", "", clientDefaultAdmin, "", "the default admin address", ""},
		{"environment", clientTarget{}, "unix:/env.sock", "env-token", "unix:/env.sock", "env-token", clientAdminEnv, ""},
		{"flags over the environment", clientTarget{admin: "unix:/flag.sock", token: "flag-token"}, "unix:/env.sock", "env-token",
			"unix:/flag.sock", "flag-token", "-admin", ""},
		{"config over the environment", clientTarget{config: cfg}, "unix:/env.sock", "env-token",
			"unix:/run/app/admin.sock", "from-the-config-0123456789", cfg + "'s admin", ""},
		{"flags over the config", clientTarget{config: cfg, admin: "unix:/flag.sock", token: "flag-token"}, "", "",
			"unix:/flag.sock", "flag-token", "-admin", ""},
		{"config without a token leaves the environment's", clientTarget{config: noToken}, "", "env-token",
			"127.0.0.1:9070", "env-token", noToken + "'s admin", ""},
		{"a config that does not load", clientTarget{config: bad}, "", "", "", "", "", "drain_timeout"},
		{"a config that is not there", clientTarget{config: filepath.Join(dir, "none.yaml")}, "", "", "", "", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(clientAdminEnv, tt.envAdmin)
			t.Setenv(clientTokenEnv, tt.envToken)
			r, err := tt.target.resolve()
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) || !strings.HasPrefix(err.Error(), "-config: ") {
					t.Fatalf("err = %v, want one naming -config and %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.admin != tt.wantAdmin || r.token != tt.wantToken || r.adminFrom != tt.wantAdminFrom {
				t.Errorf("resolve = %+v, want admin %q (from %q) token %q", r, tt.wantAdmin, tt.wantAdminFrom, tt.wantToken)
			}
		})
	}
}

// TestClientReachesTheConfigsAdmin: `fpmux status -config FILE` and
// FPMUX_ADMIN reach the admin API they name, with the config's token.
func TestClientReachesTheConfigsAdmin(t *testing.T) {
	srv := startClientTestServer(t, "unix")
	cfg := filepath.Join(t.TempDir(), "fpmux.yaml")
	if err := os.WriteFile(cfg, []byte("admin: "+srv.admin+"\nadmin_token: from-the-config-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(clientTokenEnv, "")
	t.Setenv(clientAdminEnv, "")
	if code, stdout, stderr := runClientTest("status", []string{"-config", cfg}); code != 0 || stdout != "no releases\n" {
		t.Errorf("status -config: exit %d, %q %q", code, stdout, stderr)
	}
	t.Setenv(clientAdminEnv, srv.admin)
	if code, stdout, stderr := runClientTest("status", nil); code != 0 || stdout != "no releases\n" {
		t.Errorf("status with %s: exit %d, %q %q", clientAdminEnv, code, stdout, stderr)
	}
	t.Setenv(clientAdminEnv, "nonsense:")
	if code, _, stderr := runClientTest("status", nil); code != 2 || !strings.Contains(stderr, clientAdminEnv+": ") {
		t.Errorf("status with a bad %s: exit %d, %q", clientAdminEnv, code, stderr)
	}
}

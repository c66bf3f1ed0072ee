// End-to-end tests of the admin API's guards with the real fpmux: who may
// use the admin socket, which admin addresses fpmux refuses, and the bearer
// token over TCP through deploys that serve through nginx.

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdminSocketOwnership: with admin_owner and admin_group set, the admin
// socket is mode 0660 and theirs, and only they get through it: the client
// run as the owner, as a member of the group, and as anyone else.
func TestAdminSocketOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving the socket to another user needs root")
	}
	s := newStack(t, stackOptions{yaml: "admin_owner: \"65534\"\nadmin_group: \"65533\"\n"})
	path := strings.TrimPrefix(s.admin, "unix:")
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || st.Uid != 65534 || st.Gid != 65533 {
		t.Fatalf("admin socket: mode %v, owner %d:%d; want a socket of mode 0660 owned by 65534:65533", fi.Mode(), st.Uid, st.Gid)
	}

	// The test binary lies in a directory only root may enter: the other
	// users run a copy.
	bin := filepath.Join(s.dir, "fpmux-client")
	copyFile(t, os.Args[0], bin, 0o755)
	tests := []struct {
		name     string
		uid, gid uint32
		ok       bool
	}{
		{"the owner", 65534, 65534, true},
		{"a member of the group", 65000, 65533, true},
		{"anyone else", 65000, 65000, false},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, "status", "-admin", s.admin)
		cmd.Env = []string{"FPMUX_TEST_EXEC=1", "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.gid}}
		out, err := cmd.CombinedOutput()
		switch {
		case tt.ok && (err != nil || !strings.Contains(string(out), "no releases")):
			t.Errorf("%s (%d:%d): %v: %s; want the empty status", tt.name, tt.uid, tt.gid, err, out)
		case !tt.ok && (err == nil || !strings.Contains(string(out), "permission denied")):
			t.Errorf("%s (%d:%d): %v: %s; want permission denied", tt.name, tt.uid, tt.gid, err, out)
		}
	}
}

func copyFile(t *testing.T, from, to string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, perm); err != nil {
		t.Fatal(err)
	}
}

// TestServeRefusesAnUnsafeAdmin: fpmux does not start with an admin API
// other hosts could reach without a token, nor with an admin socket owner
// that does not exist; it says why and exits non-zero.
func TestServeRefusesAnUnsafeAdmin(t *testing.T) {
	port := freePort(t)
	tests := []struct {
		name  string
		yaml  string   // added to the config
		flags []string // after -config
		words []string
	}{
		{"admin on every interface", "", []string{"-admin", fmt.Sprintf("0.0.0.0:%d", port)},
			[]string{"admin", "reachable from other hosts", "admin_token"}},
		{"admin on every IPv6 interface", "", []string{"-admin", fmt.Sprintf("[::]:%d", port)},
			[]string{"admin", "reachable from other hosts", "admin_token"}},
		{"admin with no host", "", []string{"-admin", fmt.Sprintf(":%d", port)},
			[]string{"admin", "reachable from other hosts", "admin_token"}},
		{"admin_token too short", "admin_token: short\n", nil, []string{"admin_token", "at least 16"}},
		{"unknown admin_owner", "admin_owner: fpmux-no-such-user\n", nil, []string{"admin_owner", "fpmux-no-such-user", "does not exist"}},
		{"unknown admin_group", "admin_group: fpmux-no-such-group\n", nil, []string{"admin_group", "fpmux-no-such-group", "does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			text := fmt.Sprintf("listen: unix:%[1]s/fpmux.sock\nadmin: unix:%[1]s/admin.sock\nmetrics: \"\"\n"+
				"state_dir: %[1]s/state\ndocroot: %[1]s/current\nallowed_roots: [%[1]s/releases]\n%[2]s", dir, tt.yaml)
			serveRefuses(t, dir, text, tt.flags, tt.words)
		})
	}
}

// TestAdminTokenOverTCP runs fpmux with its admin API on 127.0.0.1 and
// admin_token set: a deploy without the token, or with a wrong one, is
// refused with a message that says what to do; with -token, and then with
// FPMUX_ADMIN_TOKEN, releases deploy and serve through nginx; a token
// rotated by SIGHUP applies to the next request; no token reaches the log.
func TestAdminTokenOverTCP(t *testing.T) {
	const token = "e2e-token-0123456789abcdef"
	const rotated = "e2e-rotated-0123456789abcdef"
	const wrong = "e2e-wrong-0123456789abcdefg"
	s := newStack(t, stackOptions{})
	admin := s.restartWithTCPAdmin(token)
	c := newHTTPClient()
	t.Setenv(clientTokenEnv, "")

	r1 := s.newRelease("r1")
	for _, extra := range [][]string{nil, {"-token", wrong}} {
		args := append([]string{"deploy", "-id", "r1", "-root", r1}, extra...)
		code, out, errs := s.cli(args...)
		if code != 1 || !strings.Contains(errs, "admin API refused the token: set -token or FPMUX_ADMIN_TOKEN") {
			t.Fatalf("deploy %v: exit %d: %s%s; want exit 1 and the token message", extra, code, out, errs)
		}
	}
	if _, _, rs := tcpGet(t, admin, "/v1/releases", "Bearer "+token); rs != "[]" {
		t.Fatalf("releases after refused deploys: %s, want none", rs)
	}

	if code, out, errs := s.cli("deploy", "-token", token, "-id", "r1", "-root", r1); code != 0 {
		t.Fatalf("deploy -token: exit %d: %s%s", code, out, errs)
	}
	s.wantServedBy(c, "r1")

	t.Setenv(clientTokenEnv, token)
	if code, out, errs := s.cli("deploy", "-id", "r2", "-root", s.newRelease("r2")); code != 0 {
		t.Fatalf("deploy with FPMUX_ADMIN_TOKEN: exit %d: %s%s", code, out, errs)
	}
	s.wantServedBy(c, "r2")
	if code, out, errs := s.cli("rollback"); code != 0 || !strings.Contains(out, "r1") {
		t.Fatalf("rollback with FPMUX_ADMIN_TOKEN: exit %d: %s%s", code, out, errs)
	}
	s.wantServedBy(c, "r1")

	// Straight HTTP: the challenge, and health checks without the secret.
	for _, tt := range []struct {
		path, auth string
		status     int
	}{
		{"/v1/releases", "", 401},
		{"/v1/releases", "Bearer " + wrong, 401},
		{"/v1/releases", "Bearer " + token, 200},
		{"/v1/healthz", "", 200},
	} {
		status, challenge, _ := tcpGet(t, admin, tt.path, tt.auth)
		if status != tt.status || status == 401 && !strings.HasPrefix(challenge, "Bearer") {
			t.Errorf("GET %s with %q: %d, WWW-Authenticate %q; want %d (and a Bearer challenge with 401)", tt.path, tt.auth, status, challenge, tt.status)
		}
	}

	// Rotate the token with SIGHUP: the old one stops working, the new one
	// works, with no restart.
	s.writeConfig(strings.Replace(s.cfgFile(), "admin_token: "+token, "admin_token: "+rotated, 1))
	s.signalFpmux(syscall.SIGHUP)
	s.waitFor("the rotated token to be in force", 20*time.Second, func() bool {
		status, _, _ := tcpGet(t, admin, "/v1/releases", "Bearer "+token)
		return status == 401
	})
	if code, out, errs := s.cli("status", "-token", rotated); code != 0 || !strings.Contains(out, "r2") {
		t.Fatalf("status with the rotated token: exit %d: %s%s", code, out, errs)
	}
	if code, _, errs := s.cli("status"); code != 1 || !strings.Contains(errs, "refused the token") {
		t.Fatalf("status with the old token: exit %d: %s; want it refused", code, errs)
	}
	s.wantServedBy(c, "r1")

	log := s.logBuf.String()
	if !strings.Contains(log, "admin_token=rotated") {
		t.Error("the reload's log line does not say the token was rotated")
	}
	for _, secret := range []string{token, rotated, wrong} {
		if strings.Contains(log, secret) {
			t.Errorf("fpmux's log holds a token (%.8s...)", secret)
		}
	}
}

// restartWithTCPAdmin stops the stack's fpmux and starts it again with its
// admin API on a free port of 127.0.0.1 and admin_token set (unless token
// is empty), which the client commands (s.cli) then use. It waits until GET
// /v1/healthz, which needs no token, answers there, and returns the address.
func (s *stack) restartWithTCPAdmin(token string) string {
	s.t.Helper()
	s.stopFpmux(syscall.SIGTERM)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(s.t))
	tokenLine := ""
	if token != "" {
		tokenLine = "admin_token: " + token + "\n"
	}
	cfg := strings.Replace(s.cfgText, "admin: "+s.cfgAdmin+"\n", "admin: "+addr+"\n"+tokenLine, 1)
	if cfg == s.cfgText {
		s.t.Fatalf("no admin line to replace in:\n%s", cfg)
	}
	s.writeConfig(cfg)
	cmd := exec.Command(os.Args[0], "serve", "-config", s.cfgPath)
	cmd.Env = append(withoutSystemdEnv(os.Environ()), "FPMUX_TEST_EXEC=1")
	cmd.Stdout, cmd.Stderr = s.logBuf, s.logBuf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.fpmux, s.exited, s.admin = cmd, exited, addr // stopped by the stack's cleanup
	s.mu.Unlock()
	s.waitFor("fpmux's admin API on "+addr, 20*time.Second, func() bool {
		select {
		case <-exited:
			s.t.Fatalf("fpmux exited at start:\n%s", s.logBuf.String())
		default:
		}
		status, _, _ := tcpGet(s.t, addr, "/v1/healthz", "")
		return status != 0
	})
	return addr
}

func (s *stack) cfgFile() string {
	s.t.Helper()
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

func (s *stack) writeConfig(text string) {
	s.t.Helper()
	if err := os.WriteFile(s.cfgPath, []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) signalFpmux(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.fpmux
	s.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// tcpGet sends GET path to a TCP admin API with an Authorization header
// (none when auth is empty) and returns the status, WWW-Authenticate and
// the body; a status of 0 means no answer.
func tcpGet(t *testing.T, addr, path, auth string) (status int, challenge, body string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(bytes.TrimSpace(b))
}

// wantServedBy fetches index.php through nginx and fails the test unless
// release id answered it, and it alone.
func (s *stack) wantServedBy(c *http.Client, id string) {
	s.t.Helper()
	code, body, err := s.get(c, "/index.php?ms=0")
	release, mixed, ok := servedBy(body)
	if err != nil || code != 200 || !ok || mixed || release != id {
		s.t.Fatalf("GET /index.php: %d %q %v; want it served by %s", code, body, err, id)
	}
}

// This file tests what the real fpmux does with a state.json it cannot use.

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/logtest"
)

// TestCorruptStateStopsServe runs `fpmux serve` on a state_dir whose
// state.json is not one fpmux wrote (what a power loss or a hand edit can
// leave). fpmux must not start serving no release, nor a guessed one: it
// exits non-zero with a message that names the file and says what to move
// away. Following that advice, fpmux starts with no active release and the
// next deploy serves.
func TestCorruptStateStopsServe(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	s.stopFpmux(syscall.SIGTERM)
	state := filepath.Join(s.stateDir, "state.json")
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		write func() error
	}{
		{"no active release", func() error { return os.WriteFile(state, []byte("{}\n"), 0o600) }},
		{"zeroes", func() error { return os.WriteFile(state, make([]byte, 4096), 0o600) }},
		{"truncated", func() error { return os.WriteFile(state, good[:len(good)/2], 0o600) }},
		{"empty", func() error { return os.WriteFile(state, nil, 0o600) }},
		{"a directory", func() error { return os.Mkdir(state, 0o700) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.RemoveAll(state); err != nil {
				t.Fatal(err)
			}
			if err := tt.write(); err != nil {
				t.Fatal(err)
			}
			code, out := s.serveOnce(t)
			t.Logf("fpmux serve: exit %d: %s", code, lastLines(out, 3))
			if code <= 0 || !strings.Contains(out, state) || !strings.Contains(out, "move it away (mv "+state) {
				t.Errorf("fpmux serve with state.json %s: exit %d, want a non-zero exit and a message naming %s and what to move away", tt.name, code, state)
			}
		})
	}

	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(state, state+".broken"); err != nil {
		t.Fatal(err)
	}
	s.startFpmux()
	if rs := s.releasesByID(); len(rs) != 0 {
		t.Errorf("releases after moving state.json away: %v, want none", rs)
	}
	s.deploy("r2")
	s.servesNow("r2")
}

// serveOnce runs `fpmux serve` on the stack's config, expecting it to exit
// at start. One that serves instead (its admin API answers) is stopped and
// reported with code -1.
func (s *stack) serveOnce(t *testing.T) (code int, output string) {
	t.Helper()
	var out logtest.Buffer
	cmd := exec.Command(os.Args[0], "serve", "-config", s.cfgPath)
	cmd.Env = append(withoutSystemdEnv(os.Environ()), "FPMUX_TEST_EXEC=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-exited:
			return cmd.ProcessState.ExitCode(), out.String()
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("fpmux serve neither exited nor served within 30s:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := s.adminGet("/v1/releases"); err == nil {
			t.Logf("fpmux serve started and serves (releases: %v); stopping it", s.releasesByID())
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			return -1, out.String()
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

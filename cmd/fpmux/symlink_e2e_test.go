package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSymlinkFollowsTheActiveRelease: each deploy points the symlink at the
// new release's real root with no temporary link left over, a restarted
// fpmux points it at the release it brings back, and an fpmux whose symlink
// path is a real directory refuses to start and leaves it alone.
func TestSymlinkFollowsTheActiveRelease(t *testing.T) {
	link := filepath.Join(tempDir(t), "live")
	s := newStack(t, stackOptions{yaml: "symlink: " + link + "\n"})
	realRoot := func(id string) string {
		p, err := filepath.EvalSymlinks(filepath.Join(s.releases, id))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pointsAt := func(want string) {
		t.Helper()
		got, err := os.Readlink(link)
		if err != nil || got != want {
			t.Fatalf("%s -> %q (%v), want %q", link, got, err, want)
		}
		left, _ := filepath.Glob(link + ".fpmux-*")
		if len(left) > 0 {
			t.Errorf("temporary links left: %v", left)
		}
	}

	s.deploy("r1")
	pointsAt(realRoot("r1"))
	s.deploy("r2")
	pointsAt(realRoot("r2"))
	// A release deployed without traffic does not move the link.
	root := s.newRelease("r3")
	if code, out, errs := s.cli("deploy", "-id", "r3", "-root", root, "-no-activate"); code != 0 {
		t.Fatalf("deploy r3: exit %d: %s%s", code, out, errs)
	}
	pointsAt(realRoot("r2"))
	if code, out, errs := s.cli("activate", "r3"); code != 0 {
		t.Fatalf("activate r3: exit %d: %s%s", code, out, errs)
	}
	pointsAt(realRoot("r3"))

	// A restart restores r3 and its link, here pointed elsewhere meanwhile.
	s.stopFpmux(syscall.SIGTERM)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(realRoot("r1"), link); err != nil {
		t.Fatal(err)
	}
	s.startFpmux()
	s.waitFor("r3 active again", 20*time.Second, func() bool { return s.releasesByID()["r3"].State == "active" })
	pointsAt(realRoot("r3"))

	// A directory where the link should be: fpmux refuses to start.
	s.stopFpmux(syscall.SIGTERM)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(link, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(link, "index.html")
	if err := os.WriteFile(marker, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "-config", s.cfgPath)
	cmd.Env = append(withoutSystemdEnv(os.Environ()), "FPMUX_TEST_EXEC=1")
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), link+" exists and is a directory, not a symlink") {
		t.Fatalf("fpmux serve with a directory as symlink: %v, output:\n%s\nwant a refusal naming %s", err, out, link)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "mine" {
		t.Errorf("the directory was touched: %q %v", b, err)
	}
}

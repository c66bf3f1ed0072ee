package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/config"
	dto "github.com/prometheus/client_model/go"
)

// linkTemps lists the temporary links swapSymlink may leave next to link.
func linkTemps(t *testing.T, link string) []string {
	t.Helper()
	m, err := filepath.Glob(link + symlinkTempInfix + "*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSwapSymlink(t *testing.T) {
	for _, c := range []struct {
		name    string
		setup   func(t *testing.T, link, old string)
		wantErr string // "" when the swap must succeed
	}{
		{"no link yet", func(t *testing.T, link, old string) {}, ""},
		{"a link to the old release", func(t *testing.T, link, old string) {
			if err := os.Symlink(old, link); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a dangling link", func(t *testing.T, link, old string) {
			if err := os.Symlink(old+"-gone", link); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a link to a directory, kept as a link", func(t *testing.T, link, old string) {
			// rename(2) replaces the link itself, never what it points at.
			if err := os.Symlink(old, link); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(old, "keep"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a real directory", func(t *testing.T, link, old string) {
			if err := os.Mkdir(link, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(link, "index.html"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "is a directory, not a symlink"},
		{"an empty directory", func(t *testing.T, link, old string) {
			if err := os.Mkdir(link, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "is a directory, not a symlink"},
		{"a regular file", func(t *testing.T, link, old string) {
			if err := os.WriteFile(link, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "is a file, not a symlink"},
		{"no parent directory", nil, "no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			old, next := filepath.Join(dir, "releases", "r1"), filepath.Join(dir, "releases", "r2")
			for _, d := range []string{old, next} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(dir, "current")
			if c.setup == nil {
				link = filepath.Join(dir, "missing", "current")
			} else {
				c.setup(t, link, old)
			}
			before, _ := os.Lstat(link)

			err := swapSymlink(link, next)

			if left := linkTemps(t, link); len(left) > 0 {
				t.Errorf("temporary links left behind: %v", left)
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), link) {
					t.Fatalf("swap: %v, want an error naming %s and saying %q", err, link, c.wantErr)
				}
				// What was there is untouched.
				after, _ := os.Lstat(link)
				if (before == nil) != (after == nil) || before != nil && (before.Mode() != after.Mode() || !os.SameFile(before, after)) {
					t.Errorf("%s changed: %v -> %v", link, before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("swap: %v", err)
			}
			got, err := os.Readlink(link)
			if err != nil || got != next {
				t.Fatalf("link points at %q (%v), want %q", got, err, next)
			}
			if _, err := os.Stat(filepath.Join(old, "keep")); c.name == "a link to a directory, kept as a link" && err != nil {
				t.Errorf("the old release's files were touched: %v", err)
			}
		})
	}
}

func TestRemoveSymlinkTemps(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	stale := link + symlinkTempInfix + "0123456789ab"
	if err := os.Symlink("/nowhere", stale); err != nil {
		t.Fatal(err)
	}
	// Not ours: a regular file of the same shape, and another link.
	file := link + symlinkTempInfix + "file"
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other"+symlinkTempInfix+"0123")
	if err := os.Symlink("/nowhere", other); err != nil {
		t.Fatal(err)
	}
	removeSymlinkTemps(link)
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary link still there: %v", err)
	}
	for _, p := range []string{file, other} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
}

func TestNewRefusesADirectoryAsSymlink(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Symlink = filepath.Join(dir, "current")
	if err := os.Mkdir(cfg.Symlink, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), cfg.Symlink) || !strings.Contains(err.Error(), "not a symlink") {
		t.Fatalf("New: %v, want a refusal naming %s", err, cfg.Symlink)
	}
	if fi, err := os.Lstat(cfg.Symlink); err != nil || !fi.IsDir() {
		t.Fatalf("the directory was touched: %v %v", fi, err)
	}
}

func TestPointSymlinkFailureIsCountedNotFatal(t *testing.T) {
	s, dir := newTestSupervisor(t)
	root := filepath.Join(dir, "releases", "r1")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "current")
	reconfigure(t, s, func(c *config.Config) { c.Symlink = link })
	counted := func() float64 {
		var m dto.Metric
		if err := s.m.SymlinkErrors.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}

	r := &release{id: "r1", root: root}
	s.mu.Lock()
	s.pointSymlinkLocked(r)
	s.mu.Unlock()
	if got, err := os.Readlink(link); err != nil || got != root {
		t.Fatalf("link = %q (%v), want %q", got, err, root)
	}
	if n := counted(); n != 0 {
		t.Fatalf("fpmux_symlink_errors_total = %v after a good swap", n)
	}

	// The operator put a directory there meanwhile: refused and counted.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(link, 0o755); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.pointSymlinkLocked(r)
	s.mu.Unlock()
	if n := counted(); n != 1 {
		t.Errorf("fpmux_symlink_errors_total = %v, want 1", n)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.IsDir() {
		t.Errorf("the directory was replaced: %v %v", fi, err)
	}
}

package pool

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindBinary(t *testing.T) {
	mk := func(dir, name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := t.TempDir(), t.TempDir()
	mk(a, "php-fpm7.4", 0o755)
	mk(a, "php-fpm8.10", 0o644) // highest, but not executable
	want := mk(b, "php-fpm8.3", 0o755)
	mk(b, "php-fpm8.2", 0o755)
	mk(b, "php-fpm8", 0o755)     // not X.Y
	mk(b, "php-fpm8.3.1", 0o755) // not X.Y
	got, err := findBinary([]string{a, "relative", "", b})
	if err != nil || got != want {
		t.Errorf("versioned: got %q, %v; want %q", got, err, want)
	}

	plain := mk(b, "php-fpm", 0o755)
	if got, err := findBinary([]string{a, b}); err != nil || got != plain {
		t.Errorf("plain php-fpm should win: got %q, %v; want %q", got, err, plain)
	}

	if _, err := findBinary([]string{t.TempDir()}); err == nil {
		t.Error("found a php-fpm in an empty directory")
	}
}

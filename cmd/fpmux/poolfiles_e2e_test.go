package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesWhatADeployWould: fpmux serve does not start with a
// config every deploy would fail with; it names the key and its line and
// exits non-zero, leaving no socket behind.
func TestServeRefusesWhatADeployWould(t *testing.T) {
	phpFPM, _ := needTools(t)
	badPool := filepath.Join(tempDir(t), "www.conf")
	if err := os.WriteFile(badPool, []byte("[www]\npm = static\nenv[A] = \"unterminated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		yaml  string // after the base config (which ends at line 6)
		words []string
	}{
		{"a directive fpmux sets", "php_fpm:\n  binary: " + phpFPM + "\n  pool:\n    chdir: /srv\n",
			[]string{"php_fpm.pool.chdir (line 10): fpmux sets this pool directive itself; remove it"}},
		{"catch_workers_output off", "php_fpm:\n  binary: " + phpFPM + "\n  pool:\n    catch_workers_output: \"no\"\n",
			[]string{"php_fpm.pool.catch_workers_output (line 10): fpmux sets this pool directive itself"}},
		{"a whole number that is not", "keep_previous: two\n",
			[]string{`keep_previous (line 7): want an integer, got a single value ("two")`}},
		{"a missing allowed_roots directory", "allowed_roots: [@DIR@/releases, @DIR@/gone]\n",
			[]string{"allowed_roots[1] (line 6): stat @DIR@/gone: no such file or directory: create it"}},
		{"a missing php-fpm", "php_fpm:\n  binary: /nonexistent/php-fpm\n",
			[]string{"php_fpm.binary (line 8): ", "/nonexistent/php-fpm"}},
		{"a pool file php-fpm would not read", "php_fpm:\n  binary: " + phpFPM + "\n  pool_file: " + badPool + "\n",
			[]string{"php_fpm.pool_file (line 9): " + badPool + ":3: env[A]: a double-quoted value must end on its line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			text := fmt.Sprintf("listen: unix:%[1]s/fpmux.sock\nadmin: unix:%[1]s/admin.sock\nmetrics: \"\"\n"+
				"state_dir: %[1]s/state\ndocroot: %[1]s/current\nallowed_roots: [%[1]s/releases]\n", dir)
			yaml := strings.ReplaceAll(tt.yaml, "@DIR@", dir)
			if strings.HasPrefix(yaml, "allowed_roots") {
				text = strings.Replace(text, fmt.Sprintf("allowed_roots: [%s/releases]\n", dir), "", 1) // line 6 is the case's
			}
			words := slices.Clone(tt.words)
			for i := range words {
				words[i] = strings.ReplaceAll(words[i], "@DIR@", dir)
			}
			serveRefuses(t, dir, text+yaml, nil, words)
		})
	}
}

// serveRefuses runs fpmux serve on the config text (written into dir, with
// dir/releases made, as allowed_roots names it) and checks that it exits
// non-zero without serving, saying each of words, with no admin socket
// left behind.
func serveRefuses(t *testing.T, dir, text string, flags, words []string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, "releases"), 0o755); err != nil { // serve refuses a missing one
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "fpmux.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"serve", "-config", cfg}, flags...)...)
	cmd.Env = append(withoutSystemdEnv(os.Environ()), "FPMUX_TEST_EXEC=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("fpmux started and served:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("fpmux: %v, want a non-zero exit:\n%s", err, out)
	}
	for _, w := range words {
		if !strings.Contains(string(out), w) {
			t.Errorf("output does not say %q:\n%s", w, out)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "admin.sock")); err == nil {
		t.Error("fpmux left an admin socket behind")
	}
}

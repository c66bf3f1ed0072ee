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

// TestDebianPoolFileBehindNginx runs a release's pool from Debian's stock
// www.conf as it is, behind nginx: its directives stand (user www-data, pm
// dynamic with its spare servers), those fpmux sets (listen, listen.owner,
// listen.group) are dropped with a warning each, and the access log and
// slowlog the config adds are the release's own files, with every request
// PHP ran and none of fpmux's pings and status reads.
func TestDebianPoolFileBehindNginx(t *testing.T) {
	logs := filepath.Join(tempDir(t), "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{
		poolFile: filepath.Join(testdata(t), "phpfpm", "debian", "www.conf"),
		pool: map[string]string{
			"access.log":              logs + "/$pool.access.log",
			"access.format":           `%R - %u %t "%m %r%Q%q" %s %f %{milli}d %{kilo}M %C%%`,
			"slowlog":                 logs + "/{release_id}.slow.log",
			"request_slowlog_timeout": "1s",
		},
	})
	s.deploy("r1")

	conf, err := os.ReadFile(filepath.Join(s.stateDir, "pools", "r1", "php-fpm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nuser = www-data\n", "\ngroup = www-data\n", "\npm = dynamic\n", "\npm.max_children = 5\n",
		"\npm.start_servers = 2\n", "\npm.min_spare_servers = 1\n", "\npm.max_spare_servers = 3\n",
		"\naccess.log = \"" + logs + "/r1.access.log\"\n", "\nslowlog = \"" + logs + "/r1.slow.log\"\n"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("the generated pool config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(string(conf), "php8.2-fpm.sock") {
		t.Errorf("www.conf's listen reached the generated config:\n%s", conf)
	}
	for _, d := range []string{"www.conf:41: listen = ", "www.conf:53: listen.owner = ", "www.conf:54: listen.group = "} {
		if n := strings.Count(s.logBuf.String(), d); n != 1 {
			t.Errorf("fpmux logged %d warnings for %q, want 1:\n%s", n, d, s.logBuf.String())
		}
	}

	c := newHTTPClient()
	const requests = 10
	for i := range requests {
		if st, body, err := s.get(c, fmt.Sprintf("/index.php?ms=0&n=%d", i)); err != nil || st != 200 || !strings.Contains(body, "r1") {
			t.Fatalf("request %d: %d %q %v", i, st, body, err)
		}
	}
	if st, _, err := s.get(c, "/index.php?ms=3000&n=slow"); err != nil || st != 200 {
		t.Fatalf("slow request: %d %v", st, err)
	}
	// fpmux status reads the pool's status page; pings ran at the start
	// and warm-up.
	if code, out, errs := s.cli("status"); code != 0 {
		t.Fatalf("fpmux status: %d %s%s", code, out, errs)
	}
	var lines []string
	s.waitFor("a line per request in r1's access log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(logs, "r1.access.log"))
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(lines) >= requests+1
	})
	var ours int
	for _, l := range lines {
		switch {
		case strings.Contains(l, "/fpmux-ping-") || strings.Contains(l, "/fpmux-status-"):
			ours++
		case !strings.Contains(l, `"GET /index.php?ms=`):
			t.Errorf("access log line %q is no request of the test", l)
		}
	}
	if ours > 0 || len(lines) != requests+1 {
		t.Errorf("r1's access log: %d lines, %d of them fpmux's own pings and status reads; want %d, none:\n%s",
			len(lines), ours, requests+1, strings.Join(lines, "\n"))
	}
	s.waitFor("the slow request in r1's slowlog", 10*time.Second, func() bool {
		slow, err := os.ReadFile(filepath.Join(logs, "r1.slow.log"))
		if err != nil {
			entries, _ := os.ReadDir(logs)
			t.Logf("slowlog: %v (%v in %s)", err, entries, logs)
		}
		return strings.Contains(string(slow), "index.php")
	})
}

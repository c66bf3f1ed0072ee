package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkFixture writes testdata/check/<name> into a fresh dir with @DIR@
// replaced by that dir and @PHPFPM@ by phpFPM, and lays out the dir the
// fixtures expect: app/releases, run, a regular file a-file, and not-php
// (a program that runs but is not php-fpm).
func checkFixture(t *testing.T, name, phpFPM string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"app/releases", "run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "a-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not-php"), []byte("#!/bin/sh\necho 'Python 3.11.2'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata/check", name))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@DIR@", dir, "@PHPFPM@", phpFPM, "@TESTDATA@", testdata(t)).Replace(string(data))
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// testdata is the repository's testdata directory, absolute.
func testdata(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	phpFPM, _ := needTools(t)
	for _, tc := range []struct {
		fixture string
		code    int
		stdout  []string // substrings, @DIR@ replaced
		stderr  []string // one per problem, in order, then the count
	}{
		{fixture: "good.yaml", code: 0, stdout: []string{"good.yaml: ok (PHP 8.", ", " + phpFPM + ")"}},
		{fixture: "bad-paths.yaml", code: 1, stderr: []string{
			"docroot (line 5): @DIR@/no-such-dir/current: its directory stat @DIR@/no-such-dir: no such file or directory: create it",
			"allowed_roots[1] (line 8): stat @DIR@/missing-releases: no such file or directory: create it, or no release root can lie under it",
			"allowed_roots[2] (line 9): @DIR@/a-file is not a directory",
			"state_dir (line 4): @DIR@/a-file is not a directory",
			"symlink (line 10): @DIR@/no-such-dir/link: fpmux makes the link in its directory: stat @DIR@/no-such-dir: no such file or directory",
			"php_fpm.binary (line 12): php_fpm.binary @DIR@/no-php-fpm: exec: \"@DIR@/no-php-fpm\": stat @DIR@/no-php-fpm: no such file or directory",
			"bad-paths.yaml: 6 problem(s)",
		}},
		{fixture: "bad-config.yaml", code: 1, stderr: []string{
			"drain_timeout (line 3):",
			`keep_previous (line 4): want an integer, got a single value ("two")`,
			"lisen (line 5): unknown key",
			"bad-config.yaml: 3 problem(s)",
		}},
		{fixture: "bad-accounts.yaml", code: 1, stderr: []string{
			`admin_owner (line 6): "no-such-user-fpmux" does not exist on this system: create it, or give a numeric id`,
			`admin_group (line 7): "no-such-group-fpmux" does not exist on this system: create it, or give a numeric id`,
			"bad-accounts.yaml: 2 problem(s)",
		}},
		{fixture: "bad-rules.yaml", code: 1, stderr: []string{
			"php_fpm.pool.chdir (line 8): fpmux sets this pool directive itself; remove it: fpmux sets it to each release's root",
			"php_fpm.global.pid (line 10): fpmux sets this [global] directive itself; remove it: fpmux runs php-fpm in the foreground",
			"bad-rules.yaml: 2 problem(s)",
		}},
		{fixture: "bad-fpm-t.yaml", code: 1, stderr: []string{
			`php_fpm: ` + phpFPM + ` -t refuses the pool config of a sample release: ERROR: unknown entry 'no.such.directive' (at no.such.directive = "1")`,
			"bad-fpm-t.yaml: 1 problem(s)",
		}},
		{fixture: "good-pool-file.yaml", code: 0, stdout: []string{"good-pool-file.yaml: ok (PHP 8."}, stderr: []string{
			"warning: php_fpm.pool_file (line 7): @TESTDATA@/phpfpm/debian/www.conf:41: listen = /run/php/php8.2-fpm.sock dropped: fpmux's listen takes its place",
			"www.conf:53: listen.owner = www-data dropped", "www.conf:54: listen.group = www-data dropped",
		}},
		{fixture: "bad-php.yaml", code: 1, stderr: []string{
			`php_fpm.binary (line 6): run @DIR@/not-php -v: not php-fpm's version line: "Python 3.11.2"`,
			"bad-php.yaml: 1 problem(s)",
		}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			dir, path := checkFixture(t, tc.fixture, phpFPM)
			var stdout, stderr bytes.Buffer
			code := run([]string{"check", "-config", path}, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, want := range tc.stdout {
				if want = strings.ReplaceAll(want, "@DIR@", dir); !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, &stdout)
				}
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if len(tc.stderr) == 0 {
				lines = nil
				if stderr.Len() > 0 {
					t.Errorf("stderr: %s", &stderr)
				}
			}
			if len(lines) != len(tc.stderr) {
				t.Fatalf("%d stderr lines, want %d:\n%s", len(lines), len(tc.stderr), &stderr)
			}
			for i, want := range tc.stderr {
				want = strings.NewReplacer("@DIR@", dir, "@TESTDATA@", testdata(t)).Replace(want)
				if !strings.HasPrefix(lines[i], "fpmux check: ") || !strings.Contains(lines[i], want) {
					t.Errorf("stderr line %d = %q, want it to hold %q", i+1, lines[i], want)
				}
			}
		})
	}
}

// TestCheckDefaults: with no -config, check tests the embedded defaults, as
// serve would run them; their paths are a Debian box's, so only the shape of
// the answer is certain here.
func TestCheckDefaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"check"}, &stdout, &stderr)
	switch code {
	case 0:
		if !strings.HasPrefix(stdout.String(), "fpmux check: embedded defaults: ok (PHP ") {
			t.Errorf("stdout: %q", &stdout)
		}
	case 1:
		if !strings.Contains(stderr.String(), "fpmux check: embedded defaults: ") || strings.Contains(stderr.String(), "(line ") {
			t.Errorf("stderr: %q", &stderr)
		}
	default:
		t.Errorf("exit %d; stderr: %s", code, &stderr)
	}
}

func TestCheckUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"check", "extra"}, 2, `fpmux check: unexpected argument "extra"`},
		{[]string{"check", "-nope"}, 2, "usage: fpmux check [-config FILE]"},
		{[]string{"check", "-h"}, 0, "usage: fpmux check [-config FILE]"},
		{[]string{"version", "-h"}, 0, "usage: fpmux version [-config FILE]"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, &stderr, tc.code, tc.stderr)
		}
	}
}

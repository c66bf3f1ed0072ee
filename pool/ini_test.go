package pool

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fixtures = "../testdata/phpfpm"

func noEnv(string) string { return "" }

// TestLoadSettingsRealFiles reads the pool files Debian and the php:fpm
// Docker image ship, as they are, and checks each directive's fate: kept
// (with its value), dropped with a warning naming what takes its place, or
// accepted silently because fpmux writes the same.
func TestLoadSettingsRealFiles(t *testing.T) {
	cases := []struct {
		name       string
		src        Source
		directives map[string]string
		global     map[string]string
		warnings   []string // one substring per warning, in order
	}{{
		name: "debian www.conf",
		src:  Source{PoolFile: fixtures + "/debian/www.conf"},
		directives: map[string]string{
			"user": "www-data", "group": "www-data",
			"pm": "dynamic", "pm.max_children": "5", "pm.start_servers": "2",
			"pm.min_spare_servers": "1", "pm.max_spare_servers": "3",
		},
		global: map[string]string{},
		warnings: []string{
			"www.conf:41: listen = /run/php/php8.2-fpm.sock dropped: fpmux's listen takes its place",
			"www.conf:53: listen.owner = www-data dropped: fpmux's listen",
			"www.conf:54: listen.group = www-data dropped: fpmux's listen",
		},
	}, {
		name:       "debian php-fpm.conf",
		src:        Source{GlobalFile: fixtures + "/debian/php-fpm.conf"},
		directives: map[string]string{},
		global:     map[string]string{},
		warnings: []string{
			"php-fpm.conf:19: pid = /run/php/php8.2-fpm.pid dropped: fpmux runs php-fpm in the foreground",
			"php-fpm.conf:26: error_log = /var/log/php8.2-fpm.log dropped: php-fpm's log goes to fpmux's log",
			"pool sections [www] left out",
		},
	}, {
		name: "docker php-fpm.d",
		src:  Source{PoolFile: fixtures + "/docker/*.conf"},
		directives: map[string]string{
			"access.log": "/proc/self/fd/2", "clear_env": "no",
		},
		global: map[string]string{"log_limit": "8192"},
		warnings: []string{
			"docker.conf:2: error_log = /proc/self/fd/2 dropped: php-fpm's log goes to fpmux's log",
			"zz-docker.conf:5: listen = 9000 dropped: fpmux's listen",
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.Getenv = noEnv
			st, err := LoadSettings(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.Directives, tc.directives) {
				t.Errorf("pool directives %v, want %v", st.Directives, tc.directives)
			}
			if !reflect.DeepEqual(st.Global, tc.global) {
				t.Errorf("global directives %v, want %v", st.Global, tc.global)
			}
			if len(st.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings:\n%s\nwant %d", strings.Join(st.Warnings, "\n"), len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.Contains(st.Warnings[i], w) {
					t.Errorf("warning %d %q, want it to hold %q", i, st.Warnings[i], w)
				}
			}
			// What fpmux makes of the files, php-fpm accepts.
			phpFPMTest(t, renderFor(t, Options{Directives: st.Directives, Global: st.Global, Bare: st.Bare}))
		})
	}
}

// TestReadINISyntax: php-fpm's ini syntax as php-fpm reads it, each case
// checked against php-fpm -tt where php-fpm has a reading.
func TestReadINISyntax(t *testing.T) {
	env := func(k string) string { return map[string]string{"APP": "/srv/app", "N": "7"}[k] }
	cases := []struct {
		name, line string
		value      string
		bare       bool
	}{
		{"bare", "pm = dynamic", "dynamic", true},
		{"bare with comment", "pm.max_children = 5 ; five", "5", true},
		{"bare expression", "php_admin_value[error_reporting] = E_ALL & ~E_DEPRECATED", "E_ALL & ~E_DEPRECATED", true},
		{"double quoted escapes", `access.format = "%R \"%m %r\" %{milli}d \\ \$x"`, `%R "%m %r" %{milli}d \ $x`, false},
		{"double quoted comment char", `env[A] = "a;b" ; c`, "a;b", false},
		{"single quoted raw", `env[B] = 'a\"$x'`, `a\"$x`, false},
		{"env in quotes", `env[C] = "${APP}/x"`, "/srv/app/x", false},
		{"env bare", `pm.max_children = ${N}`, "7", false},
		{"pool name", `slowlog = /var/log/$pool.slow.log`, "/var/log/$pool.slow.log", false},
		{"concatenated", `env[D] = "a" 'b' c`, "ab c", false},
		{"bare inner blanks", `env[F] = a  b   ; x`, "a  b", true},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".conf")
			if err := os.WriteFile(path, []byte("[www]\n"+tc.line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			es, err := readINI(path, env)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 1 || es[0].Value != tc.value || es[0].Bare != tc.bare || es[0].Line != 2 || es[0].Section != "www" {
				t.Fatalf("read %+v, want one entry on line 2 = %q (bare %v)", es, tc.value, tc.bare)
			}
		})
	}
}

func TestReadINIRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self := filepath.Join(dir, "self.conf")
	write("self.conf", "[www]\ninclude = "+self+"\n")
	cases := []struct{ name, path, want string }{
		{"unterminated quote", write("q.conf", "[www]\nenv[A] = \"abc\n"), `q.conf:2: env[A]: a double-quoted value must end on its line`},
		{"outside a section", write("o.conf", "pm = static\n"), "o.conf:1: pm: outside any section"},
		{"no equals", write("e.conf", "[www]\npm static\n"), `e.conf:2: "pm static": want name = value`},
		{"relative include", write("r.conf", "[global]\ninclude=etc/php-fpm.d/*.conf\n"), "r.conf:2: include \"etc/php-fpm.d/*.conf\": a relative include"},
		{"include matches nothing", write("n.conf", "[global]\ninclude="+dir+"/none/*.conf\n"), "no file matches"},
		{"include loop", self, "nested more than 10 deep"},
		{"missing file", filepath.Join(dir, "missing.conf"), "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readINI(tc.path, noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("readINI: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestLoadSettingsMapsOverFiles: fpmux's maps win over the files, except
// fpmux's own defaults, which the pool file's values win over; two pools
// in one pool file are refused.
func TestLoadSettingsMapsOverFiles(t *testing.T) {
	st, err := LoadSettings(Source{
		PoolFile:     fixtures + "/debian/www.conf",
		Pool:         map[string]string{"pm.max_children": "5", "pm.start_servers": "2", "user": "app", "catch_workers_output": "yes"},
		PoolDefaults: map[string]bool{"pm.max_children": true, "pm.start_servers": true},
		Global:       map[string]string{"log_limit": "4096"},
		Getenv:       noEnv,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Directives["user"] != "app" || st.Global["log_limit"] != "4096" {
		t.Errorf("maps did not win: user %q, log_limit %q", st.Directives["user"], st.Global["log_limit"])
	}
	if _, ok := st.Directives["catch_workers_output"]; ok {
		t.Errorf("catch_workers_output kept; fpmux writes it itself")
	}

	dir := t.TempDir()
	mixed := filepath.Join(dir, "mixed.conf")
	if err := os.WriteFile(mixed, []byte("[www]\nPM = static\nEnv[APP_ENV] = prod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = LoadSettings(Source{PoolFile: mixed, Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"pm": "static", "env[APP_ENV]": "prod"}; !reflect.DeepEqual(st.Directives, want) {
		t.Errorf("directives %v, want %v: names in lower case, what is in brackets as written", st.Directives, want)
	}
	if _, ok := st.Directives["catch_workers_output"]; ok {
		t.Errorf("catch_workers_output kept; fpmux writes it itself")
	}

	two := filepath.Join(dir, "two.conf")
	if err := os.WriteFile(two, []byte("[a]\npm = static\n[b]\npm = static\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSettings(Source{PoolFile: two, Pool: map[string]string{"listen": "/x"}, Getenv: noEnv})
	for _, want := range []string{"php_fpm.pool_file: holds pools [a], [b]", "php_fpm.pool.listen: fpmux sets this pool directive itself; remove it: fpmux's listen"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadSettings: %v, want an error with %q", err, want)
		}
	}
}

package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/config"
)

// TestPHPFPMSettingsRules: php-fpm's rules over the configuration's maps,
// each problem naming its key (these were config.Validate's cases, now
// the pool package's rules, the ones a deploy applies).
func TestPHPFPMSettingsRules(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *config.Config)
		want   []string // problems, in order; nil: accepted
	}{
		{"defaults", func(c *config.Config) {}, nil},
		{"ini key", func(c *config.Config) { c.PHPFPM.Ini["a=b"] = "1" }, []string{"php_fpm.ini.a=b: bad php.ini setting name"}},
		{"ini value with DEL", func(c *config.Config) { c.PHPFPM.Ini["x"] = "a\x7fb" }, []string{`php_fpm.ini.x: value must not contain '\x7f'`}},
		{"pool keys that are fine", func(c *config.Config) {
			c.PHPFPM.Pool["env[APP_ROOT]"] = "{release_root}"
			c.PHPFPM.Pool["php_value[memory_limit]"] = "64M"
			c.PHPFPM.Pool["listen.backlog"] = "511"
			c.PHPFPM.Pool["request_terminate_timeout"] = "30s"
			c.PHPFPM.Pool["access.format"] = `%R - %u %t "%m %r%Q%q" %s %f %{milli}d %{kilo}M %C%%`
			c.PHPFPM.Pool["slowlog"] = "/var/log/php/$pool.slow.log"
			c.PHPFPM.Pool["catch_workers_output"] = "yes"
			c.PHPFPM.Pool["decorate_workers_output"] = "no"
		}, nil},
		{"pool key shape", func(c *config.Config) { c.PHPFPM.Pool["Env[x y]"] = "1" },
			[]string{"php_fpm.pool.Env[x y]: bad pool directive name"}},
		{"pool key with two closing brackets", func(c *config.Config) { c.PHPFPM.Pool["env[A]]"] = "1" },
			[]string{"php_fpm.pool.env[A]]: bad pool directive name"}},
		{"reserved acl", func(c *config.Config) { c.PHPFPM.Pool["listen.acl_users"] = "nginx" },
			[]string{"php_fpm.pool.listen.acl_users: fpmux sets this pool directive itself; remove it: fpmux's listen takes its place"}},
		{"reserved chdir", func(c *config.Config) { c.PHPFPM.Pool["chdir"] = "/" },
			[]string{"php_fpm.pool.chdir: fpmux sets this pool directive itself; remove it: fpmux sets it to each release's root"}},
		{"catch_workers_output off", func(c *config.Config) { c.PHPFPM.Pool["catch_workers_output"] = "no" },
			[]string{"php_fpm.pool.catch_workers_output: fpmux sets this pool directive itself"}},
		{"global owned", func(c *config.Config) { c.PHPFPM.Global = map[string]string{"pid": "/run/x.pid", "log_limit": "8192"} },
			[]string{"php_fpm.global.pid: fpmux sets this [global] directive itself"}},
		{"both placeholders", func(c *config.Config) { c.PHPFPM.Ini["x"] = "{release_root}/{release_id}" }, nil},
		{"empty braces are not a placeholder", func(c *config.Config) { c.PHPFPM.Ini["x"] = "{}" }, nil},
		{"wrong-case placeholder", func(c *config.Config) { c.PHPFPM.Ini["x"] = "{Release_Root}" },
			[]string{"php_fpm.ini.x: unknown placeholder {Release_Root}"}},
		{"max_children zero", func(c *config.Config) { c.PHPFPM.Pool["pm.max_children"] = "0" },
			[]string{`php_fpm.pool.pm.max_children: "0": want a positive integer`}},
		{"spare above max", func(c *config.Config) { c.PHPFPM.Pool["pm.max_children"] = "2" },
			[]string{"php_fpm.pool.pm.max_spare_servers: pm.max_spare_servers (3) is greater than pm.max_children (2)"}},
		{"spare above max is fine when static", func(c *config.Config) {
			c.PHPFPM.Pool["pm"] = "static"
			c.PHPFPM.Pool["pm.max_children"] = "2"
		}, nil},
		{"start outside spares", func(c *config.Config) { c.PHPFPM.Pool["pm.start_servers"] = "4" },
			[]string{"php_fpm.pool.pm.start_servers: pm.start_servers (4) is greater than pm.max_spare_servers (3)"}},
		{"spares crossed", func(c *config.Config) {
			c.PHPFPM.Pool["pm.min_spare_servers"] = "3"
			c.PHPFPM.Pool["pm.max_spare_servers"] = "2"
		},
			[]string{
				"php_fpm.pool.pm.max_spare_servers: pm.max_spare_servers (2) is less than pm.min_spare_servers (3)",
				"php_fpm.pool.pm.start_servers: pm.start_servers (2) is less than pm.min_spare_servers (3)",
			}},
		{"spare not a number", func(c *config.Config) { c.PHPFPM.Pool["pm.min_spare_servers"] = "-1" },
			[]string{`php_fpm.pool.pm.min_spare_servers: "-1": want a non-negative integer`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.change(c)
			_, err := PHPFPMSettings(c)
			checkProblems(t, err, "", tt.want)
		})
	}
}

// checkProblems checks that err holds the problems want, one per line in
// order, each after prefix.
func checkProblems(t *testing.T, err error, prefix string, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("accepted, want %q", want)
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i := range min(len(got), len(want)) {
		if !strings.HasPrefix(got[i], prefix+want[i]) {
			t.Errorf("problem %d = %q\nwant it to start %q", i, got[i], prefix+want[i])
		}
	}
}

// TestPHPFPMSettingsFiles: the php-fpm rules over config files, each
// problem with its key and line; a pool default that conflicts with a key
// the file set is reported at the key the file set.
func TestPHPFPMSettingsFiles(t *testing.T) {
	dir := t.TempDir()
	conflict := filepath.Join(dir, "conflict.yaml")
	if err := os.WriteFile(conflict, []byte("php_fpm:\n  pool:\n    pm.max_children: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want []string
	}{
		{"../config/testdata/bad-reserved.yaml", []string{
			"php_fpm.pool.listen (line 3): fpmux sets this pool directive itself",
			"php_fpm.pool.listen.mode (line 4): fpmux sets",
			"php_fpm.pool.ping.path (line 5): fpmux sets",
			"php_fpm.pool.pm.status_path (line 6): fpmux sets",
			"php_fpm.pool.daemonize (line 7): fpmux sets this pool directive itself",
			"php_fpm.pool.include (line 8): fpmux sets",
		}},
		{"../config/testdata/bad-injection.yaml", []string{
			`php_fpm.ini.memory_limit (line 3): value must not contain '\n'`,
			`php_fpm.pool.env[PATH] (line 7): value must not contain '\n'`,
			`php_fpm.pool.user (line 8): value must not contain '\a'`,
		}},
		{"../config/testdata/bad-placeholder.yaml", []string{
			"php_fpm.ini.include_path (line 3): unknown placeholder {releases_root}",
			"php_fpm.pool.env[APP_ROOT] (line 5): unknown placeholder {root}",
		}},
		{conflict, []string{"php_fpm.pool.pm.max_children (line 3): pm.max_spare_servers (3) is greater than pm.max_children (2)"}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			c, err := config.Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = PHPFPMSettings(c)
			checkProblems(t, err, "", tt.want)
		})
	}
}

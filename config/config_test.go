package config

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// withoutLines returns a copy of c without its line index, for comparing
// a loaded Config with one built in the test.
func withoutLines(c *Config) Config {
	cc := *c
	cc.lines = nil
	return cc
}

func TestDefault(t *testing.T) {
	want := Config{
		Listen:         "127.0.0.1:9700",
		Admin:          "unix:/run/fpmux/admin.sock",
		Metrics:        "127.0.0.1:9701",
		StateDir:       "/var/lib/fpmux",
		Docroot:        "/var/www/app/current",
		AllowedRoots:   []string{"/var/www/app/releases"},
		DrainTimeout:   Duration(60 * time.Second),
		KeepFor:        Duration(15 * time.Minute),
		Warmup:         []string{},
		Health:         []HealthCheck{},
		WarmupFailures: "fail",
		Limits: Limits{
			MaxConnections: 4096,
			MaxParamsBytes: 1 << 20,
			ReadTimeout:    Duration(60 * time.Second),
			IdleTimeout:    Duration(5 * time.Minute),
			WriteTimeout:   Duration(60 * time.Second),
			MaxInFlight:    512,
		},
		PHPFPM: PHPFPM{
			Binary:             "",
			StartTimeout:       Duration(30 * time.Second),
			StopTimeout:        Duration(10 * time.Second),
			WedgeCheckInterval: Duration(5 * time.Second),
			WedgeMisses:        3,
			Ini:                map[string]string{"opcache.enable": "1", "opcache.validate_timestamps": "0"},
			Pool: map[string]string{
				"pm": "dynamic", "pm.max_children": "5", "pm.start_servers": "2",
				"pm.min_spare_servers": "1", "pm.max_spare_servers": "3",
			},
			Global: map[string]string{},
		},
	}
	c := Default()
	if got := withoutLines(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v\nwant %+v", got, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	if c.lines != nil {
		t.Errorf("Default() has lines %v; lines are for the operator's file only", c.lines)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a := Default()
	a.PHPFPM.Ini["memory_limit"] = "1G"
	a.PHPFPM.Pool["pm"] = "static"
	a.AllowedRoots[0] = "/elsewhere"
	b := Default()
	if _, ok := b.PHPFPM.Ini["memory_limit"]; ok || b.PHPFPM.Pool["pm"] != "dynamic" || b.AllowedRoots[0] != "/var/www/app/releases" {
		t.Errorf("changing one Default() changed the next: %+v", b)
	}
}

func TestLoadGood(t *testing.T) {
	full := Default()
	full.Listen = "unix:/run/fpmux/fpmux.sock"
	full.Admin = "127.0.0.1:9800"
	full.Metrics = "[::1]:9801"
	full.StateDir = "/srv/fpmux/state"
	full.Docroot = "/srv/app/current"
	full.AllowedRoots = []string{"/srv/app/releases", "/srv/app/hotfix"}
	full.DrainTimeout = Duration(90 * time.Second)
	full.PHPFPM.Binary = "/usr/sbin/php-fpm8.2"
	full.PHPFPM.StartTimeout = Duration(45 * time.Second)
	full.PHPFPM.StopTimeout = Duration(5 * time.Second)
	maps.Copy(full.PHPFPM.Ini, map[string]string{
		"memory_limit": "256M", "include_path": ".:{release_root}/lib", "opcache.enable": "1",
	})
	maps.Copy(full.PHPFPM.Pool, map[string]string{
		"pm": "static", "pm.max_children": "16", "user": "www-data", "group": "www-data",
		"env[APP_ROOT]": "{release_root}", "env[APP_RELEASE]": "{release_id}",
		"php_value[error_reporting]": "E_ALL & ~E_DEPRECATED",
	})

	minimal := Default()
	minimal.Listen = "unix:/run/fpmux/fpmux.sock"

	// A map in the file merges over the defaults; a list replaces.
	merged := Default()
	merged.AllowedRoots = []string{"/srv/releases"}
	merged.PHPFPM.Ini["memory_limit"] = "512M"
	merged.PHPFPM.Pool["pm.max_children"] = "8"
	merged.PHPFPM.Pool["pm.max_spare_servers"] = "4"

	// Null empties a scalar, keeps a map's defaults, removes a map key.
	nulls := Default()
	nulls.Metrics = ""
	delete(nulls.PHPFPM.Pool, "pm.start_servers")

	// A guard mapping decodes over DefaultGuard; a null guard is off.
	guarded := Default()
	guarded.Guard = &Guard{Window: Duration(2 * time.Minute), MaxErrorRatio: 0.1, MinRequests: 20, MaxFatal: 0}
	guardDefaults := Default()
	g := DefaultGuard()
	guardDefaults.Guard = &g
	health := Default()
	health.WarmupFailures = "warn"
	health.Health = []HealthCheck{
		{Path: "/health", Status: 200, Timeout: Duration(5 * time.Second)},
		{Path: "/index.php?check=db", Status: 204, Body: "database ok", Timeout: Duration(2 * time.Second)},
	}

	tests := []struct {
		path string
		want *Config
	}{
		{"", Default()},
		{"testdata/empty.yaml", Default()},
		{"testdata/good-full.yaml", full},
		{"testdata/good-minimal.yaml", minimal},
		{"testdata/merge.yaml", merged},
		{"testdata/nulls.yaml", nulls},
		{"examples/fpmux.yaml", Default()},
		{"testdata/good-guard.yaml", guarded},
		{"testdata/good-guard-defaults.yaml", guardDefaults},
		{"testdata/good-guard-null.yaml", Default()},
		{"testdata/good-health.yaml", health},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c, err := Load(tt.path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got, want := withoutLines(c), withoutLines(tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("Load(%q) =\n%+v\nwant\n%+v", tt.path, got, want)
			}
		})
	}
}

func TestLoadLines(t *testing.T) {
	c, err := Load("testdata/good-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		line int
	}{
		{"listen", 2},
		{"docroot", 6},
		{"allowed_roots", 7},
		{"allowed_roots[0]", 8},
		{"allowed_roots[1]", 9},
		{"drain_timeout", 10},
		{"php_fpm", 11},
		{"php_fpm.stop_timeout", 14},
		{"php_fpm.ini.opcache.enable", 18},
		{"php_fpm.pool.pm.max_children", 21},
		{"php_fpm.pool.env[APP_ROOT]", 24},
		{"php_fpm.pool.pm.start_servers", 0}, // a default, not in the file
	}
	for _, tt := range tests {
		if got := c.lines[tt.key]; got != tt.line {
			t.Errorf("line of %s = %d, want %d", tt.key, got, tt.line)
		}
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		path string
		want []string // one per problem, in order; each must name key and line
	}{
		{"testdata/bad-unknown-top.yaml", []string{
			"lisen (line 3): unknown key (known keys here: admin, admin_group, admin_owner, admin_token, allowed_roots, docroot, drain_timeout, fleet, guard, health, keep_for,",
		}},
		{"testdata/bad-unknown-nested.yaml", []string{
			"php_fpm.start_timout (line 3): unknown key (known keys here: binary, global, global_file, ini, pool, pool_file, start_timeout, stop_timeout, wedge_check_interval, wedge_misses)",
		}},
		{"testdata/bad-duration.yaml", []string{
			`drain_timeout (line 2): cannot parse "60" as a duration`,
			`php_fpm.stop_timeout (line 4): cannot parse "soon" as a duration`,
		}},
		{"testdata/bad-many.yaml", []string{
			`listen (line 1): parse address "127.0.0.1"`,
			"admin (line 2): parse address \"unix:run/admin.sock\": unix socket path must be absolute",
			`state_dir (line 4): "var/lib/fpmux" is not an absolute path`,
			`docroot (line 5): must not be "/"`,
			"allowed_roots (line 6): must list at least one",
			"drain_timeout (line 7): must be positive",
			"php_fpm.start_timeout (line 9): must be positive",
			"limits.backend_timeout (line 17): must be 0 (off) or positive",
		}},
		{"testdata/bad-relative.yaml", []string{
			`state_dir (line 1): "state" is not an absolute path`,
			`docroot (line 2): "./current" is not an absolute path`,
			`allowed_roots[1] (line 5): "releases" is not an absolute path`,
			`php_fpm.binary (line 7): "bin/php-fpm" is a relative path`,
		}},
		{"testdata/bad-addr.yaml", []string{
			`listen (line 1): parse address "localhost": want unix:/path or host:port`,
			`admin (line 2): parse address "unix:admin.sock": unix socket path must be absolute`,
			`metrics (line 3): parse address "9701"`,
		}},
		{"testdata/bad-clash.yaml", []string{
			"metrics (line 2): same address as listen",
		}},
		{"testdata/bad-types.yaml", []string{
			"listen (line 2): want a string, got a list",
			"allowed_roots (line 3): want a list of strings, got a single value",
			"php_fpm.ini.opcache (line 7): want a string, got a mapping",
		}},
		{"testdata/bad-guard.yaml", []string{
			"guard.window (line 2): must be positive",
			"guard.max_error_ratio (line 3): is 1.5: want a share from 0 to 1",
			"guard.min_requests (line 4): is 0: want at least 1",
			"guard.max_fatal (line 5): is -1: want at least 0",
			"guard.max_errors (line 6): unknown key (known keys here: max_error_ratio, max_fatal, min_requests, window)",
		}},
		{"testdata/bad-guard-types.yaml", []string{
			`guard.window (line 2): cannot parse "soon" as a duration`,
			"guard.max_error_ratio (line 3): want a number, got a single value",
			"guard.min_requests (line 4): want an integer, got a list",
		}},
		{"testdata/bad-health.yaml", []string{
			`health[0].path (line 2): health check path "health" must start with '/'`,
			"health[1].status (line 4): is 0: want an HTTP status from 100 to 599",
			"health[1].timeout (line 5): must be positive, like 5s (got 0s)",
			"health[2].status (line 7): is 700: want an HTTP status from 100 to 599",
			"health[3].path (line 9): required: the request path to check",
			"health[4].stauts (line 11): unknown key (known keys here: body, path, status, timeout)",
			"health[5].status (line 13): want an integer, got a single value",
			"health[5].status (line 13): is 0", // the value yaml.v3 could not decode left it 0
			"health[6] (line 14): want a check like {path: /health, status: 200}, got a single value",
			`warmup_failures (line 15): "maybe": want fail`,
		}},
		{"testdata/bad-ints.yaml", []string{
			`keep_previous (line 1): want an integer, got a single value ("two")`,
			`limits.max_connections (line 3): want an integer, got a single value ("many")`,
			"php_fpm.wedge_misses (line 5): want an integer, got a list",
		}},
		{"testdata/bad-syntax.yaml", []string{
			"yaml: line 2: mapping values are not allowed",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c, err := Load(tt.path)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want an error", tt.path, c)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			prefix := "load config " + tt.path + ": "
			for i, line := range got {
				if !strings.HasPrefix(line, prefix) {
					t.Errorf("problem %d does not name the file: %q", i, line)
				}
				if i < len(tt.want) && !strings.HasPrefix(strings.TrimPrefix(line, prefix), tt.want[i]) {
					t.Errorf("problem %d = %q\nwant it to start %q", i, line, prefix+tt.want[i])
				}
			}
		})
	}
}

func TestLoadFileProblems(t *testing.T) {
	dir := t.TempDir()
	multi := filepath.Join(dir, "multi.yaml")
	if err := os.WriteFile(multi, []byte("listen: 127.0.0.1:9700\n---\nadmin: 127.0.0.1:9800\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "load config "+missing+": ") {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
	_, err = Load(multi)
	if err == nil || err.Error() != "load config "+multi+": the file holds more than one YAML document" {
		t.Errorf("Load(multi) = %v, want the more-than-one-document error", err)
	}
}

func TestValidate(t *testing.T) {
	// Without a file there are no lines: each problem is "key: why".
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"no listen", func(c *Config) { c.Listen = "" }, []string{"listen: required"}},
		{"no admin", func(c *Config) { c.Admin = "" }, []string{"admin: required"}},
		{"no metrics is fine", func(c *Config) { c.Metrics = "" }, nil},
		{"listen is admin", func(c *Config) { c.Admin = "unix:/run/fpmux//x/../admin.sock"; c.Listen = c.Admin },
			[]string{"admin: same address as listen"}},
		{"long socket path", func(c *Config) { c.Listen = "unix:/" + strings.Repeat("s", 120) },
			[]string{"listen: unix socket path is 121 bytes long, the limit is 107"}},
		{"no state_dir", func(c *Config) { c.StateDir = "" }, []string{"state_dir: required: want an absolute path"}},
		{"docroot slashes", func(c *Config) { c.Docroot = "//" }, []string{`docroot: must not be "/"`}},
		{"no roots", func(c *Config) { c.AllowedRoots = nil }, []string{"allowed_roots: must list at least one"}},
		{"stop timeout", func(c *Config) { c.PHPFPM.StopTimeout = 0 }, []string{"php_fpm.stop_timeout: must be positive"}},
		{"wedge check interval", func(c *Config) { c.PHPFPM.WedgeCheckInterval = 0 }, []string{"php_fpm.wedge_check_interval: must be positive"}},
		{"no wedge check is fine", func(c *Config) { c.PHPFPM.WedgeMisses = 0 }, nil},
		{"wedge misses", func(c *Config) { c.PHPFPM.WedgeMisses = -1 }, []string{"php_fpm.wedge_misses: is -1: want 0 (no wedge check) to 100"}},
		{"admin on all interfaces", func(c *Config) { c.Admin = ":9702" },
			[]string{"admin: :9702 is reachable from other hosts"}},
		{"admin on a public address", func(c *Config) { c.Admin = "192.0.2.7:9702" },
			[]string{"admin: 192.0.2.7:9702 is reachable from other hosts"}},
		{"admin on loopback", func(c *Config) { c.Admin = "127.0.0.1:9702" }, nil},
		{"admin on v6 loopback", func(c *Config) { c.Admin = "[::1]:9702" }, nil},
		{"admin on localhost", func(c *Config) { c.Admin = "localhost:9702" }, nil},
		{"admin public with token", func(c *Config) { c.Admin = "0.0.0.0:9702"; c.AdminToken = strings.Repeat("k", 32) }, nil},
		{"short token", func(c *Config) { c.AdminToken = "hunter2" },
			[]string{"admin_token: is 7 characters long: want at least 16"}},
		{"token with a newline", func(c *Config) { c.AdminToken = strings.Repeat("k", 20) + "\nX-Injected: 1" },
			[]string{"admin_token: must be printable ASCII"}},
		{"owner and group", func(c *Config) { c.AdminOwner = "deploy"; c.AdminGroup = "33" }, nil},
		{"owner with a space", func(c *Config) { c.AdminOwner = "de ploy" },
			[]string{`admin_owner: "de ploy" is not a user or group name`}},
		{"no connections", func(c *Config) { c.Limits.MaxConnections = 0 },
			[]string{"limits.max_connections: is 0: want at least 1"}},
		{"tiny params", func(c *Config) { c.Limits.MaxParamsBytes = 100 },
			[]string{"limits.max_params_bytes: is 100: want at least 4096"}},
		{"no in-flight", func(c *Config) { c.Limits.MaxInFlight = -1 },
			[]string{"limits.max_in_flight: is -1: want at least 1"}},
		{"no read timeout", func(c *Config) { c.Limits.ReadTimeout = 0 },
			[]string{"limits.read_timeout: must be positive"}},
		{"warm-up paths", func(c *Config) { c.Warmup = []string{"/", "/index.php?page=home"} }, nil},
		{"relative warm-up path", func(c *Config) { c.Warmup = []string{"index.php"} },
			[]string{`warmup[0]: warm-up path "index.php" must start with '/'`}},
		{"warm-up path with a newline", func(c *Config) { c.Warmup = []string{"/a\nb"} },
			[]string{"warmup[0]: warm-up path"}},
		{"too many warm-up paths", func(c *Config) {
			c.Warmup = make([]string, 101)
			for i := range c.Warmup {
				c.Warmup[i] = "/"
			}
		},
			[]string{"warmup: lists 101 paths: at most 100"}},
		{"keep two", func(c *Config) { c.KeepPrevious = 2 }, nil},
		{"keep too many", func(c *Config) { c.KeepPrevious = 11 }, []string{"keep_previous: is 11: want 0 to 10"}},
		{"keep for nothing", func(c *Config) { c.KeepFor = 0 }, []string{"keep_for: must be positive"}},
		{"short preview token", func(c *Config) { c.PreviewToken = "abc" },
			[]string{"preview_token: is 3 characters long"}},
		{"symlink", func(c *Config) { c.Symlink = "/var/www/app/current" }, nil},
		{"relative symlink", func(c *Config) { c.Symlink = "current" }, []string{"symlink: "}},
		{"binary by name", func(c *Config) { c.PHPFPM.Binary = "php-fpm8.3" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() gave %d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to start %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestValidateCleansPaths(t *testing.T) {
	c := Default()
	c.StateDir = "/var/lib//fpmux/"
	c.Docroot = "/var/www/app/./current/"
	c.AllowedRoots = []string{"/a/b/../c/", "/d//e"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/fpmux" || c.Docroot != "/var/www/app/current" ||
		!reflect.DeepEqual(c.AllowedRoots, []string{"/a/c", "/d/e"}) {
		t.Errorf("not cleaned: state_dir %q docroot %q allowed_roots %q", c.StateDir, c.Docroot, c.AllowedRoots)
	}
}

package pool

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func goldenParams() confParams {
	return confParams{
		ID:          "r1",
		Root:        "/srv/app/releases/r1",
		Dir:         "/var/lib/fpmux/pools/r1",
		StopTimeout: 10 * time.Second,
		Pages: pagePaths{
			Ping:   "/fpmux-ping-00112233445566778899aabbccddeeff",
			Status: "/fpmux-status-ffeeddccbbaa99887766554433221100",
		},
		User:  "www-data",
		Group: "www-data",
		Directives: map[string]string{
			"pm":                        "dynamic",
			"pm.max_children":           "8",
			"env[APP_ROOT]":             "/srv/app/releases/r1",
			"php_value[memory_limit]":   "256M",
			"request_terminate_timeout": "60s",
		},
		Ini: map[string]string{
			"include_path":                ".:/srv/app/releases/r1/lib",
			"opcache.validate_timestamps": "0",
			"opcache.enable":              "1",
		},
	}
}

func TestRenderConfigGolden(t *testing.T) {
	got := renderConfig(goldenParams())
	golden := filepath.Join("testdata", "php-fpm.conf.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("generated config differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
	// php-fpm accepts it, with the root and pool directory made real.
	c := goldenParams()
	c.Root, c.Dir = t.TempDir(), t.TempDir()
	phpFPMTest(t, renderConfig(c))
}

func TestRenderConfigStopTimeoutRoundsUp(t *testing.T) {
	c := goldenParams()
	c.StopTimeout = 1500 * time.Millisecond
	if s := string(renderConfig(c)); !strings.Contains(s, `process_control_timeout = "2s"`) {
		t.Errorf("1.5s should round up to 2s:\n%s", s)
	}
	c.StopTimeout = 10 * time.Millisecond
	if s := string(renderConfig(c)); !strings.Contains(s, `process_control_timeout = "1s"`) {
		t.Errorf("10ms should become 1s:\n%s", s)
	}
}

func TestPMDefaults(t *testing.T) {
	cases := []struct {
		in   map[string]string
		want map[string]string
	}{
		{nil, map[string]string{"pm": "dynamic", "pm.max_children": "5", "pm.min_spare_servers": "1", "pm.max_spare_servers": "3"}},
		{map[string]string{"pm.max_children": "2"}, map[string]string{"pm": "dynamic", "pm.max_children": "2", "pm.min_spare_servers": "1", "pm.max_spare_servers": "2"}},
		{map[string]string{"pm.min_spare_servers": "4", "pm.max_children": "10"}, map[string]string{"pm": "dynamic", "pm.max_children": "10", "pm.min_spare_servers": "4", "pm.max_spare_servers": "4"}},
		{map[string]string{"pm": "static", "pm.max_children": "3"}, map[string]string{"pm": "static", "pm.max_children": "3"}},
		{map[string]string{"pm": "ondemand"}, map[string]string{"pm": "ondemand", "pm.max_children": "5"}},
	}
	for _, tc := range cases {
		if got := withPMDefaults(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("withPMDefaults(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCommandArgs(t *testing.T) {
	got := commandArgs("/d/php-fpm.conf", map[string]string{"b.x": "2", "a": ".:/lib"})
	want := []string{"--nodaemonize", "--force-stderr", "--fpm-config", "/d/php-fpm.conf",
		"-d", `a=".:/lib"`, "-d", `b.x="2"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("commandArgs = %q, want %q", got, want)
	}
}

func validOptions() Options {
	return Options{
		ID:         "r1",
		Root:       "/srv/app/releases/r1",
		Dir:        "/var/lib/fpmux/pools/r1",
		Ini:        map[string]string{"memory_limit": "128M"},
		Directives: map[string]string{"pm": "static", "pm.max_children": "4"},
	}
}

func TestValidateAcceptsValid(t *testing.T) {
	o := validOptions()
	if err := o.validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	if n := o.maxChildren(); n != 4 {
		t.Errorf("maxChildren = %d, want 4", n)
	}
	delete(o.Directives, "pm.max_children")
	if n := o.maxChildren(); n != 5 {
		t.Errorf("maxChildren without the directive = %d, want php-fpm's default 5", n)
	}
}

// TestValidateRefusesInjection lists attempts to break out of a quoted value,
// a section header or a key, or to take over a directive fpmux owns.
func TestValidateRefusesInjection(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(o *Options)
		field string // must be named in the error
	}{
		{"id with section break", func(o *Options) { o.ID = "x]\nlisten=/tmp/evil.sock\n[y" }, "ID"},
		{"id with bracket", func(o *Options) { o.ID = "x]" }, "ID"},
		{"id dot", func(o *Options) { o.ID = "." }, "ID"},
		{"id dotdot", func(o *Options) { o.ID = ".." }, "ID"},
		{"id global", func(o *Options) { o.ID = "Global" }, "ID"},
		{"id empty", func(o *Options) { o.ID = "" }, "ID"},
		{"id too long", func(o *Options) { o.ID = strings.Repeat("a", 65) }, "ID"},
		{"id with slash", func(o *Options) { o.ID = "a/b" }, "ID"},
		{"root with newline and a directive", func(o *Options) { o.Root = "/srv/app\"\nlisten = /tmp/x" }, "Root"},
		{"root with newline", func(o *Options) { o.Root = "/srv/a\nb" }, "Root"},
		{"root relative", func(o *Options) { o.Root = "srv/app" }, "Root"},
		{"root unclean", func(o *Options) { o.Root = "/srv/app/../etc" }, "Root"},
		{"root empty", func(o *Options) { o.Root = "" }, "Root"},
		{"dir relative", func(o *Options) { o.Dir = "pools/r1" }, "Dir"},
		{"dir too long for a socket", func(o *Options) { o.Dir = "/" + strings.Repeat("d", 100) }, "Dir"},
		{"directive value with newline", func(o *Options) { o.Directives["pm"] = "static\nlisten = /tmp/evil" }, "Directives"},
		{"directive value with dollar", func(o *Options) { o.Directives["env[X]"] = "${HOME}" }, "Directives"},
		{"directive value with NUL", func(o *Options) { o.Directives["env[X]"] = "a\x00b" }, "Directives"},
		{"directive value with CR", func(o *Options) { o.Directives["env[X]"] = "a\rb" }, "Directives"},
		{"directive key with newline", func(o *Options) { o.Directives["pm\nlisten"] = "x" }, "Directives"},
		{"directive key with equals", func(o *Options) { o.Directives["pm=static"] = "x" }, "Directives"},
		{"directive key with bracket break", func(o *Options) { o.Directives["php_value[a]b]"] = "x" }, "Directives"},
		{"directive key upper case", func(o *Options) { o.Directives["PM"] = "static" }, "Directives"},
		{"listen", func(o *Options) { o.Directives["listen"] = "/tmp/evil.sock" }, "Directives"},
		{"listen.owner", func(o *Options) { o.Directives["listen.owner"] = "nobody" }, "Directives"},
		{"listen.group", func(o *Options) { o.Directives["listen.group"] = "nogroup" }, "Directives"},
		{"listen.mode", func(o *Options) { o.Directives["listen.mode"] = "0666" }, "Directives"},
		{"listen.acl_users", func(o *Options) { o.Directives["listen.acl_users"] = "nobody" }, "Directives"},
		{"listen.acl_groups", func(o *Options) { o.Directives["listen.acl_groups"] = "nogroup" }, "Directives"},
		{"listen.allowed_clients", func(o *Options) { o.Directives["listen.allowed_clients"] = "0.0.0.0" }, "Directives"},
		{"ping.path", func(o *Options) { o.Directives["ping.path"] = "/p" }, "Directives"},
		{"ping.response", func(o *Options) { o.Directives["ping.response"] = "ok" }, "Directives"},
		{"pm.status_path", func(o *Options) { o.Directives["pm.status_path"] = "/s" }, "Directives"},
		{"pid", func(o *Options) { o.Directives["pid"] = "/tmp/x.pid" }, "Directives"},
		{"error_log", func(o *Options) { o.Directives["error_log"] = "/tmp/x.log" }, "Directives"},
		{"daemonize", func(o *Options) { o.Directives["daemonize"] = "yes" }, "Directives"},
		{"include", func(o *Options) { o.Directives["include"] = "/etc/php/*.conf" }, "Directives"},
		{"prefix", func(o *Options) { o.Directives["prefix"] = "/tmp" }, "Directives"},
		{"chdir", func(o *Options) { o.Directives["chdir"] = "/" }, "Directives"},
		{"env FPMUX_RELEASE", func(o *Options) { o.Directives["env[FPMUX_RELEASE]"] = "other" }, "Directives"},
		{"max_children not a number", func(o *Options) { o.Directives["pm.max_children"] = "many" }, "Directives"},
		{"ini key with equals", func(o *Options) { o.Ini["a=b"] = "x" }, "Ini"},
		{"ini key with space", func(o *Options) { o.Ini["a b"] = "x" }, "Ini"},
		{"ini key with bracket", func(o *Options) { o.Ini["a]"] = "x" }, "Ini"},
		{"ini value with newline", func(o *Options) { o.Ini["memory_limit"] = "1G\nauto_prepend_file=/tmp/x" }, "Ini"},
		{"negative StartTimeout", func(o *Options) { o.StartTimeout = -time.Second }, "StartTimeout"},
		{"negative StopTimeout", func(o *Options) { o.StopTimeout = -time.Second }, "StopTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.edit(&o)
			err := o.validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	o := validOptions()
	o.ID = ""
	o.Root = "rel"
	o.Directives["listen"] = "x"
	o.Ini["a b"] = "x"
	err := o.validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"ID", "Root", "Directives", "Ini"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestStartRefusesInvalidWithoutTouchingDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pool")
	o := validOptions()
	o.Dir = dir
	o.ID = "x]\nlisten=/tmp/evil"
	if _, err := Start(t.Context(), o); err == nil {
		t.Fatal("Start accepted an injected id")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir exists after a refused Start: %v", err)
	}
}

func TestCheckRoot(t *testing.T) {
	real := t.TempDir()
	real, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRoot(real); err != nil {
		t.Errorf("real directory refused: %v", err)
	}
	link := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := checkRoot(link); err == nil {
		t.Error("symlink accepted as Root")
	}
	file := filepath.Join(real, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkRoot(file); err == nil {
		t.Error("file accepted as Root")
	}
	if err := checkRoot(filepath.Join(real, "missing")); err == nil {
		t.Error("missing directory accepted as Root")
	}
}

func TestWorkerIdentity(t *testing.T) {
	if u, g := workerIdentity(1000, nil); u != "" || g != "" {
		t.Errorf("non-root: got %q/%q, want nothing", u, g)
	}
	if u, g := workerIdentity(0, map[string]string{"user": "app"}); u != "" || g != "" {
		t.Errorf("root with a user directive: got %q/%q, want nothing", u, g)
	}
	u, _ := workerIdentity(0, nil)
	if u != "www-data" && u != "nobody" {
		t.Errorf("root without user: got %q, want www-data or nobody", u)
	}
	if _, g := workerIdentity(0, map[string]string{"group": "app"}); g != "" {
		t.Errorf("root with a group directive: group %q written", g)
	}
}

// FuzzRenderConfig checks that whatever validate accepts renders to a config
// with exactly the expected sections and one key = "value" per line, so no
// value can open a section or add a directive.
func FuzzRenderConfig(f *testing.F) {
	f.Add("r1", "/srv/r1", "pm", "static", "memory_limit", "128M")
	f.Add("x]\nlisten=/tmp/e", "/srv/a\"b", "env[X]", "a\nb", "a=b", "${X}")
	f.Add("a", "/a", "php_value[x]", "v;w", "k", "v ] [global]")
	f.Add("q", `/srv/a"b\`, "env[X]", `x" listen = "/tmp/e`, "k", `\" -d x=$y`)
	f.Fuzz(func(t *testing.T, id, root, dkey, dval, ikey, ival string) {
		o := Options{
			ID: id, Root: root, Dir: "/run/fpmux/p",
			Directives: map[string]string{dkey: dval},
			Ini:        map[string]string{ikey: ival},
		}
		if o.validate() != nil {
			return
		}
		conf := string(renderConfig(confParams{
			ID: o.ID, Root: o.Root, Dir: o.Dir, StopTimeout: time.Second,
			Directives: o.Directives, Ini: o.Ini,
		}))
		sections := 0
		for _, line := range strings.Split(strings.TrimSuffix(conf, "\n"), "\n") {
			switch {
			case line == "", strings.HasPrefix(line, "; generated by fpmux"):
			case strings.HasPrefix(line, "["):
				sections++
				if line != "[global]" && line != "["+id+"]" {
					t.Fatalf("unexpected section %q", line)
				}
			default:
				k, v, ok := strings.Cut(line, " = ")
				if !ok || !directiveKeyRe.MatchString(k) && !strings.HasPrefix(k, "php_admin_value[") ||
					len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || !escaped(v[1:len(v)-1]) {
					t.Fatalf("line %q is not a single key = \"value\"", line)
				}
				if k == "listen" && v != `"/run/fpmux/p/fpm.sock"` {
					t.Fatalf("listen changed: %q", line)
				}
			}
		}
		if sections != 2 {
			t.Fatalf("%d sections, want 2:\n%s", sections, conf)
		}
		if n := strings.Count(conf, "\nlisten = "); n != 1 {
			t.Fatalf("%d listen lines", n)
		}
	})
}

// escaped reports whether every '"', '\' and '$' of s is escaped with a
// '\', so that s stands between double quotes as one php-fpm value.
func escaped(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 == len(s) || !strings.ContainsRune(`"\$`, rune(s[i+1])) {
				return false
			}
			i++
		case '"', '$':
			return false
		}
	}
	return true
}

func TestStartChildren(t *testing.T) {
	tests := []struct {
		directives map[string]string
		want       int
	}{
		{map[string]string{"pm": "static", "pm.max_children": "4"}, 4},
		{map[string]string{"pm": "dynamic", "pm.max_children": "5", "pm.start_servers": "2"}, 2},
		{map[string]string{"pm": "dynamic", "pm.max_children": "20", "pm.min_spare_servers": "2", "pm.max_spare_servers": "8"}, 5},
		{map[string]string{"pm.max_children": "10"}, 2}, // php-fpm's defaults: min 1, max 3
		{map[string]string{"pm": "ondemand", "pm.max_children": "8"}, 0},
	}
	for _, tt := range tests {
		o := Options{Directives: tt.directives}
		if got := o.startChildren(); got != tt.want {
			t.Errorf("startChildren(%v) = %d, want %d", tt.directives, got, tt.want)
		}
	}
}

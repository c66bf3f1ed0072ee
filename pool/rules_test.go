package pool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// phpFPMTest runs php-fpm -tt over a config the tests rendered and returns
// the values it read back ("access.format" → its value), failing the test
// when php-fpm refuses the config: every config the pool tests render is
// one php-fpm accepts.
func phpFPMTest(t *testing.T, conf []byte) map[string]string {
	t.Helper()
	bin := phpFPM(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "php-fpm.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-n", "-tt", "-y", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("php-fpm -t refuses the config (%v):\n%s\n--- config\n%s", err, out, conf)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		// "[01-Dec-2026 23:04:44] NOTICE: \taccess.format = ..."
		_, kv, ok := strings.Cut(l, "NOTICE: \t")
		if !ok {
			continue
		}
		if k, v, ok := strings.Cut(kv, " = "); ok {
			got[k] = v
		}
	}
	return got
}

// renderFor renders the config of a pool under a temp root, as Start would.
func renderFor(t *testing.T, o Options) []byte {
	t.Helper()
	if o.ID == "" {
		o.ID = "r1"
	}
	if o.Root == "" {
		o.Root = t.TempDir()
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	usr, grp := workerIdentity(os.Geteuid(), o.Directives)
	return renderConfig(confParams{
		ID: o.ID, Root: o.Root, Dir: o.Dir, StopTimeout: time.Second,
		Pages: pagePaths{Ping: pingPrefix + "-00112233445566778899aabbccddeeff", Status: statusPrefix + "-ffeeddccbbaa99887766554433221100"},
		User:  usr, Group: grp, Directives: o.Directives, Global: o.Global, Bare: o.Bare, Ini: o.Ini,
	})
}

// TestValuesReadBackAsWritten: any value php-fpm accepts can be written,
// quotes, backslashes and '$' included, and php-fpm reads back exactly the
// value, never a second directive.
func TestValuesReadBackAsWritten(t *testing.T) {
	cases := []struct{ key, value string }{
		{"access.format", `%R - %u %t "%m %r%Q%q" %s %f %{milli}d %{kilo}M %C%%`},
		{"env[QUOTE]", `a"b`},
		{"env[INJECT]", `x" listen = "/tmp/evil.sock`},
		{"env[SECTION]", `"] [evil`},
		{"env[BACKSLASH]", `C:\dir\`},
		{"env[DOLLAR]", `$HOME $ \$ {`},
		{"php_value[error_log]", `/tmp/a;b=c`},
		{"php_admin_value[date.timezone]", `'Europe/Paris'`},
	}
	d := map[string]string{"pm": "static", "pm.max_children": "1"}
	for _, c := range cases {
		d[c.key] = c.value
	}
	got := phpFPMTest(t, renderFor(t, Options{Directives: d}))
	for _, c := range cases {
		if got[c.key] != c.value {
			t.Errorf("%s written as %q, php-fpm read %q", c.key, c.value, got[c.key])
		}
	}
	if strings.Contains(got["listen"], "evil") {
		t.Errorf("a value set listen: %q", got["listen"])
	}
}

// TestDirectiveFates: each directive fpmux owns is refused with what takes
// its place, unless it holds what fpmux writes anyway.
func TestDirectiveFates(t *testing.T) {
	cases := []struct {
		key, value string
		global     bool
		want       string // "" accepted
	}{
		{"pm", "static", false, ""},
		{"listen", "/run/php/php8.2-fpm.sock", false, "fpmux's listen takes its place"},
		{"listen.owner", "www-data", false, "fpmux's listen takes its place"},
		{"LISTEN.MODE", "0666", false, "fpmux's listen takes its place"},
		{"pm.status_path", "/status", false, "fpmux status and fpmux's metrics"},
		{"pm.status_listen", "127.0.0.1:9001", false, "fpmux status"},
		{"ping.path", "/ping", false, "/v1/healthz"},
		{"ping.response", "pong", false, "/v1/healthz"},
		{"chdir", "/", false, "release's root"},
		{"prefix", "/usr", false, "absolute"},
		{"env[FPMUX_RELEASE]", "x", false, "exports the release id"},
		{"catch_workers_output", "yes", false, ""},
		{"catch_workers_output", "no", false, "always catches"},
		{"decorate_workers_output", "no", false, ""},
		{"decorate_workers_output", "yes", false, "undecorated"},
		{"include", "/etc/php/*.conf", false, "php_fpm.pool_file"},
		{"pid", "/run/php.pid", false, "pid file"},
		{"pid", "/run/php.pid", true, "pid file"},
		{"error_log", "/var/log/php.log", true, "fpmux's log"},
		{"daemonize", "no", true, ""},
		{"daemonize", "yes", true, "foreground"},
		{"log_level", "notice", true, ""},
		{"log_level", "warning", true, "-log-level"},
		{"process_control_timeout", "10s", true, "php_fpm.stop_timeout"},
		{"log_limit", "8192", true, ""},
		{"access.suppress_path[]", "/health", false, ""},
		{"env[HOME]", "${HOME}", false, "do not expand ${NAME}"},
		{"env[X]", "{release_rot}", false, "unknown placeholder"},
		{"env[X]", "a\nlisten = /tmp/x", false, "one line"},
		{"Env[x y]", "1", false, "bad pool directive name"},
	}
	for _, c := range cases {
		err := CheckDirective(c.key, c.value, c.global)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s = %q (global %v) refused: %v", c.key, c.value, c.global, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s = %q (global %v): %v, want an error with %q", c.key, c.value, c.global, err, c.want)
		}
	}
}

func TestExpand(t *testing.T) {
	got := Expand("/var/log/$pool.log {release_id} {release_root}/x %{milli}d", "r7", "/srv/r7")
	if want := "/var/log/r7.log r7 /srv/r7/x %{milli}d"; got != want {
		t.Errorf("Expand = %q, want %q", got, want)
	}
}

// This file owns the fronts harness: nginx, Apache, Caddy and lighttpd run
// from the configs in config/examples/ (rendered with the test's temp paths
// and ports, so the example is what is tested), each once in front of fpmux
// and once in front of a plain php-fpm pool (the reference, as users run
// PHP today), all under the test's temp dir and stopped by pid at cleanup.

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// frontVariant is one web server with one config, as a user would run it.
type frontVariant struct {
	name    string      // subtest name and directory
	server  string      // nginx, apache, caddy or lighttpd
	example string      // the file under config/examples it runs
	edits   [][2]string // what this variant changes in the example (each must match)
	// indexFallback: the config sends a path that names no file to
	// /index.php (Caddy's php_fastcgi try_files), so a missing script runs
	// the front controller, behind php-fpm directly too.
	indexFallback bool
	// rawPathInfo: the front sends the URL's path undecoded and php-fpm
	// derives PATH_INFO from it (Apache's ProxyPassMatch), directly too.
	rawPathInfo bool
	// headerBound: the front refuses 18 KB of request headers with 431
	// (lighttpd's server.max-request-field-size, 8 KiB by default).
	headerBound bool
}

var frontVariants = []frontVariant{
	{name: "nginx-keepconn-on", server: "nginx", example: "nginx.conf"},
	{name: "nginx-keepconn-off", server: "nginx", example: "nginx.conf",
		edits: [][2]string{{"fastcgi_keep_conn on;", "fastcgi_keep_conn off;"}, {"keepalive 32;", ""}}},
	{name: "apache-sethandler-reuse", server: "apache", example: "apache.conf"},
	{name: "apache-sethandler", server: "apache", example: "apache.conf",
		edits: [][2]string{{"enablereuse=on", "enablereuse=off"}}},
	{name: "apache-proxypassmatch-reuse", server: "apache", example: "apache-proxypassmatch.conf", rawPathInfo: true},
	{name: "apache-proxypassmatch", server: "apache", example: "apache-proxypassmatch.conf", rawPathInfo: true,
		edits: [][2]string{{"enablereuse=on", "enablereuse=off"}}},
	{name: "caddy", server: "caddy", example: "Caddyfile", indexFallback: true},
	{name: "lighttpd", server: "lighttpd", example: "lighttpd.conf", headerBound: true},
}

// The production values the examples carry, which the test replaces.
const (
	exampleDocroot = "/var/www/app/current"
	exampleSocket  = "/run/fpmux/fpmux.sock"
)

// frontBinary finds a web server's binary. A missing one skips the test on
// a developer's machine and fails it under CI=true (.ci/run installs them).
func frontBinary(t *testing.T, server string) string {
	t.Helper()
	name := map[string]string{"nginx": "nginx", "apache": "apache2", "caddy": "caddy", "lighttpd": "lighttpd"}[server]
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI=true but %s (%s) is missing", server, name)
	}
	t.Skipf("%s (%s) missing", server, name)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// front is one running web server.
type front struct {
	v    frontVariant
	dir  string
	url  string // http://127.0.0.1:port
	port int
	logs []string // files to show when the test fails
}

// startFront renders v's example for backend (a FastCGI unix socket) and
// docroot into dir and starts the server on a free loopback port, trying
// another port when the one probed was taken meanwhile.
func startFront(t *testing.T, v frontVariant, dir, backend, docroot string) *front {
	t.Helper()
	bin := frontBinary(t, v.server)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join("..", "..", "config", "examples", v.example))
	if err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 5 {
		f := &front{v: v, dir: dir, port: freePort(t)}
		f.url = fmt.Sprintf("http://127.0.0.1:%d", f.port)
		cmd, err := f.render(t, bin, string(example), backend, docroot)
		if err != nil {
			t.Fatalf("%s: render %s: %v", v.name, v.example, err)
		}
		if lastErr = f.run(t, cmd); lastErr == nil {
			return f
		}
		if !strings.Contains(lastErr.Error(), "in use") {
			break
		}
	}
	t.Fatalf("%s: start: %v", v.name, lastErr)
	return nil
}

// substitute replaces each pair's first string by its second in s; each
// must occur, so an example that drifts from the test fails it.
func substitute(s string, pairs [][2]string) (string, error) {
	for _, p := range pairs {
		if !strings.Contains(s, p[0]) {
			return "", fmt.Errorf("substitute: %q not found", p[0])
		}
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s, nil
}

// serverUser is the unprivileged user the servers switch to when the test
// runs as root, as Debian's packages have them do (www-data): fpmux's
// socket (mode 0666) must be theirs to reach. "" when not root, or when
// there is no www-data.
func serverUser() string {
	if os.Geteuid() != 0 {
		return ""
	}
	if _, err := user.Lookup("www-data"); err != nil {
		return ""
	}
	if _, err := user.LookupGroup("www-data"); err != nil {
		return ""
	}
	return "www-data"
}

// chownTo gives a file or directory to the user the server switches to,
// for what it writes after the switch (lighttpd's error log and request
// bodies).
func chownTo(t *testing.T, path, name string) {
	t.Helper()
	if name == "" {
		return
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func (f *front) write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// render writes the server's config (the example, rendered, and the
// server-wide settings a packaged install has in its main config) and
// returns the command that runs it in the foreground.
func (f *front) render(t *testing.T, bin, example, backend, docroot string) (*exec.Cmd, error) {
	common := append([][2]string{{exampleDocroot, docroot}, {exampleSocket, backend}}, f.v.edits...)
	d := f.dir
	switch f.v.server {
	case "nginx":
		site, err := substitute(example, append(common, [2]string{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", f.port)}))
		if err != nil {
			return nil, err
		}
		params, err := os.ReadFile("/etc/nginx/fastcgi_params")
		if err != nil {
			return nil, err
		}
		f.write(t, "fastcgi_params", string(params)) // the example includes it relative to the config
		f.write(t, "site.conf", site)
		tmp := filepath.Join(d, "tmp")
		os.MkdirAll(tmp, 0o755)
		userLine := ""
		if u := serverUser(); u != "" {
			userLine = "user " + u + ";" // nginx gives its temp dirs to that user
		}
		f.logs = []string{filepath.Join(d, "error.log")}
		conf := f.write(t, "nginx.conf", nginxMainConf(userLine, d, tmp, filepath.Join(d, "error.log"), "    include "+d+"/site.conf;\n"))
		return exec.Command(bin, "-p", d, "-c", conf, "-e", filepath.Join(d, "error.log")), nil
	case "apache":
		site, err := substitute(example, append(common, [2]string{"<VirtualHost *:80>", fmt.Sprintf("<VirtualHost 127.0.0.1:%d>", f.port)}))
		if err != nil {
			return nil, err
		}
		f.write(t, "site.conf", site)
		run := filepath.Join(d, "run")
		os.MkdirAll(run, 0o755)
		var mods strings.Builder
		for _, m := range []string{"mpm_event", "authz_core", "dir", "mime", "headers", "proxy", "proxy_fcgi"} {
			fmt.Fprintf(&mods, "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", m, m)
		}
		userLines := ""
		if u := serverUser(); u != "" {
			userLines = "User " + u + "\nGroup " + u + "\n"
		}
		f.logs = []string{filepath.Join(d, "error.log")}
		conf := f.write(t, "apache2.conf", fmt.Sprintf(`ServerRoot %[1]s
%[2]s%[3]sDefaultRuntimeDir %[4]s
PidFile %[1]s/apache2.pid
ErrorLog %[1]s/error.log
LogLevel warn
ServerName 127.0.0.1
Listen 127.0.0.1:%[5]d
TypesConfig /etc/mime.types
StartServers 1
Include %[1]s/site.conf
`, d, mods.String(), userLines, run, f.port))
		return exec.Command(bin, "-f", conf, "-DFOREGROUND"), nil
	case "caddy":
		site, err := substitute(example, append(common, [2]string{"app.example.com {", fmt.Sprintf("http://127.0.0.1:%d {", f.port)}))
		if err != nil {
			return nil, err
		}
		// Caddy binds every address unless told; the test keeps to loopback.
		conf := f.write(t, "Caddyfile", "{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n\n"+site)
		f.logs = []string{filepath.Join(d, "caddy.log")}
		cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile", "--pidfile", filepath.Join(d, "caddy.pid"))
		cmd.Env = append(os.Environ(), "HOME="+d, "XDG_DATA_HOME="+filepath.Join(d, "data"), "XDG_CONFIG_HOME="+filepath.Join(d, "config"))
		return cmd, nil
	case "lighttpd":
		site, err := substitute(example, common)
		if err != nil {
			return nil, err
		}
		f.write(t, "site.conf", site)
		up := filepath.Join(d, "uploads")
		os.MkdirAll(up, 0o755)
		userLines := ""
		if u := serverUser(); u != "" {
			userLines = fmt.Sprintf("server.username = %q\nserver.groupname = %q\n", u, u)
			chownTo(t, up, u)
			// lighttpd opens its error log after the switch.
			chownTo(t, f.write(t, "error.log", ""), u)
		}
		f.logs = []string{filepath.Join(d, "error.log")}
		conf := f.write(t, "lighttpd.conf", fmt.Sprintf(`server.bind = "127.0.0.1"
server.port = %[2]d
server.pid-file = "%[1]s/lighttpd.pid"
server.errorlog = "%[1]s/error.log"
server.upload-dirs = ( "%[3]s" )
%[4]sserver.document-root = "/var/www/html"
index-file.names = ( "index.html" )
include "%[1]s/site.conf"
`, d, f.port, up, userLines))
		return exec.Command(bin, "-D", "-f", conf), nil
	}
	return nil, fmt.Errorf("unknown server %q", f.v.server)
}

// nginxMainConf is an nginx main config around http, the http block's
// own lines: in the foreground, one worker, its pid, error log and temp
// files under dir and tmp. user is "user root;" or "".
func nginxMainConf(user, dir, tmp, errorLog, http string) string {
	return fmt.Sprintf(`%s
daemon off;
master_process on;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[4]s warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[3]s/body;
    fastcgi_temp_path %[3]s/fastcgi;
    proxy_temp_path %[3]s/proxy;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
%[5]s}
`, user, dir, tmp, errorLog, http)
}

// run starts cmd in its own process group and waits until the port takes
// connections; an exit before that is an error with the server's words.
// Cleanup stops the group: SIGTERM, then SIGKILL after 10 s.
func (f *front) run(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	out, err := os.Create(filepath.Join(f.dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	f.logs = append(f.logs, out.Name())
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		groupGone(t, f.v.name, cmd.Process.Pid)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited at start: %s", f.v.server, f.logText())
		default:
		}
		// The port must be listened on by this server's own process
		// (the masters of nginx and Apache hold their listening sockets,
		// as Caddy and lighttpd do), not by one that took it between the
		// probe and the bind.
		if ok, _ := proc.ListensOn(cmd.Process.Pid, f.port); ok {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("%s not listening on %d after 30s: %s", f.v.server, f.port, f.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s logs:\n%s", f.v.name, f.logText())
		}
	})
	return nil
}

// groupGone fails the test if a process of the group pgid (a server's
// workers) outlives its leader by 10 s, and kills what is left.
func groupGone(t *testing.T, what string, pgid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("%s: processes of group %d outlived it", what, pgid)
			syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *front) logText() string {
	var b strings.Builder
	for _, p := range f.logs {
		if text, err := os.ReadFile(p); err == nil && len(text) > 0 {
			fmt.Fprintf(&b, "== %s\n%s", p, text)
		}
	}
	return b.String()
}

// startRefPool starts a plain php-fpm pool, as users run one today, whose
// scripts are reached through the `current` symlink: the reference fpmux's
// answers are compared with. It returns the pool's socket.
func startRefPool(t *testing.T, phpFPM, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "php-fpm.sock")
	userLines := ""
	if u := serverUser(); u != "" {
		userLines = "user = " + u + "\ngroup = " + u + "\n"
	}
	conf := filepath.Join(dir, "php-fpm.conf")
	text := fmt.Sprintf(`[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/php-fpm.log
daemonize = no

[www]
listen = %[2]s
listen.mode = 0666
%[3]spm = static
pm.max_children = 4
`, dir, sock, userLines)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(phpFPM, "-F", "-y", conf)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		groupGone(t, "reference php-fpm", cmd.Process.Pid)
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "php-fpm.log"))
			t.Logf("reference php-fpm log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "php-fpm.log"))
			t.Fatalf("reference php-fpm exited at start: %s", b)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("reference php-fpm not listening after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

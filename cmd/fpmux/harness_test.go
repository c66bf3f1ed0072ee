// This file owns the end-to-end harness: a real fpmux process (this test
// binary re-executed as fpmux), a real nginx in front of it and real php-fpm
// pools behind it, all under one temp dir and all stopped at cleanup.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/logtest"
	"github.com/fpmux/fpmux/internal/proc"
	"github.com/fpmux/fpmux/pool"
)

// TestMain lets the test binary act as fpmux itself, so the end-to-end tests
// run the real command in its own process (SIGTERM and kill -9 included).
func TestMain(m *testing.M) {
	if os.Getenv("FPMUX_TEST_EXEC") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// needTools returns php-fpm's and nginx's paths. A missing one skips the test
// on a developer's machine and fails it under CI=true.
func needTools(t *testing.T) (phpFPM, nginx string) {
	t.Helper()
	phpFPM, err := pool.FindBinary()
	if err == nil {
		nginx, err = exec.LookPath("nginx")
		if err != nil {
			for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
				if _, serr := os.Stat(p); serr == nil {
					nginx, err = p, nil
					break
				}
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI=true but php-fpm or nginx is missing: %v", err)
		}
		t.Skipf("php-fpm or nginx missing: %v", err)
	}
	return phpFPM, nginx
}

// stack is fpmux + nginx + pools for one test.
type stack struct {
	t        *testing.T
	dir      string
	releases string // allowed root holding the test's releases
	stateDir string
	docroot  string
	sock     string // the FastCGI socket nginx points at
	admin    string // "unix:/...", where the test reaches the admin API
	metrics  string // host:port
	nginxURL string
	phpFPM   string
	nginx    string
	cfgPath  string
	cfgText  string // what cfgPath held at start

	// With socket activation: the configured sockets fpmux must leave
	// alone, and the sockets the test holds as systemd would.
	cfgSock, cfgAdmin string
	passed            []*os.File
	watchdog          time.Duration
	notes             *notifyLog // nil without NOTIFY_SOCKET
	connPerRequest    bool
	nginxServer       string // see stackOptions.nginxServer
	pprof             bool   // see stackOptions.pprof

	mu     sync.Mutex
	fpmux  *exec.Cmd
	exited chan struct{}
	logBuf *logtest.Buffer // fpmux's stdout and stderr
	pgids  map[int]bool    // process groups of every php-fpm master seen
}

type stackOptions struct {
	drainTimeout string            // default 30s
	startTimeout string            // default 20s
	phpFPM       string            // php-fpm binary override (a wrapper)
	ini          map[string]string // extra php_fpm.ini
	pool         map[string]string // extra php_fpm.pool directives
	// poolFile is php_fpm.pool_file; the stack's own pm directives are
	// then left out, so the file's stand.
	poolFile string

	// activation hands fpmux its FastCGI and admin sockets as systemd's
	// socket activation does (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES),
	// held open by the test across fpmux restarts; the config names other
	// paths, which fpmux must not create.
	activation bool
	notify     bool          // NOTIFY_SOCKET: the test reads what fpmux tells systemd
	watchdog   time.Duration // WATCHDOG_USEC (with WATCHDOG_PID); needs notify
	// connPerRequest has nginx open a new connection to fpmux for every
	// request (no upstream keepalive, fastcgi_keep_conn off).
	connPerRequest bool
	// nginxServer is added to nginx's server block, before its PHP
	// location (so a regex location there takes precedence).
	nginxServer string
	// yaml is added to the config file's top level (e.g. "limits:\n  max_in_flight: 6\n").
	yaml string
	// releases, when set, is the allowed root holding the releases instead
	// of one of the stack's own: fleet hosts share it, as a fleet deploy
	// names one root for every host.
	releases string
	// docrootLink makes the docroot fpmux's `symlink` (pointed at the
	// active release, as a front serving static files needs) instead of a
	// directory, and starts no nginx: the test starts its own fronts.
	docrootLink bool
	// pprof runs fpmux with -pprof, so that a test can read its goroutines
	// (goroutineDump) when they do not come back to a baseline.
	pprof bool
}

// tempDir returns a short, world-traversable temp dir: php-fpm workers run
// as www-data when the tests run as root, and unix socket paths are short.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fpmux-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	phpFPM, nginx := needTools(t)
	if o.phpFPM != "" {
		phpFPM = o.phpFPM
	}
	if o.drainTimeout == "" {
		o.drainTimeout = "30s"
	}
	if o.startTimeout == "" {
		o.startTimeout = "20s"
	}
	dir := tempDir(t)
	s := &stack{
		t:        t,
		dir:      dir,
		releases: filepath.Join(dir, "releases"),
		stateDir: filepath.Join(dir, "state"),
		docroot:  filepath.Join(dir, "current"),
		sock:     filepath.Join(dir, "fpmux.sock"),
		admin:    "unix:" + filepath.Join(dir, "admin.sock"),
		metrics:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		phpFPM:   phpFPM,
		nginx:    nginx,
		cfgPath:  filepath.Join(dir, "fpmux.yaml"),
		pprof:    o.pprof,
		pgids:    map[int]bool{},
		logBuf:   &logtest.Buffer{},
		watchdog: o.watchdog,
	}
	if o.releases != "" {
		s.releases = o.releases
	}
	s.connPerRequest = o.connPerRequest
	s.nginxServer = o.nginxServer
	s.cfgSock, s.cfgAdmin = s.sock, s.admin
	if o.activation {
		s.sock = filepath.Join(dir, "sd-fastcgi.sock")
		s.admin = "unix:" + filepath.Join(dir, "sd-admin.sock")
		s.passed = []*os.File{
			holdSocket(t, s.sock, 0o666),
			holdSocket(t, strings.TrimPrefix(s.admin, "unix:"), 0o660),
		}
	}
	if o.notify {
		s.notes = listenNotify(t, filepath.Join(dir, "notify.sock"))
	}
	dirs := []string{s.releases, s.docroot}
	if o.docrootLink {
		dirs = dirs[:1]
		o.yaml += "symlink: " + s.docroot + "\n"
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var ini, pool strings.Builder
	for k, v := range o.ini {
		fmt.Fprintf(&ini, "    %s: %q\n", k, v)
	}
	for k, v := range o.pool {
		fmt.Fprintf(&pool, "    %s: %q\n", k, v)
	}
	poolFile, pm := "", "    pm: static\n    pm.max_children: 4\n"
	if o.poolFile != "" {
		poolFile, pm = "  pool_file: "+o.poolFile+"\n", ""
	}
	cfg := fmt.Sprintf(`listen: unix:%s
admin: %s
metrics: %s
state_dir: %s
docroot: %s
allowed_roots: [%s]
drain_timeout: %s
php_fpm:
  binary: %s
  start_timeout: %s
  stop_timeout: 5s
%s  pool:
%s%s  ini:
    opcache.enable: 1
%s%s`, s.cfgSock, s.cfgAdmin, s.metrics, s.stateDir, s.docroot, s.releases, o.drainTimeout, phpFPM, o.startTimeout, poolFile, pm, pool.String(), ini.String(), o.yaml)
	s.cfgText = cfg
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stopFpmux(syscall.SIGTERM)
		s.assertNoPHPFPM()
		if t.Failed() {
			t.Logf("fpmux log:\n%s", s.logBuf.String())
			if b, err := os.ReadFile(filepath.Join(dir, "nginx-error.log")); err == nil {
				t.Logf("nginx error log:\n%s", b)
			}
		}
	})
	s.startFpmux()
	if !o.docrootLink {
		s.startNginx()
	}
	return s
}

// startFpmux runs `fpmux serve -config` and waits until its admin API answers.
func (s *stack) startFpmux() {
	s.t.Helper()
	args := []string{"serve", "-config", s.cfgPath}
	if s.pprof {
		args = append(args, "-pprof")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(withoutSystemdEnv(os.Environ()), "FPMUX_TEST_EXEC=1")
	if s.notes != nil {
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+s.notes.path)
	}
	var pids []string
	if len(s.passed) > 0 {
		cmd.ExtraFiles = s.passed // fds 3 and 4
		cmd.Env = append(cmd.Env, "LISTEN_FDS=2", "LISTEN_FDNAMES=fastcgi:admin")
		pids = append(pids, "LISTEN_PID")
	}
	if s.watchdog > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("WATCHDOG_USEC=%d", s.watchdog.Microseconds()))
		pids = append(pids, "WATCHDOG_PID")
	}
	if len(pids) > 0 {
		// systemd sets LISTEN_PID and WATCHDOG_PID to the service's own pid
		// after it forked; a shell that sets them to its pid and then execs
		// fpmux in its place does the same.
		script := ""
		for _, v := range pids {
			script += "export " + v + "=$$; "
		}
		cmd.Args = append([]string{"/bin/sh", "-c", script + `exec "$0" "$@"`}, cmd.Args...)
		cmd.Path = "/bin/sh"
	}
	cmd.Stdout = s.logBuf
	cmd.Stderr = s.logBuf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.fpmux, s.exited = cmd, exited
	s.mu.Unlock()
	s.waitFor("fpmux admin API", 20*time.Second, func() bool {
		select {
		case <-exited:
			s.t.Fatalf("fpmux exited at start:\n%s", s.logBuf.String())
		default:
		}
		_, err := s.adminGet("/v1/releases")
		return err == nil
	})
}

// stopFpmux signals fpmux and waits for it to exit (killing it after 60s).
func (s *stack) stopFpmux(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.fpmux, s.exited
	s.fpmux = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-exited
		s.t.Errorf("fpmux did not exit within 60s of %v", sig)
	}
}

func (s *stack) startNginx() {
	s.t.Helper()
	port := freePort(s.t)
	s.nginxURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	tmp := filepath.Join(s.dir, "nginx-tmp")
	os.MkdirAll(tmp, 0o755)
	keepalive, keepConn := "keepalive 32;", "on"
	if s.connPerRequest {
		keepalive, keepConn = "", "off"
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must reach the socket under the test's temp dir
	}
	conf := nginxMainConf(user, s.dir, tmp, filepath.Join(s.dir, "nginx-error.log"), fmt.Sprintf(`
    upstream fpmux {
        server unix:%[1]s;
        %[4]s
    }
    server {
        listen 127.0.0.1:%[2]d;
        root %[3]s;
%[6]s
        location ~ \.php$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass fpmux;
            fastcgi_keep_conn %[5]s;
            fastcgi_read_timeout 120s;
        }
    }
`, s.sock, port, s.docroot, keepalive, keepConn, s.nginxServer))
	path := filepath.Join(s.dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.nginx, "-p", s.dir, "-c", path, "-e", filepath.Join(s.dir, "nginx-error.log"))
	cmd.Stdout, cmd.Stderr = s.logBuf, s.logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	s.waitFor("nginx", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.nginxURL, "http://"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitFor polls cond until it holds or the bound passes.
func (s *stack) waitFor(what string, bound time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newRelease writes a release from testdata/app, with __RELEASE__ in file
// names and contents replaced by id.
func (s *stack) newRelease(id string) string {
	s.t.Helper()
	root := filepath.Join(s.releases, id)
	src := filepath.Join("..", "..", "testdata", "app")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(root, strings.ReplaceAll(rel, "__RELEASE__", id))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, bytes.ReplaceAll(b, []byte("__RELEASE__"), []byte(id)), 0o644)
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return root
}

// cli runs an fpmux client subcommand in-process, as a deploy script would.
func (s *stack) cli(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	full := append([]string{args[0], "-admin", s.admin}, args[1:]...)
	code = run(full, &out, &errb)
	return code, out.String(), errb.String()
}

// deploy deploys a release and fails the test if that fails.
func (s *stack) deploy(id string) time.Duration {
	s.t.Helper()
	root := s.newRelease(id)
	start := time.Now()
	code, out, errs := s.cli("deploy", "-id", id, "-root", root)
	took := time.Since(start)
	if code != 0 {
		s.t.Fatalf("deploy %s: exit %d: %s%s", id, code, out, errs)
	}
	s.notePgids()
	return took
}

func (s *stack) adminClient() *http.Client {
	path := strings.TrimPrefix(s.admin, "unix:")
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}},
	}
}

func (s *stack) adminGet(path string) ([]byte, error) {
	c := s.adminClient()
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://fpmux" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, err
}

type releaseJSON struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	InFlight int64  `json:"in_flight"`
	ReadyMS  int64  `json:"ready_ms"`
	Pool     *struct {
		Pid      int `json:"pid"`
		Restarts int `json:"restarts"`
	} `json:"pool"`
}

func (s *stack) releasesByID() map[string]releaseJSON {
	s.t.Helper()
	b, err := s.adminGet("/v1/releases")
	if err != nil {
		s.t.Fatal(err)
	}
	var rs []releaseJSON
	if err := json.Unmarshal(b, &rs); err != nil {
		s.t.Fatalf("releases: %v: %s", err, b)
	}
	m := map[string]releaseJSON{}
	for _, r := range rs {
		m[r.ID] = r
	}
	return m
}

// notePgids remembers the process group of every live pool's master, so
// cleanup can check that none of their processes survived.
func (s *stack) notePgids() {
	for _, r := range s.releasesByID() {
		if r.Pool != nil && r.Pool.Pid > 0 {
			s.mu.Lock()
			s.pgids[r.Pool.Pid] = true
			s.mu.Unlock()
		}
	}
}

// phpFPMProcesses lists live processes in the process groups of the pools
// this test saw, and php-fpm masters whose config lies in its state dir.
func (s *stack) phpFPMProcesses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []string
	ps, _ := proc.Processes()
	for _, p := range ps {
		if s.pgids[p.Pgrp] || strings.Contains(p.Cmdline, "php-fpm") && strings.Contains(p.Cmdline, s.stateDir) {
			found = append(found, fmt.Sprintf("%d %s", p.Pid, p.Cmdline))
		}
	}
	return found
}

// assertNoPHPFPM fails the test if any php-fpm process of this test is left.
func (s *stack) assertNoPHPFPM() {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := s.phpFPMProcesses()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("php-fpm processes outlived fpmux: %v", left)
			for _, p := range left {
				pid, _ := strconv.Atoi(strings.Fields(p)[0])
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches a page through nginx.
func (s *stack) get(c *http.Client, path string) (int, string, error) {
	return getURL(c, s.nginxURL+path)
}

// getURL fetches a page: its status and body.
func getURL(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// post sends a form through nginx.
func (s *stack) post(c *http.Client, path, form string) (int, string, error) {
	resp, err := c.Post(s.nginxURL+path, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// metric reads one sample from fpmux's /metrics, by its full series text
// (e.g. `fpmux_drains_forced_total`), or -1 when absent.
func (s *stack) metric(series string) float64 {
	s.t.Helper()
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				s.t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// holdSocket listens on a unix socket as a systemd socket unit does and
// returns the file to pass to fpmux. The test keeps the socket open, so it
// goes on listening (and queueing connections) while fpmux restarts.
func holdSocket(t *testing.T, path string, perm os.FileMode) *os.File {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		ln.Close()
	})
	return f
}

// withoutSystemdEnv drops what systemd may have set for the test itself,
// so fpmux sees only what a test sets.
func withoutSystemdEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID":
		default:
			out = append(out, kv)
		}
	}
	return out
}

// notifyLog is a fake systemd notify socket: every datagram fpmux sends,
// with the time it arrived.
type notifyLog struct {
	path string
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string // newline-separated assignments, as sent
}

func listenNotify(t *testing.T, path string) *notifyLog {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyLog{path: path}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
		if t.Failed() {
			t.Logf("notify messages:\n%s", n.dump())
		}
	})
	return n
}

// len is how many messages have arrived; a later wait can start there.
func (n *notifyLog) len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.msgs)
}

func (n *notifyLog) all() []notifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs)
}

func (n *notifyLog) dump() string {
	var b strings.Builder
	for _, m := range n.all() {
		fmt.Fprintf(&b, "%s %q\n", m.at.Format("15:04:05.000"), m.text)
	}
	return b.String()
}

// hasLine tells whether a message holds a line for which match holds.
func (m notifyMsg) hasLine(match func(line string) bool) bool {
	return slices.ContainsFunc(strings.Split(m.text, "\n"), match)
}

// waitNotify waits for a message, from the from-th on, with a line that
// match accepts, and returns its index.
func (s *stack) waitNotify(what string, from int, bound time.Duration, match func(line string) bool) (int, notifyMsg) {
	s.t.Helper()
	idx, found := -1, notifyMsg{}
	s.waitFor(what, bound, func() bool {
		for i, m := range s.notes.all()[from:] {
			if m.hasLine(match) {
				idx, found = from+i, m
				return true
			}
		}
		return false
	})
	return idx, found
}

// lineIs matches a notify line exactly.
func lineIs(want string) func(string) bool {
	return func(line string) bool { return line == want }
}

// goroutineDump returns fpmux's goroutines grouped by stack (pprof's
// debug=1 form), or why it could not; the stack needs stackOptions.pprof.
// It asks on a connection of its own, closed after the answer, so that no
// kept connection is in the next dump.
func (s *stack) goroutineDump() string {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.metrics + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "goroutine dump: " + err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "goroutine dump: " + err.Error()
	}
	return string(b)
}

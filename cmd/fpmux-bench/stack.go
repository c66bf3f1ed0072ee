// This file owns the stack a run measures: a temp dir with the releases, a
// built fpmux serving from it, nginx in front with servers straight to the
// pool, by $realpath_root and through fpmux, the admin calls that deploy
// releases, and stopping all of it on every way out.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/pool"
	"github.com/fpmux/fpmux/supervisor"

	procfs "github.com/fpmux/fpmux/internal/proc"
)

// stackOptions configures a stack.
type stackOptions struct {
	fpmuxBin     string // empty: build ./cmd/fpmux from the module root
	nginxWorkers string // nginx's worker_processes
	keepalive    int    // nginx's upstream keepalive to fpmux
	children     int    // pm.max_children of every pool
	keep         bool   // leave the temp dir behind
}

// stack is everything one run starts. Paths are under dir.
type stack struct {
	o           stackOptions
	dir         string
	fpmuxBin    string
	phpFPM      string
	nginxBin    string
	sock        string // fpmux's FastCGI socket: a path, or host:port for TCP
	adminSock   string
	metricsAddr string // host:port
	stateDir    string
	releases    string // the allowed root
	current     string // fpmux's docroot, a symlink to releases/r1
	direct      string // nginx host:port straight to r1's pool
	via         string // nginx host:port through fpmux
	realpath    string // nginx host:port to r1's pool by $realpath_root
	fpmuxLog    string

	fpmux, nginx *proc
	fpm          *proc // the compare section's plain php-fpm, for the ways without fpmux
	admin        *http.Client

	mu    sync.Mutex
	pgids map[int]bool // process groups of every php-fpm master deployed

	closeOnce sync.Once
	closeErr  error
}

// newStack makes the temp dir and finds or builds the binaries. Nothing runs
// yet; close removes what it made.
func newStack(o stackOptions) (*stack, error) {
	phpFPM, err := pool.FindBinary()
	if err != nil {
		return nil, fmt.Errorf("find php-fpm: %w", err)
	}
	nginxBin, err := findNginx()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fpmux-bench-")
	if err != nil {
		return nil, fmt.Errorf("make temp dir: %w", err)
	}
	// php-fpm's children run as www-data when the bench runs as root.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chmod temp dir %s: %w", dir, err)
	}
	s := stackIn(dir, o, phpFPM, nginxBin)
	s.fpmuxBin = o.fpmuxBin
	if s.fpmuxBin == "" {
		s.fpmuxBin = filepath.Join(dir, "fpmux")
		if err := buildFpmux(s.fpmuxBin); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// stackIn lays out a stack's paths under dir, which must exist; nothing is
// created or started.
func stackIn(dir string, o stackOptions, phpFPM, nginxBin string) *stack {
	s := &stack{
		o:         o,
		dir:       dir,
		phpFPM:    phpFPM,
		nginxBin:  nginxBin,
		sock:      filepath.Join(dir, "fpmux.sock"),
		adminSock: filepath.Join(dir, "admin.sock"),
		stateDir:  filepath.Join(dir, "state"),
		releases:  filepath.Join(dir, "www", "releases"),
		current:   filepath.Join(dir, "www", "current"),
		fpmuxLog:  filepath.Join(dir, "fpmux.log"),
		pgids:     map[int]bool{},
	}
	s.admin = adminClient(s.adminSock)
	return s
}

// poolSock is the socket of release id's php-fpm pool, where fpmux puts it
// under its state dir.
func (s *stack) poolSock(id string) string { return filepath.Join(s.stateDir, "pools", id, "fpm.sock") }

// sub lays out a stack of its own under s's dir/name, with s's binaries
// and options but pm.max_children children, and makes its dirs; nothing is
// started. Closing it stops only what it started.
func (s *stack) sub(name string, children int) (*stack, error) {
	o := s.o
	o.children = children
	st := stackIn(filepath.Join(s.dir, name), o, s.phpFPM, s.nginxBin)
	st.fpmuxBin = s.fpmuxBin
	if err := st.makeDirs(); err != nil {
		return nil, err
	}
	return st, nil
}

// makeDirs makes the stack's dir and the dir of its releases.
func (s *stack) makeDirs() error {
	for _, d := range []string{s.dir, filepath.Dir(s.releases), s.releases} {
		if err := mkdir(d); err != nil {
			return err
		}
	}
	return nil
}

// adminClient talks to fpmux's admin API on the unix socket sock.
func adminClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 120 * time.Second,
		Transport: &http.Transport{
			// No kept connection: an idle admin connection would show up in
			// fpmux's goroutine and descriptor counts.
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		},
	}
}

func findNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("find nginx: not on PATH nor in /usr/sbin")
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory; pass -fpmux")
		}
		dir = parent
	}
}

func buildFpmux(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	logf("building fpmux from %s", root)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/fpmux")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/fpmux in %s: %w\n%s", root, err, b)
	}
	return nil
}

// freeAddr returns a TCP address on 127.0.0.1 that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start writes release r1 (the hello page, the APCu page and the framework
// app) and serves it.
func (s *stack) start(ctx context.Context) error {
	if err := s.makeDirs(); err != nil {
		return err
	}
	r1 := filepath.Join(s.releases, "r1")
	if err := writeHelloRelease(r1); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(r1, "apcu.php"), apcuPHP); err != nil {
		return err
	}
	if _, err := writeFramework(filepath.Join(r1, "fw")); err != nil {
		return err
	}
	return s.serve(ctx, "r1", nil)
}

// serve links current to the written release id, starts fpmux, deploys id
// with warmup as its warm-up list (nil: fpmux's, none) and starts nginx.
func (s *stack) serve(ctx context.Context, id string, warmup []string) error {
	if err := os.Symlink(filepath.Join("releases", id), s.current); err != nil {
		return fmt.Errorf("link %s: %w", s.current, err)
	}
	if err := s.startFpmux(ctx); err != nil {
		return err
	}
	if _, _, err := s.deployWarm(ctx, id, filepath.Join(s.releases, id), warmup); err != nil {
		return err
	}
	return s.startNginx(ctx)
}

func (s *stack) startFpmux(ctx context.Context) error {
	var err error
	if s.metricsAddr, err = freeAddr(); err != nil {
		return err
	}
	// pm static: the default pool is dynamic, whose spare-server settings
	// are dropped (null) since they mean nothing to a static pool.
	listen := s.sock
	if filepath.IsAbs(listen) {
		listen = "unix:" + listen
	}
	cfg := fmt.Sprintf(`listen: %s
admin: unix:%s
metrics: %s
state_dir: %s
docroot: %s
allowed_roots: [%s]
drain_timeout: 30s
php_fpm:
  binary: %s
  pool:
    pm: static
    pm.max_children: "%d"
    pm.start_servers: null
    pm.min_spare_servers: null
    pm.max_spare_servers: null
`, listen, s.adminSock, s.metricsAddr, s.stateDir, s.current, s.releases, s.phpFPM, s.o.children)
	cfgPath := filepath.Join(s.dir, "fpmux.yaml")
	if err := writeFile(cfgPath, cfg); err != nil {
		return err
	}
	p, err := startLogged("fpmux", exec.Command(s.fpmuxBin, "serve", "-config", cfgPath), s.fpmuxLog)
	if err != nil {
		return err
	}
	s.fpmux = p
	logf("fpmux started (pid %d), log %s", p.pid(), s.fpmuxLog)
	return p.waitUp(ctx, 20*time.Second, s.fpmuxLog, func() bool {
		_, err := s.releaseList(ctx)
		return err == nil
	})
}

// nginxHead opens every nginx config the bench writes, up to the http
// block's own directives; {{user}}, {{workers}}, {{dir}} and {{params}} are
// filled in by launchNginx.
const nginxHead = `{{user}}
master_process on;
worker_processes {{workers}};
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    # The client keeps its connections for a whole phase.
    keepalive_requests 1000000;
    client_body_temp_path {{dir}}/tmp/body;
    fastcgi_temp_path {{dir}}/tmp/fastcgi;
    proxy_temp_path {{dir}}/tmp/proxy;
    uwsgi_temp_path {{dir}}/tmp/uwsgi;
    scgi_temp_path {{dir}}/tmp/scgi;
`

// nginxServer is one server block on addr under root, passing PHP to pass
// with SCRIPT_FILENAME under scriptRoot ($document_root, or $realpath_root,
// which DOCUMENT_ROOT then follows), keeping the connection when keep.
func nginxServer(addr, root, scriptRoot, pass string, keep bool) string {
	var docroot, keepConn string
	if scriptRoot == "$realpath_root" {
		// fastcgi_params sends DOCUMENT_ROOT $document_root; the later
		// value is the one php-fpm keeps.
		docroot = "\n            fastcgi_param DOCUMENT_ROOT $realpath_root;"
	}
	if keep {
		keepConn = "\n            fastcgi_keep_conn on;"
	}
	return fmt.Sprintf(`    server {
        listen %s;
        root %s;
        location ~ \.php$ {
            include {{params}};
            fastcgi_param SCRIPT_FILENAME %s$fastcgi_script_name;%s
            fastcgi_param HTTP_PROXY "";
            fastcgi_pass %s;%s
            fastcgi_connect_timeout 5s;
            fastcgi_read_timeout 60s;
        }
    }
`, addr, root, scriptRoot, docroot, pass, keepConn)
}

// nginxUpstream is an upstream of one server with kept connections; extra
// lines go in as they are.
func nginxUpstream(name, server string, keepalive int, extra string) string {
	return fmt.Sprintf("    upstream %s {\n        server %s;\n        keepalive %d;\n%s    }\n", name, server, keepalive, extra)
}

func (s *stack) startNginx(ctx context.Context) error {
	if _, err := s.launchNginx(ctx, 3, func(addrs []string) string {
		s.direct, s.via, s.realpath = addrs[0], addrs[1], addrs[2]
		return s.nginxConfig()
	}); err != nil {
		return err
	}
	logf("nginx started (pid %d): direct http://%s, via fpmux http://%s, realpath_root http://%s", s.nginx.pid(), s.direct, s.via, s.realpath)
	return nil
}

// nginxConfig is the main stack's nginx config, nginxHead's placeholders
// still in: direct goes straight to release r1's pool, one connection per
// request, the usual way to run php-fpm; realpath_root resolves the
// current symlink per request, the usual way to deploy atomically without
// fpmux, to the same pool; via fpmux keeps its connections to fpmux, as
// config/examples/nginx.conf recommends.
func (s *stack) nginxConfig() string {
	pool := "unix:" + s.poolSock("r1")
	return nginxHead + nginxUpstream("fpmux", "unix:"+s.sock, s.o.keepalive, "") +
		nginxServer(s.direct, filepath.Join(s.releases, "r1"), "$document_root", pool, false) +
		nginxServer(s.realpath, s.current, "$realpath_root", pool, false) +
		nginxServer(s.via, s.current, "$document_root", "fpmux", true) + "}\n"
}

// launchNginx finds n free addresses, fills in nginxHead's placeholders in
// conf(addresses), writes it under the stack's nginx dir, starts nginx on
// it as s.nginx and waits until every address accepts a connection.
func (s *stack) launchNginx(ctx context.Context, n int, conf func(addrs []string) string) ([]string, error) {
	const params = "/etc/nginx/fastcgi_params"
	if _, err := os.Stat(params); err != nil {
		return nil, fmt.Errorf("nginx fastcgi params: %w", err)
	}
	addrs := make([]string, n)
	for i := range addrs {
		var err error
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(s.dir, "nginx")
	for _, d := range []string{dir, filepath.Join(dir, "tmp")} {
		if err := mkdir(d); err != nil {
			return nil, err
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the pool's socket is root's, mode 0600
	}
	text := strings.NewReplacer(
		"{{user}}", user,
		"{{workers}}", s.o.nginxWorkers,
		"{{dir}}", dir,
		"{{params}}", params,
	).Replace(conf(addrs))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := writeFile(confPath, text); err != nil {
		return nil, err
	}
	cmd := exec.Command(s.nginxBin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	p, err := startLogged("nginx", cmd, filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	s.nginx = p
	return addrs, p.waitUp(ctx, 10*time.Second, filepath.Join(dir, "error.log"), func() bool { return accepting("tcp", addrs...) })
}

// waitFor polls cond every 20ms until it holds, fails, or bound passes.
func waitFor(ctx context.Context, what string, bound time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(bound)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: not there after %v", what, bound)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// adminCall sends method path to the admin API with body as JSON (none
// when nil) and, when the answer has status want, decodes it into out
// (unless nil).
func (s *stack) adminCall(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://fpmux"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.admin.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("read answer: %w", err)
	case resp.StatusCode != want:
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	case out != nil:
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// deploy registers a release and, with activate, makes it active; warmup,
// when not nil, is the deploy's own warm-up list. It returns how long the
// admin POST took to answer 201: deploy to active.
func (s *stack) deploy(ctx context.Context, id, root string, activate bool, warmup []string) (time.Duration, supervisor.Release, error) {
	body := map[string]any{"id": id, "root": root, "activate": activate}
	if warmup != nil {
		body["warmup"] = warmup
	}
	var r supervisor.Release
	start := time.Now()
	err := s.adminCall(ctx, "POST", "/v1/releases", body, http.StatusCreated, &r)
	took := time.Since(start)
	if err != nil {
		return took, r, fmt.Errorf("deploy %s: %w", id, err)
	}
	s.notePools(r)
	return took, r, nil
}

// deployWarm deploys and activates id from root with warmup as its own
// warm-up list ([] for none, nil for fpmux's), and returns when the release
// became active by fpmux's clock (activated_at) and how long the deploy
// took; a warm-up path that failed fails it.
func (s *stack) deployWarm(ctx context.Context, id, root string, warmup []string) (time.Time, time.Duration, error) {
	took, r, err := s.deploy(ctx, id, root, true, warmup)
	if err == nil && r.ActivatedAt == nil {
		err = fmt.Errorf("deploy %s: no activated_at in the answer", id)
	}
	if err != nil {
		return time.Time{}, took, err
	}
	for _, w := range r.Warmup {
		logf("warmup: %s warmed %s: first request %d in %d ms, %d failed", id, w.Path, w.Status, w.MS, w.Failed)
		if w.Failed > 0 {
			return *r.ActivatedAt, took, fmt.Errorf("deploy %s: warm-up of %s failed %d times", id, w.Path, w.Failed)
		}
	}
	return *r.ActivatedAt, took, nil
}

// notePools records the process groups of the releases' pools (each
// master leads its own), so that close can find what outlives the run.
func (s *stack) notePools(rs ...supervisor.Release) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if r.Pool != nil && r.Pool.Pid > 0 {
			s.pgids[r.Pool.Pid] = true
		}
	}
}

// retire asks fpmux to drain and stop a release that is not active.
func (s *stack) retire(ctx context.Context, id string) error {
	if err := s.adminCall(ctx, "DELETE", "/v1/releases/"+id, nil, http.StatusAccepted, nil); err != nil {
		return fmt.Errorf("retire %s: %w", id, err)
	}
	return nil
}

// waitRetired waits until no release but the active one is starting,
// ready or draining.
func (s *stack) waitRetired(ctx context.Context, bound time.Duration) (notRetired []string, err error) {
	err = waitFor(ctx, "the old releases to retire", bound, func() (bool, error) {
		rs, err := s.releaseList(ctx)
		if err != nil {
			return false, err
		}
		notRetired = notRetired[:0]
		for _, r := range rs {
			if r.State != "active" && r.State != "retired" && r.State != "failed" {
				notRetired = append(notRetired, r.ID+" "+string(r.State))
			}
		}
		return len(notRetired) == 0, nil
	})
	return notRetired, err
}

func (s *stack) releaseList(ctx context.Context) ([]supervisor.Release, error) {
	var rs []supervisor.Release
	if err := s.adminCall(ctx, "GET", "/v1/releases", nil, http.StatusOK, &rs); err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	return rs, nil
}

// activePool returns the pid of the active release's php-fpm master, or
// 0 when none is active.
func (s *stack) activePool(ctx context.Context) (int, error) {
	rs, err := s.releaseList(ctx)
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		if r.State == "active" && r.Pool != nil {
			return r.Pool.Pid, nil
		}
	}
	return 0, nil
}

// close stops nginx (SIGQUIT), then the backend: a plain php-fpm (SIGQUIT)
// or fpmux (SIGTERM, which stops its pools); checks that no php-fpm or
// nginx of the temp dir is left (killing any such process group, which is
// then an error), and removes the temp dir unless asked to keep it. Calling it again returns the first result.
func (s *stack) close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, p := range []*proc{s.nginx, s.fpm} {
			if p != nil {
				errs = append(errs, p.stop(syscall.SIGQUIT, 15*time.Second))
			}
		}
		if s.fpmux != nil {
			errs = append(errs, s.fpmux.stop(syscall.SIGTERM, 60*time.Second))
		}
		errs = append(errs, s.reapLeftovers())
		s.closeErr = errors.Join(errs...)
		if s.closeErr != nil && s.fpmux != nil {
			logf("fpmux log, last lines:\n%s", tail(s.fpmuxLog, 30))
		}
		if s.o.keep {
			logf("kept %s", s.dir)
		} else {
			os.RemoveAll(s.dir)
		}
	})
	return s.closeErr
}

// leftovers lists live processes of this run: in a php-fpm master's or
// nginx's process group, or with the temp dir on their command line.
func (s *stack) leftovers() []procfs.Process {
	s.mu.Lock()
	groups := map[int]bool{}
	for g := range s.pgids {
		groups[g] = true
	}
	s.mu.Unlock()
	if s.nginx != nil {
		groups[s.nginx.pid()] = true
	}
	self := os.Getpid()
	var left []procfs.Process
	for _, p := range processes() {
		if p.Pid != self && (groups[p.Pgrp] || strings.Contains(p.Cmdline, s.dir)) {
			left = append(left, p)
		}
	}
	return left
}

// reapLeftovers waits up to 10 s for the run's processes to go, then kills
// the process groups of any still there and reports them.
func (s *stack) reapLeftovers() error {
	var left []procfs.Process
	if waitFor(context.Background(), "the run's processes to go", 10*time.Second, func() (bool, error) {
		left = s.leftovers()
		return len(left) == 0, nil
	}) == nil {
		return nil
	}
	var desc []string
	for _, p := range left {
		desc = append(desc, fmt.Sprintf("%d (pgrp %d) %s", p.Pid, p.Pgrp, p.Cmdline))
		if p.Pgrp > 1 && p.Pgrp != syscall.Getpgrp() {
			syscall.Kill(-p.Pgrp, syscall.SIGKILL)
		}
		syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	return fmt.Errorf("processes outlived the run and were killed: %s", strings.Join(desc, "; "))
}

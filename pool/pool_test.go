package pool

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestServeStatusStop(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{
		"index.php": `<?php header("Content-Type: text/plain"); echo "hello from ", getenv("FPMUX_RELEASE"), " cwd=", getcwd(), "\n";`,
	})
	dir := poolDir(t)
	p := startPool(t, Options{ID: "serve1", Root: root, Dir: dir, Binary: bin, Logger: testLogger(t)})

	if p.ID() != "serve1" || p.Socket() != filepath.Join(dir, "fpm.sock") || p.MaxChildren() != 5 {
		t.Errorf("ID/Socket/MaxChildren = %q/%q/%d", p.ID(), p.Socket(), p.MaxChildren())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("Dir: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
	if err := p.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got, want := mustRun(t, p, "index.php", ""), "hello from serve1 cwd="+root+"\n"; got != want {
		t.Errorf("index.php said %q, want %q", got, want)
	}
	st, err := p.Status(t.Context())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Pool != "serve1" || st.ProcessManager != "dynamic" || st.TotalProcesses < 1 || st.AcceptedConn < 1 {
		t.Errorf("Status = %+v", st)
	}

	pid := p.Pid()
	if pid == 0 {
		t.Fatal("Pid = 0 while running")
	}
	if err := p.Stop(false); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if p.Pid() != 0 {
		t.Errorf("Pid = %d after Stop", p.Pid())
	}
	groupGoneESRCH(t, pid)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir still there after Stop: %v", err)
	}
	if err := p.Stop(false); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, ok := p.Acquire(); ok {
		t.Error("Acquire succeeded on a stopped pool")
	}
	if err := p.Ping(t.Context()); err == nil {
		t.Error("Ping succeeded after Stop")
	}
}

// TestExplicitEnvironment runs php-fpm through a wrapper that records its
// environment (php-fpm's own /proc/<pid>/environ is overwritten by its
// process title).
func TestExplicitEnvironment(t *testing.T) {
	bin := phpFPM(t)
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("FPMUX_SECRET", "x")
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	tmp := t.TempDir()
	envFile := filepath.Join(tmp, "env")
	wrapper := writeScript(t, tmp, "php-fpm", "env > "+envFile+"\nexec "+bin+` "$@"`+"\n")
	startPool(t, Options{ID: "env1", Root: root, Dir: poolDir(t), Binary: wrapper, Logger: testLogger(t)})
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimSpace(string(b)), "\n")
	if !slices.Contains(env, childPath) {
		t.Errorf("environment %q lacks %q", env, childPath)
	}
	for _, v := range env {
		for _, bad := range []string{"NOTIFY_SOCKET=", "LISTEN_FDS=", "FPMUX_SECRET=", "HOME="} {
			if strings.HasPrefix(v, bad) {
				t.Errorf("php-fpm got %q from fpmux's environment", v)
			}
		}
	}
}

func TestIniAndDirectivesReachPHP(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{
		"lib/helper.php": `<?php function helper() { return "from lib"; }`,
		"info.php": `<?php
require "helper.php"; // found through include_path only
header("Content-Type: application/json");
$o = function_exists("opcache_get_status") ? opcache_get_status(false) : false;
echo json_encode([
	"helper" => helper(),
	"include_path" => ini_get("include_path"),
	"override" => ini_set("include_path", "/elsewhere"),
	"app_root" => getenv("APP_ROOT"),
	"release" => getenv("FPMUX_RELEASE"),
	"opcache" => $o !== false && $o["opcache_enabled"],
	"validate_timestamps" => ini_get("opcache.validate_timestamps"),
	"memory_limit" => ini_get("memory_limit"),
	"user" => posix_getpwuid(posix_geteuid())["name"] ?? "",
]);`,
	})
	p := startPool(t, Options{
		ID: "ini1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Ini: map[string]string{
			"include_path":                ".:" + root + "/lib",
			"opcache.enable":              "1",
			"opcache.validate_timestamps": "0",
			"memory_limit":                "77M",
		},
		Directives: map[string]string{
			"env[APP_ROOT]":   root,
			"pm":              "static",
			"pm.max_children": "3",
		},
	})
	var got struct {
		Helper             string `json:"helper"`
		IncludePath        string `json:"include_path"`
		Override           any    `json:"override"`
		AppRoot            string `json:"app_root"`
		Release            string `json:"release"`
		Opcache            bool   `json:"opcache"`
		ValidateTimestamps string `json:"validate_timestamps"`
		MemoryLimit        string `json:"memory_limit"`
		User               string `json:"user"`
	}
	body := mustRun(t, p, "info.php", "")
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("info.php: %v: %q", err, body)
	}
	t.Logf("info.php: %s", body)
	if got.Helper != "from lib" || got.IncludePath != ".:"+root+"/lib" {
		t.Errorf("include_path not applied: %+v", got)
	}
	if got.Override != false {
		t.Errorf("a script could override php_admin_value include_path: ini_set returned %v", got.Override)
	}
	if got.AppRoot != root || got.Release != "ini1" {
		t.Errorf("env: APP_ROOT=%q FPMUX_RELEASE=%q", got.AppRoot, got.Release)
	}
	if !got.Opcache || got.ValidateTimestamps != "0" {
		t.Errorf("opcache enabled=%v validate_timestamps=%q, want true and 0", got.Opcache, got.ValidateTimestamps)
	}
	if got.MemoryLimit != "77M" {
		t.Errorf("memory_limit = %q", got.MemoryLimit)
	}
	if os.Geteuid() == 0 && got.User != "www-data" && got.User != "nobody" {
		t.Errorf("workers run as %q, want www-data or nobody", got.User)
	}
	// A quoted pm.max_children is a number to php-fpm. The master answers
	// pings before it has forked every static child: poll.
	var st Status
	eventually(t, 10*time.Second, "static pool never had 3 processes", func() bool {
		var err error
		st, err = p.Status(t.Context())
		return err == nil && st.TotalProcesses == 3
	})
	if st.ProcessManager != "static" || p.MaxChildren() != 3 {
		t.Errorf("pm=%q MaxChildren=%d, want static 3", st.ProcessManager, p.MaxChildren())
	}
}

func TestRestartAfterKill(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	var restarts atomic.Int32
	p := startPool(t, Options{
		ID: "crash1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Directives: map[string]string{"pm": "static", "pm.max_children": "2"},
		OnRestart:  func() { restarts.Add(1) },
	})
	old := p.Pid()
	var workers []int
	eventually(t, 10*time.Second, "no workers in the master's group", func() bool {
		workers = groupMembers(old)
		return len(workers) == 2
	})

	if err := syscallKill(old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "pool did not come back", func() bool {
		if p.Restarts() != 1 || p.Pid() == 0 || p.Pid() == old {
			return false
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return p.Ping(ctx) == nil
	})
	if n := restarts.Load(); n != 1 {
		t.Errorf("OnRestart called %d times, want 1", n)
	}
	if got := mustRun(t, p, "index.php", ""); got != "up" {
		t.Errorf("after restart index.php said %q", got)
	}
	for _, w := range workers {
		if alive(w) {
			t.Errorf("worker %d of the killed master is still alive", w)
		}
	}
	groupGoneESRCH(t, old)
}

func TestStopDuringRestartBackoff(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	dir := poolDir(t)
	p := startPool(t, Options{ID: "crash2", Root: root, Dir: dir, Binary: bin, Logger: testLogger(t)})
	old := p.Pid()
	if err := syscallKill(old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "master death not noticed", func() bool { return p.Pid() != old })
	if err := p.Stop(false); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if pids := liveProcs(dir); len(pids) != 0 {
		t.Errorf("processes left after Stop: %v", pids)
	}
	if pids := liveProcs("pool crash2"); len(pids) != 0 {
		t.Errorf("workers left after Stop: %v", pids)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir still there: %v", err)
	}
	groupGoneESRCH(t, old)
}

func TestStartFailureQuotesStderr(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})

	t.Run("wrapper", func(t *testing.T) {
		tmp := t.TempDir()
		pidFile := filepath.Join(tmp, "pid")
		wrapper := writeScript(t, tmp, "php-fpm", `echo $$ > `+pidFile+`
echo "ERROR: simulated php-fpm failure: bad config" >&2
exit 1
`)
		dir := poolDir(t)
		_, err := Start(t.Context(), Options{ID: "fail1", Root: root, Dir: dir, Binary: wrapper, Logger: testLogger(t)})
		if err == nil {
			t.Fatal("Start succeeded")
		}
		t.Logf("error: %v", err)
		for _, want := range []string{"start pool fail1", "exit status 1", "ERROR: simulated php-fpm failure: bad config"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Dir still there: %v", err)
		}
		b, rerr := os.ReadFile(pidFile)
		if rerr != nil {
			t.Fatal(rerr)
		}
		groupGoneESRCH(t, atoiT(t, strings.TrimSpace(string(b))))
	})

	t.Run("real php-fpm refuses config", func(t *testing.T) {
		dir := poolDir(t)
		_, err := Start(t.Context(), Options{
			ID: "fail2", Root: root, Dir: dir, Binary: bin, Logger: testLogger(t),
			Directives: map[string]string{"pm": "sometimes"},
		})
		if err == nil {
			t.Fatal("Start succeeded with pm=sometimes")
		}
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "php-fpm exited (exit status 78)") || !strings.Contains(err.Error(), "invalid process manager") {
			t.Errorf("error does not quote php-fpm: %v", err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Dir still there: %v", err)
		}
		if pids := liveProcs(dir); len(pids) != 0 {
			t.Errorf("processes left: %v", pids)
		}
	})
}

func TestStartTimeoutKillsSleeper(t *testing.T) {
	phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	tmp := t.TempDir()
	pidFile := filepath.Join(tmp, "pid")
	// Not exec: the sleep is a second process in the group.
	wrapper := writeScript(t, tmp, "php-fpm", `echo $$ > `+pidFile+`
echo "NOTICE: pretending to start" >&2
sleep 600
`)
	dir := poolDir(t)
	_, err := Start(t.Context(), Options{
		ID: "slow1", Root: root, Dir: dir, Binary: wrapper, Logger: testLogger(t),
		StartTimeout: time.Second,
	})
	if err == nil {
		t.Fatal("Start succeeded")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"start pool slow1: health check: no pong on " + filepath.Join(dir, "fpm.sock") + " within 1s", "pretending to start"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	groupGoneESRCH(t, atoiT(t, strings.TrimSpace(string(b))))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir still there: %v", err)
	}
}

func TestStartCanceledByContext(t *testing.T) {
	phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	tmp := t.TempDir()
	pidFile := filepath.Join(tmp, "pid")
	// Written whole and then renamed: the watcher below cancels as soon as
	// the file exists, and must not read it before the shell wrote it.
	wrapper := writeScript(t, tmp, "php-fpm", "echo $$ > "+pidFile+".new && mv "+pidFile+".new "+pidFile+"\nexec sleep 600\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(pidFile); err == nil {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	dir := poolDir(t)
	_, err := Start(ctx, Options{ID: "cancel1", Root: root, Dir: dir, Binary: wrapper, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Start = %v, want a context canceled error", err)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	groupGoneESRCH(t, atoiT(t, strings.TrimSpace(string(b))))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir still there: %v", err)
	}
}

func TestStopWithRequestInFlight(t *testing.T) {
	for _, force := range []bool{false, true} {
		name := map[bool]string{false: "graceful", true: "force"}[force]
		t.Run(name, func(t *testing.T) {
			bin := phpFPM(t)
			root, marks := slowRelease(t, "1.0")
			dir := poolDir(t)
			p := startPool(t, Options{ID: "stop-" + name, Root: root, Dir: dir, Binary: bin, Logger: testLogger(t)})
			pid := p.Pid()

			release, ok := p.Acquire()
			if !ok {
				t.Fatal("Acquire refused on a fresh pool")
			}
			type result struct {
				body string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				defer release()
				res, err := runScript(context.Background(), p, "slow.php", "")
				if err != nil {
					done <- result{err: err}
					return
				}
				done <- result{body: string(res.Body)}
			}()
			eventually(t, 10*time.Second, "slow.php did not start", func() bool {
				_, err := os.Stat(filepath.Join(marks, "started"))
				return err == nil
			})
			if p.InFlight() != 1 {
				t.Errorf("InFlight = %d, want 1", p.InFlight())
			}
			if err := p.Stop(force); err != nil {
				t.Fatalf("Stop(%v): %v", force, err)
			}
			r := <-done
			<-p.Idle()
			if force {
				if r.err == nil && r.body == "slept" {
					t.Error("forced stop let the slow request finish")
				}
				t.Logf("cut request: body %q, err %v", r.body, r.err)
			} else if r.err != nil || r.body != "slept" {
				t.Errorf("graceful stop cut the request: body %q, err %v", r.body, r.err)
			}
			groupGoneESRCH(t, pid)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Dir still there: %v", err)
			}
		})
	}
}

func TestConcurrentStop(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	p := startPool(t, Options{ID: "cstop", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t)})
	pid := p.Pid()
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() { errs <- p.Stop(i%2 == 0) }()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	groupGoneESRCH(t, pid)
}

// TestStartupTime reports how long Start takes until the first pong.
func TestStartupTime(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	var times []time.Duration
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		p, err := Start(t.Context(), Options{ID: "time1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, time.Since(t0))
		if err := p.Stop(true); err != nil {
			t.Fatal(err)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("Start until first pong: median %v (min %v, max %v, %d runs)", times[len(times)/2], times[0], times[len(times)-1], len(times))
}

// TestStartsInBackgroundUntilForeground: run as root, a pool starts at
// backgroundNice, master and workers, and Foreground gives them fpmux's
// own priority back. (Not root: the pool is never niced, since it could
// not be given its priority back.)
func TestStartsInBackgroundUntilForeground(t *testing.T) {
	setIdleFor(t, time.Hour)
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "x";`})
	p := startPool(t, Options{ID: "nice1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Directives: map[string]string{"pm": "static", "pm.max_children": "2"}})
	nices := func() []int {
		var out []int
		for _, pid := range append([]int{p.Pid()}, groupMembers(p.Pid())...) {
			prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
			if err != nil {
				t.Fatalf("getpriority %d: %v", pid, err)
			}
			out = append(out, 20-prio)
		}
		return out
	}
	own, _ := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	want := 20 - own
	if os.Geteuid() == 0 {
		want = backgroundNice
	}
	for _, n := range nices() {
		if n != want {
			t.Fatalf("nice values of master and workers after Start: %v, want all %d", nices(), want)
		}
	}
	p.Foreground()
	for _, n := range nices() {
		if n != 20-own {
			t.Fatalf("nice values after Foreground: %v, want all %d", nices(), 20-own)
		}
	}
}

package pool

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fcgiclient"
	"github.com/fpmux/fpmux/internal/proc"
)

// phpFPM returns the php-fpm binary; without one the test fails on CI and
// is skipped elsewhere.
func phpFPM(t *testing.T) string {
	t.Helper()
	b, err := FindBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("php-fpm is required on CI: %v", err)
		}
		t.Skipf("php-fpm not installed: %v", err)
	}
	return b
}

// testLogger logs through t.Log until the test's cleanups run.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs after every pool stopped
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *tWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// newRelease writes files into a fresh release root that php-fpm workers
// (www-data when the tests run as root) can read.
func newRelease(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{root, filepath.Dir(root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

// poolDir returns a not yet existing directory for a pool's own files.
func poolDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "p")
	if len(d)+len("/fpm.sock") > maxSocketPath {
		t.Fatalf("temp dir %q too long for a unix socket", d)
	}
	return d
}

// startPool starts a pool and stops it (forcibly) when the test ends.
func startPool(t *testing.T, o Options) *Pool {
	t.Helper()
	if strings.HasPrefix(filepath.Base(o.Binary), "php-fpm") {
		// php-fpm's own -t accepts every config a test starts a pool
		// with: what fpmux renders is php-fpm's to judge, not only this
		// package's golden files. (A wrapper binary, standing in for a
		// php-fpm that misbehaves, is not asked.)
		to := o
		to.Dir = filepath.Join(t.TempDir(), "configtest")
		if err := Test(t.Context(), to); err != nil {
			t.Fatalf("php-fpm -t on the config of pool %s: %v", o.ID, err)
		}
	}
	p, err := Start(t.Context(), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(true); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return p
}

// runScript runs root/name through the pool's socket.
func runScript(ctx context.Context, p *Pool, name, query string) (*fcgiclient.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return fcgiDo(ctx, p.Socket(), map[string]string{
		"SCRIPT_FILENAME": filepath.Join(p.o.Root, name),
		"SCRIPT_NAME":     "/" + name,
		"DOCUMENT_ROOT":   p.o.Root,
		"QUERY_STRING":    query,
	})
}

func mustRun(t *testing.T, p *Pool, name, query string) string {
	t.Helper()
	res, err := runScript(t.Context(), p, name, query)
	if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	if res.Status != 200 {
		t.Fatalf("run %s: status %d, body %q, stderr %q", name, res.Status, string(res.Body), res.Stderr)
	}
	return string(res.Body)
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupGoneESRCH waits until kill(-pgid, 0) says no such process. Zombies
// count until pid 1 reaps them, which can take a while in a container.
func groupGoneESRCH(t *testing.T, pgid int) {
	t.Helper()
	eventually(t, 15*time.Second, "process group "+strconv.Itoa(pgid)+" still exists", func() bool {
		return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
	})
}

// liveProcs returns the pids of live (non-zombie) processes whose command
// line contains s.
func liveProcs(s string) []int {
	var pids []int
	ps, _ := proc.Processes()
	for _, p := range ps {
		if p.Pid != os.Getpid() && strings.Contains(p.Cmdline, s) {
			pids = append(pids, p.Pid)
		}
	}
	return pids
}

// groupMembers returns the live processes of group pgid other than pgid.
func groupMembers(pgid int) []int {
	var pids []int
	group, _ := proc.Group(pgid)
	for _, st := range group {
		if st.Pid != pgid {
			pids = append(pids, st.Pid)
		}
	}
	return pids
}

func alive(pid int) bool {
	st, err := proc.ReadStat(pid)
	return err == nil && st.Live()
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// syscallKill SIGKILLs one process.
func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func atoiT(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newGroupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// Package etcdtest runs a real etcd server for tests: Debian's etcd-server
// (/usr/bin/etcd) on loopback ports with a data directory under the test's
// temp dir, stopped when the test ends. The fleet tests prove fpmux against
// the etcd operators run, not a fake.
package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Server is one etcd member run by a test.
type Server struct {
	t       testing.TB
	bin     string
	dataDir string
	client  string // http://127.0.0.1:port
	peer    string
	logPath string
	// Set by StartSecure: etcd's extra flags (TLS), the clients' TLS, and
	// the root user once auth is on.
	extra          []string
	tls            *tls.Config
	user, password string

	mu     sync.Mutex
	stop   context.CancelFunc // SIGTERM to etcd; SIGKILL 10s later (WaitDelay)
	exited chan struct{}
}

// FindBinary returns etcd's path. A missing etcd skips the test on a
// developer's machine and fails it under CI=true (.ci/run installs
// etcd-server).
func FindBinary(t testing.TB) string {
	t.Helper()
	var missing error
	for _, name := range []string{"etcd", "/usr/bin/etcd", "/usr/local/bin/etcd"} {
		bin, err := exec.LookPath(name)
		if err == nil {
			return bin
		}
		missing = errors.Join(missing, err)
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI=true but etcd is missing (apt-get install etcd-server): %v", missing)
	}
	t.Skipf("etcd missing (apt-get install etcd-server): %v", missing)
	return ""
}

// Start runs etcd and waits until it answers; t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{
		t: t, bin: FindBinary(t), dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "etcd.log"),
		client: loopbackURL(t),
		peer:   loopbackURL(t),
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil && len(b) > 0 {
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("etcd log (tail):\n%s", b)
			}
		}
	})
	s.Restart()
	return s
}

// Endpoint is the client URL.
func (s *Server) Endpoint() string { return s.client }

// Restart starts etcd again (after Stop) on the same ports and data, and
// waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	ctx, stop := context.WithCancel(context.Background())
	args := append([]string{"--name", "fleet-test", "--data-dir", s.dataDir,
		"--listen-client-urls", s.client, "--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer, "--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "fleet-test=" + s.peer, "--initial-cluster-state", "new",
		"--log-level", "warn", "--logger", "zap"}, s.extra...)
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "ETCD_UNSUPPORTED_ARCH=" + os.Getenv("ETCD_UNSUPPORTED_ARCH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		stop()
		s.t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { defer close(exited); cmd.Wait() }()
	s.mu.Lock()
	s.stop, s.exited = stop, exited
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(s.logPath)
			s.t.Fatalf("etcd exited at start:\n%s", b)
		default:
		}
		if s.answers() {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("etcd did not answer on %s within 30s", s.client)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answers tells whether etcd serves a read.
func (s *Server) answers() bool {
	cfg := s.clientConfig()
	cfg.DialTimeout = time.Second
	c, err := clientv3.New(cfg)
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Get(ctx, "/health-probe")
	return err == nil
}

// Stop stops etcd (SIGTERM, then SIGKILL after 10s) and waits for it to
// exit; safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	stop, exited := s.stop, s.exited
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-exited
	}
}

// Client returns a client of the server, closed at cleanup.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(s.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// loopbackURL returns http://127.0.0.1:PORT with a port free now: etcd
// takes its ports by number, and reports none it chose itself.
func loopbackURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

// nopLogger keeps the etcd client's own logging out of test output.
func nopLogger() *zap.Logger { return zap.NewNop() }

package fcgiclient

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startPHPFPM runs a php-fpm8.2 master with one static worker serving
// root on a unix socket under t.TempDir and returns the socket; the master
// and its worker stop with the test. Without php-fpm8.2 the test fails
// under CI=true and is skipped elsewhere.
func startPHPFPM(t *testing.T, root string) string {
	t.Helper()
	bin, err := exec.LookPath("php-fpm8.2")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/php-fpm8.2"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("php-fpm8.2 is required under CI=true: %v", err)
			}
			t.Skipf("php-fpm8.2 not installed: %v", err)
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "fpm.sock")
	conf := filepath.Join(dir, "fpm.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[global]
error_log = %s/fpm.log
daemonize = no
[app]
listen = %s
pm = static
pm.max_children = 1
php_admin_value[log_errors] = On
php_admin_value[display_errors] = Off
`, dir, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-F", "-R", "-y", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	// php-fpm listens before it says so: wait for the socket to take a
	// connection, or for the master to exit.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(filepath.Join(dir, "fpm.log"))
			t.Fatalf("php-fpm exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("php-fpm did not listen within 30s")
		}
	}
}

// TestPHPFPM: the client against a real php-fpm8.2: status and headers
// PHP set, the body, PHP's errors on FCGI_STDERR, a request body, and
// requests one after another on one kept connection.
func TestPHPFPM(t *testing.T) {
	root := t.TempDir()
	scripts := map[string]string{
		"page.php":  `<?php header("X-App: page"); http_response_code(418); echo "teapot\n";`,
		"warn.php":  `<?php error_log("something to say"); echo "said";`,
		"post.php":  `<?php echo strtoupper(file_get_contents("php://input"));`,
		"count.php": `<?php echo getmypid();`,
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := startPHPFPM(t, root)
	php := func(script string, extra ...string) map[string]string {
		p := map[string]string{
			"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
			"SCRIPT_NAME": "/" + script, "SCRIPT_FILENAME": filepath.Join(root, script),
			"REQUEST_URI": "/" + script, "DOCUMENT_ROOT": root,
		}
		for i := 0; i+1 < len(extra); i += 2 {
			p[extra[i]] = extra[i+1]
		}
		return p
	}
	runFetches(t, sock, []fetchCase{
		{name: "status, header and body", req: Request{Params: php("page.php")}, wantStatus: 418, wantBody: "teapot\n",
			wantHeader: [2]string{"X-App", "page"}},
		{name: "PHP errors on stderr", req: Request{Params: php("warn.php")}, wantStatus: 200, wantBody: "said", wantStderr: "something to say"},
		{name: "request body", req: Request{Params: php("post.php", "REQUEST_METHOD", "POST", "CONTENT_LENGTH", "5",
			"CONTENT_TYPE", "text/plain"), Body: strings.NewReader("hello")}, wantStatus: 200, wantBody: "HELLO"},
		{name: "missing script", req: Request{Params: php("nothing.php")}, wantStatus: 404, wantBody: "File not found.\n"},
	})

	t.Run("kept connection", func(t *testing.T) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var pids []string
		for range 3 {
			resp, err := Do(t.Context(), conn, Request{Params: php("count.php")})
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, string(resp.Body))
		}
		if pids[0] == "" || pids[1] != pids[0] || pids[2] != pids[0] {
			t.Errorf("worker pids %q: want three answers of the pool's one worker", pids)
		}
	})
}

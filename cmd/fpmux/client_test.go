package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientTestRequest is what the fake admin API received.
type clientTestRequest struct {
	Method string
	Path   string // escaped, as sent on the wire
	Body   string
}

// clientTestServer is a fake admin API that answers every request with one
// status and body and records what it received.
type clientTestServer struct {
	admin string // address in fpmux's form, for -admin

	mu     sync.Mutex
	status int
	body   string
	got    []clientTestRequest
}

func (s *clientTestServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.got = append(s.got, clientTestRequest{r.Method, r.URL.EscapedPath(), string(b)})
	status, body := s.status, s.body
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (s *clientTestServer) answer(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body, s.got = status, body, nil
}

func (s *clientTestServer) requests() []clientTestRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]clientTestRequest(nil), s.got...)
}

// startClientTestServer serves a fake admin API on network ("unix" under
// t.TempDir, or "tcp" on 127.0.0.1:0) until the test ends.
func startClientTestServer(t *testing.T, network string) *clientTestServer {
	t.Helper()
	var (
		ln  net.Listener
		err error
		s   = &clientTestServer{status: http.StatusOK, body: "[]"}
	)
	switch network {
	case "unix":
		path := filepath.Join(t.TempDir(), "admin.sock")
		ln, err = net.Listen("unix", path)
		s.admin = "unix:" + path
	case "tcp":
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			s.admin = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatalf("listen %s: %v", network, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return s
}

// runClientTest runs one client command and returns its exit code and output.
func runClientTest(name string, args []string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runClient(name, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// clientTestRelease is the release the fake server hands back.
const clientTestRelease = `{"id":"r2","root":"/var/www/app/releases/r2","state":"active","in_flight":3,"requests":1200,
 "created_at":"2026-11-22T20:00:00Z","activated_at":"2026-11-22T20:00:01Z","retired_at":null,
 "ready_ms":143,"error":"","pool":{"pid":1234,"restarts":0,"socket":"/var/lib/fpmux/pools/r2/fpm.sock",
 "active_processes":1,"idle_processes":1,"total_processes":2,"listen_queue":0,"max_children_reached":0}}`

func TestClientCommands(t *testing.T) {
	srv := startClientTestServer(t, "unix")
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		cmd    string
		args   []string // "ADMIN" is replaced by the server's address
		status int
		body   string

		wantReq    *clientTestRequest // nil: no request expected
		wantJSON   map[string]any     // when set, compared with the request body
		wantCode   int
		wantStdout string
		wantStderr string // exact; "" means empty unless wantCode is 2
	}{
		{
			name: "deploy activates by default",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r2", "-root", "/var/www/app/releases/r2"},
			status: 201, body: clientTestRelease,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON:   map[string]any{"id": "r2", "root": "/var/www/app/releases/r2", "activate": true, "timeout": "60s"},
			wantStdout: "release r2 active (root /var/www/app/releases/r2, ready in 143ms; only php-fpm's ping was checked: no health check or warm-up path ran PHP)\n",
		},
		{
			name: "deploy no-activate with double-dash flags and timeout",
			cmd:  "deploy", args: []string{"--admin", "ADMIN", "--id", "r3", "--root", "/srv/r3", "--no-activate", "--timeout", "2m"},
			status: 201, body: `{"id":"r3","root":"/srv/r3","state":"ready","ready_ms":80}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON:   map[string]any{"id": "r3", "root": "/srv/r3", "activate": false, "timeout": "120s"},
			wantStdout: "release r3 ready (root /srv/r3, ready in 80ms; only php-fpm's ping was checked: no health check or warm-up path ran PHP)\n",
		},
		{
			name: "deploy makes a relative root absolute",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r4", "-root", "releases/r4", "-timeout", "1500ms"},
			status: 201, body: `{"id":"r4","root":"/x","state":"active"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON:   map[string]any{"id": "r4", "root": filepath.Join(cwd, "releases/r4"), "activate": true, "timeout": "1.5s"},
			wantStdout: "release r4 active (root /x; only php-fpm's ping was checked: no health check or warm-up path ran PHP)\n",
		},
		{
			name: "deploy with its own health checks",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r6", "-root", "/srv/r6", "-health", "/health", "-health", "/index.php?db=1"},
			status: 201, body: `{"id":"r6","root":"/srv/r6","state":"active","ready_ms":90,` +
				`"health":[{"path":"/health","status":200,"ms":12,"ok":true},{"path":"/index.php?db=1","status":200,"ms":30,"ok":true}]}`,
			wantReq: &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON: map[string]any{"id": "r6", "root": "/srv/r6", "activate": true, "timeout": "60s",
				"health": []any{map[string]any{"path": "/health"}, map[string]any{"path": "/index.php?db=1"}}},
			wantStdout: "release r6 active (root /srv/r6, ready in 90ms, passed 2 health checks in 42ms)\n",
		},
		{
			name: "deploy with no health check",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r6", "-root", "/srv/r6", "-no-health", "-warmup", "/"},
			status: 201, body: `{"id":"r6","root":"/srv/r6","state":"active","warmup":[{"path":"/","status":200,"requests":4}]}`,
			wantReq: &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON: map[string]any{"id": "r6", "root": "/srv/r6", "activate": true, "timeout": "60s",
				"health": []any{}, "warmup": []any{"/"}},
			wantStdout: "release r6 active (root /srv/r6, warmed 1 paths in 4 requests)\n",
		},
		{
			name: "deploy -health takes a path",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r6", "-root", "/srv/r6", "-health", "health"},
			wantCode: 2,
		},
		{
			name: "deploy -health and -no-health",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r6", "-root", "/srv/r6", "-health", "/h", "-no-health"},
			wantCode: 2,
		},
		{
			name: "deploy failure folds php-fpm's words onto one line",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r5", "-root", "/srv/r5"},
			status: 502, body: `{"error":"start pool r5: php-fpm exited:\nERROR: unable to bind listening socket\nERROR: FPM initialization failed\n"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON:   map[string]any{"id": "r5", "root": "/srv/r5", "activate": true, "timeout": "60s"},
			wantCode:   1,
			wantStderr: "fpmux deploy: start pool r5: php-fpm exited:; ERROR: unable to bind listening socket; ERROR: FPM initialization failed\n",
		},
		{
			name: "deploy of a known id",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r2", "-root", "/srv/r2"},
			status: 409, body: `{"error":"release r2 already exists"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases"},
			wantJSON:   map[string]any{"id": "r2", "root": "/srv/r2", "activate": true, "timeout": "60s"},
			wantCode:   1,
			wantStderr: "fpmux deploy: release r2 already exists\n",
		},
		{
			name: "deploy without -id",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-root", "/srv/r2"},
			wantCode: 2,
		},
		{
			name: "deploy without -root",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r2"},
			wantCode: 2,
		},
		{
			name: "deploy with a bad timeout",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r2", "-root", "/srv", "-timeout", "soon"},
			wantCode: 2,
		},
		{
			name: "deploy with an unknown flag",
			cmd:  "deploy", args: []string{"-admin", "ADMIN", "-id", "r2", "-root", "/srv", "-force"},
			wantCode: 2,
		},
		{
			name: "deploy -h",
			cmd:  "deploy", args: []string{"-h"},
			wantCode: 0,
		},
		{
			name: "activate",
			cmd:  "activate", args: []string{"-admin", "ADMIN", "r1"},
			status: 200, body: `{"id":"r1","root":"/srv/r1","state":"active"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases/r1/activate"},
			wantStdout: "release r1 active (root /srv/r1)\n",
		},
		{
			name: "activate with flags after the id",
			cmd:  "activate", args: []string{"r1", "-admin", "ADMIN"},
			status: 200, body: `{}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases/r1/activate"},
			wantStdout: "release r1 active\n",
		},
		{
			name: "activate escapes the id",
			cmd:  "activate", args: []string{"-admin", "ADMIN", "a/b c"},
			status: 200, body: `{"id":"a/b c","state":"active"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases/a%2Fb%20c/activate"},
			wantStdout: "release a/b c active\n",
		},
		{
			name: "activate of an unknown release",
			cmd:  "activate", args: []string{"-admin", "ADMIN", "nope"},
			status: 404, body: `{"error":"release nope not found"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/releases/nope/activate"},
			wantCode:   1,
			wantStderr: "fpmux activate: release nope not found\n",
		},
		{
			name: "activate without an id",
			cmd:  "activate", args: []string{"-admin", "ADMIN"},
			wantCode: 2,
		},
		{
			name: "activate with two ids",
			cmd:  "activate", args: []string{"-admin", "ADMIN", "r1", "r2"},
			wantCode: 2,
		},
		{
			name: "rollback",
			cmd:  "rollback", args: []string{"-admin", "ADMIN"},
			status: 200, body: `{"id":"r1","root":"/srv/r1","state":"active"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/rollback"},
			wantStdout: "rolled back: release r1 active (root /srv/r1)\n",
		},
		{
			name: "rollback with nothing to go back to",
			cmd:  "rollback", args: []string{"-admin", "ADMIN"},
			status: 409, body: `{"error":"no previous release to roll back to"}`,
			wantReq:    &clientTestRequest{Method: "POST", Path: "/v1/rollback"},
			wantCode:   1,
			wantStderr: "fpmux rollback: no previous release to roll back to\n",
		},
		{
			name: "rollback takes no argument",
			cmd:  "rollback", args: []string{"-admin", "ADMIN", "r1"},
			wantCode: 2,
		},
		{
			name: "retire",
			cmd:  "retire", args: []string{"-admin", "ADMIN", "r1"},
			status: 202, body: `{"id":"r1","root":"/srv/r1","state":"draining"}`,
			wantReq:    &clientTestRequest{Method: "DELETE", Path: "/v1/releases/r1"},
			wantStdout: "release r1 draining (root /srv/r1)\n",
		},
		{
			name: "retire of the active release",
			cmd:  "retire", args: []string{"-admin", "ADMIN", "r2"},
			status: 409, body: `{"error":"release r2 is active; activate another release first"}`,
			wantReq:    &clientTestRequest{Method: "DELETE", Path: "/v1/releases/r2"},
			wantCode:   1,
			wantStderr: "fpmux retire: release r2 is active; activate another release first\n",
		},
		{
			name: "status with no releases",
			cmd:  "status", args: []string{"-admin", "ADMIN"},
			status: 200, body: "[]\n",
			wantReq:    &clientTestRequest{Method: "GET", Path: "/v1/releases"},
			wantStdout: "no releases\n",
		},
		{
			name: "status with a null list",
			cmd:  "status", args: []string{"-admin", "ADMIN"},
			status: 200, body: "null",
			wantReq:    &clientTestRequest{Method: "GET", Path: "/v1/releases"},
			wantStdout: "no releases\n",
		},
		{
			name: "status -json prints the body",
			cmd:  "status", args: []string{"-admin", "ADMIN", "-json"},
			status: 200, body: `[{"id":"r1","state":"active"}]`,
			wantReq:    &clientTestRequest{Method: "GET", Path: "/v1/releases"},
			wantStdout: "[\n  {\n    \"id\": \"r1\",\n    \"state\": \"active\"\n  }\n]\n",
		},
		{
			name: "status with an error that is not JSON",
			cmd:  "status", args: []string{"-admin", "ADMIN"},
			status: 500, body: "boom\n",
			wantReq:    &clientTestRequest{Method: "GET", Path: "/v1/releases"},
			wantCode:   1,
			wantStderr: "fpmux status: fpmux answered 500 Internal Server Error: boom\n",
		},
		{
			name: "status with an answer that is not a list",
			cmd:  "status", args: []string{"-admin", "ADMIN"},
			status: 200, body: `{"id":"r1"}`,
			wantReq:  &clientTestRequest{Method: "GET", Path: "/v1/releases"},
			wantCode: 1,
		},
		{
			name: "status with a bad admin address",
			cmd:  "status", args: []string{"-admin", "unix:relative.sock"},
			wantCode: 2,
		},
		{
			name: "unknown command",
			cmd:  "restart", args: nil,
			wantCode:   2,
			wantStderr: "fpmux: unknown command \"restart\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.answer(tt.status, tt.body)
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "ADMIN", srv.admin)
			}
			code, stdout, stderr := runClientTest(tt.cmd, args)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if stdout != tt.wantStdout && !(tt.wantCode != 0 && tt.wantStdout == "") {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tt.wantStdout)
			}
			if tt.wantCode == 1 {
				if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "fpmux "+tt.cmd+": ") {
					t.Errorf("stderr %q is not one line starting with %q", stderr, "fpmux "+tt.cmd+": ")
				}
			}
			if tt.wantStderr != "" && stderr != tt.wantStderr {
				t.Errorf("stderr %q, want %q", stderr, tt.wantStderr)
			}
			if tt.wantCode == 0 && tt.wantStderr == "" && tt.wantReq != nil && stderr != "" {
				t.Errorf("unexpected stderr %q", stderr)
			}
			if tt.wantCode == 2 && stderr == "" {
				t.Errorf("usage error printed nothing")
			}

			got := srv.requests()
			if tt.wantReq == nil {
				if len(got) != 0 {
					t.Fatalf("server got %d requests, want none: %+v", len(got), got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("server got %d requests, want 1: %+v", len(got), got)
			}
			if got[0].Method != tt.wantReq.Method || got[0].Path != tt.wantReq.Path {
				t.Errorf("request %s %s, want %s %s", got[0].Method, got[0].Path, tt.wantReq.Method, tt.wantReq.Path)
			}
			if tt.wantJSON != nil {
				var body map[string]any
				if err := json.Unmarshal([]byte(got[0].Body), &body); err != nil {
					t.Fatalf("request body %q: %v", got[0].Body, err)
				}
				if !reflect.DeepEqual(body, tt.wantJSON) {
					t.Errorf("request body %v, want %v", body, tt.wantJSON)
				}
			} else if got[0].Body != "" {
				t.Errorf("request body %q, want none", got[0].Body)
			}
		})
	}
}

func TestClientStatusTable(t *testing.T) {
	srv := startClientTestServer(t, "unix")
	created := time.Now().Add(-3*24*time.Hour - 30*time.Minute).UTC().Format(time.RFC3339)
	srv.answer(200, `[
	 {"id":"r2","root":"/var/www/app/releases/r2","state":"active","in_flight":3,"requests":1200,"created_at":"`+created+`",
	  "pool":{"pid":1234,"restarts":0,"socket":"/var/lib/fpmux/pools/r2/fpm.sock","active_processes":1,"idle_processes":1,
	          "total_processes":2,"listen_queue":0,"max_children_reached":0}},
	 {"id":"release-10","root":"/var/www/app/releases/release-10","state":"failed","created_at":"`+created+`",
	  "error":"php-fpm exited:\nERROR: bad pool"},
	 {"id":"r3","state":"starting","pool":{"pid":99,"status_error":"GET /status: connection refused"}}
	]`)
	code, stdout, stderr := runClientTest("status", []string{"-admin", srv.admin})
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "" +
		"ID          STATE     IN-FLIGHT  REQUESTS  ROOT                              AGE\n" +
		"r2          active    3          1200      /var/www/app/releases/r2          3d\n" +
		"release-10  failed    -          -         /var/www/app/releases/release-10  3d\n" +
		"r3          starting  -          -         -                                 -\n" +
		"\n" +
		"r2: pool pid 1234, processes 2 (active 1, idle 1), listen queue 0, max children reached 0, restarts 0, socket /var/lib/fpmux/pools/r2/fpm.sock\n" +
		"release-10: error: php-fpm exited:; ERROR: bad pool\n" +
		"r3: pool pid 99, status page: GET /status: connection refused\n"
	if stdout != want {
		t.Errorf("status table:\n%s\nwant:\n%s", stdout, want)
	}
}

func TestClientAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m"},
		{5*time.Minute + 3*time.Second, "5m3s"},
		{2 * time.Hour, "2h"},
		{25*time.Hour + 10*time.Minute, "25h10m"},
		{72 * time.Hour, "3d"},
		{80 * time.Hour, "3d8h"},
	}
	for _, tt := range tests {
		if got := clientAge(tt.d); got != tt.want {
			t.Errorf("clientAge(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestClientTCPAddress(t *testing.T) {
	srv := startClientTestServer(t, "tcp")
	srv.answer(200, "[]")
	code, stdout, stderr := runClientTest("status", []string{"-admin", srv.admin})
	if code != 0 || stdout != "no releases\n" || stderr != "" {
		t.Fatalf("status over tcp: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := srv.requests(); len(got) != 1 || got[0].Path != "/v1/releases" {
		t.Fatalf("server got %+v", got)
	}
}

func TestClientUnreachable(t *testing.T) {
	dir := t.TempDir()

	// A socket file nobody listens on any more: connection refused.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	// A TCP port nobody listens on.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedTCP := tl.Addr().String()
	tl.Close()

	tests := []struct {
		name  string
		admin string
	}{
		{"missing socket", "unix:" + filepath.Join(dir, "missing.sock")},
		{"stale socket", "unix:" + stale},
		{"closed tcp port", closedTCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cmd := range [][]string{
				{"status", "-admin", tt.admin},
				{"deploy", "-admin", tt.admin, "-id", "r1", "-root", "/srv/r1"},
				{"retire", "-admin", tt.admin, "r1"},
			} {
				code, stdout, stderr := runClientTest(cmd[0], cmd[1:])
				wantPrefix := "fpmux " + cmd[0] + ": fpmux is not reachable at " + tt.admin
				if code != 1 || stdout != "" || !strings.HasPrefix(stderr, wantPrefix) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one line starting %q",
						cmd[0], code, stdout, stderr, wantPrefix)
				}
			}
		})
	}
}

// TestClientTimeout checks a hung server ends the command with one line
// instead of hanging it.
func TestClientTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hung.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				<-release
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		close(release)
		ln.Close()
		<-done
	})

	c, err := newClient("unix:"+path, 200*time.Millisecond, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.do(http.MethodGet, "/v1/releases", nil)
	if err == nil || !strings.Contains(err.Error(), "no answer from fpmux at unix:"+path+" within 200ms") {
		t.Fatalf("err = %v, want a timeout naming the address", err)
	}
	var ee *clientExitError
	if errors.As(err, &ee) {
		t.Fatalf("timeout should be a plain error (exit 1), got exit error %d", ee.code)
	}
}

// TestClientStatusShowsWhatHoldsADrain: the requests a draining release
// still holds are listed under the table, oldest first as the server sent
// them.
func TestClientStatusShowsWhatHoldsADrain(t *testing.T) {
	srv := startClientTestServer(t, "unix")
	srv.answer(200, `[
	 {"id":"r1","state":"draining","in_flight":2,
	  "holding":[{"method":"POST","uri":"/upload?token=REDACTED","age_ms":75000},{"method":"GET","uri":"/report","age_ms":3200}]},
	 {"id":"r2","state":"active","in_flight":0}
	]`)
	code, stdout, stderr := runClientTest("status", []string{"-admin", srv.admin})
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "r1: draining, held by POST /upload?token=REDACTED (1m15s)\n" +
		"r1: draining, held by GET /report (3s)\n"
	if !strings.HasSuffix(stdout, want) {
		t.Errorf("status:\n%s\nwant it to end with:\n%s", stdout, want)
	}
}

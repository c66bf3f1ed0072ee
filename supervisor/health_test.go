package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/fcgi"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgiclient"
	"github.com/fpmux/fpmux/fcgiclient/fcgitest"
)

func TestAnswerQuote(t *testing.T) {
	for _, c := range []struct {
		name     string
		a        *fcgiclient.Response
		wantNote string
		want     string
	}{
		{"parse error", &fcgiclient.Response{Status: 500, Stderr: "PHP message: PHP Parse error:  syntax error, unexpected end of file in /x/bad.php on line 2"}, "200",
			"answered 500 with an empty body (want 200): PHP Parse error:  syntax error, unexpected end of file in /x/bad.php on line 2"},
		{"first line of the body", &fcgiclient.Response{Status: 503, Body: []byte("\n  Down for maintenance \nsecond line\n")}, "",
			`answered 503 with body "Down for maintenance"`},
		{"several PHP messages", &fcgiclient.Response{Status: 200, Body: []byte("ok"), Stderr: "PHP message: PHP Warning:  a\nPHP message: PHP Fatal error:  b\n"}, `"yes" in the body`,
			`answered 200 with body "ok" (want "yes" in the body): PHP Warning:  a; PHP Fatal error:  b`},
		{"a long body line is cut", &fcgiclient.Response{Status: 404, Body: []byte(strings.Repeat("é", 400))}, "",
			`answered 404 with body "` + strings.Repeat("é", 150) + `..."`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := quote(c.a, c.wantNote); got != c.want {
				t.Errorf("quote() = %q\nwant      %q", got, c.want)
			}
			if strings.Contains(quote(c.a, c.wantNote), "\n") {
				t.Error("the quote spans lines")
			}
		})
	}
}

func TestHealthParams(t *testing.T) {
	p := healthParams("/health?db=1", "/srv/r1", "r1")
	want := map[string]string{
		"HTTP_X_FPMUX_HEALTH": "1", "SCRIPT_FILENAME": "/srv/r1/index.php", "REQUEST_URI": "/health?db=1",
		"QUERY_STRING": "db=1", "FPMUX_RELEASE": "r1", "HTTP_USER_AGENT": "fpmux-health", "HTTP_X_FPMUX_WARMUP": "",
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %q, want %q", k, p[k], v)
		}
	}
}

func TestCheckHealth(t *testing.T) {
	s, _ := newTestSupervisor(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	sock := fcgitest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fpmux-Health") != "1" || fcgi.ProcessEnv(r)["FPMUX_RELEASE"] != "r1" {
			w.WriteHeader(400)
			return
		}
		switch r.URL.Path {
		case "/ok.php":
			w.Write([]byte("all good: database ok\n"))
		case "/created.php":
			w.WriteHeader(201)
		case "/error.php":
			w.WriteHeader(500)
			w.Write([]byte("<h1>Whoops</h1>\nmore"))
		case "/hang.php":
			<-hold
		}
	})).Sock
	r := &release{id: "r1", root: "/srv/r1", createdAt: time.Now()}
	ms := config.Duration(300 * time.Millisecond)
	check := func(path string, status int, body string) config.HealthCheck {
		return config.HealthCheck{Path: path, Status: status, Body: body, Timeout: config.Duration(5 * time.Second)}
	}
	for _, c := range []struct {
		name    string
		checks  []config.HealthCheck
		results int    // how many ran
		err     string // "" when all pass
	}{
		{"none", nil, 0, ""},
		{"all pass", []config.HealthCheck{check("/ok.php", 200, "database ok"), check("/created.php", 201, "")}, 2, ""},
		{"wrong status", []config.HealthCheck{check("/ok.php", 200, ""), check("/error.php", 200, ""), check("/ok.php", 200, "")}, 2,
			`health check /error.php failed: answered 500 with body "<h1>Whoops</h1>" (want 200)`},
		{"wrong body", []config.HealthCheck{check("/ok.php", 200, "redis ok")}, 1,
			`health check /ok.php failed: answered 200 with body "all good: database ok" (want "redis ok" in the body)`},
		{"status the app did not send", []config.HealthCheck{check("/created.php", 200, "")}, 1,
			"health check /created.php failed: answered 201 with an empty body (want 200)"},
		{"hangs past its timeout", []config.HealthCheck{{Path: "/hang.php", Status: 200, Timeout: ms}}, 1,
			"health check /hang.php failed: no answer within its timeout of 300ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			results, err := s.checkHealth(context.Background(), r, sock, c.checks)
			if len(results) != c.results {
				t.Errorf("%d results, want %d: %+v", len(results), c.results, results)
			}
			if c.err == "" {
				if err != nil {
					t.Fatalf("checkHealth: %v", err)
				}
				for _, res := range results {
					if !res.OK || res.Error != "" || res.Status != res.Want {
						t.Errorf("%+v: want passed", res)
					}
				}
				return
			}
			if err == nil || err.Error() != c.err {
				t.Fatalf("checkHealth: %v\nwant %s", err, c.err)
			}
			last := results[len(results)-1]
			if last.OK || last.Error == "" {
				t.Errorf("last result %+v: want failed with its reason", last)
			}
			if took := time.Since(start); took > 30*time.Second {
				t.Errorf("checkHealth took %v", took) // a bound on hanging, not a timing claim
			}
		})
	}
	var m dto.Metric
	if err := s.m.HealthFailures.Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetCounter().GetValue(); v != 4 {
		t.Errorf("fpmux_health_check_failures_total = %v, want 4", v)
	}
}

// TestWarmAppFailFast: under warmup_failures: fail, a path that fails its
// first request ends the warm-up there, before the spread to every worker.
func TestWarmAppFailFast(t *testing.T) {
	s, _ := newTestSupervisor(t)
	app := fcgitest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing.php" {
			w.WriteHeader(404)
		}
	}))
	r := &release{id: "r1", root: "/srv/r1", createdAt: time.Now()}
	got := s.warmApp(context.Background(), r, warmBackend(t, app.Sock), 4, "", []string{"/", "/missing.php"}, true)
	if len(got) != 2 || got[0].Requests != 1 || got[1].Requests != 1 || got[1].Failed != 1 || got[0].Failed != 0 {
		t.Fatalf("%+v: want each path sent once, /missing.php failed", got)
	}
	if n := app.Conns(); n != 1 {
		t.Errorf("%d connections, want 1 (no spread)", n)
	}
	err := warmupError(got)
	if err == nil || err.Error() != "warm-up /missing.php failed (1 of 1 requests): answered 404 with an empty body" {
		t.Errorf("warmupError = %v", err)
	}
	if err := warmupError(got[:1]); err != nil {
		t.Errorf("warmupError of a warm-up that passed = %v", err)
	}
}

func TestHealthList(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []healthBody
		want []config.HealthCheck
		err  string
	}{
		{"absent: the config's", nil, nil, ""},
		{"empty: none", []healthBody{}, []config.HealthCheck{}, ""},
		{"a path alone", []healthBody{{Path: "/health"}},
			[]config.HealthCheck{{Path: "/health", Status: 200, Timeout: config.DefaultHealthTimeout}}, ""},
		{"all fields", []healthBody{{Path: "/h", Status: 204, Body: "ok", Timeout: "2s"}},
			[]config.HealthCheck{{Path: "/h", Status: 204, Body: "ok", Timeout: config.Duration(2 * time.Second)}}, ""},
		{"bad timeout", []healthBody{{Path: "/"}, {Path: "/h", Timeout: "soon"}}, nil, `health[1].timeout: "soon" is not a duration`},
		{"negative timeout", []healthBody{{Path: "/h", Timeout: "-1s"}}, nil, "health[0].timeout: must be positive"},
		{"two problems", []healthBody{{Path: "h", Status: 999}}, nil,
			`health[0].path: health check path "h" must start with '/'; health[0].status: is 999`},
		{"too many", make([]healthBody, config.MaxHealth+1), nil, "health lists 21 checks: at most 20"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := healthList(c.in)
			if c.err != "" {
				e, _ := err.(*Error)
				if e == nil || e.Status != 400 || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("healthList: %v, want a 400 saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (c.want == nil) || len(got) != len(c.want) {
				t.Fatalf("healthList = %#v, want %#v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("check %d = %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestDeployRefusesWhatItsWorkersCannotRead: a release root the pool's
// workers cannot enter (0700 of root, the workers being www-data, when the
// test runs as root; mode 0000 otherwise), and a script they cannot read,
// are refused before any pool starts, naming the path, its mode and owner.
func TestDeployRefusesWhatItsWorkersCannotRead(t *testing.T) {
	s, newRoot := newPoolSupervisor(t)
	mode := os.FileMode(0o700)
	if os.Geteuid() != 0 {
		mode = 0
	}
	closed := newRoot("closed")
	if err := os.Chmod(closed, mode); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(closed, 0o755) })
	_, err := s.Deploy(t.Context(), DeployRequest{ID: "closed", Root: closed, Activate: true})
	want := fmt.Sprintf("release closed: release root %s (mode %04o, owner ", closed, mode)
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "is not readable by the pool's user") {
		t.Fatalf("deploy of a closed root: %v\nwant it to start %q", err, want)
	}
	if e, _ := err.(*Error); e == nil || e.Status != 422 {
		t.Errorf("status of %v: want 422", err)
	}
	if got, _ := s.Get(t.Context(), "closed"); got.State != StateFailed || got.Error == "" {
		t.Errorf("closed release: %+v, want failed with the reason", got)
	}
	if _, err := os.Stat(filepath.Join(s.poolsDir(), "closed")); !os.IsNotExist(err) {
		t.Errorf("a pool directory was made for the refused release: %v", err)
	}

	if os.Geteuid() != 0 {
		return // fpmux's own files: the owner reads its 0600 script
	}
	secret := newRoot("secret")
	if err := os.Chmod(filepath.Join(secret, "index.php"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.Deploy(t.Context(), DeployRequest{ID: "secret", Root: secret, Activate: true, Warmup: []string{"/"}})
	want = "release secret: script " + filepath.Join(secret, "index.php") + " (of warm-up path /) (mode 0600, owner root) is not readable by the pool's user"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("deploy of an unreadable script: %v\nwant it to start %q", err, want)
	}
}

// TestDeployRefusedByAHealthCheck deploys, on a real php-fpm pool, a
// release whose front controller has a syntax error: the deploy is
// refused quoting PHP's parse error from the answer's stderr, the release
// is failed with its check's result, and its pool is gone.
func TestDeployRefusedByAHealthCheck(t *testing.T) {
	s, newRoot := newPoolSupervisor(t)
	root := newRoot("bad")
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte("<?php\nif (true) {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checks := []config.HealthCheck{config.HealthCheck{Path: "/"}.WithDefaults()}
	rel, err := s.Deploy(t.Context(), DeployRequest{ID: "bad", Root: root, Activate: true, Health: checks})
	if err == nil {
		t.Fatalf("deploy succeeded: %+v", rel)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "release bad: health check / failed: answered 500 with an empty body (want 200): PHP Parse error:  ") ||
		!strings.Contains(msg, " in "+filepath.Join(root, "index.php")+" on line 3") ||
		strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line quoting the status and PHP's parse error", msg)
	}
	if e, _ := err.(*Error); e == nil || e.Status != 502 {
		t.Errorf("status of %v: want 502", err)
	}
	got, _ := s.Get(t.Context(), "bad")
	if got.State != StateFailed || len(got.Health) != 1 || got.Health[0].OK || got.Health[0].Status != 500 {
		t.Errorf("release after the refusal: %+v, want failed with its check's result", got)
	}
	if _, err := os.Stat(filepath.Join(s.poolsDir(), "bad")); !os.IsNotExist(err) {
		t.Errorf("the refused release's pool directory is left: %v", err)
	}
	if s.ActiveID() != "" {
		t.Errorf("active release %q, want none", s.ActiveID())
	}

	// The same release, fixed, passes and is active.
	good := newRoot("good")
	rel, err = s.Deploy(t.Context(), DeployRequest{ID: "good", Root: good, Activate: true, Health: checks})
	if err != nil || rel.State != StateActive || len(rel.Health) != 1 || !rel.Health[0].OK {
		t.Fatalf("deploy of a good release: %+v, %v", rel, err)
	}
	if rel.Pool == nil || syscall.Kill(rel.Pool.Pid, 0) != nil {
		t.Errorf("the good release's master is not running: %+v", rel.Pool)
	}
}

// TestRestoreDoesNotCheckAgain: the release state.json names passed its
// checks when it was deployed; at a restart it is brought back even when
// the health checks in force would refuse it, since refusing it would
// leave nothing serving. A deploy under the same checks is refused.
func TestRestoreDoesNotCheckAgain(t *testing.T) {
	s, newRoot := newPoolSupervisor(t)
	root := newRoot("r1")
	if _, err := s.Deploy(t.Context(), DeployRequest{ID: "r1", Root: root, Activate: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := *s.conf()
	cfg.Health = []config.HealthCheck{config.HealthCheck{Path: "/missing.php"}.WithDefaults()}
	cfg.Warmup = []string{"/missing.php"}
	next, err := New(Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close(context.Background()) })
	if err := next.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	if next.ActiveID() != "r1" {
		t.Fatalf("after restore the active release is %q, want r1", next.ActiveID())
	}
	_, err = next.Deploy(t.Context(), DeployRequest{ID: "r2", Root: newRoot("r2"), Activate: true})
	if err == nil || !strings.Contains(err.Error(), "health check /missing.php failed: answered 404") {
		t.Errorf("deploy of r2 under the same checks: %v, want it refused by its health check", err)
	}
}

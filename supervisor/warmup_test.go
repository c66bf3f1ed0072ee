package supervisor

import (
	"context"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgiclient/fcgitest"
	"github.com/fpmux/fpmux/fcgimux"
)

func TestWarmupParams(t *testing.T) {
	const root = "/srv/releases/r7"
	for _, c := range []struct {
		target                  string
		script, query, pathInfo string
	}{
		{"/", "/index.php", "", ""},
		{"/index.php?x=1", "/index.php", "x=1", ""},
		{"/blog/post-3?lang=en&a=b", "/index.php", "lang=en&a=b", ""},
		{"/admin/", "/index.php", "", ""},
		{"/admin/users.php", "/admin/users.php", "", ""},
		{"/admin/users.php/edit/4?tab=2", "/admin/users.php", "tab=2", "/edit/4"},
		// ".php" must end a segment, as in nginx's ^(.+?\.php)(/.*)$.
		{"/a.phpx/b.php", "/a.phpx/b.php", "", ""},
		{"/a.phpx/route", "/index.php", "", ""},
		{"/route?next=/x.php", "/index.php", "next=/x.php", ""},
		// The script is percent-decoded, as nginx's $fastcgi_script_name is.
		{"/caf%C3%A9.php", "/café.php", "", ""},
		{"/bad%zz.php", "/bad%zz.php", "", ""},
		// A script can never leave the release root.
		{"/../../etc/x.php", "/etc/x.php", "", ""},
		{"/a/./b/../c.php", "/a/c.php", "", ""},
	} {
		t.Run(c.target, func(t *testing.T) {
			p := warmupParams(c.target, root, "r7")
			want := map[string]string{
				"SCRIPT_NAME":         c.script,
				"DOCUMENT_URI":        c.script,
				"SCRIPT_FILENAME":     root + c.script,
				"DOCUMENT_ROOT":       root,
				"REQUEST_URI":         c.target,
				"QUERY_STRING":        c.query,
				"PATH_INFO":           c.pathInfo,
				"REQUEST_METHOD":      "GET",
				"SERVER_NAME":         "localhost",
				"HTTP_HOST":           "localhost",
				"FPMUX_RELEASE":       "r7",
				"HTTP_X_FPMUX_WARMUP": "1",
			}
			for k, v := range want {
				if p[k] != v {
					t.Errorf("%s = %q, want %q", k, p[k], v)
				}
			}
			if !strings.HasPrefix(p["SCRIPT_FILENAME"], root+"/") {
				t.Errorf("SCRIPT_FILENAME %q is not under the root", p["SCRIPT_FILENAME"])
			}
		})
	}
}

func TestCheckWarmupList(t *testing.T) {
	many := make([]string, config.MaxWarmup+1)
	for i := range many {
		many[i] = "/"
	}
	for _, c := range []struct {
		name  string
		paths []string
		ok    bool
	}{
		{"none", nil, true},
		{"empty", []string{}, true},
		{"good", []string{"/", "/index.php?x=1"}, true},
		{"at the bound", many[:config.MaxWarmup], true},
		{"too many", many, false},
		{"relative", []string{"/", "index.php"}, false},
		{"space", []string{"/a b"}, false},
		{"control", []string{"/a\nb"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkWarmupList(c.paths)
			if (err == nil) != c.ok {
				t.Fatalf("checkWarmupList: %v, want ok=%v", err, c.ok)
			}
			if e, _ := err.(*Error); err != nil && (e == nil || e.Status != 400) {
				t.Errorf("error %v is not a 400", err)
			}
		})
	}
}

// warmBackend is a Backend to the app on sock, closed with the test.
func warmBackend(t *testing.T, sock string) *fcgimux.Backend {
	b := fcgimux.NewBackend("unix", sock, 0, 8)
	t.Cleanup(b.Close)
	return b
}

func TestWarmApp(t *testing.T) {
	s, _ := newTestSupervisor(t)
	var (
		mu    sync.Mutex
		hits  = map[string]int{}
		marks = map[string]int{}
	)
	app := fcgitest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := fcgi.ProcessEnv(r)
		mu.Lock()
		// net/http/fcgi keeps SCRIPT_FILENAME in the env and REQUEST_URI
		// in the URL.
		hits[r.URL.RequestURI()+" -> "+env["SCRIPT_FILENAME"]]++
		if r.Header.Get("X-Fpmux-Warmup") == "1" && env["FPMUX_RELEASE"] == "r1" {
			marks[r.URL.RequestURI()]++
		}
		mu.Unlock()
		switch env["SCRIPT_FILENAME"] {
		case "/srv/r1/fail.php":
			w.WriteHeader(500)
		case "/srv/r1/missing.php":
			w.WriteHeader(404)
		}
		w.Write([]byte("body"))
	}))
	r := &release{id: "r1", root: "/srv/r1", createdAt: time.Now()}
	paths := []string{"/", "/ok.php?x=1", "/fail.php", "/missing.php"}
	const workers = 3
	got := s.warmApp(context.Background(), r, warmBackend(t, app.Sock), workers, "", paths, false)

	// Each path goes once, on one worker: the compiled scripts and APCu
	// it fills are the pool's, and running every path on every worker
	// too tripled a MediaWiki release's warm-up CPU.
	if len(got) != len(paths) {
		t.Fatalf("%d results for %d paths: %+v", len(got), len(paths), got)
	}
	for i, res := range got {
		if res.Path != paths[i] || res.Requests != 1 {
			t.Errorf("result %d = %+v, want path %s sent once", i, res, paths[i])
		}
	}
	if got[0].Status != 200 || got[0].Failed != 0 || got[0].Error != "" {
		t.Errorf("/: %+v, want 200 and no failure", got[0])
	}
	if got[2].Status != 500 || got[2].Failed != 1 || got[2].Error == "" {
		t.Errorf("/fail.php: %+v, want 500, failed, an error", got[2])
	}
	// A 404 fails a warm-up path too: the script is missing, or the
	// workers cannot read it.
	if got[3].Status != 404 || got[3].Failed != 1 || !strings.HasPrefix(got[3].Error, `answered 404 with body "body"`) {
		t.Errorf("/missing.php: %+v, want 404, failed, the answer quoted", got[3])
	}
	mu.Lock()
	if hits["/ -> /srv/r1/index.php"] != 1 || hits["/ok.php?x=1 -> /srv/r1/ok.php"] != 1 {
		t.Errorf("hits %v: want each path once, / on the front controller", hits)
	}
	for _, p := range paths {
		if marks[p] != 1 {
			t.Errorf("%s reached the app %d times with X-Fpmux-Warmup and FPMUX_RELEASE, want once", p, marks[p])
		}
	}
	mu.Unlock()
	// Without a ping to send to the other workers, one connection.
	if n := app.Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	var m dto.Metric
	if err := s.m.WarmupFailures.Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetCounter().GetValue(); v != 2 {
		t.Errorf("fpmux_warmup_failures_total = %v, want 2", v)
	}
}

func TestWarmAppGivesUpWithItsContext(t *testing.T) {
	s, _ := newTestSupervisor(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	sock := fcgitest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hold // a worker that never answers
	})).Sock
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got := s.warmApp(ctx, &release{id: "r1", root: "/srv/r1", createdAt: time.Now()}, warmBackend(t, sock), 2, "", []string{"/", "/b.php"}, false)
	for _, res := range got {
		if res.Failed != res.Requests || res.Requests != 1 || res.Status != 0 || res.Error == "" {
			t.Errorf("%+v: want every request failed with no status", res)
		}
	}
}

func TestWarmAppNoPoolSocket(t *testing.T) {
	s, dir := newTestSupervisor(t)
	got := s.warmApp(context.Background(), &release{id: "r1", root: "/srv/r1", createdAt: time.Now()}, warmBackend(t, filepath.Join(dir, "none.sock")), 4, "", []string{"/"}, false)
	if len(got) != 1 || got[0].Failed != 1 || got[0].Error == "" {
		t.Fatalf("%+v: want one failed path with its error", got)
	}
	if got := s.warmApp(context.Background(), &release{id: "r1", createdAt: time.Now()}, warmBackend(t, filepath.Join(dir, "none.sock")), 4, "", nil, false); got != nil {
		t.Fatalf("no paths: %+v, want nil", got)
	}
}

func TestDeployChecksItsWarmupList(t *testing.T) {
	s, dir := newTestSupervisor(t)
	root := filepath.Join(dir, "releases")
	many := `"/"` + strings.Repeat(`,"/"`, config.MaxWarmup)
	for _, c := range []struct {
		warmup, want string
	}{
		{`["index.php"]`, `warmup[0]: warm-up path "index.php" must start with '/'`},
		{`["/", "/a b"]`, `warmup[1]`},
		{`[` + many + `]`, `warmup lists 101 paths: at most 100`},
		{`"/"`, `cannot unmarshal string`},
	} {
		body := `{"id":"r1","root":"` + root + `","warmup":` + c.warmup + `}`
		status, _, msg := adminCall(t, s.Handler(), "POST", "/v1/releases", "", strings.NewReader(body))
		if status != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("warmup %.40s: %d %q, want 400 saying %q", c.warmup, status, msg, c.want)
		}
	}
	if len(s.List(t.Context())) != 0 {
		t.Error("a refused deploy registered a release")
	}
}

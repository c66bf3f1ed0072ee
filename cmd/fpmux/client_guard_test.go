package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// guardTestServer answers a deploy with a watching guard, then each GET of
// the release with the next of its states (the last one repeated), and
// records the deploy's body.
type guardTestServer struct {
	mu     sync.Mutex
	states []string
	gets   int
	body   map[string]any
}

func (g *guardTestServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	state := "watching"
	if r.Method == http.MethodPost {
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &g.body)
		if len(g.states) == 0 { // no guard: the first deploy
			io.WriteString(w, `{"id":"r2","root":"/srv/r2","state":"active"}`)
			return
		}
	} else {
		state = g.states[min(g.gets, len(g.states)-1)]
		g.gets++
	}
	reason := map[string]string{"rolled_back": "7 of its 20 answers had status 500 or more (35.0%, over max_error_ratio 5%)",
		"ended": "release r3 was activated during the window"}[state]
	json.NewEncoder(w).Encode(map[string]any{"id": "r2", "root": "/srv/r2", "state": "active",
		"guard": map[string]any{"state": state, "previous": "r1", "left_ms": 1000, "reason": reason, "answered": 20, "errors": 7,
			"window": "1s", "max_error_ratio": 0.05, "min_requests": 20, "max_fatal": 0}})
}

func startGuardTestServer(t *testing.T, states ...string) (admin string, g *guardTestServer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g = &guardTestServer{states: states}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "unix:" + path, g
}

// TestClientDeployGuard: deploy's guard flags become the request's guard
// field; -wait-guard follows the guard to its end and exits 1 when it
// rolled the release back or ended early, 0 when it passed.
func TestClientDeployGuard(t *testing.T) {
	tests := []struct {
		name      string
		flags     []string
		states    []string // the guard's states, GET after GET; none: no guard
		wantCode  int
		wantField any // the request's guard field; nil: absent
		wantOut   string
		wantErr   string
	}{
		{"config's guard", nil, []string{"watching"}, 0, nil, "guard watching release r2 for 1s: back to r1 if over 5% of 20+ answers are 5xx or PHP logs over 0 fatal errors\n", ""},
		{"-guard", []string{"-guard"}, []string{"watching"}, 0, true, "guard watching release r2", ""},
		{"-no-guard", []string{"-no-guard"}, nil, 0, false, "release r2 active", ""},
		{"-wait-guard passed", []string{"-wait-guard"}, []string{"watching", "watching", "passed"}, 0, true,
			"guard passed: release r2 served its 1s window (20 answered, 7 5xx (35.0%), 0 PHP fatal)\n", ""},
		{"-wait-guard rolled back", []string{"-wait-guard"}, []string{"watching", "rolled_back"}, 1, true, "guard watching",
			"fpmux deploy: guard rolled release r2 back to r1: 7 of its 20 answers had status 500 or more (35.0%, over max_error_ratio 5%) (20 answered, 7 5xx (35.0%), 0 PHP fatal)\n"},
		{"-wait-guard ended", []string{"-wait-guard"}, []string{"ended"}, 1, true, "guard watching",
			"fpmux deploy: guard of release r2 ended before its window did: release r3 was activated during the window"},
		{"-wait-guard with no release before", []string{"-wait-guard"}, nil, 0, true, "no guard for release r2: no release was active before it\n", ""},
		{"-guard and -no-guard", []string{"-guard", "-no-guard"}, nil, 2, nil, "", "-no-guard excludes -guard and -wait-guard"},
		{"-wait-guard and -no-activate", []string{"-wait-guard", "-no-activate"}, nil, 2, nil, "", "not with -no-activate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin, srv := startGuardTestServer(t, tt.states...)
			args := append([]string{"-admin", admin, "-id", "r2", "-root", "/srv/r2"}, tt.flags...)
			code, stdout, stderr := runClientTest("deploy", args)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tt.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stdout %q stderr %q; want them to hold %q and %q", stdout, stderr, tt.wantOut, tt.wantErr)
			}
			if tt.wantCode == 2 {
				return
			}
			srv.mu.Lock()
			field, sent := srv.body["guard"]
			srv.mu.Unlock()
			if tt.wantField == nil && sent || tt.wantField != nil && field != tt.wantField {
				t.Errorf("request's guard field %v (sent %v), want %v", field, sent, tt.wantField)
			}
		})
	}
}

// TestClientGuardLine: status's line for each state of a guard.
func TestClientGuardLine(t *testing.T) {
	base := clientGuard{Previous: "r1", Answered: 40, Errors: 2, Window: "1m0s", MaxErrorRatio: 0.05, MinRequests: 20, LeftMS: 42500}
	for _, tt := range []struct {
		state, reason, want string
	}{
		{"watching", "", "guard watching, 42s left of 1m0s: 40 answered, 2 5xx (5.0%), 0 PHP fatal; back to r1 if over 5% of 20+ answers are 5xx or PHP logs over 0 fatal errors"},
		{"passed", "", "guard passed (40 answered, 2 5xx (5.0%), 0 PHP fatal)"},
		{"rolled_back", "too many\nerrors", "guard rolled back to r1: too many; errors (40 answered, 2 5xx (5.0%), 0 PHP fatal)"},
		{"ended", "release r3 was activated", "guard ended: release r3 was activated (40 answered, 2 5xx (5.0%), 0 PHP fatal)"},
		{"watching 7%", "", "guard watching, 42s left of 1m0s: 40 answered, 2 5xx (5.0%), 0 PHP fatal; back to r1 if over 7% of 20+ answers are 5xx or PHP logs over 0 fatal errors"},
	} {
		g := base
		g.State, g.Reason = tt.state, tt.reason
		if tt.state == "watching 7%" {
			g.State, g.MaxErrorRatio = "watching", 0.07
		}
		if got := clientGuardLine(&g); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.state, got, tt.want)
		}
	}
}

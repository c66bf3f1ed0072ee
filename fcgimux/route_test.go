package fcgimux

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/fcgi"
	"strings"
	"sync"
	"testing"
)

func TestRouteHint(t *testing.T) {
	long := strings.Repeat("r", 300) // a 4-byte length field
	tests := []struct {
		name     string
		params   []byte
		ok       bool
		release  string
		token    string
		nilToken bool // Token is nil: the header was absent
		conflict bool
	}{
		{name: "absent", params: encodePairs(phpParams("/index.php")...)},
		{name: "no params", params: nil},
		{name: "release and token",
			params: encodePairs(phpParams("/index.php", paramHintRelease, "r2", paramHintToken, "secret-0123456789")...),
			ok:     true, release: "r2", token: "secret-0123456789"},
		{name: "token before release, first pairs",
			params: encodePairs(paramHintToken, "t", paramHintRelease, "r2", "SCRIPT_FILENAME", "/x.php"),
			ok:     true, release: "r2", token: "t"},
		{name: "release without token",
			params: encodePairs(phpParams("/index.php", paramHintRelease, "r2")...),
			ok:     true, release: "r2", nilToken: true},
		{name: "release with an empty token",
			params: encodePairs(paramHintRelease, "r2", paramHintToken, ""),
			ok:     true, release: "r2"},
		{name: "token without release",
			params: encodePairs(phpParams("/index.php", paramHintToken, "secret-0123456789")...)},
		{name: "empty release", params: encodePairs(paramHintRelease, "", paramHintToken, "t")},
		{name: "release repeated, same value",
			params: encodePairs(paramHintRelease, "r2", paramHintToken, "t", paramHintRelease, "r2"),
			ok:     true, release: "r2", token: "t"},
		{name: "release repeated, other value",
			params: encodePairs(paramHintRelease, "r2", paramHintToken, "t", paramHintRelease, "r3"),
			ok:     true, release: "r2", token: "t", conflict: true},
		{name: "empty release, then a release",
			params: encodePairs(paramHintRelease, "", paramHintRelease, "r3"),
			ok:     true, release: "", nilToken: true, conflict: true},
		{name: "token repeated, other value",
			params: encodePairs(paramHintRelease, "r2", paramHintToken, "t", paramHintToken, "u"),
			ok:     true, release: "r2", token: "t", conflict: true},
		{name: "release merged by the web server",
			params: encodePairs(paramHintRelease, "r2, r3", paramHintToken, "t"),
			ok:     true, release: "r2, r3", token: "t"},
		{name: "odd bytes in the value",
			params: encodePairs(paramHintRelease, "../r2\x00\xff", paramHintToken, "t"),
			ok:     true, release: "../r2\x00\xff", token: "t"},
		{name: "long release", params: encodePairs(paramHintRelease, long, paramHintToken, long),
			ok: true, release: long, token: long},
		{name: "name only in a value",
			params: encodePairs(phpParams("/index.php", "QUERY_STRING", paramHintRelease+"=r2")...)},
		{name: "lower case name", params: encodePairs(strings.ToLower(paramHintRelease), "r2")},
		{name: "longer name", params: encodePairs(paramHintRelease+"S", "r2")},
		{name: "malformed params",
			params: append(encodePairs(paramHintRelease, "r2"), 0x05, 0x7f, 'A')},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := routeHint(tt.params)
			if ok != tt.ok {
				t.Fatalf("routeHint ok = %v, want %v (hint %+v)", ok, tt.ok, h)
			}
			if !ok {
				if h.Release != nil || h.Token != nil || h.Conflict {
					t.Errorf("no hint, but %+v", h)
				}
				return
			}
			if string(h.Release) != tt.release || string(h.Token) != tt.token || (h.Token == nil) != tt.nilToken || h.Conflict != tt.conflict {
				t.Errorf("hint {%q %q nil-token=%v conflict=%v}, want {%q %q nil-token=%v conflict=%v}",
					h.Release, h.Token, h.Token == nil, h.Conflict, tt.release, tt.token, tt.nilToken, tt.conflict)
			}
		})
	}
}

// TestRouteHintAllocatesNothing: the hint is looked for in every request's
// params, so it must cost no allocation, whether present or not.
func TestRouteHintAllocatesNothing(t *testing.T) {
	without := encodePairs(phpParams("/index.php", "HTTP_COOKIE", "a=b", "QUERY_STRING", "x=HTTP_X_FPMUX_")...)
	with := encodePairs(phpParams("/index.php", paramHintRelease, "r2", paramHintToken, "secret-0123456789")...)
	for name, params := range map[string][]byte{"without": without, "with": with} {
		if n := testing.AllocsPerRun(100, func() { routeHint(params) }); n != 0 {
			t.Errorf("routeHint %s a hint: %v allocations, want 0", name, n)
		}
	}
}

// TestRewriteParamsDropsHints: PHP never sees the hint params, whatever
// their values and however often they come.
func TestRewriteParamsDropsHints(t *testing.T) {
	p := pinnedPaths{docroot: testDocroot, root: "/srv/releases/42", release: "42"}
	for _, in := range [][]string{
		phpParams("/a.php", paramHintRelease, "r2", paramHintToken, "secret-0123456789"),
		phpParams("/a.php", paramHintRelease, "", paramHintToken, ""),
		phpParams("/a.php", paramHintToken, "t", paramHintRelease, "r2", paramHintRelease, "r3", paramHintToken, "u"),
		append([]string{paramHintRelease, strings.Repeat("x", 200)}, phpParams("/a.php")...),
	} {
		out, _, _, err := rewriteParams(nil, nil, encodePairs(in...), p)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		got := decodePairs(t, out)
		for _, name := range []string{paramHintRelease, paramHintToken} {
			if v, ok := got[name]; ok {
				t.Errorf("%q: %s=%q reached PHP", in, name, v)
			}
		}
		if got["FPMUX_RELEASE"] != "42" || got["SCRIPT_FILENAME"] != "/srv/releases/42/a.php" || got["REQUEST_METHOD"] != "POST" {
			t.Errorf("%q: the other params became %v", in, got)
		}
	}
}

// hintRouter is a HintRouter over a testRouter: it records the hints it
// gets (copied: they point into the connection's buffers) and pins a hinted
// request to preview, or fails it with hintErr.
type hintRouter struct {
	*testRouter
	preview Pin
	hintErr error

	mu    sync.Mutex
	hints []string
}

func (r *hintRouter) PinHint(h RouteHint) (Pin, error) {
	r.mu.Lock()
	r.hints = append(r.hints, fmt.Sprintf("%s|%s|%v", h.Release, h.Token, h.Conflict))
	r.mu.Unlock()
	if r.hintErr != nil {
		return Pin{}, r.hintErr
	}
	p := r.preview
	p.Tracker = r.testRouter
	return p, nil
}

func (r *hintRouter) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hints...)
}

func TestServerRoutesByHint(t *testing.T) {
	// The backend shows the release a request was relayed for and whether
	// the hint headers reached it.
	b := startTestBackend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "release=%s\nhint-release=%q\nhint-token=%q\n", fcgi.ProcessEnv(r)["FPMUX_RELEASE"],
			r.Header.Values("X-Fpmux-Release"), r.Header.Values("X-Fpmux-Preview-Token"))
	})
	newRouter := func() *hintRouter {
		return &hintRouter{
			testRouter: newTestRouter(b, 1),
			preview:    Pin{Release: "r8", Root: "/srv/releases/r8", Backend: NewBackend("unix", b.addr, 0, 1)},
		}
	}
	hinted := phpParams("/index.php", paramHintRelease, "r8", paramHintToken, "secret-0123456789")
	const noHeaders = "hint-release=[]\nhint-token=[]\n"

	t.Run("hint goes to PinHint, headers stripped", func(t *testing.T) {
		router := newRouter()
		_, addr := startServer(t, router)
		c := dialRaw(t, addr)
		c.send(request(1, true, "", hinted...))
		if r := c.read(1); !strings.Contains(r.stdout, "release=r8\n"+noHeaders) {
			t.Fatalf("hinted request: %q, want it on r8 without the hint headers", r.stdout)
		}
		// The next request on the connection carries none: Pin, not PinHint.
		c.send(request(1, true, "", phpParams("/index.php")...))
		if r := c.read(1); !strings.Contains(r.stdout, "release=r7\n"+noHeaders) {
			t.Fatalf("next request: %q, want it on r7", r.stdout)
		}
		if got := router.seen(); len(got) != 1 || got[0] != "r8|secret-0123456789|false" {
			t.Errorf("PinHint got %q, want one hint for r8 with its token", got)
		}
		if got := router.doneCodes(); len(got) != 2 {
			t.Errorf("Done codes %v, want two", got)
		}
	})

	t.Run("PinHint error is a 503 with its message", func(t *testing.T) {
		router := newRouter()
		router.hintErr = errors.New("release r8 is draining, not ready")
		_, addr := startServer(t, router)
		before := b.requests.Load()
		c := dialRaw(t, addr)
		c.send(request(1, true, "", hinted...))
		r := c.read(1)
		if !strings.HasPrefix(r.stdout, "Status: 503") || !strings.Contains(r.stdout, "fpmux: release r8 is draining, not ready\n") {
			t.Fatalf("got %q, want a 503 naming the release and its state", r.stdout)
		}
		if b.requests.Load() != before {
			t.Error("the refused request reached the backend")
		}
	})

	t.Run("a router without hints pins as usual, headers stripped", func(t *testing.T) {
		router := newTestRouter(b, 1)
		_, addr := startServer(t, router)
		c := dialRaw(t, addr)
		c.send(request(1, true, "", hinted...))
		if r := c.read(1); !strings.Contains(r.stdout, "release=r7\n"+noHeaders) {
			t.Fatalf("hinted request to a plain Router: %q, want it on r7 without the hint headers", r.stdout)
		}
	})
}

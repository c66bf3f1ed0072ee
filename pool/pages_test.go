package pool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPagePathsAreRandomPerStart: each pool start draws its own ping and
// status paths, which ReadPagePaths finds again in the pool's directory.
// Asked directly, php-fpm answers neither the fixed paths pools used to
// have nor the bare prefixes, whichever param names them (SCRIPT_NAME, a
// PATH_INFO it derives the URI from, REDIRECT_URL); the same params naming
// the pool's own status path do get the page, so the test would see it.
func TestPagePathsAreRandomPerStart(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"probe.php": "<?php echo 'probe';", "index.php": "<?php echo 'index';"})
	var pools [2]*Pool
	for i := range pools {
		o := Options{ID: "pages", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
			Directives: map[string]string{"pm": "static", "pm.max_children": "1"}}
		p := startPool(t, o)
		pools[i] = p
		for _, pp := range []struct{ path, prefix string }{{p.PingPath(), PingPrefix}, {p.StatusPath(), StatusPrefix}} {
			rest, ok := strings.CutPrefix(pp.path, pp.prefix)
			if !ok || !pagePathRe.MatchString(rest) {
				t.Fatalf("page path %q: want %s, \"-\" and 32 hex digits", pp.path, pp.prefix)
			}
		}
		ping, status, err := ReadPagePaths(o.Dir)
		if err != nil || ping != p.PingPath() || status != p.StatusPath() {
			t.Fatalf("ReadPagePaths(%s) = %q, %q, %v; the pool has %q, %q", o.Dir, ping, status, err, p.PingPath(), p.StatusPath())
		}
		if err := p.Ping(t.Context()); err != nil {
			t.Fatalf("Ping on the random path: %v", err)
		}
		if _, err := p.Status(t.Context()); err != nil {
			t.Fatalf("Status on the random path: %v", err)
		}
	}
	if pools[0].PingPath() == pools[1].PingPath() || pools[0].StatusPath() == pools[1].StatusPath() {
		t.Fatalf("two starts drew the same paths: %q %q", pools[0].PingPath(), pools[0].StatusPath())
	}

	p := pools[0]
	script := filepath.Join(root, "probe.php")
	// bypasses are the params that made php-fpm answer its page at uri
	// when the pool's status path was /fpmux-status.
	bypasses := func(uri string) map[string]map[string]string {
		return map[string]map[string]string{
			"SCRIPT_NAME": {"SCRIPT_NAME": uri, "SCRIPT_FILENAME": uri},
			"PATH_INFO": {"SCRIPT_NAME": "/probe.php", "SCRIPT_FILENAME": script + "/x",
				"PATH_INFO": uri + "/x", "QUERY_STRING": "full"},
			"REDIRECT_URL": {"SCRIPT_NAME": "/probe.php", "SCRIPT_FILENAME": script,
				"REDIRECT_URL": uri, "PATH_TRANSLATED": filepath.Join(root, "index.php"), "QUERY_STRING": "full"},
		}
	}
	isPage := func(body string) bool {
		return strings.Contains(body, "accepted conn") || strings.TrimSpace(body) == pingAnswer
	}
	for _, uri := range []string{StatusPrefix, PingPrefix, StatusPrefix + "-", PingPrefix + "-"} {
		for name, params := range bypasses(uri) {
			res, err := fcgiDo(t.Context(), p.Socket(), params)
			if err != nil {
				t.Fatalf("%s naming %s: %v", name, uri, err)
			}
			if isPage(string(res.Body)) {
				t.Errorf("%s naming %s got php-fpm's own page: %d %q", name, uri, res.Status, string(res.Body))
			}
		}
	}
	for name, params := range bypasses(p.StatusPath()) {
		res, err := fcgiDo(t.Context(), p.Socket(), params)
		if err != nil || !isPage(string(res.Body)) {
			t.Errorf("%s naming the pool's status path: %v %q; want the status page (else the check above proves nothing)", name, err, string(res.Body))
		}
	}
}

func TestReadPagePathsRefusesAForeignConfig(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := ReadPagePaths(dir); err == nil {
		t.Error("no config: got no error")
	}
	for _, conf := range []string{
		"[x]\nping.path = \"/fpmux-ping\"\npm.status_path = \"/fpmux-status\"\n",
		"[x]\nping.path = \"/fpmux-ping-00112233445566778899aabbccddeeff\"\n",
		"[x]\nping.path = \"/ping\"\npm.status_path = \"/fpmux-status-00112233445566778899aabbccddeeff\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, confName), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if ping, status, err := ReadPagePaths(dir); err == nil {
			t.Errorf("config %q: got %q, %q and no error", conf, ping, status)
		}
	}
}

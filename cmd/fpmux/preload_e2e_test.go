package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// preloadPHP declares, for release id, a class and a function every
// release declares differently: one php-fpm serving two releases could
// preload only one of them, and including the other's would die with
// "Cannot redeclare".
const preloadPHP = `<?php
final class Release {
    const ID = '__ID__';
    public static function __ID__(): string { return self::ID; }
}
function release_id_from_preload(): string { return Release::__ID__(); }
`

// preloadProbePHP answers which release serves, which one its preloaded
// class names (undefined, a fatal error, if nothing was preloaded), and
// whether opcache preloaded and JIT compiles.
const preloadProbePHP = `<?php
header('Content-Type: text/plain');
$st = opcache_get_status(false);
echo getenv('FPMUX_RELEASE'), ' class=', release_id_from_preload(),
    ' preloaded=', isset($st['preload_statistics']) ? 'yes' : 'no',
    ' jit=', !empty($st['jit']['on']) ? 'on' : 'off', "\n";
`

// TestPreloadPerRelease deploys two releases whose preload scripts declare
// the same class and function differently, r2 under load, with
// opcache.preload "{release_root}/preload.php" and JIT on: every request
// sees its own release's class, preloaded, with JIT on, and none fails.
// Run as root, fpmux sets opcache.preload_user, without which PHP refuses
// to start.
func TestPreloadPerRelease(t *testing.T) {
	s := newStack(t, stackOptions{ini: map[string]string{
		"opcache.preload":         "{release_root}/preload.php",
		"opcache.jit":             "tracing",
		"opcache.jit_buffer_size": "16M",
	}})
	deploy := func(id string) {
		t.Helper()
		root := s.newRelease(id)
		for name, body := range map[string]string{"preload.php": preloadPHP, "preload-probe.php": preloadProbePHP} {
			if err := os.WriteFile(filepath.Join(root, name), []byte(strings.ReplaceAll(body, "__ID__", id)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if code, out, errs := s.cli("deploy", "-id", id, "-root", root); code != 0 {
			t.Fatalf("deploy %s: exit %d: %s%s", id, code, out, errs)
		}
		s.notePgids()
	}
	deploy("r1")
	stop := make(chan struct{})
	results := s.runLoad(4, "/preload-probe.php", stop)
	s.waitFor("requests served by r1", 60*time.Second, func() bool { return s.metric(`fpmux_requests_total{code="200",release="r1"}`) >= 20 })
	deploy("r2")
	s.waitFor("requests served by r2", 60*time.Second, func() bool { return s.metric(`fpmux_requests_total{code="200",release="r2"}`) >= 20 })
	close(stop)

	by := map[string]int{}
	failed := 0
	for _, r := range results() {
		want := map[string]bool{}
		for _, id := range []string{"r1", "r2"} {
			want[fmt.Sprintf("%s class=%s preloaded=yes jit=on\n", id, id)] = true
		}
		if r.err != nil || r.status != 200 || !want[r.body] {
			if failed++; failed <= 5 {
				t.Errorf("request: %d %q %v", r.status, r.body, r.err)
			}
			continue
		}
		by[strings.Fields(r.body)[0]]++
	}
	if failed > 0 || by["r1"] == 0 || by["r2"] == 0 {
		t.Errorf("%d requests failed; served by r1 %d, by r2 %d", failed, by["r1"], by["r2"])
	}
	t.Logf("served by r1 %d, by r2 %d, failed %d", by["r1"], by["r2"], failed)

	// A preload script that does not compile fails its deploy, quoting
	// PHP; the release before serves on.
	root := s.newRelease("r3")
	if err := os.WriteFile(filepath.Join(root, "preload.php"), []byte("<?php class Release {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := s.cli("deploy", "-id", "r3", "-root", root); code != 1 || !strings.Contains(errs, "PHP Parse error") {
		t.Errorf("deploy of a broken preload script: exit %d, %s%s; want exit 1 quoting PHP's parse error", code, out, errs)
	}
	if code, body, err := s.get(newHTTPClient(), "/preload-probe.php"); err != nil || code != 200 || !strings.HasPrefix(body, "r2 class=r2 ") {
		t.Errorf("after the failed deploy: %d %q %v, want r2 serving", code, body, err)
	}
}

package fcgimux

import (
	"bytes"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func encodePairs(kv ...string) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = appendPair(b, kv[i], kv[i+1])
	}
	return b
}

func decodePairs(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := eachPair(b, func(n, v []byte) error {
		m[string(n)] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLengthEncoding(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0}},
		{127, []byte{127}},
		{128, []byte{0x80, 0, 0, 128}},
		{70000, []byte{0x80, 0x01, 0x11, 0x70}},
	}
	for _, tt := range tests {
		got := appendLen(nil, tt.n)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("appendLen(%d) = % x, want % x", tt.n, got, tt.want)
		}
		n, size, ok := readLen(got)
		if !ok || n != tt.n || size != len(tt.want) {
			t.Errorf("readLen(% x) = %d, %d, %v", got, n, size, ok)
		}
	}
}

func TestEachPairMalformed(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"name length past end", []byte{5, 0, 'a'}},
		{"value length past end", []byte{1, 5, 'a', 'b'}},
		{"long length truncated", []byte{0x80, 0}},
		{"2 GiB claimed", []byte{0xff, 0xff, 0xff, 0xff, 0, 'a'}},
		{"missing value length", []byte{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := eachPair(tt.in, func(_, _ []byte) error { return nil })
			if !errors.Is(err, errParamsFormat) {
				t.Fatalf("got %v, want errParamsFormat", err)
			}
		})
	}
}

func TestRewriteParams(t *testing.T) {
	p := pinnedPaths{docroot: "/var/www/app/current", root: "/srv/releases/42", release: "42", reserved: []string{"/fpmux-ping"}}
	tests := []struct {
		name       string
		in         []string
		want       map[string]string // params expected in the output (subset)
		absent     []string
		wantStatus int // 0: accepted
	}{
		{
			name: "nginx request",
			in: []string{"SCRIPT_FILENAME", "/var/www/app/current/index.php", "DOCUMENT_ROOT", "/var/www/app/current",
				"PATH_TRANSLATED", "/var/www/app/current/extra", "REQUEST_URI", "/x?y=1"},
			want: map[string]string{"SCRIPT_FILENAME": "/srv/releases/42/index.php", "DOCUMENT_ROOT": "/srv/releases/42",
				"PATH_TRANSLATED": "/srv/releases/42/extra", "REQUEST_URI": "/x?y=1", "FPMUX_RELEASE": "42"},
		},
		{
			name: "public subdirectory as document root",
			in:   []string{"SCRIPT_FILENAME", "/var/www/app/current/public/index.php", "DOCUMENT_ROOT", "/var/www/app/current/public/"},
			want: map[string]string{"SCRIPT_FILENAME": "/srv/releases/42/public/index.php", "DOCUMENT_ROOT": "/srv/releases/42/public/"},
		},
		{
			// lighttpd's broken-scriptfilename sends the script followed by
			// PATH_INFO, "/" included: php-fpm splits that and sets
			// ORIG_SCRIPT_FILENAME and PATH_TRANSLATED, as PHP behind
			// php-fpm directly sees them, only while the slash is there.
			name: "trailing slash kept",
			in:   []string{"SCRIPT_FILENAME", "/var/www/app/current/info.php/", "DOCUMENT_ROOT", "/var/www/app/current/", "PATH_TRANSLATED", "/var/www/app/current/a/./b/"},
			want: map[string]string{"SCRIPT_FILENAME": "/srv/releases/42/info.php/", "DOCUMENT_ROOT": "/srv/releases/42/", "PATH_TRANSLATED": "/srv/releases/42/a/b/"},
		},
		{
			name: "apache form trailing slash kept",
			in:   []string{"SCRIPT_FILENAME", "proxy:fcgi://h/var/www/app/current/info.php/"},
			want: map[string]string{"SCRIPT_FILENAME": "proxy:fcgi://h/srv/releases/42/info.php/"},
		},
		{
			// php-fpm knows Apache by the prefix (it then derives PATH_INFO
			// itself and ignores PATH_TRANSLATED), so it is kept.
			name: "apache proxy form",
			in:   []string{"SCRIPT_FILENAME", "proxy:fcgi://127.0.0.1:9700/var/www/app/current/index.php"},
			want: map[string]string{"SCRIPT_FILENAME": "proxy:fcgi://127.0.0.1:9700/srv/releases/42/index.php"},
		},
		{
			name: "apache balancer form",
			in:   []string{"SCRIPT_FILENAME", "proxy:balancer://app/var/www/app/current/index.php"},
			want: map[string]string{"SCRIPT_FILENAME": "proxy:balancer://app/srv/releases/42/index.php"},
		},
		{
			name: "apache prefix in capitals, as php-fpm compares it",
			in:   []string{"SCRIPT_FILENAME", "PROXY:FCGI://h/var/www/app/current/a.php"},
			want: map[string]string{"SCRIPT_FILENAME": "PROXY:FCGI://h/srv/releases/42/a.php"},
		},
		{
			name: "apache path info stays for php-fpm to derive",
			in:   []string{"SCRIPT_FILENAME", "proxy:fcgi://h/var/www/app/current/info.php/extra/path", "SCRIPT_NAME", "/info.php/extra/path"},
			want: map[string]string{"SCRIPT_FILENAME": "proxy:fcgi://h/srv/releases/42/info.php/extra/path", "SCRIPT_NAME": "/info.php/extra/path"},
		},
		{
			name: "apache query string is cut, as php-fpm cuts it",
			in:   []string{"SCRIPT_FILENAME", "proxy:fcgi://h/var/www/app/current/a.php?/../../../../etc/x.php"},
			want: map[string]string{"SCRIPT_FILENAME": "proxy:fcgi://h/srv/releases/42/a.php"},
		},
		{
			name: "apache percent escape that stays inside once decoded",
			in:   []string{"SCRIPT_FILENAME", "proxy:fcgi://h/var/www/app/current/a%41.php"},
			want: map[string]string{"SCRIPT_FILENAME": "proxy:fcgi://h/srv/releases/42/a%41.php"},
		},
		{
			name: "nginx PATH_TRANSLATED with path info",
			in:   []string{"SCRIPT_FILENAME", "/var/www/app/current/index.php", "PATH_INFO", "/a/b", "PATH_TRANSLATED", "/var/www/app/current/a/b"},
			want: map[string]string{"PATH_TRANSLATED": "/srv/releases/42/a/b", "PATH_INFO": "/a/b"},
		},
		{
			name: "client FPMUX_RELEASE is replaced",
			in:   []string{"FPMUX_RELEASE", "evil", "SCRIPT_FILENAME", "/var/www/app/current/a.php"},
			want: map[string]string{"FPMUX_RELEASE": "42"},
		},
		{
			name: "dot segments that stay inside are cleaned",
			in:   []string{"SCRIPT_FILENAME", "/var/www/app/current/lib/../index.php"},
			want: map[string]string{"SCRIPT_FILENAME": "/srv/releases/42/index.php"},
		},
		// Scripts include from DOCUMENT_ROOT, so it is confined like the
		// script (it used to pass as sent).
		{name: "foreign DOCUMENT_ROOT", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "DOCUMENT_ROOT", "/elsewhere"}, wantStatus: 404},
		{name: "DOCUMENT_ROOT dot-dot", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "DOCUMENT_ROOT", "/var/www/app/current/../x"}, wantStatus: 404},
		{name: "relative DOCUMENT_ROOT", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "DOCUMENT_ROOT", "current"}, wantStatus: 404},
		{name: "empty DOCUMENT_ROOT", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "DOCUMENT_ROOT", ""}, wantStatus: 404},
		{name: "DOCUMENT_ROOT with Apache's prefix", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "DOCUMENT_ROOT", "proxy:fcgi://h/var/www/app/current"}, wantStatus: 404},
		// php-fpm runs PATH_TRANSLATED when REDIRECT_URL is set.
		{name: "foreign PATH_TRANSLATED", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "REDIRECT_URL", "/x", "PATH_TRANSLATED", "/tmp/secret.php"}, wantStatus: 404},
		{name: "PATH_TRANSLATED dot-dot", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "PATH_TRANSLATED", "/var/www/app/current/../../x.php"}, wantStatus: 404},
		{name: "PATH_TRANSLATED sibling", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "PATH_TRANSLATED", "/var/www/app/current2/x.php"}, wantStatus: 404},
		{name: "PATH_TRANSLATED with a NUL", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "PATH_TRANSLATED", "/var/www/app/current/x.php\x00"}, wantStatus: 404},
		{name: "PATH_TRANSLATED before SCRIPT_FILENAME", in: []string{"PATH_TRANSLATED", "/tmp/x.php", "SCRIPT_FILENAME", "/var/www/app/current/a.php"}, wantStatus: 404},
		{name: "apache form outside", in: []string{"SCRIPT_FILENAME", "proxy:fcgi://h/tmp/secret.php"}, wantStatus: 404},
		{name: "apache form dot-dot", in: []string{"SCRIPT_FILENAME", "proxy:balancer://h/var/www/app/current/../../x.php"}, wantStatus: 404},
		{name: "apache form dot-dot once decoded", in: []string{"SCRIPT_FILENAME", "proxy:fcgi://h/var/www/app/current/%2e%2e/%2E%2e/x.php"}, wantStatus: 404},
		{name: "apache form NUL once decoded", in: []string{"SCRIPT_FILENAME", "proxy:fcgi://h/var/www/app/current/a.php%00.jpg"}, wantStatus: 404},
		{name: "apache form with a foreign path before the query", in: []string{"SCRIPT_FILENAME", "proxy:fcgi://h/tmp/x.php?/var/www/app/current/a.php"}, wantStatus: 404},
		{name: "apache balancer form without a path", in: []string{"SCRIPT_FILENAME", "proxy:balancer://app"}, wantStatus: 404},
		{name: "dot-dot escape", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/../../../etc/passwd"}, wantStatus: 404},
		{name: "foreign prefix", in: []string{"SCRIPT_FILENAME", "/srv/releases/41/index.php"}, wantStatus: 404},
		{name: "prefix without a slash", in: []string{"SCRIPT_FILENAME", "/var/www/app/current-old/index.php"}, wantStatus: 404},
		{name: "relative path", in: []string{"SCRIPT_FILENAME", "index.php"}, wantStatus: 404},
		{name: "NUL byte", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php\x00.jpg"}, wantStatus: 404},
		{name: "php-fpm's own ping page", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/fpmux-ping", "SCRIPT_NAME", "/fpmux-ping"}, wantStatus: 404},
		// php-fpm derives the URI it matches its pages against from these too.
		{name: "php-fpm's page as a SCRIPT_NAME with more", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "SCRIPT_NAME", "/fpmux-ping-0123"}, wantStatus: 404},
		{name: "php-fpm's page in PATH_INFO", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/probe.php/x", "SCRIPT_NAME", "/probe.php", "PATH_INFO", "/fpmux-ping/x"}, wantStatus: 404},
		{name: "php-fpm's page in REDIRECT_URL", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/probe.php", "REDIRECT_URL", "/fpmux-ping"}, wantStatus: 404},
		{
			name: "a page name elsewhere in the URI is the app's",
			in:   []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "SCRIPT_NAME", "/a.php", "PATH_INFO", "/x/fpmux-ping", "REQUEST_URI", "/fpmux-ping"},
			want: map[string]string{"PATH_INFO": "/x/fpmux-ping", "REQUEST_URI": "/fpmux-ping"},
		},
		{name: "no script", in: []string{"REQUEST_URI", "/"}, wantStatus: 404},
		{name: "apache proxy form without a path", in: []string{"SCRIPT_FILENAME", "proxy:fcgi://127.0.0.1:9700"}, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ends, _, err := rewriteParams(nil, nil, encodePairs(tt.in...), p)
			if tt.wantStatus != 0 {
				var rej *rejectError
				if !errors.As(err, &rej) || rej.status != tt.wantStatus {
					t.Fatalf("got %v, want a %d refusal", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ends[len(ends)-1] != len(out) {
				t.Fatalf("last pair ends at %d, params are %d bytes", ends[len(ends)-1], len(out))
			}
			got := decodePairs(t, out)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestWriteParamsCutsBetweenPairs(t *testing.T) {
	// Three pairs of ~30 KB each: no two fit one record together with a third.
	var b []byte
	var ends []int
	for _, name := range []string{"A", "B", "C"} {
		b = appendPair(b, name, strings.Repeat(name, 30000))
		ends = append(ends, len(b))
	}
	var w bytes.Buffer
	if err := writeParams(&w, 1, b, ends); err != nil {
		t.Fatal(err)
	}
	rr := newRecordReader(&w)
	var records int
	got := map[string]string{}
	for {
		h, c, err := rr.next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Type != typeParams {
			t.Fatalf("record type %d", h.Type)
		}
		if len(c) == 0 {
			break
		}
		records++
		for k, v := range decodePairs(t, c) { // each record decodes on its own
			got[k] = v
		}
	}
	if records != 2 || len(got) != 3 {
		t.Fatalf("got %d records holding %d pairs, want 2 records holding 3", records, len(got))
	}
}

func TestWriteParamsRefusesHugePair(t *testing.T) {
	b := appendPair(nil, "HUGE", strings.Repeat("x", maxContent))
	err := writeParams(&bytes.Buffer{}, 1, b, []int{len(b)})
	var rej *rejectError
	if !errors.As(err, &rej) || rej.status != 431 {
		t.Fatalf("got %v, want a 431 refusal", err)
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"Content-Type: text/html\r\n\r\nbody", 200},
		{"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n", 404},
		{"X-A: b\nstatus: 302\n\n", 302},
		{"Content-Type: text/html\r\n\r\nStatus: 500\r\n", 200},
	}
	for _, tt := range tests {
		if got := parseStatus([]byte(tt.in)); got != tt.want {
			t.Errorf("parseStatus(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestUnderDocroot(t *testing.T) {
	const docroot = "/var/www/app/current"
	tests := []struct {
		in, rest string
		ok       bool
	}{
		{"/var/www/app/current/index.php", "/index.php", true},
		{"/var/www/app/current", "", true},
		{"/var/www/app/current/", "", true},
		{"/var/www/app/current//a/./b.php", "/a/b.php", true},
		{"/var/www/app/current/a/../b.php", "/b.php", true},
		{"/var/www/app/current/../other/x.php", "", false},
		{"/var/www/app/current2/x.php", "", false},
		{"/var/www/app/curren", "", false},
		{"var/www/app/current/x.php", "", false},
		{"", "", false},
		{"/var/www/app/current/.hidden/..x.php", "/.hidden/..x.php", true},
	}
	for _, tt := range tests {
		rest, ok := underDocroot([]byte(tt.in), docroot)
		if ok != tt.ok || ok && string(rest) != tt.rest {
			t.Errorf("underDocroot(%q) = %q, %v; want %q, %v", tt.in, rest, ok, tt.rest, tt.ok)
		}
		if clean := isClean([]byte(tt.in)); tt.in != "" && clean != (path.Clean(tt.in) == tt.in) {
			t.Errorf("isClean(%q) = %v, path.Clean says %q", tt.in, clean, path.Clean(tt.in))
		}
	}
}

func TestIdempotent(t *testing.T) {
	for method, want := range map[string]bool{"GET": true, "HEAD": true, "PUT": true, "DELETE": true, "POST": false, "PATCH": false, "LOCK": false, "": false} {
		if got := idempotent(encodePairs("QUERY_STRING", "", "REQUEST_METHOD", method)); got != want {
			t.Errorf("idempotent(%q) = %v, want %v", method, got, want)
		}
	}
}

// TestConfinePathFollowsSymlinks: each path param php-fpm runs or scripts
// trust, in each form it comes in, is refused when its real path leaves the
// release, and passes when it stays inside (missing files included, which
// php-fpm answers itself).
func TestConfinePathFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "releases", "r1")
	outside := filepath.Join(dir, "shared")
	for _, d := range []string{filepath.Join(root, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(root, "a.php"), filepath.Join(outside, "secret.php")} {
		if err := os.WriteFile(f, []byte("<?php"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"secret.php": filepath.Join(outside, "secret.php"),
		"shared":     outside,
		"inside.php": "a.php",
		"aA.php":     filepath.Join(outside, "secret.php"),
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	const d = "/var/www/app/current"
	p := pinnedPaths{docroot: d, root: real, release: "r1", scripts: &scriptCheck{}}
	script := func(s string) []string { return []string{"SCRIPT_FILENAME", s} }
	with := func(kv ...string) []string { return append(script(d+"/a.php"), kv...) }
	tests := []struct {
		name string
		in   []string
		ok   bool
	}{
		{"script inside", script(d + "/a.php"), true},
		{"script through a link that stays inside", script(d + "/inside.php"), true},
		{"missing script inside", script(d + "/sub/missing.php"), true},
		{"script through a link out", script(d + "/secret.php"), false},
		{"missing script in a directory linked from outside", script(d + "/shared/missing.php"), false},
		{"apache form through a link out", script("proxy:fcgi://h" + d + "/secret.php"), false},
		{"apache form with path info after a link out", script("proxy:fcgi://h" + d + "/secret.php/x/y"), false},
		{"apache form, the query hides a link out", script("proxy:fcgi://h" + d + "/secret.php?x"), false},
		{"apache balancer form through a link out", script("proxy:balancer://h" + d + "/shared/secret.php"), false},
		{"apache form, a link out once percent-decoded", script("proxy:fcgi://h" + d + "/a%41.php"), false},
		{"apache form with path info inside", script("proxy:fcgi://h" + d + "/a.php/x/y"), true},
		{"PATH_TRANSLATED through a link out", with("REDIRECT_URL", "/x", "PATH_TRANSLATED", d+"/secret.php"), false},
		{"PATH_TRANSLATED under a directory linked out", with("PATH_TRANSLATED", d+"/shared/x"), false},
		{"PATH_TRANSLATED of path info inside", with("PATH_TRANSLATED", d+"/extra/path"), true},
		{"DOCUMENT_ROOT linked out", with("DOCUMENT_ROOT", d+"/shared"), false},
		{"DOCUMENT_ROOT the release", with("DOCUMENT_ROOT", d), true},
		{"DOCUMENT_ROOT a directory inside", with("DOCUMENT_ROOT", d+"/sub/"), true},
	}
	for range 2 { // the second time from the remembered verdicts
		for _, tt := range tests {
			_, _, _, err := rewriteParams(nil, nil, encodePairs(tt.in...), p)
			var rej *rejectError
			if tt.ok && err != nil || !tt.ok && !(errors.As(err, &rej) && rej.status == 404) {
				t.Errorf("%s: got %v, want accepted %v", tt.name, err, tt.ok)
			}
		}
	}
}

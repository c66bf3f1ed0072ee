package fcgimux

import (
	"bytes"
	"errors"
	"path"
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
			want: map[string]string{"SCRIPT_FILENAME": "/srv/releases/42/public/index.php", "DOCUMENT_ROOT": "/srv/releases/42/public"},
		},
		{
			name: "apache proxy form",
			in:   []string{"SCRIPT_FILENAME", "proxy:fcgi://127.0.0.1:9700/var/www/app/current/index.php"},
			want: map[string]string{"SCRIPT_FILENAME": "/srv/releases/42/index.php"},
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
		{
			name: "foreign DOCUMENT_ROOT passes as sent",
			in:   []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php", "DOCUMENT_ROOT", "/elsewhere"},
			want: map[string]string{"DOCUMENT_ROOT": "/elsewhere"},
		},
		{name: "dot-dot escape", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/../../../etc/passwd"}, wantStatus: 404},
		{name: "foreign prefix", in: []string{"SCRIPT_FILENAME", "/srv/releases/41/index.php"}, wantStatus: 404},
		{name: "prefix without a slash", in: []string{"SCRIPT_FILENAME", "/var/www/app/current-old/index.php"}, wantStatus: 404},
		{name: "relative path", in: []string{"SCRIPT_FILENAME", "index.php"}, wantStatus: 404},
		{name: "NUL byte", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/a.php\x00.jpg"}, wantStatus: 404},
		{name: "php-fpm's own ping page", in: []string{"SCRIPT_FILENAME", "/var/www/app/current/fpmux-ping", "SCRIPT_NAME", "/fpmux-ping"}, wantStatus: 404},
		{name: "no script", in: []string{"REQUEST_URI", "/"}, wantStatus: 404},
		{name: "apache proxy form without a path", in: []string{"SCRIPT_FILENAME", "proxy:fcgi://127.0.0.1:9700"}, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ends, err := rewriteParams(nil, nil, encodePairs(tt.in...), p)
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

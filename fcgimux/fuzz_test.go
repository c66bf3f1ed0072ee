package fcgimux

import (
	"bytes"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
)

// FuzzRecordReader feeds arbitrary bytes to the record reader: it must
// never panic, and every record it returns must fit what its header said.
func FuzzRecordReader(f *testing.F) {
	var b bytes.Buffer
	writeBeginRequest(&b, 1, true)
	writeRecord(&b, typeParams, 1, encodePairs("SCRIPT_FILENAME", "/var/www/app/current/index.php"))
	writeRecord(&b, typeParams, 1, nil)
	writeRecord(&b, typeStdin, 1, nil)
	f.Add(b.Bytes())
	f.Add([]byte{1, 6, 0, 1, 0xff, 0xff, 0xff, 0})
	f.Add([]byte{2, 1, 0, 1, 0, 8, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		rr := newRecordReader(bytes.NewReader(in))
		for {
			h, c, err := rr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errBadVersion) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(c) != int(h.ContentLength) {
				t.Fatalf("content of %d bytes for a header saying %d", len(c), h.ContentLength)
			}
		}
	})
}

// FuzzRewriteParams feeds arbitrary params to the rewrite: it must never
// panic, and whatever it accepts must name a script under the release root
// and decode again.
func FuzzRewriteParams(f *testing.F) {
	f.Add(encodePairs("SCRIPT_FILENAME", "/var/www/app/current/index.php", "DOCUMENT_ROOT", "/var/www/app/current"))
	f.Add(encodePairs("SCRIPT_FILENAME", "/var/www/app/current/../../../etc/passwd"))
	f.Add(encodePairs("SCRIPT_FILENAME", "proxy:fcgi://127.0.0.1:9700/var/www/app/current/a.php"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x01, 'a'})
	p := pinnedPaths{docroot: "/var/www/app/current", root: "/srv/releases/42", release: "42", reserved: []string{"/fpmux-ping"}}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, ends, err := rewriteParams(nil, nil, in, p)
		if err != nil {
			return
		}
		if len(ends) == 0 || ends[len(ends)-1] != len(out) {
			t.Fatalf("ends %v do not cover %d bytes", ends, len(out))
		}
		got := map[string]string{}
		if err := eachPair(out, func(n, v []byte) error {
			got[string(n)] = string(v)
			return nil
		}); err != nil {
			t.Fatalf("rewritten params do not decode: %v", err)
		}
		s := got["SCRIPT_FILENAME"]
		if s != p.root && !bytes.HasPrefix([]byte(s), []byte(p.root+"/")) {
			t.Fatalf("accepted SCRIPT_FILENAME %q outside the release root", s)
		}
		if got["FPMUX_RELEASE"] != "42" {
			t.Fatalf("FPMUX_RELEASE = %q", got["FPMUX_RELEASE"])
		}
	})
}

// FuzzUnderDocroot checks the byte-level path check against path.Clean:
// a path is under the docroot exactly when its cleaned form is.
func FuzzUnderDocroot(f *testing.F) {
	for _, s := range []string{"/var/www/app/current/index.php", "/var/www/app/current/../x", "//var/www/app/current/./a/", "/var/www/app/current2"} {
		f.Add(s)
	}
	const docroot = "/var/www/app/current"
	f.Fuzz(func(t *testing.T, s string) {
		rest, ok := underDocroot([]byte(s), docroot)
		c := path.Clean(s)
		wantOK := strings.HasPrefix(s, "/") && (c == docroot || strings.HasPrefix(c, docroot+"/"))
		if ok != wantOK {
			t.Fatalf("underDocroot(%q) ok=%v, path.Clean gives %q", s, ok, c)
		}
		if ok && docroot+string(rest) != c {
			t.Fatalf("underDocroot(%q) rest %q, path.Clean gives %q", s, rest, c)
		}
	})
}

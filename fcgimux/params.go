// This file owns FastCGI name-value pairs: decoding the params a web server
// sends, rewriting the paths in them for the release a request is pinned to,
// and encoding them again into PARAMS records php-fpm accepts.

package fcgimux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
)

// errParamsFormat reports params whose length fields do not match the bytes.
var errParamsFormat = errors.New("fastcgi: malformed name-value pair")

// readLen decodes a name-value length: one byte below 128, else four bytes
// with the top bit set.
func readLen(b []byte) (n int, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0]>>7 == 0 {
		return int(b[0]), 1, true
	}
	if len(b) < 4 {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), 4, true
}

func appendLen(dst []byte, n int) []byte {
	if n < 128 {
		return append(dst, byte(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n)|1<<31)
}

// appendPair encodes one name-value pair.
func appendPair(dst []byte, name, value string) []byte {
	dst = appendLen(dst, len(name))
	dst = appendLen(dst, len(value))
	dst = append(dst, name...)
	return append(dst, value...)
}

// eachPair calls fn for every pair in b, in order. The slices point into b.
// Lengths are checked against what is left of b, so a length field cannot
// make it read or allocate beyond the params it was given.
func eachPair(b []byte, fn func(name, value []byte) error) error {
	for len(b) > 0 {
		nl, s1, ok := readLen(b)
		if !ok {
			return errParamsFormat
		}
		b = b[s1:]
		vl, s2, ok := readLen(b)
		if !ok {
			return errParamsFormat
		}
		b = b[s2:]
		if nl > len(b) || vl > len(b)-nl {
			return errParamsFormat
		}
		if err := fn(b[:nl], b[nl:nl+vl]); err != nil {
			return err
		}
		b = b[nl+vl:]
	}
	return nil
}

// pinnedPaths is what a request's params are rewritten with.
type pinnedPaths struct {
	docroot string // the prefix the web server sends, cleaned, e.g. /var/www/app/current
	root    string // the release's real root, e.g. /var/www/app/releases/42
	release string // the release id, passed to PHP as FPMUX_RELEASE
	// reserved begin the paths php-fpm answers itself (ping, status): a
	// SCRIPT_NAME, PATH_INFO or REDIRECT_URL beginning so is refused. The
	// pools' random paths already keep clients off those pages; this
	// keeps a leaked one useless.
	reserved []string
	// scripts, when set, refuses a script whose real path leaves root
	// (see scriptCheck).
	scripts *scriptCheck
}

// rejectError is a request fpmux answers itself, without PHP.
type rejectError struct {
	status int
	reason string
}

func (e *rejectError) Error() string { return e.reason }

// rewriteParams appends to dst the params of src rewritten for p: the docroot
// prefix of SCRIPT_FILENAME, PATH_TRANSLATED and DOCUMENT_ROOT becomes the
// release root, FPMUX_RELEASE is set, and the routing hint params are
// dropped (PHP never sees a preview token). Those three params are the
// paths php-fpm runs a script from or that scripts trust as the release's
// (see confinePath), so each one present is confined to the release: a
// value that does not lie under the docroot once cleaned, or whose real
// path leaves the release, is refused with a 404 and PHP never runs. It
// returns the params as a list of encoded pairs (dst) and the offsets
// where each pair ends, so the caller can cut records between pairs, and
// the request line, picked up on the way.
func rewriteParams(dst []byte, ends []int, src []byte, p pinnedPaths) ([]byte, []int, requestLine, error) {
	sawScript := false
	var line requestLine
	lineDone := false // the first pair after which both were seen is passed
	// The pairs that pass as they are (most of them) are copied a run at
	// a time: run is where the pairs not copied yet begin in src, and a
	// pair that is dropped or mapped first copies the run before it. The
	// walk is eachPair's, written out so that a pair costs no call, with
	// a shortcut for the lengths web servers send, a byte each.
	run := 0
	for i := 0; i < len(src); {
		at, nl, vl, h, recode := i, 0, 0, 2, false
		if i+1 < len(src) && src[i] < 0x80 && src[i+1] < 0x80 {
			nl, vl = int(src[i]), int(src[i+1])
		} else {
			n1, s1, ok := readLen(src[i:])
			if !ok {
				return dst, ends, line, errParamsFormat
			}
			n2, s2, ok := readLen(src[i+s1:])
			if !ok {
				return dst, ends, line, errParamsFormat
			}
			nl, vl, h = n1, n2, s1+s2
			// A length in four bytes that fits in one is sent in one,
			// as a pair encoded anew is.
			recode = s1 == 4 && nl < 128 || s2 == 4 && vl < 128
		}
		i += h
		if nl > len(src)-i || vl > len(src)-i-nl {
			return dst, ends, line, errParamsFormat
		}
		name, value := src[i:i+nl], src[i+nl:i+nl+vl]
		i += nl + vl
		switch string(name) {
		case "FPMUX_RELEASE", // fpmux's to set; a client's value is dropped
			paramHintRelease, paramHintToken: // for fpmux alone (route.go), honoured or not
			dst, run = append(dst, src[run:at]...), i
			continue
		case "SCRIPT_FILENAME", "PATH_TRANSLATED", "DOCUMENT_ROOT":
			apache := string(name) == "SCRIPT_FILENAME"
			sawScript = sawScript || apache
			var err error
			dst, run = append(dst, src[run:at]...), i
			if dst, err = confinePath(dst, name, value, p, apache); err != nil {
				return dst, ends, line, err
			}
			ends = append(ends, len(dst))
			continue
		case "REQUEST_METHOD":
			if !lineDone {
				line.method, lineDone = value, line.uri != nil
			}
		case "REQUEST_URI":
			if !lineDone {
				line.uri, lineDone = value, line.method != nil
			}
		case "SCRIPT_NAME", "PATH_INFO", "REDIRECT_URL":
			// php-fpm takes the URI it matches its ping and status
			// paths against from any of these.
			for _, r := range p.reserved {
				if len(value) >= len(r) && string(value[:len(r)]) == r {
					return dst, ends, line, &rejectError{404, fmt.Sprintf("%s %q names php-fpm's own pages (%s...)", name, value, r)}
				}
			}
		}
		if recode {
			dst, run = append(dst, src[run:at]...), i
			dst = appendBytesPair(dst, name, value)
			ends = append(ends, len(dst))
			continue
		}
		ends = append(ends, len(dst)+i-run) // where it will end once its run is copied
	}
	dst = append(dst, src[run:]...)
	if !sawScript {
		return dst, ends, line, &rejectError{status: 404, reason: "no SCRIPT_FILENAME param"}
	}
	dst = appendPair(dst, "FPMUX_RELEASE", p.release)
	ends = append(ends, len(dst))
	return dst, ends, line, nil
}

// confinePath appends the pair name=value with value mapped onto the
// release, or refuses it. php-fpm 8.2 (sapi/fpm/fpm/fpm_main.c,
// init_request_info) runs SCRIPT_FILENAME, or PATH_TRANSLATED instead when
// REDIRECT_URL is set and the two differ (or always, under
// cgi.fix_pathinfo=0), and computes PATH_TRANSLATED from DOCUMENT_ROOT,
// which scripts also include files from. So each is checked as the script
// path is: no NUL, under the docroot once cleaned (lexical), then inside
// the release once symlinks are followed (p.scripts).
//
// A SCRIPT_FILENAME may carry the prefix Apache's mod_proxy_fcgi or
// mod_proxy_balancer puts before the path (apache is true for it only).
// The prefix is kept and only the path after it mapped: php-fpm knows
// Apache by it, then ignores PATH_TRANSLATED and derives PATH_INFO from
// SCRIPT_FILENAME, which is what PHP behind Apache must see. php-fpm cuts
// that path at a '?', so the check is on what comes before, and the rest
// is not sent.
func confinePath(dst, name, value []byte, p pinnedPaths, apache bool) ([]byte, error) {
	var prefix []byte
	s := value
	if apache {
		var ok bool
		if prefix, s, ok = cutProxyPrefix(value); !ok {
			return dst, &rejectError{404, fmt.Sprintf("%s %q has no path", name, value)}
		}
	}
	if bytes.IndexByte(s, 0) >= 0 {
		return dst, &rejectError{404, fmt.Sprintf("%s %q contains a NUL byte", name, value)}
	}
	rest, ok := underDocroot(s, p.docroot)
	if !ok {
		return dst, &rejectError{404, fmt.Sprintf("%s %q is outside docroot %s", name, value, p.docroot)}
	}
	// Cleaning drops a trailing slash, which php-fpm reads: lighttpd sends
	// SCRIPT_FILENAME as the script and its PATH_INFO ("/info.php/"), and
	// php-fpm sets ORIG_SCRIPT_FILENAME and PATH_TRANSLATED from that split
	// as it would directly. So the slash goes back after the mapped path.
	slash := len(s) > 1 && s[len(s)-1] == '/' && (len(rest) == 0 || rest[len(rest)-1] != '/')
	n := len(prefix) + len(p.root) + len(rest)
	if slash {
		n++
	}
	dst = appendLen(dst, len(name))
	dst = appendLen(dst, n)
	dst = append(dst, name...)
	dst = append(dst, prefix...)
	mapped := len(dst)
	dst = append(dst, p.root...)
	dst = append(dst, rest...)
	if slash {
		dst = append(dst, '/')
	}
	if len(prefix) > 0 && bytes.IndexByte(rest, '%') >= 0 {
		// php-fpm versions that percent-decode Apache's path (with
		// fastcgi.script_path_encoded=0) would open another name.
		if err := checkDecoded(name, value, rest, p); err != nil {
			return dst, err
		}
	}
	if p.scripts == nil {
		return dst, nil
	}
	if real, ok := p.scripts.check(dst[mapped:], p.root); !ok {
		return dst, &rejectError{404, fmt.Sprintf("%s %s leads outside the release through a symlink, to %s", name, dst[mapped:], real)}
	}
	return dst, nil
}

// checkDecoded refuses a path after Apache's prefix whose percent-decoded
// form would leave the release: a dot segment, a NUL or a name that is a
// symlink out. rest is the mapped path after the release root. It is
// rare (a '%' in a script's path), so it may allocate.
func checkDecoded(name, value, rest []byte, p pinnedPaths) error {
	dec := rawURLDecode(rest)
	if bytes.IndexByte(dec, 0) >= 0 || len(dec) > 0 && !isClean(dec) {
		return &rejectError{404, fmt.Sprintf("%s %q leaves the release once percent-decoded", name, value)}
	}
	if p.scripts == nil {
		return nil
	}
	script := append([]byte(p.root), dec...)
	if real, ok := p.scripts.check(script, p.root); !ok {
		return &rejectError{404, fmt.Sprintf("%s %s leads outside the release through a symlink once percent-decoded, to %s", name, script, real)}
	}
	return nil
}

// rawURLDecode decodes each %XX of s as PHP's rawurldecode does, leaving
// a '%' not followed by two hex digits as it is, and '+' as '+'.
func rawURLDecode(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// Apache's prefixes before the path in SCRIPT_FILENAME, e.g.
// "proxy:fcgi://127.0.0.1:9700/var/www/app/current/index.php". php-fpm
// compares them in any case.
var proxyPrefixes = [...][]byte{[]byte("proxy:fcgi://"), []byte("proxy:balancer://")}

// cutProxyPrefix splits a SCRIPT_FILENAME as php-fpm reads it: prefix is
// Apache's prefix with its host ("" without one), and path the path after
// it up to any '?'. ok is false for a prefix with no path after the host.
func cutProxyPrefix(s []byte) (prefix, path []byte, ok bool) {
	for _, pp := range proxyPrefixes {
		if len(s) < len(pp) || !bytes.EqualFold(s[:len(pp)], pp) {
			continue
		}
		i := bytes.IndexByte(s[len(pp):], '/')
		if i < 0 {
			return nil, nil, false
		}
		prefix, path = s[:len(pp)+i], s[len(pp)+i:]
		if j := bytes.IndexByte(path, '?'); j >= 0 {
			path = path[:j]
		}
		return prefix, path, true
	}
	return nil, s, true
}

// idempotent tells whether the request's REQUEST_METHOD is one RFC 9110
// calls idempotent, so that sending it twice is safe.
func idempotent(params []byte) bool {
	ok := false
	eachPair(params, func(name, value []byte) error {
		if string(name) != "REQUEST_METHOD" {
			return nil
		}
		switch string(value) {
		case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
			ok = true
		}
		return errStop
	})
	return ok
}

// requestLine is a request's REQUEST_METHOD and REQUEST_URI params, slices
// of its params, for InFlight: rewriteParams picks them up as it walks the
// params, reading no more of them once it has passed both (nil: absent).
type requestLine struct {
	method, uri []byte
}

// errStop ends an eachPair walk early.
var errStop = errors.New("stop")

func appendBytesPair(dst, name, value []byte) []byte {
	dst = appendLen(dst, len(name))
	dst = appendLen(dst, len(value))
	dst = append(dst, name...)
	return append(dst, value...)
}

// underDocroot cleans the absolute path s and returns what follows the
// docroot in it ("" or "/..."). ok is false when s does not lie under the
// docroot. A path that is already clean, as web servers send them, is
// sliced, not copied.
func underDocroot(s []byte, docroot string) (rest []byte, ok bool) {
	if len(s) == 0 || s[0] != '/' {
		return nil, false
	}
	if !isClean(s) {
		s = []byte(path.Clean(string(s)))
	}
	if !bytes.HasPrefix(s, []byte(docroot)) {
		return nil, false
	}
	rest = s[len(docroot):]
	if len(rest) > 0 && rest[0] != '/' {
		return nil, false // a sibling such as /var/www/app/current2
	}
	return rest, true
}

// isClean tells whether path.Clean would return the absolute path s as it
// is: no empty, "." or ".." segment and no trailing slash.
func isClean(s []byte) bool {
	if len(s) > 1 && s[len(s)-1] == '/' {
		return false
	}
	// One pass: at each '/', j finds where its segment ends.
	for i := 0; i < len(s); i++ {
		if s[i] != '/' {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != '/' {
			j++
		}
		switch j - i - 1 {
		case 0: // "//"; a lone "/" at the end is the root
			if j < len(s) {
				return false
			}
		case 1:
			if s[i+1] == '.' {
				return false
			}
		case 2:
			if s[i+1] == '.' && s[i+2] == '.' {
				return false
			}
		}
		i = j - 1
	}
	return true
}

// appendParams appends encoded pairs as PARAMS records followed by the
// empty record that ends them. php-fpm parses each record on its own, so
// records are cut only between pairs (ends holds where each pair ends).
func appendParams(dst []byte, id uint16, b []byte, ends []int) ([]byte, error) {
	start, last := 0, 0
	for _, end := range ends {
		if end-start > maxContent {
			if last == start {
				return dst, &rejectError{431, "a single param is larger than a FastCGI record"}
			}
			dst = appendRecord(dst, typeParams, id, b[start:last])
			start = last
			if end-start > maxContent {
				return dst, &rejectError{431, "a single param is larger than a FastCGI record"}
			}
		}
		last = end
	}
	if last > start {
		dst = appendRecord(dst, typeParams, id, b[start:last])
	}
	return appendRecord(dst, typeParams, id, nil), nil
}

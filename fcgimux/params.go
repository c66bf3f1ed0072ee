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
	// reserved are SCRIPT_NAMEs php-fpm answers itself (ping, status):
	// refused, so the pool's internals are not public.
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
// prefix of DOCUMENT_ROOT, SCRIPT_FILENAME and PATH_TRANSLATED becomes the
// release root, FPMUX_RELEASE is set, the routing hint params are dropped
// (PHP never sees a preview token), and a SCRIPT_FILENAME that does not lie
// under the docroot once cleaned is refused with a 404, so PHP never runs a
// script outside the release. It returns the params as a list of encoded
// pairs (dst) and the offsets where each pair ends, so the caller can cut
// records between pairs.
func rewriteParams(dst []byte, ends []int, src []byte, p pinnedPaths) ([]byte, []int, error) {
	sawScript := false
	err := eachPair(src, func(name, value []byte) error {
		switch string(name) {
		case "FPMUX_RELEASE":
			return nil // fpmux's to set; a client's value is dropped
		case paramHintRelease, paramHintToken:
			return nil // for fpmux alone (route.go), honoured or not
		case "SCRIPT_FILENAME":
			sawScript = true
			rest, err := mapScript(value, p)
			if err != nil {
				return err
			}
			dst = appendMappedPair(dst, name, p.root, rest)
			if p.scripts != nil {
				script := dst[len(dst)-len(p.root)-len(rest):]
				if real, ok := p.scripts.check(script, p.root); !ok {
					return &rejectError{404, fmt.Sprintf("script %s leads outside the release through a symlink, to %s", script, real)}
				}
			}
		case "SCRIPT_NAME":
			for _, r := range p.reserved {
				if string(value) == r {
					return &rejectError{404, fmt.Sprintf("SCRIPT_NAME %s is php-fpm's own page", r)}
				}
			}
			dst = appendBytesPair(dst, name, value)
		case "DOCUMENT_ROOT", "PATH_TRANSLATED":
			// Informational for PHP: rewritten when under the docroot,
			// passed as sent otherwise.
			if rest, ok := underDocroot(value, p.docroot); ok {
				dst = appendMappedPair(dst, name, p.root, rest)
			} else {
				dst = appendBytesPair(dst, name, value)
			}
		default:
			dst = appendBytesPair(dst, name, value)
		}
		ends = append(ends, len(dst))
		return nil
	})
	if err != nil {
		return dst, ends, err
	}
	if !sawScript {
		return dst, ends, &rejectError{status: 404, reason: "no SCRIPT_FILENAME param"}
	}
	dst = appendPair(dst, "FPMUX_RELEASE", p.release)
	ends = append(ends, len(dst))
	return dst, ends, nil
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

// requestLine returns the REQUEST_METHOD and REQUEST_URI params, slices of
// params.
func requestLine(params []byte) (method, uri []byte) {
	eachPair(params, func(name, value []byte) error {
		switch string(name) {
		case "REQUEST_METHOD":
			method = value
		case "REQUEST_URI":
			uri = value
		}
		if method != nil && uri != nil {
			return errStop
		}
		return nil
	})
	return method, uri
}

// errStop ends an eachPair walk early.
var errStop = errors.New("stop")

func appendBytesPair(dst, name, value []byte) []byte {
	dst = appendLen(dst, len(name))
	dst = appendLen(dst, len(value))
	dst = append(dst, name...)
	return append(dst, value...)
}

// appendMappedPair appends name with the value root+rest.
func appendMappedPair(dst, name []byte, root string, rest []byte) []byte {
	dst = appendLen(dst, len(name))
	dst = appendLen(dst, len(root)+len(rest))
	dst = append(dst, name...)
	dst = append(dst, root...)
	return append(dst, rest...)
}

// mapScript checks a SCRIPT_FILENAME and returns what follows the docroot in
// it, cleaned: the script's path within the release. Apache's
// mod_proxy_fcgi may send "proxy:fcgi://host:port/path"; php-fpm strips
// that prefix itself, so fpmux does too before checking the path.
func mapScript(s []byte, p pinnedPaths) ([]byte, error) {
	if rest, ok := bytes.CutPrefix(s, []byte("proxy:fcgi://")); ok {
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			return nil, &rejectError{404, fmt.Sprintf("script %q has no path", s)}
		}
		s = rest[i:]
	}
	if bytes.IndexByte(s, 0) >= 0 {
		return nil, &rejectError{404, fmt.Sprintf("script %q contains a NUL byte", s)}
	}
	rest, ok := underDocroot(s, p.docroot)
	if !ok {
		return nil, &rejectError{404, fmt.Sprintf("script %q is outside docroot %s", s, p.docroot)}
	}
	return rest, nil
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
	for i := 0; i < len(s); i++ {
		if s[i] != '/' {
			continue
		}
		seg := s[i+1:]
		if j := bytes.IndexByte(seg, '/'); j >= 0 {
			seg = seg[:j]
		}
		switch {
		case len(seg) == 0 && i+1 < len(s), // "//"
			len(seg) == 1 && seg[0] == '.',
			len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			return false
		}
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

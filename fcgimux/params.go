// This file owns FastCGI name-value pairs: decoding the params a web server
// sends, rewriting the paths in them for the release a request is pinned to,
// and encoding them again into PARAMS records php-fpm accepts.

package fcgimux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
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
}

// rejectError is a request fpmux answers itself, without PHP.
type rejectError struct {
	status int
	reason string
}

func (e *rejectError) Error() string { return e.reason }

// rewriteParams appends to dst the params of src rewritten for p: the docroot
// prefix of DOCUMENT_ROOT, SCRIPT_FILENAME and PATH_TRANSLATED becomes the
// release root, FPMUX_RELEASE is set, and a SCRIPT_FILENAME that does not lie
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
		case "SCRIPT_FILENAME":
			sawScript = true
			mapped, err := mapScript(string(value), p)
			if err != nil {
				return err
			}
			dst = appendPair(dst, "SCRIPT_FILENAME", mapped)
		case "SCRIPT_NAME":
			for _, r := range p.reserved {
				if string(value) == r {
					return &rejectError{404, fmt.Sprintf("SCRIPT_NAME %s is php-fpm's own page", r)}
				}
			}
			dst = appendPair(dst, "SCRIPT_NAME", string(value))
		case "DOCUMENT_ROOT", "PATH_TRANSLATED":
			// Informational for PHP: rewritten when under the docroot,
			// passed as sent otherwise.
			if mapped, ok := mapPath(string(value), p); ok {
				dst = appendPair(dst, string(name), mapped)
			} else {
				dst = appendPair(dst, string(name), string(value))
			}
		default:
			dst = appendLen(dst, len(name))
			dst = appendLen(dst, len(value))
			dst = append(dst, name...)
			dst = append(dst, value...)
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

// mapScript maps a SCRIPT_FILENAME onto the release root or refuses it.
// Apache's mod_proxy_fcgi may send "proxy:fcgi://host:port/path"; php-fpm
// strips that prefix itself, so fpmux does too before checking the path.
func mapScript(s string, p pinnedPaths) (string, error) {
	if rest, ok := strings.CutPrefix(s, "proxy:fcgi://"); ok {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "", &rejectError{404, fmt.Sprintf("script %q has no path", s)}
		}
		s = rest[i:]
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", &rejectError{404, fmt.Sprintf("script %q contains a NUL byte", s)}
	}
	mapped, ok := mapPath(s, p)
	if !ok {
		return "", &rejectError{404, fmt.Sprintf("script %q is outside docroot %s", s, p.docroot)}
	}
	return mapped, nil
}

// mapPath replaces the docroot prefix of the cleaned path s with the release
// root. ok is false when s does not lie under the docroot.
func mapPath(s string, p pinnedPaths) (string, bool) {
	if !strings.HasPrefix(s, "/") {
		return "", false
	}
	c := path.Clean(s)
	switch {
	case c == p.docroot:
		return p.root, true
	case strings.HasPrefix(c, p.docroot) && c[len(p.docroot)] == '/':
		return p.root + c[len(p.docroot):], true
	}
	return "", false
}

// writeParams writes encoded pairs as PARAMS records followed by the empty
// record that ends them. php-fpm parses each record on its own, so records
// are cut only between pairs (ends holds where each pair ends).
func writeParams(w io.Writer, id uint16, b []byte, ends []int) error {
	start, last := 0, 0
	for _, end := range ends {
		if end-start > maxContent {
			if last == start {
				return &rejectError{431, "a single param is larger than a FastCGI record"}
			}
			if err := writeRecord(w, typeParams, id, b[start:last]); err != nil {
				return err
			}
			start = last
			if end-start > maxContent {
				return &rejectError{431, "a single param is larger than a FastCGI record"}
			}
		}
		last = end
	}
	if last > start {
		if err := writeRecord(w, typeParams, id, b[start:last]); err != nil {
			return err
		}
	}
	return writeRecord(w, typeParams, id, nil)
}

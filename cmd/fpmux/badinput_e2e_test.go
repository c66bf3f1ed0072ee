// This file sends fpmux what no web server should: broken records, odd
// params and scripts that try to leave the release, with a real php-fpm
// pool behind fpmux. Its raw record writer and reader (fcgiRecord,
// fcgiRequest, rawFCGI) are the tests' one way to send what fcgiclient
// would never write; shutdown_e2e_test.go uses them too, to trickle a body.

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/pool"
)

// FastCGI record types and the values the test needs.
const (
	fcgiBeginRequest  = 1
	fcgiEndRequest    = 3
	fcgiParams        = 4
	fcgiStdin         = 5
	fcgiStdout        = 6
	fcgiStderr        = 7
	fcgiUnknownType   = 11
	fcgiCantMpxConn   = 1
	fcgiUnknownRole   = 3
	fcgiRoleResponder = 1
	fcgiRoleFilter    = 3
)

// fcgiRecord encodes one record with the given version.
func fcgiRecordV(version, typ byte, id uint16, content []byte) []byte {
	h := []byte{version, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), 0, 0}
	return append(h, content...)
}

func fcgiRecord(typ byte, id uint16, content []byte) []byte {
	return fcgiRecordV(1, typ, id, content)
}

func fcgiBegin(id uint16, role uint16, keep bool) []byte {
	body := []byte{byte(role >> 8), byte(role), 0, 0, 0, 0, 0, 0}
	if keep {
		body[2] = 1
	}
	return fcgiRecord(fcgiBeginRequest, id, body)
}

// fcgiLen encodes a pair length as FastCGI does.
func fcgiLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

func fcgiPairs(kv ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(kv); i += 2 {
		b = fcgiLen(b, len(kv[i]))
		b = fcgiLen(b, len(kv[i+1]))
		b = append(b, kv[i]...)
		b = append(b, kv[i+1]...)
	}
	return b
}

// fcgiStream cuts content into records of at most 65535 bytes.
func fcgiStream(typ byte, id uint16, content []byte) []byte {
	var b []byte
	for len(content) > 0 {
		n := min(len(content), 65535)
		b = append(b, fcgiRecord(typ, id, content[:n])...)
		content = content[n:]
	}
	return b
}

// fcgiRequest is a whole request as nginx sends one: BEGIN, params, the
// end of params, an empty body.
func fcgiRequest(id uint16, keep bool, pairs []byte) []byte {
	b := fcgiBegin(id, fcgiRoleResponder, keep)
	b = append(b, fcgiStream(fcgiParams, id, pairs)...)
	b = append(b, fcgiRecord(fcgiParams, id, nil)...)
	return append(b, fcgiRecord(fcgiStdin, id, nil)...)
}

// fcgiAnswer is what came back on a raw connection.
type fcgiAnswer struct {
	status   int    // from the Status header; 200 without one
	stdout   string // headers and body
	ended    bool   // END_REQUEST arrived
	protocol byte   // END_REQUEST's protocol status
	unknown  []byte // bodies of FCGI_UNKNOWN_TYPE records
	closed   bool   // the connection ended before END_REQUEST
}

// rawFCGI is one connection to fpmux's FastCGI socket.
type rawFCGI struct {
	t  *testing.T
	nc net.Conn
}

func (s *stack) dialFCGI() *rawFCGI {
	s.t.Helper()
	nc, err := net.Dial("unix", s.sock)
	if err != nil {
		s.t.Fatal(err)
	}
	// Bounds every exchange: fpmux must answer or close well before it.
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	s.t.Cleanup(func() { nc.Close() })
	return &rawFCGI{t: s.t, nc: nc}
}

func (c *rawFCGI) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// read reads records until END_REQUEST for id, end of file or an error;
// a timeout fails the test, since fpmux must never leave a client hanging.
func (c *rawFCGI) read(id uint16) fcgiAnswer {
	c.t.Helper()
	var a fcgiAnswer
	var out bytes.Buffer
	var h [8]byte
	for {
		if _, err := io.ReadFull(c.nc, h[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("fpmux neither answered nor closed the connection (so far %q)", out.String())
			}
			a.closed = true
			break
		}
		n := int(binary.BigEndian.Uint16(h[4:6])) + int(h[6])
		content := make([]byte, n)
		if _, err := io.ReadFull(c.nc, content); err != nil {
			c.t.Fatalf("truncated record from fpmux: %v", err)
		}
		content = content[:binary.BigEndian.Uint16(h[4:6])]
		if h[0] != 1 {
			c.t.Fatalf("record of version %d from fpmux", h[0])
		}
		switch h[1] {
		case fcgiUnknownType:
			a.unknown = append(a.unknown, content...)
			continue
		case fcgiStdout:
			out.Write(content)
		case fcgiStderr:
		case fcgiEndRequest:
			if got := binary.BigEndian.Uint16(h[2:4]); got != id {
				c.t.Fatalf("END_REQUEST for id %d, want %d", got, id)
			}
			a.ended, a.protocol = true, content[4]
		default:
			c.t.Fatalf("unexpected record type %d from fpmux", h[1])
		}
		if a.ended {
			break
		}
	}
	a.stdout, a.status = out.String(), 200
	head, _, _ := strings.Cut(a.stdout, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Status: "); ok {
			a.status, _ = strconv.Atoi(v[:3])
		}
	}
	return a
}

// readUnknown reads one FCGI_UNKNOWN_TYPE record and nothing more.
func (c *rawFCGI) readUnknown() []byte {
	c.t.Helper()
	rec := make([]byte, 16)
	if _, err := io.ReadFull(c.nc, rec); err != nil {
		c.t.Fatalf("reading FCGI_UNKNOWN_TYPE: %v", err)
	}
	if rec[1] != fcgiUnknownType {
		c.t.Fatalf("got record type %d, want FCGI_UNKNOWN_TYPE", rec[1])
	}
	return rec[8:]
}

// TestBadFastCGIInput sends fpmux broken and hostile FastCGI, each on its
// own connection, with a real php-fpm pool behind it. Each gets its answer:
// a closed connection, an error response from fpmux, or a 404 that never
// reaches PHP. After each, a normal request on a new connection is served.
func TestBadFastCGIInput(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	root := filepath.Join(s.releases, "r1")
	// A script beside the docroot that must never run, and a link to it
	// from inside the release.
	secret := filepath.Join(s.dir, "secret.php")
	if err := os.WriteFile(secret, []byte("<?php echo 'SECRET';"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, "linked.php")); err != nil {
		t.Fatal(err)
	}
	probe := s.docroot + "/probe.php"
	okKV := func(kv ...string) []string { return s.nginxParams("/probe.php", probe, kv...) }
	ok := func(kv ...string) []byte { return fcgiPairs(okKV(kv...)...) }
	_, status, err := pool.ReadPagePaths(filepath.Join(s.stateDir, "pools", "r1"))
	if err != nil {
		t.Fatal(err)
	}

	type want int
	const (
		wantClosed  want = iota // no response, the connection closed
		wantFpmux               // an error response written by fpmux itself
		wantPHP                 // php-fpm ran (or refused) it
		wantUnknown             // FCGI_UNKNOWN_TYPE, connection still usable
		wantEndOnly             // END_REQUEST with a protocol status, no output
	)
	tests := []struct {
		name     string
		send     []byte
		kv       []string // instead of send: a well-formed request, sent through fcgiclient
		halfShut bool     // close the write side after sending, as a client that gives up
		want     want
		status   int    // for wantFpmux and wantPHP
		body     string // the response must contain it
		protocol byte   // for wantEndOnly
	}{
		{name: "truncated header", send: fcgiBegin(1, fcgiRoleResponder, false)[:5], halfShut: true, want: wantClosed},
		{name: "truncated content", send: fcgiBegin(1, fcgiRoleResponder, false)[:11], halfShut: true, want: wantClosed},
		{name: "truncated mid-params", send: append(fcgiBegin(1, fcgiRoleResponder, false),
			fcgiRecord(fcgiParams, 1, ok())[:40]...), halfShut: true, want: wantClosed},
		{name: "params never ended", send: append(fcgiBegin(1, fcgiRoleResponder, false),
			fcgiRecord(fcgiParams, 1, ok())...), halfShut: true, want: wantClosed},
		{name: "wrong protocol version", send: fcgiRecordV(2, fcgiBeginRequest, 1, make([]byte, 8)), want: wantClosed},
		{name: "version zero", send: fcgiRecordV(0, fcgiBeginRequest, 1, make([]byte, 8)), want: wantClosed},
		{name: "short BEGIN_REQUEST body", send: fcgiRecord(fcgiBeginRequest, 1, []byte{0, 1}), want: wantClosed},
		{name: "unknown record type", send: fcgiRecord(42, 0, []byte("x")), want: wantUnknown},
		{name: "unknown record type on a request id", send: fcgiRecord(200, 1, nil), want: wantUnknown},
		{name: "filter role", send: append(fcgiBegin(1, fcgiRoleFilter, false), fcgiRecord(fcgiParams, 1, nil)...),
			want: wantEndOnly, protocol: fcgiUnknownRole},
		{name: "request id begun again", send: append(append(fcgiBegin(1, fcgiRoleResponder, false),
			fcgiRecord(fcgiParams, 1, ok())...), fcgiBegin(1, fcgiRoleResponder, false)...), want: wantClosed},
		{name: "records for an id never begun", send: append(append(fcgiRecord(fcgiParams, 9, []byte("\x05\x05junk!junk!")),
			fcgiRecord(fcgiStdin, 9, []byte("body"))...), fcgiRequest(1, false, ok())...),
			want: wantPHP, status: 200, body: "release=r1"},
		{name: "NUL in SCRIPT_FILENAME", kv: s.nginxParams("/probe.php", probe+"\x00.jpg"),
			want: wantFpmux, status: 404},
		{name: "NUL in a header", kv: okKV("HTTP_X_PROBE", "a\x00b"),
			want: wantPHP, status: 200, body: "release=r1"},
		{name: "invalid UTF-8 passes unchanged", kv: okKV("HTTP_X_PROBE", "\xff\xfe\xc3(", "REQUEST_URI", "/probe.php?\xff"),
			want: wantPHP, status: 200, body: "probe=fffec328"},
		{name: "pair longer than its params", send: fcgiRequest(1, false, append(ok(), 0x05, 0x7f, 'a', 'b')),
			want: wantFpmux, status: 400},
		{name: "pair claiming 2 GiB", send: fcgiRequest(1, false, append(ok(), 0x05, 0xff, 0xff, 0xff, 0xff, 'a')),
			want: wantFpmux, status: 400},
		{name: "oversized params", send: fcgiRequest(1, false, ok("HTTP_X_BIG", strings.Repeat("x", 1<<20+1))),
			want: wantFpmux, status: 431},
		{name: "no SCRIPT_FILENAME", kv: []string{"REQUEST_METHOD", "GET"},
			want: wantFpmux, status: 404},
		{name: "dot-dot out of the docroot", kv: s.nginxParams("/x.php", s.docroot+"/../secret.php"),
			want: wantFpmux, status: 404},
		{name: "dot-dot deeper", kv: s.nginxParams("/x.php", s.docroot+"/lib/../../secret.php"),
			want: wantFpmux, status: 404},
		{name: "encoded dot-dot is a name, not a step", kv: s.nginxParams("/x.php", s.docroot+"/%2e%2e/secret.php"),
			want: wantPHP, status: 404},
		{name: "encoded slash is a name, not a step", kv: s.nginxParams("/x.php", s.docroot+"/..%2fsecret.php"),
			want: wantPHP, status: 404},
		{name: "foreign path", kv: s.nginxParams("/x.php", secret),
			want: wantFpmux, status: 404},
		{name: "sibling of the docroot", kv: s.nginxParams("/x.php", s.docroot+"2/secret.php"),
			want: wantFpmux, status: 404},
		{name: "symlink out of the release", kv: s.nginxParams("/linked.php", s.docroot+"/linked.php"),
			want: wantFpmux, status: 404},
		{name: "php-fpm's own status page", kv: s.nginxParams(status, s.docroot+status),
			want: wantFpmux, status: 404},
	}
	// answered judges an answer of wantFpmux or wantPHP: its status, who
	// wrote it, what its body holds.
	answered := func(t *testing.T, from want, wantStatus int, wantBody string, status int, body string) {
		t.Helper()
		if strings.Contains(body, "SECRET") {
			t.Fatalf("the script outside the release ran: %q", body)
		}
		fromFpmux := strings.HasPrefix(body, "fpmux: ")
		if status != wantStatus || fromFpmux != (from == wantFpmux) || !strings.Contains(body, wantBody) {
			t.Errorf("got %d %q (from fpmux: %v), want %d from %s containing %q",
				status, body, fromFpmux, wantStatus, map[want]string{wantFpmux: "fpmux", wantPHP: "PHP"}[from], wantBody)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.kv != nil {
				a := s.fcgiGet(t, tt.kv)
				answered(t, tt.want, tt.status, tt.body, a.Status, string(a.Body))
			} else {
				c := s.dialFCGI()
				c.send(tt.send)
				if tt.halfShut {
					c.nc.(*net.UnixConn).CloseWrite()
				}
				if tt.want == wantUnknown {
					body := c.readUnknown()
					if body[0] != tt.send[1] {
						t.Errorf("FCGI_UNKNOWN_TYPE names type %d, want %d", body[0], tt.send[1])
					}
					// The connection goes on: a request on it is served.
					c.send(fcgiRequest(1, true, ok()))
				}
				switch a := c.read(1); tt.want {
				case wantUnknown:
					if a.status != 200 || !strings.Contains(a.stdout, "release=r1") {
						t.Errorf("request after FCGI_UNKNOWN_TYPE: %d %q", a.status, a.stdout)
					}
				case wantClosed:
					if !a.closed || a.ended || a.stdout != "" {
						t.Errorf("got %+v, want the connection closed without an answer", a)
					}
				case wantEndOnly:
					if !a.ended || a.protocol != tt.protocol || a.stdout != "" {
						t.Errorf("got %+v, want END_REQUEST with protocol status %d", a, tt.protocol)
					}
				case wantFpmux, wantPHP:
					if !a.ended {
						t.Errorf("got %+v, want an answer ended by END_REQUEST", a)
					}
					_, body, _ := strings.Cut(a.stdout, "\r\n\r\n")
					answered(t, tt.want, tt.status, tt.body, a.status, body)
				}
				c.nc.Close()
			}
			// Whatever came before, fpmux serves the next request.
			if a := s.fcgiGet(t, s.nginxParams("/probe.php", probe, "HTTP_X_PROBE", "next")); a.Status != 200 || !strings.Contains(string(a.Body), "probe="+hex.EncodeToString([]byte("next"))) {
				t.Errorf("normal request afterwards: %d %q", a.Status, a.Body)
			}
		})
	}
	t.Run("second request id while one is in flight", func(t *testing.T) {
		c := s.dialFCGI()
		b := fcgiBegin(1, fcgiRoleResponder, true)
		b = append(b, fcgiRecord(fcgiParams, 1, ok())...)
		b = append(b, fcgiBegin(2, fcgiRoleResponder, false)...)
		c.send(b)
		var h [16]byte
		if _, err := io.ReadFull(c.nc, h[:]); err != nil {
			t.Fatal(err)
		}
		if h[1] != fcgiEndRequest || binary.BigEndian.Uint16(h[2:4]) != 2 || h[12] != fcgiCantMpxConn {
			t.Fatalf("got record % x, want END_REQUEST for id 2 with FCGI_CANT_MPX_CONN", h)
		}
		// The request in flight goes on.
		c.send(append(fcgiRecord(fcgiParams, 1, nil), fcgiRecord(fcgiStdin, 1, nil)...))
		if a := c.read(1); a.status != 200 || !strings.Contains(a.stdout, "release=r1") {
			t.Errorf("request 1 after the refused request 2: %d %q", a.status, a.stdout)
		}
		c.nc.Close()
	})
	// And through nginx, as ever.
	code, body, err := s.get(newHTTPClient(), "/index.php?ms=0")
	if err != nil || code != 200 || !strings.Contains(body, "param=r1") {
		t.Errorf("through nginx after it all: %d %q %v", code, body, err)
	}
	// Every connection of the test is closed, and fpmux holds none of them:
	// what is left is nginx's one kept connection.
	s.waitFor("fpmux to let the test's connections go", 10*time.Second, func() bool {
		return s.metric("fpmux_connections_open") <= 1
	})
	// Each refusal is counted by its reason.
	for reason, want := range map[string]float64{"script": 8, "malformed": 2, "params_size": 1} {
		if got := s.metric(`fpmux_requests_refused_total{reason="` + reason + `"}`); got != want {
			t.Errorf("fpmux_requests_refused_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if strings.Contains(s.logBuf.String(), "panic") {
		t.Errorf("fpmux logged a panic:\n%s", s.logBuf.String())
	}
}

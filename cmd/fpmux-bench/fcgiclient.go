// This file owns the raw FastCGI client the scale section uses to hold
// thousands of keep-alive connections straight to fpmux's socket: the record
// encoding (pure, tested byte for byte) and one request on one connection.

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// FastCGI 1.0 constants, as the specification names them.
const (
	fcgiVersion      = 1
	fcgiBeginRequest = 1
	fcgiEndRequest   = 3
	fcgiParams       = 4
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiStderr       = 7
	fcgiResponder    = 1
	fcgiKeepConn     = 1
	fcgiMaxContent   = 65535
)

// appendRecord appends one record: the 8-byte header, content, and padding
// to a multiple of 8 bytes (what php-fpm and nginx send, and what keeps the
// next header aligned).
func appendRecord(dst []byte, typ uint8, id uint16, content []byte) []byte {
	pad := (8 - len(content)%8) % 8
	dst = append(dst, fcgiVersion, typ, byte(id>>8), byte(id),
		byte(len(content)>>8), byte(len(content)), byte(pad), 0)
	dst = append(dst, content...)
	return append(dst, make([]byte, pad)...)
}

// appendParamLen appends a name or value length: one byte below 128, else
// four bytes with the high bit set.
func appendParamLen(dst []byte, n int) []byte {
	if n < 128 {
		return append(dst, byte(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n)|1<<31)
}

// encodeParams encodes name-value pairs in the order given.
func encodeParams(params [][2]string) []byte {
	var b []byte
	for _, p := range params {
		b = appendParamLen(b, len(p[0]))
		b = appendParamLen(b, len(p[1]))
		b = append(b, p[0]...)
		b = append(b, p[1]...)
	}
	return b
}

// encodeRequest returns a whole responder request without a body:
// BEGIN_REQUEST, the params in records of at most 65535 bytes, the empty
// PARAMS record that ends them and the empty STDIN record that ends the body.
func encodeRequest(id uint16, params [][2]string, keepConn bool) []byte {
	var flags byte
	if keepConn {
		flags = fcgiKeepConn
	}
	b := appendRecord(nil, fcgiBeginRequest, id, []byte{0, fcgiResponder, flags, 0, 0, 0, 0, 0})
	p := encodeParams(params)
	for len(p) > 0 {
		n := min(len(p), fcgiMaxContent)
		b = appendRecord(b, fcgiParams, id, p[:n])
		p = p[n:]
	}
	b = appendRecord(b, fcgiParams, id, nil)
	return appendRecord(b, fcgiStdin, id, nil)
}

// helloParams are the CGI params nginx's fastcgi_params would send for GET
// /hello.php under docroot.
func helloParams(docroot string) [][2]string {
	return [][2]string{
		{"GATEWAY_INTERFACE", "CGI/1.1"},
		{"SERVER_SOFTWARE", "fpmux-bench"},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"SERVER_NAME", "localhost"},
		{"SERVER_ADDR", "127.0.0.1"},
		{"SERVER_PORT", "80"},
		{"REMOTE_ADDR", "127.0.0.1"},
		{"REMOTE_PORT", "40000"},
		{"REQUEST_METHOD", "GET"},
		{"REQUEST_URI", "/hello.php"},
		{"DOCUMENT_URI", "/hello.php"},
		{"QUERY_STRING", ""},
		{"CONTENT_TYPE", ""},
		{"CONTENT_LENGTH", ""},
		{"SCRIPT_NAME", "/hello.php"},
		{"DOCUMENT_ROOT", docroot},
		{"SCRIPT_FILENAME", docroot + "/hello.php"},
		{"HTTP_HOST", "localhost"},
	}
}

// fcgiResponse is what one request got back.
type fcgiResponse struct {
	stdout, stderr []byte
	appStatus      uint32
	protoStatus    uint8
}

// readResponse reads records for request id until its END_REQUEST.
// Records of other ids are a protocol error here: one request at a time.
func readResponse(r io.Reader, id uint16) (fcgiResponse, error) {
	var resp fcgiResponse
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return resp, fmt.Errorf("read record header: %w", err)
		}
		if hdr[0] != fcgiVersion {
			return resp, fmt.Errorf("record version %d, want 1", hdr[0])
		}
		typ, rid := hdr[1], binary.BigEndian.Uint16(hdr[2:4])
		n, pad := int(binary.BigEndian.Uint16(hdr[4:6])), int(hdr[6])
		content := make([]byte, n+pad)
		if _, err := io.ReadFull(r, content); err != nil {
			return resp, fmt.Errorf("read record type %d content: %w", typ, err)
		}
		content = content[:n]
		if rid != id {
			return resp, fmt.Errorf("record type %d for request %d, want %d", typ, rid, id)
		}
		switch typ {
		case fcgiStdout:
			resp.stdout = append(resp.stdout, content...)
		case fcgiStderr:
			resp.stderr = append(resp.stderr, content...)
		case fcgiEndRequest:
			if n < 8 {
				return resp, fmt.Errorf("END_REQUEST of %d bytes, want 8", n)
			}
			resp.appStatus = binary.BigEndian.Uint32(content[0:4])
			resp.protoStatus = content[4]
			return resp, nil
		default:
			return resp, fmt.Errorf("unexpected record type %d", typ)
		}
	}
}

// httpStatus returns the status a CGI response carries: its Status header,
// or 200 when there is none.
func (r fcgiResponse) httpStatus() int {
	head, _, _ := bytes.Cut(r.stdout, []byte("\r\n\r\n"))
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(name), []byte("Status")) {
			continue
		}
		f := bytes.Fields(val)
		if len(f) > 0 {
			if code, err := strconv.Atoi(string(f[0])); err == nil {
				return code
			}
		}
		return 0
	}
	return 200
}

// body returns what follows the CGI headers.
func (r fcgiResponse) body() []byte {
	_, body, _ := bytes.Cut(r.stdout, []byte("\r\n\r\n"))
	return body
}

// fcgiConn is one keep-alive connection to a FastCGI server.
type fcgiConn struct {
	nc  net.Conn
	br  *bufio.Reader
	req []byte // the encoded request, sent as is each time
}

func dialFCGI(network, addr string, req []byte) (*fcgiConn, error) {
	nc, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial fastcgi %s: %w", addr, err)
	}
	return &fcgiConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), req: req}, nil
}

// do sends the request and reads its response within timeout. The request
// id is 1, as nginx uses.
func (c *fcgiConn) do(timeout time.Duration) (fcgiResponse, error) {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	if _, err := c.nc.Write(c.req); err != nil {
		return fcgiResponse{}, fmt.Errorf("write fastcgi request: %w", err)
	}
	return readResponse(c.br, 1)
}

// open tells whether the server still holds the idle connection open: a
// read that would block is the sign it does.
func (c *fcgiConn) open() bool {
	c.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer c.nc.SetReadDeadline(time.Time{})
	_, err := c.br.Peek(1)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *fcgiConn) Close() error { return c.nc.Close() }

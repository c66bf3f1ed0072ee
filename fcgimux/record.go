// Package fcgimux owns fpmux's FastCGI front: the record codec, the server
// that takes connections from the web server, and the relay that carries one
// request to the php-fpm pool of the release it was pinned to.
//
// The codec in this file is pure: it reads and writes records on an
// io.Reader or io.Writer and knows nothing of sockets, releases or logging.
package fcgimux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// recType is a FastCGI record type (FastCGI 1.0 specification, section 8).
type recType uint8

const (
	typeBeginRequest    recType = 1
	typeAbortRequest    recType = 2
	typeEndRequest      recType = 3
	typeParams          recType = 4
	typeStdin           recType = 5
	typeStdout          recType = 6
	typeStderr          recType = 7
	typeData            recType = 8
	typeGetValues       recType = 9
	typeGetValuesResult recType = 10
	typeUnknownType     recType = 11
)

const (
	version1     = 1
	headerLen    = 8
	maxContent   = 65535
	maxPadding   = 255
	flagKeepConn = 1

	roleResponder = 1

	statusRequestComplete = 0
	statusCantMpxConn     = 1
	statusOverloaded      = 2
	statusUnknownRole     = 3
)

// errBadVersion is returned for a record whose version byte is not 1: such a
// peer speaks something other than FastCGI and the connection is dropped.
var errBadVersion = errors.New("fastcgi: record version is not 1")

// header is a record header as it is on the wire.
type header struct {
	Version       uint8
	Type          recType
	ID            uint16
	ContentLength uint16
	PaddingLength uint8
}

// parseHeader decodes an 8-byte record header.
func parseHeader(b []byte) (header, error) {
	h := header{
		Version:       b[0],
		Type:          recType(b[1]),
		ID:            binary.BigEndian.Uint16(b[2:4]),
		ContentLength: binary.BigEndian.Uint16(b[4:6]),
		PaddingLength: b[6],
	}
	if h.Version != version1 {
		return h, fmt.Errorf("%w (got %d)", errBadVersion, h.Version)
	}
	return h, nil
}

// putHeader encodes a record header into b[:8].
func putHeader(b []byte, t recType, id uint16, contentLen, padLen int) {
	b[0] = version1
	b[1] = byte(t)
	binary.BigEndian.PutUint16(b[2:4], id)
	binary.BigEndian.PutUint16(b[4:6], uint16(contentLen))
	b[6] = byte(padLen)
	b[7] = 0
}

// padFor returns the padding that aligns content of length n to 8 bytes, as
// the specification recommends and php-fpm does.
func padFor(n int) int { return -n & 7 }

var zeros [maxPadding]byte

// appendRecord appends one record with content c (len(c) <= maxContent),
// padded to 8 bytes. Records are built in a buffer the caller reuses and
// written with one write, so encoding allocates nothing.
func appendRecord(dst []byte, t recType, id uint16, c []byte) []byte {
	pad := padFor(len(c))
	var h [headerLen]byte
	putHeader(h[:], t, id, len(c), pad)
	dst = append(dst, h[:]...)
	dst = append(dst, c...)
	return append(dst, zeros[:pad]...)
}

// appendStream appends b as records of type t, split at maxContent. It
// appends no empty record: the caller ends a stream explicitly.
func appendStream(dst []byte, t recType, id uint16, b []byte) []byte {
	for len(b) > 0 {
		n := min(len(b), maxContent&^7) // keep records 8-aligned so no padding is needed
		dst = appendRecord(dst, t, id, b[:n])
		b = b[n:]
	}
	return dst
}

// appendBeginRequest appends FCGI_BEGIN_REQUEST for the responder role.
func appendBeginRequest(dst []byte, id uint16, keepConn bool) []byte {
	var b [8]byte
	binary.BigEndian.PutUint16(b[0:2], roleResponder)
	if keepConn {
		b[2] = flagKeepConn
	}
	return appendRecord(dst, typeBeginRequest, id, b[:])
}

// appendEndRequest appends FCGI_END_REQUEST.
func appendEndRequest(dst []byte, id uint16, appStatus uint32, protocolStatus uint8) []byte {
	var b [8]byte
	binary.BigEndian.PutUint32(b[0:4], appStatus)
	b[4] = protocolStatus
	return appendRecord(dst, typeEndRequest, id, b[:])
}

// beginRequest and endRequest are the bodies of FCGI_BEGIN_REQUEST and
// FCGI_END_REQUEST, as parseBeginRequest and parseEndRequest read them.
type (
	beginRequest struct {
		Role     uint16
		KeepConn bool
	}
	endRequest struct {
		AppStatus      uint32
		ProtocolStatus uint8
	}
)

func parseBeginRequest(c []byte) (beginRequest, error) {
	if len(c) < 8 {
		return beginRequest{}, shortBody("begin request", c)
	}
	return beginRequest{Role: binary.BigEndian.Uint16(c[0:2]), KeepConn: c[2]&flagKeepConn != 0}, nil
}

func parseEndRequest(c []byte) (endRequest, error) {
	if len(c) < 8 {
		return endRequest{}, shortBody("end request", c)
	}
	return endRequest{AppStatus: binary.BigEndian.Uint32(c[0:4]), ProtocolStatus: c[4]}, nil
}

// shortBody is the error for the body c of a what record shorter than the
// 8 bytes FCGI_BEGIN_REQUEST and FCGI_END_REQUEST both have. The length is
// checked by the caller, so the per-request path makes no call.
func shortBody(what string, c []byte) error {
	return fmt.Errorf("fastcgi: %s body is %d bytes, want 8", what, len(c))
}

// maxRecordLen is the longest a record can be on the wire.
const maxRecordLen = headerLen + maxContent + maxPadding

// bufSize is the size of the buffers records are read into: room for the
// longest record, and for several of php-fpm's usual 8 KiB ones per read.
const bufSize = 128 << 10

// bufPool holds the read buffers of connections between requests, so that an
// idle connection (most of a web server's kept-alive ones) holds none.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

func getBuf() *[bufSize]byte  { return bufPool.Get().(*[bufSize]byte) }
func putBuf(b *[bufSize]byte) { bufPool.Put(b) }

// smallBufSize is the buffer every recordReader has of its own: enough for
// a whole request as nginx sends it (BEGIN, PARAMS, an empty STDIN) in one
// read, small enough to keep for each of thousands of idle connections.
const smallBufSize = 4 << 10

// recordReader reads records from r. It buffers what it reads itself (one
// copy from the socket, none after), so reading a record allocates nothing;
// the content returned by next is valid until the following call or release.
// It reads into its own small buffer, and takes a large one from bufPool
// only for a record that does not fit; release gives that back once it is
// empty, so a connection between requests holds only the small one.
type recordReader struct {
	r          io.Reader
	buf        []byte         // small[:] or big[:]
	big        *[bufSize]byte // from bufPool, while in use
	rpos, wpos int            // buf[rpos:wpos] is read and not yet returned
	small      [smallBufSize]byte
}

func newRecordReader(r io.Reader) *recordReader {
	rr := &recordReader{r: r}
	rr.buf = rr.small[:]
	return rr
}

// buffered returns how many bytes have been read and not yet returned.
func (rr *recordReader) buffered() int { return rr.wpos - rr.rpos }

// release gives the large buffer back to the pool if it holds nothing
// unread.
func (rr *recordReader) release() {
	if rr.rpos != rr.wpos {
		return
	}
	rr.rpos, rr.wpos = 0, 0
	if rr.big != nil {
		putBuf(rr.big)
		rr.big, rr.buf = nil, rr.small[:]
	}
}

// fill reads until at least n bytes (n <= bufSize) are buffered. A record
// that does not fit the small buffer is moved to a large one only once the
// small one is full of it: what a connection holds follows the bytes that
// arrived, not the length a header claims.
func (rr *recordReader) fill(n int) error {
	for rr.wpos-rr.rpos < n {
		if len(rr.buf)-rr.rpos < n && (rr.rpos > 0 || rr.wpos == len(rr.buf)) {
			// The record does not fit after rpos: move what is read of it
			// to the start of this buffer, or of a large one when it
			// fills this one and needs more.
			dst := rr.buf
			if rr.rpos == 0 {
				rr.big = getBuf()
				dst = rr.big[:]
			}
			rr.wpos = copy(dst, rr.buf[rr.rpos:rr.wpos])
			rr.rpos, rr.buf = 0, dst
		}
		m, err := rr.r.Read(rr.buf[rr.wpos:])
		rr.wpos += m
		if err != nil {
			if rr.wpos-rr.rpos >= n {
				return nil
			}
			return err
		}
	}
	return nil
}

// next reads one whole record. A stream that ends cleanly between records
// gives io.EOF; one that ends inside a record gives io.ErrUnexpectedEOF.
func (rr *recordReader) next() (header, []byte, error) {
	if err := rr.fill(headerLen); err != nil {
		if err == io.EOF && rr.buffered() > 0 {
			err = io.ErrUnexpectedEOF
		}
		return header{}, nil, err
	}
	h, err := parseHeader(rr.buf[rr.rpos:])
	if err != nil {
		return h, nil, err
	}
	n := headerLen + int(h.ContentLength) + int(h.PaddingLength)
	if err := rr.fill(n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	c := rr.buf[rr.rpos+headerLen : rr.rpos+headerLen+int(h.ContentLength)]
	rr.rpos += n
	return h, c, nil
}

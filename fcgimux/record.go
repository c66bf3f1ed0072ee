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

// writeRecord writes one record with content c (len(c) <= maxContent).
func writeRecord(w io.Writer, t recType, id uint16, c []byte) error {
	var h [headerLen]byte
	pad := padFor(len(c))
	putHeader(h[:], t, id, len(c), pad)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if len(c) > 0 {
		if _, err := w.Write(c); err != nil {
			return err
		}
	}
	if pad > 0 {
		if _, err := w.Write(zeros[:pad]); err != nil {
			return err
		}
	}
	return nil
}

// writeStream writes b as records of type t, split at maxContent. It writes
// no empty record: the caller ends a stream explicitly.
func writeStream(w io.Writer, t recType, id uint16, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), maxContent&^7) // keep records 8-aligned so no padding is needed
		if err := writeRecord(w, t, id, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// writeBeginRequest writes FCGI_BEGIN_REQUEST for the responder role.
func writeBeginRequest(w io.Writer, id uint16, keepConn bool) error {
	var b [8]byte
	binary.BigEndian.PutUint16(b[0:2], roleResponder)
	if keepConn {
		b[2] = flagKeepConn
	}
	return writeRecord(w, typeBeginRequest, id, b[:])
}

// writeEndRequest writes FCGI_END_REQUEST.
func writeEndRequest(w io.Writer, id uint16, appStatus uint32, protocolStatus uint8) error {
	var b [8]byte
	binary.BigEndian.PutUint32(b[0:4], appStatus)
	b[4] = protocolStatus
	return writeRecord(w, typeEndRequest, id, b[:])
}

// beginRequest is the body of FCGI_BEGIN_REQUEST.
type beginRequest struct {
	Role     uint16
	KeepConn bool
}

func parseBeginRequest(c []byte) (beginRequest, error) {
	if len(c) < 8 {
		return beginRequest{}, fmt.Errorf("fastcgi: begin request body is %d bytes, want 8", len(c))
	}
	return beginRequest{
		Role:     binary.BigEndian.Uint16(c[0:2]),
		KeepConn: c[2]&flagKeepConn != 0,
	}, nil
}

// endRequest is the body of FCGI_END_REQUEST.
type endRequest struct {
	AppStatus      uint32
	ProtocolStatus uint8
}

func parseEndRequest(c []byte) (endRequest, error) {
	if len(c) < 8 {
		return endRequest{}, fmt.Errorf("fastcgi: end request body is %d bytes, want 8", len(c))
	}
	return endRequest{
		AppStatus:      binary.BigEndian.Uint32(c[0:4]),
		ProtocolStatus: c[4],
	}, nil
}

// recordReader reads records from r into a buffer it reuses, so reading a
// record allocates nothing. The content returned by next is valid until the
// following call.
type recordReader struct {
	r   io.Reader
	hdr [headerLen]byte
	buf []byte
}

func newRecordReader(r io.Reader) *recordReader {
	return &recordReader{r: r, buf: make([]byte, maxContent+maxPadding)}
}

// next reads one whole record. A stream that ends cleanly between records
// gives io.EOF; one that ends inside a record gives io.ErrUnexpectedEOF.
func (rr *recordReader) next() (header, []byte, error) {
	if _, err := io.ReadFull(rr.r, rr.hdr[:]); err != nil {
		return header{}, nil, err
	}
	h, err := parseHeader(rr.hdr[:])
	if err != nil {
		return h, nil, err
	}
	n := int(h.ContentLength) + int(h.PaddingLength)
	if _, err := io.ReadFull(rr.r, rr.buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, rr.buf[:h.ContentLength], nil
}

package fcgimux

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestWriteRecordBytes(t *testing.T) {
	tests := []struct {
		name    string
		typ     recType
		id      uint16
		content []byte
		want    []byte
	}{
		{"empty params end", typeParams, 1, nil, []byte{1, 4, 0, 1, 0, 0, 0, 0}},
		{"padded to 8", typeStdout, 1, []byte("abc"), []byte{1, 6, 0, 1, 0, 3, 5, 0, 'a', 'b', 'c', 0, 0, 0, 0, 0}},
		{"aligned, no padding", typeStdin, 0x1234, []byte("12345678"), []byte{1, 5, 0x12, 0x34, 0, 8, 0, 0, '1', '2', '3', '4', '5', '6', '7', '8'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeRecord(&b, tt.typ, tt.id, tt.content); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), tt.want) {
				t.Fatalf("got % x, want % x", b.Bytes(), tt.want)
			}
		})
	}
}

func TestBeginEndRequestBytes(t *testing.T) {
	var b bytes.Buffer
	writeBeginRequest(&b, 1, true)
	want := []byte{1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("begin: got % x, want % x", b.Bytes(), want)
	}
	b.Reset()
	writeEndRequest(&b, 1, 0x01020304, statusOverloaded)
	want = []byte{1, 3, 0, 1, 0, 8, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("end: got % x, want % x", b.Bytes(), want)
	}
}

func TestRecordReader(t *testing.T) {
	var b bytes.Buffer
	writeRecord(&b, typeStdout, 7, []byte("hello"))
	writeRecord(&b, typeStdout, 7, nil)
	rr := newRecordReader(&b)
	h, c, err := rr.next()
	if err != nil || h.Type != typeStdout || h.ID != 7 || string(c) != "hello" {
		t.Fatalf("first record: %+v %q %v", h, c, err)
	}
	h, c, err = rr.next()
	if err != nil || len(c) != 0 {
		t.Fatalf("second record: %+v %q %v", h, c, err)
	}
	if _, _, err = rr.next(); err != io.EOF {
		t.Fatalf("after the last record: got %v, want io.EOF", err)
	}
}

func TestRecordReaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"truncated header", []byte{1, 6, 0}, io.ErrUnexpectedEOF},
		{"truncated content", []byte{1, 6, 0, 1, 0, 10, 0, 0, 'a'}, io.ErrUnexpectedEOF},
		{"missing padding", []byte{1, 6, 0, 1, 0, 1, 7, 0, 'a'}, io.ErrUnexpectedEOF},
		{"version 2", []byte{2, 6, 0, 1, 0, 0, 0, 0}, errBadVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := newRecordReader(bytes.NewReader(tt.in)).next()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteStreamSplits(t *testing.T) {
	var b bytes.Buffer
	data := bytes.Repeat([]byte("x"), 2*maxContent+10)
	if err := writeStream(&b, typeStdout, 1, data); err != nil {
		t.Fatal(err)
	}
	rr := newRecordReader(&b)
	var got []byte
	for {
		h, c, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ContentLength > maxContent || (int(h.ContentLength)+int(h.PaddingLength))%8 != 0 {
			t.Fatalf("record of %d+%d bytes", h.ContentLength, h.PaddingLength)
		}
		got = append(got, c...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("reassembled %d bytes, want %d", len(got), len(data))
	}
}

// TestRecordReaderBuffers reads records that fit the reader's own buffer
// and ones that need a pooled one, whole or a byte at a time, and checks
// release gives the pooled one back only when nothing is left unread.
func TestRecordReaderBuffers(t *testing.T) {
	contents := [][]byte{
		[]byte("small"),
		bytes.Repeat([]byte("L"), maxContent), // needs the large buffer
		nil,
		bytes.Repeat([]byte("m"), smallBufSize-headerLen-1),
		[]byte("after"),
	}
	var in []byte
	for i, c := range contents {
		in = appendRecord(in, typeStdin, uint16(i+1), c)
	}
	for _, name := range []string{"whole", "one byte at a time"} {
		t.Run(name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(in)
			if name != "whole" {
				r = iotest.OneByteReader(r)
			}
			rr := newRecordReader(r)
			for i, want := range contents {
				h, c, err := rr.next()
				if err != nil || int(h.ID) != i+1 || !bytes.Equal(c, want) {
					t.Fatalf("record %d: id %d, %d bytes, %v; want %d bytes", i+1, h.ID, len(c), err, len(want))
				}
				if i == 1 && rr.big == nil {
					t.Fatal("a 64 KiB record was read without the large buffer")
				}
				if rr.buffered() == 0 {
					rr.release()
					if rr.big != nil {
						t.Fatalf("after record %d: release kept the large buffer with nothing unread", i+1)
					}
				}
			}
			if _, _, err := rr.next(); err != io.EOF {
				t.Fatalf("at the end: %v, want io.EOF", err)
			}
		})
	}
}

// TestRecordReaderReleaseKeepsUnread: release must not drop bytes read
// ahead of the record returned.
func TestRecordReaderReleaseKeepsUnread(t *testing.T) {
	in := appendRecord(nil, typeStdin, 1, bytes.Repeat([]byte("x"), 10000))
	in = appendRecord(in, typeStdin, 2, []byte("next"))
	rr := newRecordReader(bytes.NewReader(in))
	if _, _, err := rr.next(); err != nil {
		t.Fatal(err)
	}
	rr.release()
	h, c, err := rr.next()
	if err != nil || h.ID != 2 || string(c) != "next" {
		t.Fatalf("after release: id %d %q %v", h.ID, c, err)
	}
}

// This file owns the tests that a length field cannot make fcgimux allocate
// what it claims: a params pair claiming 2 GiB and a record header claiming
// the longest content with little behind it, through the decoder and
// through a Server, which must refuse or close and go on serving.

package fcgimux

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// allocBound is what a hostile input may make fcgimux allocate in these
// tests: far under what its length fields claim.
const allocBound = 4 << 20 * raceAllocSlack

// allocated returns the bytes allocated on the heap, by any goroutine,
// while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// hugeClaims are params whose length fields claim about 2 GiB.
var hugeClaims = []struct {
	name   string
	params []byte
}{
	{"name claims 2 GiB", []byte{0xff, 0xff, 0xff, 0xff, 0x01, 'a', 'b'}},
	{"value claims 2 GiB", []byte{0x01, 0xff, 0xff, 0xff, 0xff, 'a', 'b'}},
	{"both claim 2 GiB", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'}},
	{"claim after a good pair", append(appendPair(nil, "SCRIPT_FILENAME", testDocroot+"/index.php"), 0x80, 0, 0, 0x10, 0xff, 0xff, 0xff, 0xfe, 'x')},
}

func TestParamsLengthClaimsAllocateNothing(t *testing.T) {
	for _, tt := range hugeClaims {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			walk := func() { err = eachPair(tt.params, func(_, _ []byte) error { return nil }) }
			if n := testing.AllocsPerRun(100, walk); n != 0 {
				t.Errorf("eachPair allocates %v times", n)
			}
			if !errors.Is(err, errParamsFormat) {
				t.Errorf("eachPair: %v, want errParamsFormat", err)
			}
			if n := allocated(func() { _, _, _, err = rewriteParams(nil, nil, tt.params, fuzzPaths) }); n > allocBound {
				t.Errorf("rewriteParams allocated %d bytes", n)
			}
			if !errors.Is(err, errParamsFormat) {
				t.Errorf("rewriteParams: %v, want errParamsFormat", err)
			}
		})
	}
}

// maxRecord is a record of the longest content and padding, carrying c
// repeated, of type t for request 1.
func maxRecord(t recType, c byte) []byte {
	b := make([]byte, headerLen, maxRecordLen)
	putHeader(b, t, 1, maxContent, maxPadding)
	b = append(b, bytes.Repeat([]byte{c}, maxContent)...)
	return append(b, zeros[:]...)
}

// claimMax is a BEGIN_REQUEST, then a PARAMS header claiming the longest
// content and padding with a few bytes behind it.
func claimMax() []byte {
	b := appendBeginRequest(nil, 1, true)
	b = append(b, make([]byte, headerLen)...)
	putHeader(b[len(b)-headerLen:], typeParams, 1, maxContent, maxPadding)
	return append(b, "only these bytes"...)
}

// TestRecordLengthClaimsTakeNoLargeBuffer: a record reader takes a large
// buffer for what arrived, not for what a header claims: the longest record
// cut short within the small buffer costs that buffer alone. Reading
// records allocates nothing per record.
func TestRecordLengthClaimsTakeNoLargeBuffer(t *testing.T) {
	const readers = 16
	in := claimMax()
	n := allocated(func() {
		for range readers {
			rr := newRecordReader(bytes.NewReader(in))
			if _, _, err := rr.next(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := rr.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("a record cut short: %v, want io.ErrUnexpectedEOF", err)
			}
			if rr.big != nil {
				t.Fatalf("a header claiming %d bytes with %d behind it took the large buffer", maxContent+maxPadding, len(in)-2*headerLen-8)
			}
		}
	})
	if limit := readers * (smallBufSize + 1<<10); n > uint64(limit) {
		t.Errorf("%d readers of a record cut short allocated %d bytes, more than %d", readers, n, limit)
	}
	// Past the small buffer, the large one is taken.
	rr := newRecordReader(bytes.NewReader(maxRecord(typeStdin, 'x')[:smallBufSize+1]))
	if _, _, err := rr.next(); !errors.Is(err, io.ErrUnexpectedEOF) || rr.big == nil {
		t.Fatalf("%d bytes of a long record: %v, large buffer taken: %v", smallBufSize+1, err, rr.big != nil)
	}
	rr.rpos = rr.wpos
	rr.release()

	stream := bytes.Repeat(maxRecord(typeStdin, 'x'), 64) // 4 MiB of the longest records
	n = allocated(func() {
		rr := newRecordReader(bytes.NewReader(stream))
		for range 64 {
			if h, c, err := rr.next(); err != nil || h.ContentLength != maxContent || len(c) != maxContent {
				t.Fatalf("%+v, %d bytes, %v", h, len(c), err)
			}
		}
	})
	if limit := 1 << 20; n > uint64(limit) {
		t.Errorf("reading %d bytes of records allocated %d bytes, more than %d", len(stream), n, limit)
	}
}

// TestServerRefusesLengthClaims sends a Server what claims more than it
// may hold: a pair of 2 GiB (answered 400), params that go on past
// MaxParamsBytes (431), the longest record cut short (the connection is
// closed). None may make it allocate more than allocBound, and it serves a
// normal request afterwards on a new connection, and on the same one when
// that stays open.
func TestServerRefusesLengthClaims(t *testing.T) {
	b := startTestBackend(t, echoHandler)
	_, addr := startLimitedServer(t, newTestRouter(b, 1), Options{MaxParamsBytes: 64 << 10, ReadTimeout: 5 * time.Second})

	pastLimit := appendBeginRequest(nil, 1, true)
	pastLimit = appendRecord(pastLimit, typeParams, 1, []byte{0xff, 0xff, 0xff, 0xff, 0x01})
	pastLimit = appendStream(pastLimit, typeParams, 1, bytes.Repeat([]byte("a"), 16<<20))
	pastLimit = appendRecord(pastLimit, typeParams, 1, nil)
	pastLimit = appendRecord(pastLimit, typeStdin, 1, nil)

	tests := []struct {
		name string
		in   []byte
		want string // the response's first line; "" when the connection is to be closed
	}{
		{"params past the limit", pastLimit, "Status: 431"},
		{"record cut short", claimMax(), ""},
	}
	for _, c := range hugeClaims {
		tests = append(tests, struct {
			name string
			in   []byte
			want string
		}{c.name, paramsRequest(1, c.params), "Status: 400"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			n := allocated(func() {
				c.send(tt.in)
				if tt.want == "" {
					c.nc.(interface{ CloseWrite() error }).CloseWrite()
					if _, _, err := c.rr.next(); err != io.EOF {
						t.Fatalf("got %v, want the connection closed", err)
					}
					return
				}
				if r := c.read(1); !strings.HasPrefix(r.stdout, tt.want) {
					t.Fatalf("got %q, want %s", r.stdout, tt.want)
				}
			})
			if n > allocBound {
				t.Errorf("sending %d bytes allocated %d, more than %d", len(tt.in), n, allocBound)
			}
			next := []*rawClient{dialRaw(t, addr)}
			if tt.want != "" {
				next = append(next, c)
			}
			for _, c := range next {
				c.send(request(1, true, "after", phpParams("/index.php")...))
				if r := c.read(1); !strings.Contains(r.stdout, "body=after") {
					t.Fatalf("the request after: %q", r.stdout)
				}
			}
		})
	}
}

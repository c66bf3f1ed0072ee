// This file owns the named seeds of the fuzz targets in fuzz_test.go and
// their files in testdata/fuzz/<target>/, where `go test` replays them and
// the fuzzer starts from them. TestFuzzSeedFiles checks the files are what
// the seeds below say; `go test ./fcgimux -run TestFuzzSeedFiles
// -update-seeds` writes them again after a seed changed.

package fcgimux

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "write the named fuzz seeds to testdata/fuzz")

// seed is one named input of a fuzz target: its values in the order of the
// target's arguments.
type seed struct {
	name string
	vals []any
}

// fuzzSeeds returns the named seeds of each fuzz target.
func fuzzSeeds() map[string][]seed {
	get := benchRequest(0, true)     // nginx's GET: 30 params, an empty body
	post := benchRequest(700, false) // a POST with a body, connection not kept
	params := paramsOf(get)
	one := func(name string, v any) seed { return seed{name, []any{v}} }

	hostileScripts := map[string]string{
		"script-dotdot-escape":        testDocroot + "/../../../etc/passwd",
		"script-dotdot-inside":        testDocroot + "/lib/../index.php",
		"script-percent-encoded-dots": testDocroot + "/%2e%2e/%2e%2e/etc/passwd",
		"script-encoded-slash":        testDocroot + "/..%2f..%2fetc/passwd",
		"script-triple-dot":           testDocroot + "/.../index.php",
		"script-double-slash-dot":     "/" + testDocroot + "/./index.php/",
		"script-sibling-prefix":       testDocroot + "2/index.php",
		"script-nul":                  testDocroot + "/upload.jpg\x00.php",
		"script-invalid-utf8":         testDocroot + "/\xff\xfe\xc0\xaf.php",
		"script-proxy-form":           "proxy:fcgi://127.0.0.1:9700" + testDocroot + "/index.php",
		"script-proxy-form-dotdot":    "proxy:fcgi://127.0.0.1:9700" + testDocroot + "/../x.php",
		"script-proxy-form-query":     "proxy:fcgi://127.0.0.1:9700" + testDocroot + "/index.php?/../../x.php",
		"script-proxy-form-pathinfo":  "proxy:fcgi://localhost" + testDocroot + "/index.php/extra/path",
		"script-proxy-form-escapes":   "proxy:fcgi://localhost" + testDocroot + "/%2e%2e/a%41.php",
		"script-balancer-form":        "PROXY:balancer://app" + testDocroot + "/index.php",
		"script-relative":             "index.php",
		"script-docroot-itself":       testDocroot,
	}

	var rewrite, serve []seed
	rewrite = append(rewrite,
		one("nginx-params", params),
		one("client-sets-fpmux-release", append(appendPair(nil, "FPMUX_RELEASE", "evil"), params...)),
		one("reserved-script-name", encodePairs("SCRIPT_FILENAME", testDocroot+"/fpmux-ping", "SCRIPT_NAME", "/fpmux-ping")),
		one("two-script-filenames", encodePairs("SCRIPT_FILENAME", testDocroot+"/a.php", "SCRIPT_FILENAME", testDocroot+"/../b.php")),
		one("foreign-document-root", encodePairs("SCRIPT_FILENAME", testDocroot+"/a.php", "DOCUMENT_ROOT", "/elsewhere", "PATH_TRANSLATED", testDocroot+"/../x")),
		one("no-script", encodePairs("REQUEST_URI", "/")),
		one("path-translated-with-redirect-url", encodePairs("SCRIPT_FILENAME", testDocroot+"/a.php", "REDIRECT_URL", "/x", "PATH_TRANSLATED", "/tmp/secret.php")),
		one("path-translated-path-info", encodePairs("SCRIPT_FILENAME", testDocroot+"/a.php", "PATH_INFO", "/x/y", "PATH_TRANSLATED", testDocroot+"/x/y", "DOCUMENT_ROOT", testDocroot+"/")),
		one("preview-hint", append(encodePairs(paramHintRelease, "r2", paramHintToken, "preview"), params...)),
		one("name-length-2gib", []byte{0xff, 0xff, 0xff, 0xff, 0x01, 'a'}),
		one("nul-and-invalid-utf8-names", encodePairs("HTTP_\x00X", "\xff", "\xc3\x28", "v", "SCRIPT_FILENAME", testDocroot+"/index.php")),
	)
	// Held open (hold true) the Server ends the connection itself, after
	// answering what the input asks; closed after the input (hold false)
	// the web server is gone, and what is under way is abandoned.
	held := func(name string, in []byte) seed { return seed{name, []any{in, true}} }
	serve = append(serve,
		held("nginx-get-kept", get),
		held("nginx-post-closed", post),
		held("nginx-two-requests-kept", append(append([]byte(nil), get...), get...)),
		seed{"nginx-get-client-gone", []any{get, false}},
		seed{"nginx-post-client-gone", []any{post, false}},
		held("nginx-get-then-half-a-request", append(append([]byte(nil), get...), get[:len(get)/2]...)),
		held("management-records", bytes.Join([][]byte{
			appendRecord(nil, typeGetValues, 0, encodePairs("FCGI_MAX_CONNS", "", "FCGI_MPXS_CONNS", "", "OTHER", "")),
			appendRecord(nil, recType(0), 0, nil),
			appendRecord(nil, recType(12), 0, []byte("x")),
			appendRecord(nil, recType(255), 3, nil),
		}, nil)),
		held("abort-while-params", append(appendBeginRequest(nil, 1, true), appendRecord(nil, typeAbortRequest, 1, nil)...)),
		held("abort-after-body", append(append([]byte(nil), get...), appendRecord(nil, typeAbortRequest, 1, nil)...)),
		held("second-begin-in-flight", append(append(appendBeginRequest(nil, 1, true), appendRecord(nil, typeParams, 1, params)...), appendBeginRequest(nil, 2, true)...)),
		held("same-id-begun-twice", append(appendBeginRequest(nil, 1, true), appendBeginRequest(nil, 1, true)...)),
		held("unknown-role", appendRecord(nil, typeBeginRequest, 1, []byte{0, 9, 1, 0, 0, 0, 0, 0})),
		held("short-begin-body", appendRecord(nil, typeBeginRequest, 1, []byte{0, 1})),
		held("stdin-and-data-without-begin", append(appendRecord(nil, typeStdin, 1, []byte("body")), appendRecord(nil, typeData, 1, []byte("data"))...)),
		held("wrong-version", append([]byte{2}, get[1:]...)),
		held("truncated-params-record", get[:headerLen+8+headerLen+40]),
		held("params-over-the-limit", paramsRequest(1, bytes.Repeat(appendPair(nil, "HTTP_X_BIG", strings.Repeat("b", 1000)), 5))),
		held("params-name-length-2gib", paramsRequest(1, []byte{0xff, 0xff, 0xff, 0xff, 0x01, 'a'})),
		held("params-value-length-2gib", paramsRequest(1, []byte{0x01, 0xff, 0xff, 0xff, 0xff, 'a'})),
		held("record-claims-max-length", append(appendBeginRequest(nil, 1, true), 1, byte(typeParams), 0, 1, 0xff, 0xff, 0xff, 0, 'a', 'b')),
		held("request-id-0xffff", paramsRequest(0xffff, params)),
		held("preview-hint-honoured", paramsRequest(1, append(encodePairs(paramHintRelease, "r2", paramHintToken, "preview"), params...))),
		held("preview-hint-conflict", paramsRequest(1, append(encodePairs(paramHintRelease, "r2", paramHintRelease, "r3", paramHintToken, "preview"), params...))),
		held("reserved-script-name", request(1, true, "", "SCRIPT_FILENAME", testDocroot+"/fpmux-ping", "SCRIPT_NAME", "/fpmux-ping")),
	)
	for name, script := range hostileScripts {
		p := withScript(params, script)
		rewrite = append(rewrite, one(name, p))
		serve = append(serve, held(name, paramsRequest(1, p)))
	}

	under := []seed{}
	for _, s := range []string{
		testDocroot + "/index.php", testDocroot + "/../x", "/" + testDocroot + "/./a/", testDocroot + "2",
		testDocroot + "/..", testDocroot + "/...", testDocroot + "/%2e%2e/x", testDocroot + "\x00/../x",
		testDocroot + "/\xff\xfe", "var/www/app/current", "/", "",
	} {
		under = append(under, one(fmt.Sprintf("%q", s), s))
	}

	var records []seed
	for _, s := range serve {
		if s.vals[1] == true {
			records = append(records, one(s.name, s.vals[0]))
		}
	}
	records = append(records,
		one("content-over-the-small-buffer", appendRecord(nil, typeStdin, 1, bytes.Repeat([]byte("x"), smallBufSize+100))),
		one("header-only", []byte{1, 6, 0, 1, 0, 0, 0}),
		one("padding-without-content", []byte{1, 6, 0, 1, 0, 0, 0xff, 0}),
	)

	return map[string][]seed{
		"FuzzRecordReader":  records,
		"FuzzEachPair":      rewrite,
		"FuzzRewriteParams": rewrite,
		"FuzzUnderDocroot":  under,
		"FuzzServeConn":     serve,
	}
}

// paramsOf returns the params of the first request in a record stream.
func paramsOf(stream []byte) []byte {
	var p []byte
	rr := newRecordReader(bytes.NewReader(stream))
	for {
		h, c, err := rr.next()
		if err != nil || h.Type == typeParams && len(c) == 0 {
			return p
		}
		if h.Type == typeParams {
			p = append(p, c...)
		}
	}
}

// withScript returns params with the value of SCRIPT_FILENAME replaced.
func withScript(params []byte, script string) []byte {
	var out []byte
	eachPair(params, func(n, v []byte) error {
		if string(n) == "SCRIPT_FILENAME" {
			v = []byte(script)
		}
		out = appendPair(out, string(n), string(v))
		return nil
	})
	return out
}

// paramsRequest is a kept request as nginx frames it, with params as they
// are (encoded pairs or not) and an empty body.
func paramsRequest(id uint16, params []byte) []byte {
	b := appendBeginRequest(nil, id, true)
	b = appendStream(b, typeParams, id, params)
	b = appendRecord(b, typeParams, id, nil)
	return appendRecord(b, typeStdin, id, nil)
}

// corpusFile encodes vals in the format of Go's fuzzing corpus files.
func corpusFile(vals []any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		default:
			panic(fmt.Sprintf("corpusFile: no encoding for %T", v))
		}
	}
	return b.Bytes()
}

// seedFileName turns a seed's name into a file name.
func seedFileName(name string) string {
	return "seed-" + strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
}

// TestFuzzSeedFiles checks that testdata/fuzz holds each named seed as
// fuzzSeeds makes it, or with -update-seeds writes them.
func TestFuzzSeedFiles(t *testing.T) {
	for target, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]string{}
		for _, s := range seeds {
			file := filepath.Join(dir, seedFileName(s.name))
			if other, ok := seen[file]; ok {
				t.Fatalf("seeds %q and %q of %s have the same file name", other, s.name, target)
			}
			seen[file] = s.name
			want := corpusFile(s.vals)
			if *updateSeeds {
				if err := os.WriteFile(file, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(file)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is not seed %q as fuzzSeeds makes it (%v); run go test -run TestFuzzSeedFiles -update-seeds", file, s.name, err)
			}
		}
	}
}

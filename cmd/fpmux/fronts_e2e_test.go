// End-to-end tests behind every front fpmux documents: nginx, Apache
// (SetHandler and ProxyPassMatch), Caddy and lighttpd, each run from its
// example in config/examples/. Each check goes once through the front to
// fpmux and once through the same front config to a plain php-fpm pool on
// the same release (the reference): PHP must see the same request either
// way, apart from the exceptions in serverExceptions.

package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverExceptions are the $_SERVER keys allowed to differ between PHP
// behind fpmux and PHP behind php-fpm directly, each with why. Every other
// key must be present on both sides with the same value.
var serverExceptions = []struct {
	key  string
	kind string // path: equal once the release root is read as the docroot; port: equal once each front's port is read as PORT; fpmux: only behind fpmux; noise: per request
	why  string
}{
	{"SCRIPT_FILENAME", "path", "fpmux maps the docroot onto the release's real root; directly, php-fpm gets the `current` symlink's path"},
	{"DOCUMENT_ROOT", "path", "the same mapping"},
	{"PATH_TRANSLATED", "path", "the same mapping"},
	{"ORIG_SCRIPT_FILENAME", "path", "php-fpm's copy of SCRIPT_FILENAME before it splits off PATH_INFO"},
	{"ORIG_PATH_TRANSLATED", "path", "php-fpm's copy of PATH_TRANSLATED before it splits off PATH_INFO"},
	{"FPMUX_RELEASE", "fpmux", "fpmux adds it: the release that served the request"},
	{"REQUEST_TIME", "noise", "the time of each request"},
	{"REQUEST_TIME_FLOAT", "noise", "the time of each request"},
	{"REMOTE_PORT", "noise", "the client's ephemeral port"},
	{"SERVER_PORT", "port", "the two front instances listen on different ports"},
	{"HTTP_HOST", "port", "the Host header names the front's port"},
	{"HTTP_X_FORWARDED_HOST", "port", "Caddy's copy of the Host header"},
	{"SERVER_SIGNATURE", "port", "Apache's signature names the port"},
}

// probe is what testdata/app/info.php saw (its first line).
type probe struct {
	Release     string          `json:"release"`
	Server      map[string]any  `json:"server"`
	Get         json.RawMessage `json:"get"`
	Post        json.RawMessage `json:"post"`
	InputLen    int             `json:"input_len"`
	InputSHA256 string          `json:"input_sha256"`
	Files       map[string]struct {
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		Error  int    `json:"error"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

// answer is one HTTP response through a front: status, the probe's first
// line parsed (nil when the body is not info.php's), and the rest hashed.
type answer struct {
	status   int
	header   http.Header
	body     string // up to 4 KiB of the body, for messages
	probe    *probe
	restLen  int64
	restHash string
}

func fetch(c *http.Client, req *http.Request) (answer, error) {
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	first, err := br.ReadString('\n')
	if err != nil && err != io.EOF {
		return a, fmt.Errorf("read first line: %w", err)
	}
	a.body = first[:min(len(first), 4096)]
	var p probe
	if json.Unmarshal([]byte(first), &p) == nil && p.Server != nil {
		a.probe = &p
	}
	h := sha256.New()
	a.restLen, err = io.Copy(h, br)
	if err != nil {
		return a, fmt.Errorf("read body: %w", err)
	}
	a.restHash = hex.EncodeToString(h.Sum(nil))
	if a.probe == nil && a.restLen > 0 && len(a.body) < 4096 {
		a.body += "..."
	}
	return a, nil
}

// streamHash is the sha256 of the n MiB info.php?mb=n streams.
func streamHash(mb int) string {
	h := sha256.New()
	left := mb << 20
	for i := 0; left > 0; i++ {
		sum := md5.Sum([]byte(strconv.Itoa(i)))
		line := fmt.Sprintf("%08d %s\n", i, hex.EncodeToString(sum[:]))
		line = line[:min(len(line), left)]
		h.Write([]byte(line))
		left -= len(line)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// frontCheck is one request sent through both instances of a front, and
// what its answer must show beyond being the same on both.
type frontCheck struct {
	name   string
	req    func(base string) *http.Request
	expect func(env checkEnv, a answer) error
	// note, when set, says in the table what a passing answer was.
	note func(env checkEnv, a answer) string
	// limit, when set and not "" for a front, is what that front itself
	// does to the request, the same in front of php-fpm directly: both
	// answers are recorded, not compared, and behind fpmux only limitFP
	// must hold.
	limit   func(v frontVariant) string
	limitFP func(a answer) error
}

type checkEnv struct {
	v        frontVariant
	realRoot string // r1's real root
	docroot  string
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newReq(method, url string, body []byte, ctype string) *http.Request {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		panic(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return req
}

func serverString(p *probe, key string) string {
	v, _ := p.Server[key].(string)
	return v
}

// inRelease checks that PHP ran info.php from r1, by its real path.
func inRelease(env checkEnv, a answer) error {
	if a.status != 200 || a.probe == nil {
		return fmt.Errorf("status %d, body %q", a.status, a.body)
	}
	if a.probe.Release != "r1" || serverString(a.probe, "FPMUX_RELEASE") != "r1" {
		return fmt.Errorf("served by %q, FPMUX_RELEASE %q, want r1", a.probe.Release, serverString(a.probe, "FPMUX_RELEASE"))
	}
	if got := serverString(a.probe, "SCRIPT_FILENAME"); got != env.realRoot+"/info.php" {
		return fmt.Errorf("SCRIPT_FILENAME %q, want %q", got, env.realRoot+"/info.php")
	}
	return nil
}

// bodyArrived checks that PHP, run from r1, read the request body whole.
func bodyArrived(body []byte) func(env checkEnv, a answer) error {
	return func(env checkEnv, a answer) error {
		if err := inRelease(env, a); err != nil {
			return err
		}
		if a.probe.InputLen != len(body) || a.probe.InputSHA256 != sha(body) {
			return fmt.Errorf("body arrived as %d bytes sha256 %s, want %d %s", a.probe.InputLen, a.probe.InputSHA256, len(body), sha(body))
		}
		return nil
	}
}

// inRelease201 is inRelease for an answer PHP gave status 201.
func inRelease201(env checkEnv, a answer) error {
	if a.status != 201 {
		return fmt.Errorf("status %d, want 201; body %q", a.status, a.body)
	}
	a.status = 200
	return inRelease(env, a)
}

func frontChecks(t *testing.T) []frontCheck {
	post := randomBytes(t, 1<<20)
	chunked := randomBytes(t, 256<<10)
	// 3 headers of 6000 bytes: under each front's bound for one header
	// line (nginx 8k, Apache 8190), 18 KB of params in all.
	var bigHeaders []string
	for i := range 3 {
		bigHeaders = append(bigHeaders, strings.Repeat(string(rune('a'+i)), 6000))
	}
	upload := randomBytes(t, 1<<20)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("note", "hello fronts")
	fw, _ := mw.CreateFormFile("upload", "blob.bin")
	fw.Write(upload)
	mw.Close()
	const probeHeader = `odd; "quoted" value=1, ünï`
	const mb = 20
	wantStream := streamHash(mb)
	return []frontCheck{
		{"GET in release", func(base string) *http.Request {
			return newReq("GET", base+"/info.php", nil, "")
		}, inRelease, nil, nil, nil},
		{"PATH_INFO", func(base string) *http.Request {
			return newReq("GET", base+"/info.php/extra/path", nil, "")
		}, func(env checkEnv, a answer) error {
			if err := inRelease(env, a); err != nil {
				return err
			}
			if pi, sn := serverString(a.probe, "PATH_INFO"), serverString(a.probe, "SCRIPT_NAME"); pi != "/extra/path" || sn != "/info.php" {
				return fmt.Errorf("PATH_INFO %q SCRIPT_NAME %q, want /extra/path and /info.php", pi, sn)
			}
			return nil
		}, nil, nil, nil},
		{"query and headers", func(base string) *http.Request {
			req := newReq("GET", base+"/info.php?a=1&b=two%20words&c%5B%5D=x&c%5B%5D=y", nil, "")
			req.Header.Set("X-Fronts-Probe", probeHeader)
			req.Header.Set("Cookie", "session=abc; other=d")
			req.Header.Set("Accept-Language", "fr-CH, fr;q=0.9")
			return req
		}, func(env checkEnv, a answer) error {
			if err := inRelease(env, a); err != nil {
				return err
			}
			if got, want := string(a.probe.Get), `{"a":"1","b":"two words","c":["x","y"]}`; got != want {
				return fmt.Errorf("$_GET %s, want %s", got, want)
			}
			if got := serverString(a.probe, "HTTP_X_FRONTS_PROBE"); got != probeHeader {
				return fmt.Errorf("X-Fronts-Probe arrived as %q", got)
			}
			if got := serverString(a.probe, "HTTP_COOKIE"); got != "session=abc; other=d" {
				return fmt.Errorf("Cookie arrived as %q", got)
			}
			return nil
		}, nil, nil, nil},
		{"encoded PATH_INFO", func(base string) *http.Request {
			return newReq("GET", base+"/info.php/a%20b/%C3%A9t%C3%A9", nil, "")
		}, func(env checkEnv, a answer) error {
			if err := inRelease(env, a); err != nil {
				return err
			}
			want := "/a b/été"
			if env.v.rawPathInfo {
				want = "/a%20b/%C3%A9t%C3%A9"
			}
			if pi := serverString(a.probe, "PATH_INFO"); pi != want {
				return fmt.Errorf("PATH_INFO %q, want %q", pi, want)
			}
			return nil
		}, func(env checkEnv, a answer) string {
			if env.v.rawPathInfo {
				return "PATH_INFO not decoded: ProxyPassMatch sends the raw path"
			}
			return "PATH_INFO decoded"
		}, nil, nil},
		{"large headers", func(base string) *http.Request {
			req := newReq("GET", base+"/info.php", nil, "")
			for i, v := range bigHeaders {
				req.Header.Set(fmt.Sprintf("X-Big-%d", i), v)
			}
			return req
		}, func(env checkEnv, a answer) error {
			if env.v.headerBound {
				if a.status != 431 || a.probe != nil {
					return fmt.Errorf("status %d, want the front's 431", a.status)
				}
				return nil
			}
			if err := inRelease(env, a); err != nil {
				return err
			}
			for i, v := range bigHeaders {
				if got := serverString(a.probe, fmt.Sprintf("HTTP_X_BIG_%d", i)); got != v {
					return fmt.Errorf("X-Big-%d arrived as %d bytes, want %d", i, len(got), len(v))
				}
			}
			return nil
		}, func(env checkEnv, a answer) string {
			if env.v.headerBound {
				return "431 from lighttpd: server.max-request-field-size"
			}
			return "18 KB arrived"
		}, nil, nil},
		{"1 MiB POST", func(base string) *http.Request {
			return newReq("POST", base+"/info.php", post, "application/octet-stream")
		}, bodyArrived(post), nil, nil, nil},
		{"multipart upload", func(base string) *http.Request {
			return newReq("POST", base+"/info.php", form.Bytes(), mw.FormDataContentType())
		}, func(env checkEnv, a answer) error {
			if err := inRelease(env, a); err != nil {
				return err
			}
			f := a.probe.Files["upload"]
			if f.Error != 0 || f.Size != int64(len(upload)) || f.SHA256 != sha(upload) || f.Name != "blob.bin" {
				return fmt.Errorf("upload arrived as %+v, want %d bytes sha256 %s", f, len(upload), sha(upload))
			}
			if got := string(a.probe.Post); got != `{"note":"hello fronts"}` {
				return fmt.Errorf("$_POST %s", got)
			}
			return nil
		}, nil, nil, nil},
		{"chunked POST", func(base string) *http.Request {
			// A body of unknown length: the client sends it chunked.
			req := newReq("POST", base+"/info.php", nil, "application/octet-stream")
			req.Body = io.NopCloser(bytes.NewReader(chunked))
			return req
		}, bodyArrived(chunked), nil, func(v frontVariant) string {
			if v.server == "apache" {
				return "Apache sends a chunked body with no CONTENT_LENGTH, which php-fpm does not read: PHP gets no body, or php-fpm closes before it is sent (an error status)"
			}
			return ""
		}, func(a answer) error {
			// Behind fpmux, PHP sees what it sees directly: no body. And
			// as directly, php-fpm may close the connection before the
			// body is all sent (it does not read what it was not told
			// of): fpmux then answers 502, where Apache answers 503.
			if a.status == 502 && strings.HasPrefix(a.body, "fpmux: the pool of release r1 failed") {
				return nil
			}
			if a.status != 200 || a.probe == nil || a.probe.InputLen != 0 {
				return fmt.Errorf("status %d, body %q, want 200 and PHP given no body", a.status, a.body)
			}
			return nil
		}},
		{"status and headers from PHP", func(base string) *http.Request {
			return newReq("GET", base+"/info.php?status=201", nil, "")
		}, func(env checkEnv, a answer) error {
			if err := inRelease201(env, a); err != nil {
				return err
			}
			if c := a.header.Values("Set-Cookie"); len(c) != 2 || c[0] != "a=1" || c[1] != "b=2" || a.header.Get("X-Info") != "set by PHP" {
				return fmt.Errorf("Set-Cookie %q, X-Info %q", c, a.header.Get("X-Info"))
			}
			return nil
		}, nil, nil, nil},
		{"20 MB response", func(base string) *http.Request {
			return newReq("GET", base+fmt.Sprintf("/info.php?mb=%d", mb), nil, "")
		}, func(env checkEnv, a answer) error {
			if err := inRelease(env, a); err != nil {
				return err
			}
			if a.restLen != mb<<20 || a.restHash != wantStream {
				return fmt.Errorf("stream arrived as %d bytes sha256 %s, want %d %s", a.restLen, a.restHash, mb<<20, wantStream)
			}
			return nil
		}, nil, nil, nil},
		{"missing script", func(base string) *http.Request {
			return newReq("GET", base+"/missing.php", nil, "")
		}, func(env checkEnv, a answer) error {
			if a.probe != nil {
				return fmt.Errorf("info.php ran for /missing.php: %q", a.body)
			}
			isIndex := strings.Contains(a.body, " files=a@")
			if env.v.indexFallback {
				// The front's own rule: what names no file goes to index.php.
				if a.status != 200 || !strings.Contains(a.body, " files=a@r1,") {
					return fmt.Errorf("status %d body %q, want index.php of r1 (the config's fallback)", a.status, a.body)
				}
				return nil
			}
			if isIndex || a.status != 404 {
				return fmt.Errorf("status %d body %q, want 404 with no PHP run", a.status, a.body)
			}
			return nil
		}, func(env checkEnv, a answer) string {
			if env.v.indexFallback {
				return "200 from index.php, the config's fallback"
			}
			return fmt.Sprintf("%d, no PHP run", a.status)
		}, nil, nil},
	}
}

// compareServer returns how PHP's $_SERVER behind fpmux (fp) differs from
// the reference's (ref), once serverExceptions are applied.
func compareServer(fp, ref *probe, env checkEnv, fpPort, refPort int) []string {
	var diffs []string
	kinds := map[string]string{}
	for _, e := range serverExceptions {
		kinds[e.key] = e.kind
	}
	str := func(v any) string {
		if s, ok := v.(string); ok {
			return s
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	keys := slices.Sorted(maps.Keys(fp.Server))
	for k := range ref.Server {
		if _, ok := fp.Server[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		a, inFP := fp.Server[k]
		b, inRef := ref.Server[k]
		av, bv := str(a), str(b)
		switch kinds[k] {
		case "noise":
			continue
		case "fpmux":
			if k == "FPMUX_RELEASE" && av != "r1" {
				diffs = append(diffs, fmt.Sprintf("%s=%q behind fpmux, want r1", k, av))
			}
			continue
		case "path":
			av = strings.ReplaceAll(av, env.realRoot, env.docroot)
		case "port":
			av = strings.ReplaceAll(av, strconv.Itoa(fpPort), "PORT")
			bv = strings.ReplaceAll(bv, strconv.Itoa(refPort), "PORT")
		}
		switch {
		case !inRef:
			diffs = append(diffs, fmt.Sprintf("%s=%q only behind fpmux", k, str(a)))
		case !inFP:
			diffs = append(diffs, fmt.Sprintf("%s=%q only directly", k, str(b)))
		case av != bv:
			diffs = append(diffs, fmt.Sprintf("%s: fpmux %q, direct %q", k, str(a), str(b)))
		}
	}
	return diffs
}

// frontTable collects each check's outcome per front for the log (and
// docs/fronts.md): "ok" or what differed.
type frontTable struct {
	mu   sync.Mutex
	rows map[string]map[string]string
}

func (ft *frontTable) set(front, check, outcome string) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.rows[front] == nil {
		ft.rows[front] = map[string]string{}
	}
	ft.rows[front][check] = outcome
}

func (ft *frontTable) markdown(checks []string) string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var b strings.Builder
	b.WriteString("| check | " + strings.Join(frontNames(), " | ") + " |\n|---|")
	b.WriteString(strings.Repeat("---|", len(frontVariants)) + "\n")
	for _, c := range checks {
		b.WriteString("| " + c + " |")
		for _, v := range frontVariants {
			o := ft.rows[v.name][c]
			if o == "" {
				o = "not run"
			}
			b.WriteString(" " + o + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func frontNames() []string {
	var names []string
	for _, v := range frontVariants {
		names = append(names, v.name)
	}
	return names
}

// frontPair is one variant running twice: before fpmux, and before the
// reference pool.
type frontPair struct {
	v       frontVariant
	fp, ref *front
}

// TestFronts runs every front from its example, in front of fpmux and in
// front of php-fpm directly, through the checks of frontChecks and an
// atomic deploy under load, and logs the table of check x front.
func TestFronts(t *testing.T) {
	phpFPM, _ := needTools(t)
	for _, v := range frontVariants {
		frontBinary(t, v.server)
	}
	s := newStack(t, stackOptions{docrootLink: true})
	s.deploy("r1")
	realRoot, err := filepath.EvalSymlinks(filepath.Join(s.releases, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	refSock := startRefPool(t, phpFPM, filepath.Join(s.dir, "ref-fpm"))
	var pairs []frontPair
	for _, v := range frontVariants {
		pairs = append(pairs, frontPair{v,
			startFront(t, v, filepath.Join(s.dir, "fronts", v.name), s.sock, s.docroot),
			startFront(t, v, filepath.Join(s.dir, "fronts", v.name+"-direct"), refSock, s.docroot)})
	}
	table := &frontTable{rows: map[string]map[string]string{}}
	checks := frontChecks(t)
	var names []string
	for _, c := range checks {
		names = append(names, c.name)
	}
	names = append(names, "deploy under load", "static file after deploy")
	defer func() { t.Logf("fronts:\n%s", table.markdown(names)) }()

	t.Run("checks", func(t *testing.T) {
		for _, p := range pairs {
			t.Run(p.v.name, func(t *testing.T) {
				t.Parallel()
				env := checkEnv{v: p.v, realRoot: realRoot, docroot: s.docroot}
				c := newHTTPClient()
				defer c.CloseIdleConnections()
				for _, ck := range checks {
					outcome := runFrontCheck(t, c, p, ck, env)
					table.set(p.v.name, ck.name, outcome)
				}
			})
		}
	})

	t.Run("deploy under load", func(t *testing.T) {
		deployUnderLoad(t, s, pairs, table)
	})
}

// runFrontCheck sends ck through both instances of p and returns "ok" or
// what was wrong, failing the test for anything but "ok".
func runFrontCheck(t *testing.T, c *http.Client, p frontPair, ck frontCheck, env checkEnv) string {
	t.Helper()
	fp, fpErr := fetch(c, ck.req(p.fp.url))
	ref, refErr := fetch(c, ck.req(p.ref.url))
	if ck.limit != nil {
		if why := ck.limit(p.v); why != "" {
			// The front's own doing: an HTTP exchange it breaks is
			// recorded (Apache answering a chunked body early has left
			// the client reading a broken chunk, directly too).
			seen := func(a answer, err error) string {
				if err != nil {
					return "error " + err.Error()
				}
				return fmt.Sprintf("status %d, %s", a.status, bodyLen(a))
			}
			if fpErr == nil {
				if err := ck.limitFP(fp); err != nil {
					t.Errorf("%s behind fpmux: %v", ck.name, err)
					return "behind fpmux: " + err.Error()
				}
			}
			return fmt.Sprintf("front: %s (this run: %s behind fpmux; %s directly)", why, seen(fp, fpErr), seen(ref, refErr))
		}
	}
	if fpErr != nil {
		t.Errorf("%s behind fpmux: %v", ck.name, fpErr)
		return "error: " + fpErr.Error()
	}
	if refErr != nil {
		t.Errorf("%s directly: %v", ck.name, refErr)
		return "error directly: " + refErr.Error()
	}
	var problems []string
	if err := ck.expect(env, fp); err != nil {
		problems = append(problems, "behind fpmux: "+err.Error())
	}
	refEnv := env
	refEnv.realRoot = env.docroot // directly, PHP sees the symlink's path
	if err := ck.expect(refEnv, withRelease(ref)); err != nil {
		problems = append(problems, "directly: "+err.Error())
	}
	if fp.status != ref.status {
		problems = append(problems, fmt.Sprintf("status %d behind fpmux, %d directly", fp.status, ref.status))
	}
	switch {
	case fp.probe != nil && ref.probe != nil:
		problems = append(problems, compareServer(fp.probe, ref.probe, env, p.fp.port, p.ref.port)...)
	case (fp.probe == nil) != (ref.probe == nil):
		problems = append(problems, fmt.Sprintf("behind fpmux %q, directly %q", fp.body, ref.body))
	case strings.Replace(fp.body, "param=r1 ", "param= ", 1) != ref.body:
		// index.php shows FPMUX_RELEASE, which only fpmux sets.
		problems = append(problems, fmt.Sprintf("body behind fpmux %q, directly %q", fp.body, ref.body))
	}
	if len(problems) == 0 {
		if ck.note != nil {
			return "ok (" + ck.note(env, fp) + ")"
		}
		return "ok"
	}
	t.Errorf("%s: %s", ck.name, strings.Join(problems, "; "))
	return strings.Join(problems, "; ")
}

// bodyLen says how much of a request body PHP read, for the table.
func bodyLen(a answer) string {
	if a.probe == nil {
		return "no PHP answer"
	}
	return fmt.Sprintf("PHP read %d bytes", a.probe.InputLen)
}

// withRelease gives a reference answer the FPMUX_RELEASE fpmux would have
// added, so the same expectations hold for it.
func withRelease(a answer) answer {
	if a.probe != nil {
		p := *a.probe
		p.Server = maps.Clone(p.Server)
		p.Server["FPMUX_RELEASE"] = p.Release
		a.probe = &p
	}
	return a
}

// deployUnderLoad sends index.php requests through every front to fpmux
// while four releases are deployed, and judges each front's answers: 0
// failed, 0 mixed, 0 stale; then each front must serve the last release's
// static file.
func deployUnderLoad(t *testing.T, s *stack, pairs []frontPair, table *frontTable) {
	deploys := []deployMark{{"r1", time.Now()}}
	stop := make(chan struct{})
	waits := map[string]func() []loadResult{}
	for _, p := range pairs {
		url := p.fp.url + "/index.php?ms=20"
		waits[p.v.name] = s.runLoadWith(3, stop, func(c *http.Client) (int, string, error) { return getURL(c, url) })
	}
	for i := 2; i <= 5; i++ {
		time.Sleep(400 * time.Millisecond)
		id := fmt.Sprintf("r%d", i)
		s.deploy(id)
		deploys = append(deploys, deployMark{id, time.Now()})
	}
	time.Sleep(400 * time.Millisecond)
	close(stop)
	for _, p := range pairs {
		results := waits[p.v.name]()
		f, examples := judge(results, deploys)
		served := map[string]int{}
		for _, r := range results {
			if rel, _, ok := servedBy(r.body); ok {
				served[rel]++
			}
		}
		t.Logf("%s: sent=%d failed=%d mixed=%d stale=%d per release %v", p.v.name, f.sent, f.failed, f.mixed, f.stale, served)
		outcome := fmt.Sprintf("ok (%d sent)", f.sent)
		if f.failed+f.mixed+f.stale > 0 {
			outcome = fmt.Sprintf("failed=%d mixed=%d stale=%d", f.failed, f.mixed, f.stale)
			t.Errorf("%s: %s of %d; first ones: %v", p.v.name, outcome, f.sent, examples[:min(len(examples), 3)])
		} else if served["r5"] == 0 {
			outcome = "the load did not reach the last release"
			t.Errorf("%s: %s", p.v.name, outcome)
		}
		table.set(p.v.name, "deploy under load", outcome)
	}
	// The front serves static files itself, through the symlink fpmux
	// points at the active release (the `symlink` each example names).
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	for _, p := range pairs {
		outcome := "ok"
		if st, body, err := getURL(c, p.fp.url+"/release.txt"); err != nil || st != 200 || body != "r5\n" {
			outcome = fmt.Sprintf("status %d body %q err %v, want r5's", st, body, err)
			t.Errorf("%s: static file after the deploys: %s", p.v.name, outcome)
		}
		table.set(p.v.name, "static file after deploy", outcome)
	}
}

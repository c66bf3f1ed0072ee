// This file owns the client side of the command line: deploy, activate,
// rollback, retire and status, each a small HTTP/1.1 + JSON call to the admin
// API of a running fpmux (see runClient).

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/supervisor"
)

// clientDefaultAdmin is where the client looks for the admin API when -admin
// is not given; it matches the daemon's embedded default.
const clientDefaultAdmin = "unix:/run/fpmux/admin.sock"

// clientTimeout bounds every admin call except deploy, whose bound is its
// -timeout plus clientDeploySlack.
const (
	clientTimeout     = 30 * time.Second
	clientDeploySlack = 5 * time.Second
)

// clientRelease is one release as the admin API reports it. Fields the
// server may leave out are pointers or zero values; nothing here is required.
type clientRelease struct {
	clientRollbackInfo
	ID          string     `json:"id"`
	Root        string     `json:"root"`
	State       string     `json:"state"`
	InFlight    *int64     `json:"in_flight,omitempty"`
	Requests    *int64     `json:"requests,omitempty"`
	CreatedAt   *time.Time `json:"created_at,omitempty"`
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
	DrainingAt  *time.Time `json:"draining_at,omitempty"`
	// Generation and PoolReloadedAt: see reload-pools (reloadpools.go).
	Generation     int         `json:"generation,omitempty"`
	PoolReloadedAt *time.Time  `json:"pool_reloaded_at,omitempty"`
	RetiredAt      *time.Time  `json:"retired_at,omitempty"`
	ReadyMS        *int64      `json:"ready_ms,omitempty"`
	Error          string      `json:"error,omitempty"`
	Pool           *clientPool `json:"pool,omitempty"`
	Holding        []struct {
		Method string `json:"method"`
		URI    string `json:"uri"`
		AgeMS  int64  `json:"age_ms"`
	} `json:"holding,omitempty"`
	Warmup []struct {
		Path     string `json:"path"`
		Status   int    `json:"status"`
		Requests int    `json:"requests"`
		Failed   int    `json:"failed"`
	} `json:"warmup,omitempty"`
	Guard  *clientGuard         `json:"guard,omitempty"` // see client_guard.go
	Health []clientHealthResult `json:"health,omitempty"`
}

// clientRollbackInfo is how a release can be rolled back to; see
// clientRollbackLine.
type clientRollbackInfo struct {
	Rollback       string     `json:"rollback,omitempty"` // "instant", "restart" or ""
	KeptUntil      *time.Time `json:"kept_until,omitempty"`
	RollbackTarget bool       `json:"rollback_target,omitempty"`
}

// clientPool holds a release's php-fpm figures as the server reports them
// (supervisor.PoolInfo), each shown only when the server has it: pid and
// restarts, which PoolInfo always carries, are pointers here too, so that
// an answer without them shows none rather than 0.
type clientPool struct {
	supervisor.PoolInfo
	PID      *int   `json:"pid,omitempty"`
	Restarts *int64 `json:"restarts,omitempty"`
}

// clientExitError carries the exit code a failed command ends with and the
// one line printed for it.
type clientExitError struct {
	code int
	msg  string
}

func (e *clientExitError) Error() string { return e.msg }

// clientTokenEnv names the environment variable the client reads the admin
// token from when -token is not given.
const clientTokenEnv = "FPMUX_ADMIN_TOKEN"

// errClientToken is what a 401 from the admin API becomes.
const errClientToken = "admin API refused the token: set -token or " + clientTokenEnv

// client talks to one fpmux admin listener for one subcommand.
type client struct {
	admin  string // the address as the user wrote it
	host   string // the Host header: the TCP address, or fpmux over a unix socket
	token  string // sent as a bearer token when not empty
	http   *http.Client
	stdout io.Writer
	now    func() time.Time
	fleet  bool // the last answer said this fpmux is a fleet host (fleet_client.go)
}

// clientCommands are the client subcommands, by name: each a call to the
// admin API of a running fpmux (see runClient).
var clientCommands = map[string]func(args []string, stdout, stderr io.Writer) error{
	"deploy":       clientDeploy,
	"activate":     clientActivate,
	"rollback":     clientRollback,
	"retire":       clientRetire,
	"status":       clientStatus,
	"upgrade":      clientUpgrade,
	"reload-pools": clientReloadPools,
}

// runClient runs the client subcommand name (one of clientCommands) with
// its arguments and returns the process exit code: 0 on success, 1 when
// fpmux refused or could not be reached, 2 for bad usage. Results go to
// stdout; usage and errors, one line each, go to stderr.
func runClient(name string, args []string, stdout, stderr io.Writer) int {
	cmd, ok := clientCommands[name]
	if !ok {
		fmt.Fprintf(stderr, "fpmux: unknown command %q\n", name)
		return 2
	}
	err := cmd(args, stdout, stderr)
	if err == nil {
		return 0
	}
	var ee *clientExitError
	if !errors.As(err, &ee) {
		ee = &clientExitError{code: 1, msg: err.Error()}
	}
	if ee.msg != "" {
		fmt.Fprintf(stderr, "fpmux %s: %s\n", name, clientOneLine(ee.msg))
	}
	return ee.code
}

// clientTarget is where a subcommand finds the admin API (-admin) and the
// token it sends there (-token), or the config file that names both
// (-config); see client_target.go.
type clientTarget struct {
	admin, token, config string
}

// clientFlags returns a flag set for subcommand name with -admin and -token
// defined.
func clientFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *clientTarget) {
	fs := flag.NewFlagSet("fpmux "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	t := &clientTarget{}
	fs.StringVar(&t.admin, "admin", "", "admin API address: unix:/path or host:port; empty: -config's admin, else $"+
		clientAdminEnv+", else "+clientDefaultAdmin)
	fs.StringVar(&t.token, "token", "", "the server's admin_token, sent as a bearer token; empty: -config's admin_token, else $"+clientTokenEnv+
		" (which, unlike a flag, other users cannot read in the process list)")
	fs.StringVar(&t.config, "config", "", "fpmux's config `FILE`, to take admin and admin_token from")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fpmux %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs, t
}

// clientParse parses args, allowing flags after the positional arguments
// too (fpmux activate r2 -admin ...). It returns the positional arguments.
// -h is exit 0 with usage; any other parse error is exit 2 (flag has
// already printed the problem and the usage).
func clientParse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &clientExitError{code: 0}
			}
			return nil, &clientExitError{code: 2}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// Parse stops at the first non-flag argument, or just after "--",
		// which makes all the rest positional.
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// clientUsage reports a usage problem: the reason and the usage, exit 2.
func clientUsage(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return &clientExitError{code: 2}
}

// client builds a client for the target: its address and its token, each
// from its flag, else -config's, else the environment (see resolve). A bad
// address or token is a usage error.
func (t *clientTarget) client(timeout time.Duration, stdout io.Writer) (*client, error) {
	r, err := t.resolve()
	if err != nil {
		return nil, err
	}
	token, from := r.token, r.tokenFrom
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r > '~' }) {
		// Not quoted: the message must not show the secret.
		return nil, &clientExitError{code: 2, msg: from + ": the token must be printable ASCII without spaces, as admin_token is"}
	}
	c, err := newClient(r.admin, timeout, stdout)
	if err != nil {
		var ee *clientExitError
		if errors.As(err, &ee) && r.adminFrom != "-admin" {
			ee.msg = strings.Replace(ee.msg, "-admin", r.adminFrom, 1)
		}
		return nil, err
	}
	c.token = token
	return c, nil
}

// newClient builds a client for the admin address, with no token; a bad
// address is a usage error.
func newClient(admin string, timeout time.Duration, stdout io.Writer) (*client, error) {
	network, address, err := config.ParseAddr(admin)
	if err != nil {
		return nil, &clientExitError{code: 2, msg: fmt.Sprintf("-admin: %v", err)}
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		DisableKeepAlives: true,
		Proxy:             nil, // never send the admin API through HTTP_PROXY
	}
	// The admin API takes only a Host that names its listener (its
	// defence against DNS rebinding): over TCP the address as written.
	host := "fpmux"
	if network == "tcp" {
		host = address
	}
	return &client{
		admin:  admin,
		host:   host,
		http:   &http.Client{Transport: tr, Timeout: timeout},
		stdout: stdout,
		now:    time.Now,
	}, nil
}

// do sends one request and returns the body of a 2xx answer. Anything else
// becomes an error fit for one line. Any 2xx counts as success: the admin API
// documents which one each call answers (201, 200, 202), and a different 2xx
// still means fpmux did what was asked.
func (c *client) do(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+c.host+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if method == http.MethodPost {
		// Every POST, with a body or not: the admin API refuses any
		// other, as a web page could send it.
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	c.fleet = resp.Header.Get(fleetHeader) != ""
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer from fpmux at %s: %w", c.admin, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		// The server's reason, without its advice on the header to send.
		why, _, _ := strings.Cut(clientAPIError(resp.StatusCode, data).Error(), ": send ")
		return nil, fmt.Errorf("%s (fpmux at %s: %s)", errClientToken, c.admin, why)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, clientAPIError(resp.StatusCode, data)
	}
	return data, nil
}

// transportError turns a failed round trip into one line a person can act on.
func (c *client) transportError(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		reason := opErr.Err
		var se *os.SyscallError
		if errors.As(reason, &se) {
			reason = se.Err
		}
		hint := ""
		switch {
		case errors.Is(reason, syscall.ENOENT):
			hint = " (no such socket; is fpmux serve running?)"
		case errors.Is(reason, syscall.ECONNREFUSED):
			hint = " (connection refused; is fpmux serve running?)"
		case errors.Is(reason, syscall.EACCES), errors.Is(reason, syscall.EPERM):
			hint = " (permission denied; run as a user that may use the admin socket)"
		default:
			hint = ": " + reason.Error()
		}
		return fmt.Errorf("fpmux is not reachable at %s%s", c.admin, hint)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer from fpmux at %s within %s", c.admin, c.http.Timeout)
	}
	return fmt.Errorf("talk to fpmux at %s: %w", c.admin, err)
}

// clientAPIError makes the error of a non-2xx answer: the server's
// {"error": "..."} message, else the status and the start of the body.
func clientAPIError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && strings.TrimSpace(e.Error) != "" {
		return errors.New(e.Error)
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	if text == "" {
		return fmt.Errorf("fpmux answered %d %s", status, http.StatusText(status))
	}
	return fmt.Errorf("fpmux answered %d %s: %s", status, http.StatusText(status), text)
}

// clientOneLine folds a message onto one line: php-fpm's own words often
// span several.
func clientOneLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	out := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// clientDecodeRelease decodes one release; ok is false when the body is not
// one (the caller then prints a plainer line).
func clientDecodeRelease(data []byte) (clientRelease, bool) {
	var r clientRelease
	if err := json.Unmarshal(data, &r); err != nil || r.ID == "" {
		return clientRelease{}, false
	}
	return r, true
}

func clientDeploy(args []string, stdout, stderr io.Writer) error {
	fs, target := clientFlags("deploy", "[-admin ADDR] [-token TOKEN] -id ID -root DIR [-no-activate] [-timeout DUR] [-warmup PATH]... [-no-warmup] [-health PATH]... [-no-health] [-guard|-no-guard] [-wait-guard]", stderr)
	id := fs.String("id", "", "release id (required)")
	root := fs.String("root", "", "release root directory, under one of allowed_roots (required)")
	noActivate := fs.Bool("no-activate", false, "start and health-check the pool but leave traffic where it is")
	timeout := fs.Duration("timeout", 60*time.Second, "how long fpmux may take to get the release ready")
	var warmup clientPaths
	fs.Var(&warmup, "warmup", "a `PATH` (and query) to request from the new release before it takes traffic; repeat for more; "+
		"replaces the config's warmup list")
	noWarmup := fs.Bool("no-warmup", false, "warm up no path, whatever the config's warmup list says")
	guard := addClientGuardFlags(fs)
	health := addHealthFlags(fs)
	pos, err := clientParse(fs, args)
	if err != nil {
		return err
	}
	if err := guard.check(fs, *noActivate); err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return clientUsage(fs, "unexpected argument %q", pos[0])
	case *id == "":
		return clientUsage(fs, "-id is required")
	case *root == "":
		return clientUsage(fs, "-root is required")
	case *timeout <= 0:
		return clientUsage(fs, "-timeout must be positive, not %s", *timeout)
	case *noWarmup && len(warmup) > 0:
		return clientUsage(fs, "-warmup and -no-warmup exclude each other")
	}
	for _, p := range warmup {
		if err := config.CheckWarmupPath(p); err != nil {
			return clientUsage(fs, "-warmup: %v", err)
		}
	}
	if err := health.check(); err != nil {
		return clientUsage(fs, "%v", err)
	}
	// Absent, the server takes the config's list; [] asks for none.
	var warmupField any
	switch {
	case *noWarmup:
		warmupField = []string{}
	case len(warmup) > 0:
		warmupField = []string(warmup)
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return fmt.Errorf("resolve -root %q: %w", *root, err)
	}
	c, err := target.client(*timeout+clientDeploySlack, stdout)
	if err != nil {
		return err
	}
	body := struct {
		ID       string `json:"id"`
		Root     string `json:"root"`
		Activate bool   `json:"activate"`
		Timeout  string `json:"timeout"`
		Warmup   any    `json:"warmup,omitempty"`
		Guard    *bool  `json:"guard,omitempty"`
		Health   any    `json:"health,omitempty"`
	}{*id, absRoot, !*noActivate, clientFormatTimeout(*timeout), warmupField, guard.field(), health.field()}
	data, err := c.do(http.MethodPost, "/v1/releases", body)
	if err != nil {
		return err
	}
	r, ok := clientDecodeRelease(data)
	if !ok {
		r = clientRelease{ID: *id, Root: absRoot, State: "ready"}
		if !*noActivate {
			r.State = "active"
		}
	}
	detail := "root " + r.Root
	if r.ReadyMS != nil {
		detail += fmt.Sprintf(", ready in %dms", *r.ReadyMS)
	}
	detail += clientHealthSummary(r)
	if len(r.Warmup) > 0 {
		detail += clientWarmupSummary(r)
	}
	fmt.Fprintf(stdout, "release %s %s (%s)\n", r.ID, r.State, detail)
	return guard.finishDeploy(c, r)
}

// clientPaths is a repeatable flag: each use adds one path. A path may
// hold a comma (in its query), so a list is given by repeating the flag.
type clientPaths []string

func (p *clientPaths) String() string { return strings.Join(*p, " ") }

func (p *clientPaths) Set(v string) error {
	*p = append(*p, v)
	return nil
}

// clientWarmupSummary describes a release's warm-up: paths and failures,
// naming the failed paths with their first status.
func clientWarmupSummary(r clientRelease) string {
	var failed []string
	requests, nfailed := 0, 0
	for _, w := range r.Warmup {
		requests += w.Requests
		nfailed += w.Failed
		if w.Failed > 0 {
			failed = append(failed, fmt.Sprintf("%s %d", w.Path, w.Status))
		}
	}
	s := fmt.Sprintf(", warmed %d paths in %d requests", len(r.Warmup), requests)
	if nfailed > 0 {
		s += fmt.Sprintf(", %d failed: %s", nfailed, strings.Join(failed, ", "))
	}
	return s
}

// clientFormatTimeout writes d in whole seconds when it is, as "60s" reads
// better than "1m0s"; both parse with time.ParseDuration.
func clientFormatTimeout(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// clientOneID parses a subcommand that takes exactly one release id.
func clientOneID(name string, args []string, stderr io.Writer) (id string, target *clientTarget, err error) {
	fs, target := clientFlags(name, "[-admin ADDR] [-token TOKEN] ID", stderr)
	pos, err := clientParse(fs, args)
	if err != nil {
		return "", nil, err
	}
	switch {
	case len(pos) == 0:
		return "", nil, clientUsage(fs, "missing release ID")
	case len(pos) > 1:
		return "", nil, clientUsage(fs, "unexpected argument %q", pos[1])
	case pos[0] == "":
		return "", nil, clientUsage(fs, "empty release ID")
	}
	return pos[0], target, nil
}

func clientActivate(args []string, stdout, stderr io.Writer) error {
	return clientOnRelease("activate", http.MethodPost, "/activate", "active", args, stdout, stderr)
}

func clientRetire(args []string, stdout, stderr io.Writer) error {
	return clientOnRelease("retire", http.MethodDelete, "", "draining", args, stdout, stderr)
}

// clientOnRelease runs subcommand name, which takes one release ID: it
// sends method to the release's path (plus suffix) and prints the release
// the answer shows, as in state fallback when it shows none (printRelease).
func clientOnRelease(name, method, suffix, fallback string, args []string, stdout, stderr io.Writer) error {
	id, target, err := clientOneID(name, args, stderr)
	if err != nil {
		return err
	}
	c, err := target.client(clientTimeout, stdout)
	if err != nil {
		return err
	}
	data, err := c.do(method, "/v1/releases/"+clientPathEscape(id)+suffix, nil)
	if err != nil {
		return err
	}
	c.printRelease(data, id, fallback)
	return nil
}

// clientPostWaiting runs a subcommand that takes no argument, only
// -timeout (default 90s, what for: timeoutHelp), and POSTs to path,
// waiting up to -timeout for the answer's body.
func clientPostWaiting(name, path, timeoutHelp string, args []string, stdout, stderr io.Writer) ([]byte, error) {
	fs, target := clientFlags(name, "[-admin ADDR] [-token TOKEN] [-config FILE] [-timeout DUR]", stderr)
	timeout := fs.Duration("timeout", 90*time.Second, timeoutHelp)
	pos, err := clientParse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, clientUsage(fs, "unexpected argument %q", pos[0])
	}
	c, err := target.client(*timeout, stdout)
	if err != nil {
		return nil, err
	}
	return c.do(http.MethodPost, path, nil)
}

func clientRollback(args []string, stdout, stderr io.Writer) error {
	// A rollback past a stopped pool starts it again, after the old one
	// of the same id has drained: allow for both.
	data, err := clientPostWaiting("rollback", "/v1/rollback", "how long to wait for the previous release to be active again", args, stdout, stderr)
	if err != nil {
		return err
	}
	if r, ok := clientDecodeRelease(data); ok {
		fmt.Fprintf(stdout, "rolled back: release %s %s (root %s)\n", r.ID, r.State, r.Root)
		return nil
	}
	fmt.Fprintln(stdout, "rolled back")
	return nil
}

// printRelease prints "release ID STATE (root ROOT)" from an answer, or
// with the given fallback state when the answer is not a release.
func (c *client) printRelease(data []byte, id, fallback string) {
	r, ok := clientDecodeRelease(data)
	if !ok {
		fmt.Fprintf(c.stdout, "release %s %s\n", id, fallback)
		return
	}
	if r.State == "" {
		r.State = fallback
	}
	if r.Root == "" {
		fmt.Fprintf(c.stdout, "release %s %s\n", r.ID, r.State)
		return
	}
	fmt.Fprintf(c.stdout, "release %s %s (root %s)\n", r.ID, r.State, r.Root)
}

// clientPathEscape escapes a release id for one path segment.
func clientPathEscape(id string) string {
	return url.PathEscape(id)
}

func clientStatus(args []string, stdout, stderr io.Writer) error {
	fs, target := clientFlags("status", "[-admin ADDR] [-token TOKEN] [-json] [ID [-full]]", stderr)
	asJSON := fs.Bool("json", false, "print the admin API's JSON instead of a table")
	full := fs.Bool("full", false, "with ID: list the pool's processes (php-fpm's full status) too")
	pos, err := clientParse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return clientUsage(fs, "unexpected argument %q", pos[1])
	case *full && len(pos) == 0:
		return clientUsage(fs, "-full needs a release ID")
	}
	c, err := target.client(clientTimeout, stdout)
	if err != nil {
		return err
	}
	if len(pos) == 1 && !*asJSON {
		return c.printOne(pos[0], *full)
	}
	path := "/v1/releases"
	if len(pos) == 1 {
		path += "/" + clientPathEscape(pos[0])
		if *full {
			path += "?full"
		}
	}
	data, err := c.do(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") != nil {
			buf.Reset()
			buf.Write(bytes.TrimSpace(data))
		}
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	var rs []clientRelease
	if err := json.Unmarshal(data, &rs); err != nil {
		return fmt.Errorf("decode release list from fpmux at %s: %w", c.admin, err)
	}
	if err := c.printTable(rs); err != nil {
		return err
	}
	return c.printFleetLine() // fleet_client.go
}

// printTable prints releases as an aligned table, then one line per release
// with its pool figures or its error, when it has them.
func (c *client) printTable(rs []clientRelease) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no releases")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tIN-FLIGHT\tREQUESTS\tROOT\tAGE")
	for _, r := range rs {
		age := "-"
		if r.CreatedAt != nil && !r.CreatedAt.IsZero() {
			age = clientAge(c.now().Sub(*r.CreatedAt))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			r.ID, clientOr(r.State, "-"), clientInt(r.InFlight), clientInt(r.Requests), clientOr(r.Root, "-"), age)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var details []string
	for _, r := range rs {
		if r.Pool != nil {
			if s := clientPoolLine(r.Pool); s != "" {
				details = append(details, fmt.Sprintf("%s: pool %s", r.ID, s))
			}
		}
		if s := c.activeLine(r); s != "" {
			details = append(details, fmt.Sprintf("%s: %s", r.ID, s))
		}
		if r.Error != "" {
			details = append(details, fmt.Sprintf("%s: error: %s", r.ID, clientOneLine(r.Error)))
		}
		if r.Guard != nil {
			details = append(details, fmt.Sprintf("%s: %s", r.ID, clientGuardLine(r.Guard)))
		}
		if s := clientRollbackLine(r); s != "" {
			details = append(details, fmt.Sprintf("%s: %s", r.ID, s))
		}
		for _, h := range r.Holding {
			details = append(details, fmt.Sprintf("%s: draining, held by %s %s (%s)", r.ID, h.Method, clientOneLine(h.URI),
				clientAge(time.Duration(h.AgeMS)*time.Millisecond)))
		}
	}
	if len(details) > 0 {
		fmt.Fprintln(c.stdout)
		for _, d := range details {
			fmt.Fprintln(c.stdout, d)
		}
	}
	return nil
}

// clientRollbackLine says how a release can be rolled back to, when it
// can: "kept until 12:34:56, rollback instant", "rollback restarts its
// pool", with "fpmux rollback goes here" on the release rollback picks.
func clientRollbackLine(r clientRelease) string {
	var parts []string
	if r.KeptUntil != nil {
		parts = append(parts, "kept until "+r.KeptUntil.Local().Format("15:04:05"))
	}
	switch r.Rollback {
	case "":
	case "instant":
		parts = append(parts, "rollback instant")
	case "restart":
		parts = append(parts, "rollback restarts its pool from its root")
	default:
		parts = append(parts, "rollback "+clientOneLine(r.Rollback))
	}
	if len(parts) == 0 {
		return ""
	}
	if r.RollbackTarget {
		parts = append(parts, "fpmux rollback goes here")
	}
	return strings.Join(parts, ", ")
}

// clientPoolLine describes the figures a pool reported, skipping absent ones.
func clientPoolLine(p *clientPool) string {
	var parts []string
	if p.PID != nil {
		parts = append(parts, fmt.Sprintf("pid %d", *p.PID))
	}
	if p.TotalProcesses != nil || p.ActiveProcesses != nil || p.IdleProcesses != nil {
		held := ""
		if p.HeldProcesses != nil && *p.HeldProcesses > 0 {
			held = fmt.Sprintf(", %d of them on fpmux's kept connections", *p.HeldProcesses)
		}
		parts = append(parts, fmt.Sprintf("processes %s (active %s, idle %s%s)",
			clientInt(p.TotalProcesses), clientInt(p.ActiveProcesses), clientInt(p.IdleProcesses), held))
	}
	if p.ListenQueue != nil {
		parts = append(parts, fmt.Sprintf("listen queue %d", *p.ListenQueue))
	}
	if p.MaxChildrenReached != nil {
		parts = append(parts, fmt.Sprintf("max children reached %d", *p.MaxChildrenReached))
	}
	if p.SlowRequests != nil {
		parts = append(parts, fmt.Sprintf("slow requests %d", *p.SlowRequests))
	}
	if p.Restarts != nil {
		parts = append(parts, fmt.Sprintf("restarts %d", *p.Restarts))
	}
	if p.Socket != "" {
		parts = append(parts, "socket "+p.Socket)
	}
	if p.StatusError != "" {
		parts = append(parts, "status page: "+clientOneLine(p.StatusError))
	}
	return strings.Join(parts, ", ")
}

func clientInt(p *int64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatInt(*p, 10)
}

func clientOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clientAge renders a duration the way ps and kubectl do: two units at most.
func clientAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}

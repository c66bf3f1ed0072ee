package config

// This file owns Validate: every rule a configuration must meet before
// fpmux starts with it.

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// reAccount matches a user or group name (as useradd takes it) or a
// numeric id.
var reAccount = regexp.MustCompile(`^([a-z_][a-z0-9_-]*\$?|[0-9]+)$`)

// minTokenLen is the shortest admin_token accepted: shorter ones can be
// guessed.
const minTokenLen = 16

// minParamsBytes is the smallest limits.max_params_bytes accepted: nginx's
// own params for one request take a few KiB.
const minParamsBytes = 4096

// maxUnixPath is the longest unix socket path Linux takes (sun_path is 108
// bytes with the terminating NUL).
const maxUnixPath = 107

// Validate checks c and returns every problem at once (errors.Join), each
// naming its key, and its line when c came from a file through Load
// ("drain_timeout (line 7): must be positive"). It stores Docroot,
// StateDir and AllowedRoots cleaned (filepath.Clean).
//
// Lines refer to the file Load read: a caller that changes a field after
// Load (a command-line flag) and validates again gets that key's file line
// in a message about the new value.
func (c *Config) Validate() error {
	v := &validator{lines: c.lines}

	addrs := map[string]string{} // network+address → key, to catch a clash
	checkAddr := func(key, s string, required bool) {
		if s == "" {
			if required {
				v.add(key, "required: want unix:/path or host:port")
			}
			return
		}
		network, address, err := ParseAddr(s)
		if err != nil {
			v.add(key, "%v", err)
			return
		}
		if network == "unix" && len(address) > maxUnixPath {
			v.add(key, "unix socket path is %d bytes long, the limit is %d", len(address), maxUnixPath)
		}
		if other, ok := addrs[network+" "+address]; ok {
			v.add(key, "same address as %s (%s)", other, s)
		}
		addrs[network+" "+address] = key
	}
	checkAddr("listen", c.Listen, true)
	checkAddr("admin", c.Admin, true)
	checkAddr("metrics", c.Metrics, false)

	if v.absolute("state_dir", c.StateDir) {
		c.StateDir = filepath.Clean(c.StateDir)
	}
	if v.absolute("docroot", c.Docroot) {
		c.Docroot = filepath.Clean(c.Docroot)
		if c.Docroot == "/" {
			v.add("docroot", `must not be "/": it is the prefix replaced by a release root`)
		}
	}
	if len(c.AllowedRoots) == 0 {
		v.add("allowed_roots", "must list at least one directory that release roots lie under")
	}
	for i, r := range c.AllowedRoots {
		if v.absolute(fmt.Sprintf("allowed_roots[%d]", i), r) {
			c.AllowedRoots[i] = filepath.Clean(r)
		}
	}

	v.positive("drain_timeout", c.DrainTimeout)
	v.positive("limits.read_timeout", c.Limits.ReadTimeout)
	v.positive("limits.idle_timeout", c.Limits.IdleTimeout)
	v.positive("limits.write_timeout", c.Limits.WriteTimeout)
	v.atLeast("limits.max_connections", c.Limits.MaxConnections, 1)
	v.atLeast("limits.max_params_bytes", c.Limits.MaxParamsBytes, minParamsBytes)
	v.atLeast("limits.max_in_flight", c.Limits.MaxInFlight, 1)
	if c.Limits.BackendTimeout < 0 {
		v.add("limits.backend_timeout", "must be 0 (off) or positive, like 30s (got %s)", c.Limits.BackendTimeout)
	}

	v.token("admin_token", c.AdminToken)
	v.token("preview_token", c.PreviewToken)
	if len(c.Warmup) > MaxWarmup {
		v.add("warmup", "lists %d paths: at most %d", len(c.Warmup), MaxWarmup)
	}
	for i, p := range c.Warmup {
		if err := CheckWarmupPath(p); err != nil {
			v.add(fmt.Sprintf("warmup[%d]", i), "%v", err)
		}
	}
	c.validateHealth(v)
	if c.KeepPrevious < 0 || c.KeepPrevious > maxKeepPrevious {
		v.add("keep_previous", "is %d: want 0 to %d", c.KeepPrevious, maxKeepPrevious)
	}
	v.positive("keep_for", c.KeepFor)
	v.validateGuard(c.Guard)
	v.validateFleet(c.Fleet)
	if c.Symlink != "" && v.absolute("symlink", c.Symlink) {
		c.Symlink = filepath.Clean(c.Symlink)
		if c.Symlink == "/" {
			v.add("symlink", `must not be "/"`)
		}
	}
	if network, address, err := ParseAddr(c.Admin); err == nil && network == "tcp" && c.AdminToken == "" && !IsLoopback(address) {
		v.add("admin", "%s is reachable from other hosts: listen on 127.0.0.1, ::1 or a unix socket, or set admin_token", c.Admin)
	}
	for _, k := range []struct{ key, s string }{{"admin_owner", c.AdminOwner}, {"admin_group", c.AdminGroup}} {
		if k.s != "" && !reAccount.MatchString(k.s) {
			v.add(k.key, "%q is not a user or group name or a numeric id", k.s)
		}
	}
	v.positive("php_fpm.start_timeout", c.PHPFPM.StartTimeout)
	v.positive("php_fpm.stop_timeout", c.PHPFPM.StopTimeout)
	v.positive("php_fpm.wedge_check_interval", c.PHPFPM.WedgeCheckInterval)
	if c.PHPFPM.WedgeMisses < 0 || c.PHPFPM.WedgeMisses > maxWedgeMisses {
		v.add("php_fpm.wedge_misses", "is %d: want 0 (no wedge check) to %d", c.PHPFPM.WedgeMisses, maxWedgeMisses)
	}

	if b := c.PHPFPM.Binary; b != "" && !filepath.IsAbs(b) && strings.ContainsRune(b, '/') {
		v.add("php_fpm.binary", "%q is a relative path: want an absolute path, a command name looked up on PATH, or empty", b)
	}

	// php_fpm's ini, pool and global maps and the files they name follow
	// php-fpm's rules, which the pool package owns: the supervisor checks
	// them (supervisor.PHPFPMSettings) before fpmux serves, and with the
	// files read. Here only what fpmux itself needs of the file keys.
	for _, k := range []struct{ key, p string }{{"php_fpm.pool_file", c.PHPFPM.PoolFile}, {"php_fpm.global_file", c.PHPFPM.GlobalFile}} {
		if k.p != "" && !filepath.IsAbs(k.p) {
			v.add(k.key, "%q is not an absolute path: want the absolute path of a php-fpm file (a glob for pool_file)", k.p)
		}
	}

	return joinSorted(v.errs)
}

// token checks a secret that travels in an HTTP header.
func (v *validator) token(key, t string) {
	if t == "" {
		return
	}
	if len(t) < minTokenLen {
		v.add(key, "is %d characters long: want at least %d (e.g. openssl rand -hex 32)", len(t), minTokenLen)
	}
	for _, r := range t {
		if r <= ' ' || r > '~' {
			v.add(key, "must be printable ASCII without spaces (it travels in an HTTP header)")
			break
		}
	}
}

// MaxWarmup bounds the warm-up paths of the config or of one deploy.
const MaxWarmup = 100

// maxKeepPrevious bounds keep_previous: each kept release is a running
// php-fpm pool.
const maxKeepPrevious = 10

// maxWedgeMisses bounds php_fpm.wedge_misses: more would leave a wedged
// pool holding requests for many minutes, which the check is there to end.
const maxWedgeMisses = 100

// CheckWarmupPath checks one warm-up request path: the config's and a
// deploy's alike. It must start with '/', be at most 2048 bytes and hold
// no control characters or spaces (it becomes REQUEST_URI).
func CheckWarmupPath(p string) error { return checkRequestPath("warm-up", p) }

// checkRequestPath checks a path fpmux sends to a pool itself (a warm-up
// path, a health check's), what naming it in the message.
func checkRequestPath(what, p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%s path %q must start with '/'", what, p)
	case len(p) > 2048:
		return fmt.Errorf("%s path is %d bytes long: at most 2048", what, len(p))
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%s path %q holds a space or control character: encode it (%%20)", what, p)
		}
	}
	return nil
}

// atLeast adds a problem when n is below min.
func (v *validator) atLeast(key string, n, min int) {
	if n < min {
		v.add(key, "is %d: want at least %d", n, min)
	}
}

// validator collects problems, attaching the line each key came from.
type validator struct {
	lines map[string]int
	errs  []error
}

func (v *validator) add(key, format string, args ...any) {
	line := v.lines[key]
	if line == 0 && strings.HasSuffix(key, "]") && strings.HasPrefix(key, "allowed_roots[") {
		line = v.lines["allowed_roots"]
	}
	v.errs = append(v.errs, &problem{key: key, line: line, msg: fmt.Sprintf(format, args...)})
}

// addEither reports a problem between two keys under the first, unless
// only the second was set in the file: then under the second, since the
// first still holds its default and the second is what changed.
func (v *validator) addEither(key, other, format string, args ...any) {
	if v.lines[key] == 0 && v.lines[other] != 0 {
		key = other
	}
	v.add(key, format, args...)
}

func (v *validator) absolute(key, p string) bool {
	switch {
	case p == "":
		v.add(key, "required: want an absolute path")
		return false
	case !filepath.IsAbs(p):
		v.add(key, "%q is not an absolute path", p)
		return false
	}
	return true
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.add(key, "must be positive, like 30s (got %s)", d)
	}
}

// config.go owns Options: defaults, validation (again, after the caller's:
// every value ends up inside a php-fpm config file) and the generated
// php-fpm.conf and command line.

package pool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options configures one release's php-fpm. Zero values get the defaults
// documented on each field.
type Options struct {
	// ID is the release id: ^[A-Za-z0-9._-]{1,64}$, not "." or "..".
	// It names the php-fpm pool and is exported to scripts as FPMUX_RELEASE.
	ID string
	// Root is the release root, an absolute real path (no symlink in it).
	// Workers chdir to it.
	Root string
	// Dir holds the pool's own files (php-fpm.conf, fpm.sock, php-fpm.pid).
	// It is created 0700 and removed when the pool stops. Dir + "/fpm.sock"
	// must fit a unix socket path (107 bytes).
	Dir string
	// Binary is the php-fpm executable. Empty: FindBinary().
	Binary string
	// Ini holds php.ini settings, already substituted by the caller. Each is
	// passed as -d on the master's command line (so settings read only at
	// startup, like opcache.memory_consumption, apply) and as
	// php_admin_value in the pool (so scripts cannot override them).
	Ini map[string]string
	// Directives holds pool directives (pm, pm.max_children, user, env[X],
	// php_value[...], ...), already substituted by the caller (Expand). A
	// key ending in [] (access.suppress_path[]) holds its values one per
	// line. Directives fpmux owns (rules.go: listen*, ping.*,
	// pm.status_path, chdir, ...) are refused, unless set to what fpmux
	// writes anyway. Any other value is written so that php-fpm reads it
	// back as it is.
	Directives map[string]string
	// Global holds [global] directives (log_limit,
	// emergency_restart_threshold, ...) under the same rules.
	Global map[string]string
	// Bare names the Directives and Global keys whose values are written
	// without quotes, as they stood in the operator's php-fpm file, so
	// php-fpm's scanner reads constants and expressions in them as it did
	// there (see iniEntry.Bare). A value bareSafeRe refuses is quoted
	// anyway.
	Bare map[string]bool
	// StartTimeout bounds spawning php-fpm plus its first answered ping.
	// Default 30s.
	StartTimeout time.Duration
	// StopTimeout bounds a graceful stop (SIGQUIT) before SIGTERM; it is
	// also php-fpm's process_control_timeout. Default 10s.
	StopTimeout time.Duration
	// Logger receives php-fpm's output and the pool's own events, each line
	// with release=<ID>. Default slog.Default().
	Logger *slog.Logger
	// OnRestart, when set, is called each time the master is restarted
	// after dying unexpectedly. It runs on the pool's supervising goroutine
	// and must return quickly.
	OnRestart func()
	// WedgeInterval is how often a pool that is not draining is pinged to
	// find it wedged, and WedgeMisses how many checks missed in a row kill
	// its master to be replaced (see checkWedge); the replacement is a
	// restart (OnRestart). Either zero: no check.
	WedgeInterval time.Duration
	WedgeMisses   int
	// OnWedged, when set, is called each time a wedged master is killed,
	// from the goroutine that checks; it must return quickly.
	OnWedged func()
	// OnPHPError, when set, is called once for each error PHP logged
	// through php-fpm (see phperrors.go), with its level; the lines of a
	// multi-line message count once. It runs on the goroutine that reads
	// php-fpm's output and must not block: while it runs, php-fpm's
	// output waits in the pipe. An adopted pool counts only what it reads
	// after the adoption, from the output pipe the fpmux before passed on;
	// with no pipe passed on (Adopt's out is nil), nothing.
	OnPHPError func(level PHPLevel)
}

const (
	defaultStartTimeout = 30 * time.Second
	defaultStopTimeout  = 10 * time.Second
	defaultMaxChildren  = 5 // php-fpm's own default for pm.max_children

	// File names inside Options.Dir.
	confName   = "php-fpm.conf"
	socketName = "fpm.sock"
	pidName    = "php-fpm.pid"
	// statusSocketName is pm.status_listen: php-fpm serves the status
	// page there from a pool of its own (see status.go). No longer than
	// socketName, so that the Dir check on socketName covers it.
	statusSocketName = "st.sock"

	// Paths php-fpm answers itself, without running PHP, begin with these;
	// "-" and a random part per pool start follow (newPagePaths).
	pingPrefix   = "/fpmux-ping"
	pingAnswer   = "pong"
	statusPrefix = "/fpmux-status"

	maxSocketPath = 107 // sizeof(sockaddr_un.sun_path) - 1 on Linux
)

var idRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidateID reports whether id can name a release: 1 to 64 characters from
// [A-Za-z0-9._-], and not ".", ".." or "global" in any case (php-fpm would
// read a pool section named [global] as its global section).
func ValidateID(id string) error {
	if !idRe.MatchString(id) {
		return fmt.Errorf("release id %q: want 1 to 64 characters from A-Z a-z 0-9 . _ -", id)
	}
	if id == "." || id == ".." || strings.EqualFold(id, "global") {
		return fmt.Errorf("release id %q: not allowed", id)
	}
	return nil
}

func checkPath(field, p string) error {
	if p == "" {
		return fmt.Errorf("%s: required", field)
	}
	if err := CheckPath(p); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q: not an absolute path", field, p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("%s %q: not a clean path (want %q)", field, p, filepath.Clean(p))
	}
	return nil
}

// validate checks o without touching the file system and returns every
// problem at once, each naming its field.
func (o *Options) validate() error {
	var errs []error
	if err := ValidateID(o.ID); err != nil {
		errs = append(errs, fmt.Errorf("ID: %w", err))
	}
	if err := checkPath("Root", o.Root); err != nil {
		errs = append(errs, err)
	}
	if err := checkPath("Dir", o.Dir); err != nil {
		errs = append(errs, err)
	} else if sock := filepath.Join(o.Dir, socketName); len(sock) > maxSocketPath {
		errs = append(errs, fmt.Errorf("Dir %q: socket path %q is %d bytes, unix sockets allow %d", o.Dir, sock, len(sock), maxSocketPath))
	}
	if o.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("StartTimeout: %v is negative", o.StartTimeout))
	}
	if o.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("StopTimeout: %v is negative", o.StopTimeout))
	}
	for _, m := range []struct {
		field  string
		d      map[string]string
		global bool
	}{{"Directives", o.Directives, false}, {"Global", o.Global, true}} {
		for _, k := range slices.Sorted(maps.Keys(m.d)) {
			for _, v := range values(k, m.d[k]) {
				if err := CheckDirective(k, v, m.global); err != nil {
					errs = append(errs, fmt.Errorf("%s[%q] = %q: %w", m.field, k, v, err))
					break
				}
			}
		}
	}
	if v, ok := o.Directives["pm.max_children"]; ok {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("Directives[\"pm.max_children\"] = %q: want a positive integer", v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Ini)) {
		if err := CheckIni(k, o.Ini[k]); err != nil {
			errs = append(errs, fmt.Errorf("Ini[%q] = %q: %w", k, o.Ini[k], err))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns o with zero values replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.StartTimeout == 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = defaultStopTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// maxChildren returns pm.max_children from o, php-fpm's default when unset.
// o must have been validated.
func (o *Options) maxChildren() int {
	if v, ok := o.Directives["pm.max_children"]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return defaultMaxChildren
}

// startChildren returns how many workers php-fpm starts with: all of
// pm.max_children under pm static, pm.start_servers under pm dynamic
// (php-fpm's default: min_spare + (max_spare - min_spare) / 2), none under
// pm ondemand. o must have been validated.
func (o *Options) startChildren() int {
	num := func(key string, def int) int {
		if n, err := strconv.Atoi(o.Directives[key]); err == nil {
			return n
		}
		return def
	}
	switch o.Directives["pm"] {
	case "static":
		return o.maxChildren()
	case "ondemand":
		return 0
	}
	minSpare, maxSpare := num("pm.min_spare_servers", 1), num("pm.max_spare_servers", 3)
	return min(num("pm.start_servers", minSpare+(maxSpare-minSpare)/2), o.maxChildren())
}

// workerIdentity returns the user and group the workers must run as when
// fpmux is root and the caller set no user: php-fpm refuses to run workers
// as root. Empty strings mean "write nothing".
func workerIdentity(euid int, directives map[string]string) (usr, group string) {
	if euid != 0 {
		return "", ""
	}
	if _, ok := directives["user"]; ok {
		return "", ""
	}
	usr, group = "nobody", "nogroup"
	if _, err := user.Lookup("www-data"); err == nil {
		usr, group = "www-data", "www-data"
		if _, err := user.LookupGroup("www-data"); err != nil {
			group = ""
		}
	} else if _, err := user.LookupGroup("nogroup"); err != nil {
		group = "" // php-fpm then uses nobody's primary group
	}
	if _, ok := directives["group"]; ok {
		group = ""
	}
	return usr, group
}

// startupOnlyIni are ini settings passed only with -d: set again in a
// worker they fail (opcache.enable=1 warns "Zend OPcache can't be temporary
// enabled" at every worker start).
var startupOnlyIni = map[string]bool{
	"opcache.enable": true,
}

// withPMDefaults returns directives with the process manager settings
// php-fpm insists on filled in where missing: it has no default pm, and
// "dynamic" wants max_children and both spare bounds. Defaults follow
// Debian's www.conf (dynamic, 5 children, 1 to 3 spare), clamped so they
// agree with what the caller did set.
func withPMDefaults(d map[string]string) map[string]string {
	out := make(map[string]string, len(d)+4)
	for k, v := range d {
		out[k] = v
	}
	if _, ok := out["pm"]; !ok {
		out["pm"] = "dynamic"
	}
	if _, ok := out["pm.max_children"]; !ok {
		out["pm.max_children"] = strconv.Itoa(defaultMaxChildren)
	}
	if out["pm"] != "dynamic" {
		return out
	}
	maxC, err := strconv.Atoi(out["pm.max_children"])
	if err != nil || maxC < 1 {
		return out // validate refuses it; php-fpm would too
	}
	minS, minSet := atoiKey(out, "pm.min_spare_servers")
	maxS, maxSet := atoiKey(out, "pm.max_spare_servers")
	switch {
	case !minSet && !maxSet:
		minS, maxS = 1, min(3, maxC)
	case !minSet:
		minS = min(1, maxS)
	case !maxSet:
		maxS = min(maxC, max(minS, 3))
	}
	if !minSet {
		out["pm.min_spare_servers"] = strconv.Itoa(minS)
	}
	if !maxSet {
		out["pm.max_spare_servers"] = strconv.Itoa(maxS)
	}
	return out
}

func atoiKey(m map[string]string, k string) (int, bool) {
	v, ok := m[k]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, true // set but not a number: leave it to php-fpm
	}
	return n, true
}

// values returns the values a directive holds: one per line for a key
// ending in [] (php-fpm's lists, access.suppress_path[]), else v alone.
func values(key, v string) []string {
	if strings.HasSuffix(key, "[]") {
		return strings.Split(v, "\n")
	}
	return []string{v}
}

// confParams is everything renderConfig needs; kept apart from Options so
// the rendering is pure and golden-testable.
type confParams struct {
	ID, Root, Dir string
	StopTimeout   time.Duration
	Pages         pagePaths
	User, Group   string // written when not empty
	Directives    map[string]string
	Global        map[string]string
	Bare          map[string]bool
	Ini           map[string]string
}

// renderConfig returns the php-fpm.conf text. The inputs must have passed
// validate: fpmux's own directives come first, then the operator's, each
// value quoted (quote) unless Bare keeps it as the operator wrote it.
func renderConfig(c confParams) []byte {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, quote(v)) }
	theirs := func(m map[string]string, global bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if _, ok := ownership(k, global); ok {
				continue // set to what fpmux writes anyway
			}
			for _, v := range values(k, m[k]) {
				if c.Bare[k] && bareSafeRe.MatchString(v) {
					fmt.Fprintf(&b, "%s = %s\n", k, v)
				} else {
					line(k, v)
				}
			}
		}
	}
	pct := int64(math.Ceil(c.StopTimeout.Seconds()))
	if pct < 1 {
		pct = 1
	}
	b.WriteString("; generated by fpmux for release " + c.ID + "; do not edit\n")
	b.WriteString("[global]\n")
	line("pid", filepath.Join(c.Dir, pidName))
	line("error_log", "/proc/self/fd/2")
	line("log_level", "notice")
	line("daemonize", "no")
	line("process_control_timeout", strconv.FormatInt(pct, 10)+"s")
	theirs(c.Global, true)
	b.WriteString("\n[" + c.ID + "]\n")
	line("listen", filepath.Join(c.Dir, socketName))
	line("listen.mode", "0600")
	line("ping.path", c.Pages.Ping)
	line("ping.response", pingAnswer)
	line("pm.status_path", c.Pages.Status)
	line("pm.status_listen", filepath.Join(c.Dir, statusSocketName))
	line("catch_workers_output", "yes")
	line("decorate_workers_output", "no")
	line("chdir", c.Root)
	line("env[FPMUX_RELEASE]", c.ID)
	if c.User != "" {
		line("user", c.User)
	}
	if c.Group != "" {
		line("group", c.Group)
	}
	directives := withPMDefaults(c.Directives)
	if _, ok := directives["access.log"]; ok {
		// fpmux's own pings and status reads stay out of the operator's
		// access log: php-fpm (>= 8.2) logs no request with one of these
		// paths, no query string, that answered 200.
		for _, p := range ownRequestURIs(c.Pages) {
			fmt.Fprintf(&b, "access.suppress_path[] = %s\n", quote(p))
		}
	}
	theirs(directives, false)
	for _, k := range slices.Sorted(maps.Keys(c.Ini)) {
		if startupOnlyIni[k] {
			continue
		}
		line("php_admin_value["+k+"]", c.Ini[k])
	}
	return []byte(b.String())
}

// ownRequestURIs are the request URIs of the requests fpmux itself sends
// a pool's main socket without running PHP: its pings, and the status
// path for any request to it there (Status asks on pm.status_listen, whose
// hidden pool writes no access log; see status.go).
func ownRequestURIs(pages pagePaths) []string {
	return []string{pages.Ping, pages.Status}
}

// pagePaths are the ping.path and pm.status_path of one pool.
type pagePaths struct {
	Ping, Status string
}

// PingPath is the pool's ping.path, random per pool start: what a request
// must name as SCRIPT_NAME and SCRIPT_FILENAME to be answered "pong"
// without running PHP (warm-up sends it to every worker).
func (p *Pool) PingPath() string { return p.pages.Ping }

// StatusPath is the pool's pm.status_path, random per pool start.
func (p *Pool) StatusPath() string { return p.pages.Status }

// newPagePaths draws a pool's ping and status paths: each its prefix, "-"
// and 32 random hex digits. php-fpm answers them from whatever params it
// derives the request's URI from (SCRIPT_NAME, a prefix of PATH_INFO,
// REDIRECT_URL), more than fcgimux can foresee, and the status page with
// ?full lists other users' URIs and query strings; a path no client can
// guess is what keeps them off both.
func newPagePaths() (pagePaths, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return pagePaths{}, fmt.Errorf("random ping and status paths: %w", err)
	}
	return pagePaths{
		Ping:   pingPrefix + "-" + hex.EncodeToString(b[:16]),
		Status: statusPrefix + "-" + hex.EncodeToString(b[16:]),
	}, nil
}

// pagePathRe is a path newPagePaths draws, after its prefix.
var pagePathRe = regexp.MustCompile(`^-[0-9a-f]{32}$`)

// ReadPagePaths returns the ping.path and pm.status_path written in the
// php-fpm config of the pool directory dir (a Pool's Options.Dir), so that
// a process adopting a running pool (an fpmux upgraded in place) can ping
// it and read its status: the paths are random per pool start and kept
// nowhere else.
func ReadPagePaths(dir string) (ping, status string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, confName))
	if err != nil {
		return "", "", fmt.Errorf("read page paths: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, " = ")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "ping.path":
			ping = v
		case "pm.status_path":
			status = v
		}
	}
	if r, ok := strings.CutPrefix(ping, pingPrefix); !ok || !pagePathRe.MatchString(r) {
		return "", "", fmt.Errorf("read page paths: %s has no ping.path fpmux wrote (%q)", filepath.Join(dir, confName), ping)
	}
	if r, ok := strings.CutPrefix(status, statusPrefix); !ok || !pagePathRe.MatchString(r) {
		return "", "", fmt.Errorf("read page paths: %s has no pm.status_path fpmux wrote (%q)", filepath.Join(dir, confName), status)
	}
	return ping, status, nil
}

// commandArgs returns php-fpm's arguments (without argv[0]).
func commandArgs(conf string, ini map[string]string) []string {
	args := []string{"--nodaemonize", "--force-stderr", "--fpm-config", conf}
	for _, k := range slices.Sorted(maps.Keys(ini)) {
		// Quoted, so the INI scanner takes the value literally.
		args = append(args, "-d", k+"="+quote(ini[k]))
	}
	return args
}

// checkRoot checks Root on the file system: an existing directory whose path
// has no symlink in it.
func checkRoot(root string) error {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("Root: %w", err)
	}
	if real != root {
		return fmt.Errorf("Root %q: not a real path (resolves to %q)", root, real)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("Root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("Root %q: not a directory", root)
	}
	return nil
}

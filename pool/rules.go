// rules.go owns the one set of php-fpm rules fpmux applies: which
// directives fpmux owns and what takes their place, how a value is written
// into a php-fpm config file without a way to inject a directive, and the
// per-release placeholders. Loading the configuration (LoadSettings, at
// fpmux serve's start and at each reload) and starting a pool (Options'
// validate) both apply these rules, so a deploy refuses nothing serve let
// through.

package pool

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// owned is a directive fpmux writes itself, or one that would take a pool
// out of fpmux's hands.
type owned struct {
	// instead says what takes its place, for the operator who set it.
	instead string
	// same lists the values equal to what fpmux writes anyway
	// (lower case): those are accepted silently.
	same []string
}

var (
	ownsListen = owned{instead: "fpmux's listen takes its place: the web server connects to fpmux, and each release's php-fpm listens on a socket fpmux makes under state_dir"}
	ownsStatus = owned{instead: "fpmux status and fpmux's metrics take its place (fpmux reads each pool's status page on a path of its own)"}
	ownsPing   = owned{instead: "fpmux's /v1/healthz takes its place (fpmux pings each pool on a path of its own)"}
	ownsFiles  = owned{instead: "fpmux runs php-fpm in the foreground with its pid file in a per-release directory under state_dir"}
	ownsPrefix = owned{instead: "fpmux takes every path as written: write them absolute"}
	ownsDaemon = owned{same: []string{"no", "0", "off", "false", ""}, instead: ownsFiles.instead}
	ownsLog    = owned{instead: "php-fpm's log goes to fpmux's log, each line with release=<id>"}
	ownsInc    = owned{instead: "php_fpm.pool_file and php_fpm.global_file read the files and follow their includes"}
)

// ownedPool are the pool directives fpmux owns, by lower-case name.
var ownedPool = map[string]owned{
	"listen":                 ownsListen,
	"listen.owner":           ownsListen,
	"listen.group":           ownsListen,
	"listen.mode":            ownsListen,
	"listen.acl_users":       ownsListen,
	"listen.acl_groups":      ownsListen,
	"listen.allowed_clients": ownsListen,
	"ping.path":              ownsPing,
	"ping.response":          ownsPing,
	"pm.status_path":         ownsStatus,
	"pm.status_listen":       ownsStatus,
	"prefix":                 {instead: "fpmux takes every path as written: write them absolute"},
	"chdir":                  {instead: "fpmux sets it to each release's root"},
	"catch_workers_output": {same: []string{"yes", "1", "on", "true"},
		instead: "fpmux always catches the workers' output, to log PHP's errors at their level"},
	"decorate_workers_output": {same: []string{"no", "0", "off", "false", ""},
		instead: "fpmux logs the workers' output undecorated, each line with release=<id>"},
	"env[fpmux_release]": {instead: "fpmux exports the release id as FPMUX_RELEASE"},
	// [global] directives written in a pool section: php-fpm would refuse
	// them there, fpmux owns them anyway.
	"pid":       ownsFiles,
	"error_log": ownsLog,
	"daemonize": ownsDaemon,
	"include":   ownsInc,
}

// ownedGlobal are the [global] directives fpmux owns, by lower-case name.
var ownedGlobal = map[string]owned{
	"pid":       ownsFiles,
	"daemonize": ownsDaemon,
	"error_log": ownsLog,
	"log_level": {same: []string{"notice"},
		instead: "fpmux needs php-fpm's notices, which carry PHP's errors; choose what fpmux logs with its -log-level"},
	"process_control_timeout": {instead: "php_fpm.stop_timeout takes its place"},
	"include":                 ownsInc,
	"prefix":                  ownsPrefix,
}

// ownership returns how fpmux owns a directive of a pool section (global
// false) or of [global], if it does.
func ownership(key string, global bool) (owned, bool) {
	m := ownedPool
	if global {
		m = ownedGlobal
	}
	o, ok := m[strings.ToLower(key)]
	return o, ok
}

// sameAsFpmux reports whether v is what fpmux writes for an owned
// directive anyway.
func (o owned) sameAsFpmux(v string) bool {
	return slices.Contains(o.same, strings.ToLower(strings.TrimSpace(v)))
}

var (
	directiveKeyRe = regexp.MustCompile(`^[a-z][a-z0-9_.]*(\[[A-Za-z0-9_.-]*\])?$`)
	iniKeyRe       = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	placeholderRe  = regexp.MustCompile(`[%$]?\{[^{}\s]+\}`)
)

// Placeholders are what a value may hold to be replaced per release (see
// Expand). In php-fpm's own files, $pool means the release id too, as it
// means the pool's name to php-fpm.
var Placeholders = []string{"{release_root}", "{release_id}"}

// CheckValue reports why s cannot be a php-fpm directive or php.ini value:
// a control character (a value is one line of a php-fpm config file), or
// a "{...}" that is no placeholder (a misspelt one would reach php-fpm as
// written). php-fpm's own "%{...}" (access.format's %{milli}d) is no
// placeholder. Quotes, '\' and '$' are fine: quote escapes them.
func CheckValue(s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("value must not contain %q: a value is one line of the php-fpm config", r)
		}
	}
	for _, ph := range placeholderRe.FindAllString(s, -1) {
		switch {
		case ph[0] == '$':
			return fmt.Errorf("%s: fpmux's maps do not expand ${NAME}: write the value itself (a pool file read by php_fpm.pool_file expands it, as php-fpm does)", ph)
		case ph[0] != '%' && !slices.Contains(Placeholders, ph):
			return fmt.Errorf("unknown placeholder %s: only {release_root} and {release_id} are replaced", ph)
		}
	}
	return nil
}

// CheckPath reports why a path fpmux writes into a php-fpm config (a
// release root) cannot be: control characters.
func CheckPath(p string) error {
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("path %q holds %q, which cannot be written into a php-fpm config: use a name without control characters", p, r)
		}
	}
	return nil
}

// CheckDirective reports why a pool directive (global false) or a [global]
// directive of the operator's own maps cannot be written: a bad name, one
// fpmux owns (unless set to what fpmux writes anyway; the error says what
// takes its place), or a bad value.
func CheckDirective(key, value string, global bool) error {
	if o, ok := ownership(key, global); ok {
		if o.sameAsFpmux(value) {
			return nil
		}
		return fmt.Errorf("fpmux sets this %s directive itself; remove it: %s", section(global), o.instead)
	}
	if !directiveKeyRe.MatchString(key) {
		return fmt.Errorf("bad %s directive name: want e.g. pm.max_children, env[NAME] or php_value[name]", section(global))
	}
	return CheckValue(value)
}

// CheckIni reports why a php.ini setting cannot be passed to php-fpm.
func CheckIni(key, value string) error {
	if !iniKeyRe.MatchString(key) {
		return fmt.Errorf("bad php.ini setting name: want letters, digits, '_', '.' and '-' only")
	}
	return CheckValue(value)
}

func section(global bool) string {
	if global {
		return "[global]"
	}
	return "pool"
}

// Expand returns v with the placeholders and php-fpm's $pool replaced for
// release id at root.
func Expand(v, id, root string) string {
	return strings.NewReplacer("{release_root}", root, "{release_id}", id, "$pool", id).Replace(v)
}

// ExpandAll returns a fresh copy of m with Expand applied to every value.
func ExpandAll(m map[string]string, id, root string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = Expand(v, id, root)
	}
	return out
}

// quote writes v as a double-quoted php-fpm config value: '"', '\' and '$'
// escaped, so php-fpm reads back exactly v (no ${ENV} expansion, no end of
// the value). v must have passed CheckValue: a control character cannot be
// written.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v) + `"`
}

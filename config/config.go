// Package config owns fpmux's YAML configuration: types, embedded defaults,
// strict loading, validation.
//
// A configuration is built in three steps: the embedded defaults
// (defaults.yaml, see Default), then the operator's file decoded on top of
// them with unknown keys refused (see Load), then Validate, which reports
// every problem at once, each naming its key and, for a file, its line.
package config

import (
	_ "embed"
)

// Config is fpmux's whole configuration. The zero value is not useful;
// start from Default or Load.
type Config struct {
	// Listen is the FastCGI front the web server connects to:
	// "unix:/run/fpmux/fpmux.sock" or "host:port". Required.
	// Default: "127.0.0.1:9700".
	Listen string `yaml:"listen"`

	// Admin is the admin API listener (HTTP/1.1 + JSON), in the same
	// form as Listen. Required. Default: "unix:/run/fpmux/admin.sock".
	Admin string `yaml:"admin"`

	// Metrics is the Prometheus listener (text format at /metrics), in the
	// same form as Listen. Empty (or a YAML null) turns metrics off.
	// Default: "127.0.0.1:9701".
	Metrics string `yaml:"metrics"`

	// StateDir holds generated pool configs, pool sockets and persisted
	// state. Must be absolute; stored cleaned. Default: "/var/lib/fpmux".
	StateDir string `yaml:"state_dir"`

	// Docroot is the path prefix the web server sends in DOCUMENT_ROOT,
	// SCRIPT_FILENAME and PATH_TRANSLATED; fpmux replaces it by the root
	// of the release that serves the request. Must be absolute and not
	// "/"; stored cleaned. Default: "/var/www/app/current".
	Docroot string `yaml:"docroot"`

	// AllowedRoots lists the directories a release root must lie under.
	// At least one; each absolute; stored cleaned. A list in the file
	// replaces the default list. Default: ["/var/www/app/releases"].
	AllowedRoots []string `yaml:"allowed_roots"`

	// DrainTimeout bounds how long a draining release waits for its
	// in-flight requests before its pool is stopped by force. Must be
	// positive. Default: 60s.
	DrainTimeout Duration `yaml:"drain_timeout"`

	// AdminToken, when set, is a bearer token every admin API request must
	// carry ("Authorization: Bearer <token>"), compared in constant time.
	// A TCP admin address other than loopback is refused without it.
	// At least 16 characters. Default: "" (no token: the admin socket's
	// own permissions, or loopback, are the only guard). (fpmux extension.)
	AdminToken string `yaml:"admin_token"`

	// AdminOwner and AdminGroup own a unix admin socket, which is created
	// with mode 0660: only they may deploy. A user or group name, or a
	// numeric id. Default: "" (fpmux's own user and group). (fpmux
	// extension.)
	AdminOwner string `yaml:"admin_owner"`
	AdminGroup string `yaml:"admin_group"`

	// Limits bounds what a web server connection and a pool may take.
	Limits Limits `yaml:"limits"`

	// Warmup lists request paths ("/", "/index.php?page=home") sent to a
	// new release's pool after its health check and before it becomes
	// ready, so opcache and the app's own caches are hot when traffic
	// arrives. A deploy may give its own list instead. Each starts with
	// '/'; at most 100. Default: [] (only php-fpm's own ping, which
	// warms every worker but none of the app's scripts). (fpmux
	// extension.)
	Warmup []string `yaml:"warmup"`

	// WarmupFailures says what a warm-up path answered 404 or 5xx, or not
	// at all, does to the deploy: "fail" fails it as a failed health check
	// does (the release is failed, its pool stopped, the active release
	// untouched); "warn" logs and counts it and the release still becomes
	// ready. Default: "fail". (fpmux extension.)
	WarmupFailures string `yaml:"warmup_failures"`

	// Health lists the checks a new release's pool must pass, after
	// php-fpm's ping and before the warm-up and the release being ready
	// (see HealthCheck). A deploy may give its own list instead. At most
	// 20. Default: [] (no check of the app: only php-fpm's ping, which
	// runs no PHP). (fpmux extension.)
	Health []HealthCheck `yaml:"health"`

	// KeepPrevious is how many releases that stopped being active keep
	// their pool running once drained, idle and in state ready, so that
	// rollback (or activate) to them is an instant switch with no cold
	// start. 0 retires a release as soon as it has drained. Default: 0.
	// (fpmux extension.)
	KeepPrevious int `yaml:"keep_previous"`

	// KeepFor bounds how long a kept release's pool runs after it stopped
	// being active; then it is retired, and rollback to it starts its pool
	// again from its root. Must be positive. Default: 15m. (fpmux
	// extension.)
	KeepFor Duration `yaml:"keep_for"`

	// ReloadPools makes SIGHUP, after it put the reread configuration in
	// force, also start a fresh pool for the active release under it and
	// switch to it (what `fpmux reload-pools` does), so that a php.ini or
	// pool change applies without a deploy. Default: false (SIGHUP changes
	// what the next deploys get). (fpmux extension.)
	ReloadPools bool `yaml:"reload_pools"`

	// PreviewToken, when set, lets a request carrying the headers
	// "X-Fpmux-Release: <id>" and "X-Fpmux-Preview-Token: <token>" be
	// served by that release while it is ready, before it is active: a
	// deploy script smoke-tests a release through the real web server.
	// Both headers are removed before PHP sees the request. At least 16
	// printable characters. Default: "" (preview routing off). (fpmux
	// extension.)
	PreviewToken string `yaml:"preview_token"`

	// Symlink, when set, is a symlink fpmux points at the active release's
	// root at each activation (a new link renamed over the old one, so it
	// is never missing), for what the web server serves itself: static
	// files and try_files. Absolute. Default: "" (none). (fpmux
	// extension.)
	Symlink string `yaml:"symlink"`

	// Guard, when set, judges a release by its real traffic for a window
	// after a deploy switched to it, and switches back to the release
	// before it when it errors (see guard.go). Default: nil (off).
	Guard *Guard `yaml:"guard"`

	// Fleet, when set, makes this fpmux one host of a fleet coordinated
	// through etcd (see fleet.go). Default: nil (no fleet).
	Fleet *Fleet `yaml:"fleet"`

	// PHPFPM configures the php-fpm master run for each release.
	PHPFPM PHPFPM `yaml:"php_fpm"`

	// lines maps a dotted key path ("listen", "allowed_roots",
	// "allowed_roots[0]", "php_fpm.pool.pm.max_children") to the line of
	// the file Load read it from. Nil for a Config not read from a file.
	lines map[string]int
}

// Limits bounds the resources one web server connection, one request and
// one pool may hold, so a misbehaving client or a stuck pool costs a clean
// error rather than fpmux's memory or file descriptors. (fpmux extension.)
type Limits struct {
	// MaxConnections bounds the web server connections open at once. A
	// connection over it is accepted and closed at once (the web server
	// answers 502), and counted. Default: 4096.
	MaxConnections int `yaml:"max_connections"`

	// MaxParamsBytes bounds the FastCGI params of one request (all names
	// and values). Over it the request is answered 431 without reaching
	// PHP. Default: 1048576 (1 MiB; nginx sends a few KiB).
	MaxParamsBytes int `yaml:"max_params_bytes"`

	// ReadTimeout bounds the wait for the first record on a new
	// connection and for each record of a request being read (params,
	// body): a client that sends nothing, or a byte now and then, is cut.
	// Default: 60s (nginx's fastcgi_send_timeout).
	ReadTimeout Duration `yaml:"read_timeout"`

	// IdleTimeout closes a kept-alive connection that carries no request.
	// Default: 5m.
	IdleTimeout Duration `yaml:"idle_timeout"`

	// WriteTimeout bounds each write to the web server: a client that
	// stops reading a response for this long is cut, and the php-fpm
	// worker it held is let go. Default: 60s.
	WriteTimeout Duration `yaml:"write_timeout"`

	// MaxInFlight bounds the requests one release's pool holds at once:
	// those php-fpm runs plus those waiting in fpmux for a free worker.
	// Over it a request is answered 503 at once instead of queueing.
	// Default: 512 (php-fpm's own default listen.backlog, the queue a pool
	// had before fpmux).
	MaxInFlight int `yaml:"max_in_flight"`

	// BackendTimeout bounds how long php-fpm may give nothing of a
	// request's response once the whole request reached it, and then
	// between two reads of the response, as nginx's fastcgi_read_timeout
	// does: a request stuck in a script, or in a pool that answers
	// nothing, is answered 504 (or, if its response had started, cut) and
	// its php-fpm connection closed, counted in
	// fpmux_requests_refused_total{reason="backend_timeout"}. A slow
	// upload is not bounded here (read_timeout bounds each of its
	// records), and a response that keeps coming is not cut. Default: 0
	// (off: a script runs as long as php-fpm lets it, its
	// request_terminate_timeout).
	BackendTimeout Duration `yaml:"backend_timeout"`
}

// PHPFPM configures the php-fpm master (one per release) and its pool.
//
// In Ini, Pool and Global values and in the files, "{release_root}" and
// "{release_id}" are replaced per release, and so is php-fpm's own "$pool"
// (it names the pool, which is the release); no other "{...}" placeholder
// is allowed ("%{...}", as in access.format, is php-fpm's own). Values are
// written so php-fpm reads them back as they are: any character but a
// control character. The pool package owns these rules and the
// directives fpmux sets itself; supervisor.PHPFPMSettings applies them.
type PHPFPM struct {
	// Binary is the php-fpm executable: an absolute path or a bare command
	// name. Empty: the pool package finds php-fpm / php-fpmX.Y on PATH and
	// in /usr/sbin. Default: "".
	Binary string `yaml:"binary"`

	// Ini holds php.ini settings applied to every pool (as
	// php_admin_value). Keys match ^[A-Za-z0-9_.-]+$. A map in the file is
	// merged key by key over the defaults; a key set to null removes it.
	// Unquoted scalars (opcache.enable: 1) are read as strings.
	// Default: {opcache.enable: "1", opcache.validate_timestamps: "0"}
	// (a release directory never changes, so opcache never has to look).
	Ini map[string]string `yaml:"ini"`

	// Pool holds php-fpm pool directives (pm, pm.max_children, user,
	// group, env[NAME], php_value[name], ...). Merged over the defaults
	// like Ini. Directives fpmux sets itself (listen, listen.*, ping.*,
	// pm.status_path, chdir, pid, error_log, daemonize, include, prefix)
	// are refused, naming what takes their place, unless set to what
	// fpmux writes anyway (catch_workers_output: "yes"). Default: {pm: dynamic, pm.max_children: "5",
	// pm.start_servers: "2", pm.min_spare_servers: "1",
	// pm.max_spare_servers: "3"}.
	Pool map[string]string `yaml:"pool"`

	// PoolFile is a php-fpm pool file read as php-fpm reads it (sections,
	// ';' comments, include globs, quoting, ${ENV}), or a glob of them
	// (/usr/local/etc/php-fpm.d/*.conf), so an existing www.conf serves as
	// it is. Its directives that fpmux sets itself (listen, pm.status_path,
	// ping.path, ...) are dropped, each with a warning naming what takes
	// their place; Pool's keys win over its own, but Pool's defaults do
	// not. Its [global] sections count as GlobalFile's. Absolute.
	// Default: "" (none).
	PoolFile string `yaml:"pool_file"`

	// GlobalFile is a php-fpm.conf whose [global] section applies to
	// every release's php-fpm master (log_limit, emergency_restart_*, ...);
	// pool sections in it or in what it includes are left out. Absolute.
	// Default: "" (none).
	GlobalFile string `yaml:"global_file"`

	// Global holds [global] directives over GlobalFile's, merged like Ini.
	// Default: {}.
	Global map[string]string `yaml:"global"`

	// StartTimeout bounds spawning a release's php-fpm master and its
	// health check. Must be positive. Default: 30s. (fpmux extension.)
	StartTimeout Duration `yaml:"start_timeout"`

	// StopTimeout bounds a graceful php-fpm stop (SIGQUIT) before the
	// master is killed. Must be positive. Default: 10s. (fpmux extension.)
	StopTimeout Duration `yaml:"stop_timeout"`

	// WedgeCheckInterval is how often the pool of each release that is
	// not draining is pinged to find it wedged: alive but answering
	// nothing. Must be positive. Default: 5s. (fpmux extension.)
	WedgeCheckInterval Duration `yaml:"wedge_check_interval"`

	// WedgeMisses is how many wedge checks missed in a row get the master
	// killed with its workers and started again. A ping a busy pool does
	// not answer is no miss (README, Faults). 0 turns the check off.
	// Default: 3. (fpmux extension.)
	WedgeMisses int `yaml:"wedge_misses"`
}

//go:embed defaults.yaml
var defaultsYAML []byte

// Default returns a fresh copy of the embedded defaults (defaults.yaml),
// decoded by the same strict decoder as Load. It validates as it is.
func Default() *Config {
	c := &Config{}
	if err := decodeStrict(defaultsYAML, c); err != nil {
		panic("config: embedded defaults.yaml does not decode: " + err.Error())
	}
	return c
}

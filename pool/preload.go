// preload.go owns what a pool needs for opcache.preload: php-fpm reads the
// preload script once, in its master, before any worker forks, so each
// release's pool preloads its own release's classes and functions (the
// caller writes "{release_root}/preload.php"), which no php-fpm pool shared
// by two releases can: the second release's classes would be declared
// again ("Cannot redeclare"). PHP refuses to preload as root, so a master
// started by root preloads as the workers' user.

package pool

// withPreloadUser returns ini with opcache.preload_user set to the user the
// workers run as (the user directive, else fallback: what workerIdentity
// chose) when the master runs as root (euid 0), ini preloads a script and
// names no preload user; otherwise ini itself. PHP's own words for the
// missing setting are 'Fatal Error "opcache.preload_user" has not been
// defined', at start, before php-fpm logs anything.
func withPreloadUser(euid int, ini, directives map[string]string, fallback string) map[string]string {
	if euid != 0 || ini["opcache.preload"] == "" {
		return ini
	}
	if _, ok := ini["opcache.preload_user"]; ok {
		return ini
	}
	usr := directives["user"]
	if usr == "" {
		usr = fallback
	}
	if usr == "" {
		return ini
	}
	out := make(map[string]string, len(ini)+1)
	for k, v := range ini {
		out[k] = v
	}
	out["opcache.preload_user"] = usr
	return out
}

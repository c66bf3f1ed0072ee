// settings.go owns turning the operator's php-fpm settings (their own pool
// and global files, and fpmux's maps over them) into the directives every
// release's pool is started with, checked once by the rules of rules.go
// before anything runs.

package pool

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Source is where the php-fpm settings of every pool come from.
type Source struct {
	// PoolFile is a php-fpm pool file (www.conf) or a glob of them, read
	// as php-fpm reads it; its [global] sections count as GlobalFile's.
	// All its pool sections must share one name. "": none.
	PoolFile string
	// GlobalFile is a php-fpm.conf whose [global] section is read; pool
	// sections it holds or includes are left out (with a warning): pools
	// come from PoolFile. "": none.
	GlobalFile string
	// Pool, Global and Ini are fpmux's own maps: pool directives and
	// [global] directives over the files' (a key in both: the map wins),
	// and php.ini settings.
	Pool, Global, Ini map[string]string
	// PoolDefaults are the Pool keys that hold fpmux's defaults rather
	// than the operator's: the pool file's value wins over them.
	PoolDefaults map[string]bool
	// Set reports whether the operator set a Pool key in a file: a
	// problem between two pm keys is reported at the one the operator set
	// when the other holds its default. Nil: none.
	Set func(key string) bool
	// Name names a key of the maps or a file key in messages, e.g.
	// Name("pool", "pm") = "php_fpm.pool.pm (line 3)" and Name("pool_file",
	// "") = "php_fpm.pool_file (line 9)". Nil: "php_fpm.<kind>.<key>".
	Name func(kind, key string) string
	// Getenv resolves ${NAME} in the files. Nil: os.Getenv.
	Getenv func(string) string
}

// Settings are the checked php-fpm settings of every release's pool, with
// placeholders still in them (Expand fills them per release).
type Settings struct {
	Directives map[string]string // pool directives; a key ending in [] holds its values one per line
	Global     map[string]string // [global] directives
	Ini        map[string]string // php.ini settings
	Bare       map[string]bool   // Directives and Global keys written without quotes (iniEntry.Bare)
	// Warnings are the directives of the files dropped because fpmux owns
	// them, one each, naming what takes their place.
	Warnings []string
}

// LoadSettings reads src's files and merges src's maps over them. Every
// problem comes back at once, each naming its key or its file and line
// and saying what to do.
func LoadSettings(src Source) (*Settings, error) {
	if src.Name == nil {
		src.Name = func(kind, key string) string { return joinKey("php_fpm."+kind, key) }
	}
	if src.Getenv == nil {
		src.Getenv = os.Getenv
	}
	st := &Settings{Directives: map[string]string{}, Global: map[string]string{}, Ini: map[string]string{}, Bare: map[string]bool{}}
	where := map[string]string{} // directive key → where it was set, for the pm checks
	var errs []error

	fileEntry := func(kind string, e iniEntry, global bool) {
		at := src.Name(kind, "") + ": " + e.where()
		if o, ok := ownership(e.Key, global); ok {
			if !o.sameAsFpmux(e.Value) {
				st.Warnings = append(st.Warnings, fmt.Sprintf("%s: %s = %s dropped: %s", at, e.Key, e.Value, o.instead))
			}
			return
		}
		if err := CheckValue(strings.ReplaceAll(e.Value, "$pool", "{release_id}")); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", at, e.Key, err))
			return
		}
		dst, key := st.Directives, e.Key
		if global {
			dst = st.Global
		} else if name, sub, _ := strings.Cut(e.Key, "["); directiveKeyRe.MatchString(strings.ToLower(name)) {
			// php-fpm takes names in any case; what is in brackets
			// (env[APP_ENV]) is kept as written.
			key = strings.ToLower(name)
			if sub != "" || strings.Contains(e.Key, "[") {
				key += "[" + sub
			}
		}
		if strings.HasSuffix(key, "[]") && dst[key] != "" {
			dst[key] += "\n" + e.Value
		} else {
			dst[key] = e.Value
		}
		st.Bare[key] = e.Bare
		where[key] = at
	}

	// readFile reads one of the files and returns the names of its pool
	// sections; its [global] entries go to Global, its pool entries to
	// Directives when pools is set.
	readFile := func(kind, path string, pools bool) []string {
		if path == "" {
			return nil
		}
		entries, err := readINI(path, src.Getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.Name(kind, ""), err))
		}
		names := map[string]bool{}
		for _, e := range entries {
			global := strings.EqualFold(e.Section, "global")
			if !global {
				names[e.Section] = true
			}
			if global || pools {
				fileEntry(kind, e, global)
			}
		}
		return slices.Sorted(maps.Keys(names))
	}
	if names := readFile("global_file", src.GlobalFile, false); len(names) > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s: pool sections [%s] left out: php_fpm.pool_file names the pool every release runs",
			src.Name("global_file", ""), strings.Join(names, "], [")))
	}
	if names := readFile("pool_file", src.PoolFile, true); len(names) > 1 {
		errs = append(errs, fmt.Errorf("%s: holds pools [%s]: fpmux runs one pool per release, give it the file of one",
			src.Name("pool_file", ""), strings.Join(names, "], [")))
	}

	mapEntries := func(kind string, m map[string]string, dst map[string]string, global bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v := m[k]
			if !global && src.PoolDefaults[k] {
				if _, fromFile := dst[k]; fromFile {
					continue
				}
			}
			var err error
			for _, part := range values(k, v) {
				if err == nil {
					err = CheckDirective(k, part, global)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", src.Name(kind, k), err))
				continue
			}
			if _, ok := ownership(k, global); ok {
				continue // the value fpmux writes anyway
			}
			dst[k] = v
			delete(st.Bare, k)
			where[k] = src.Name(kind, k)
		}
	}
	mapEntries("pool", src.Pool, st.Directives, false)
	mapEntries("global", src.Global, st.Global, true)
	for _, k := range slices.Sorted(maps.Keys(src.Ini)) {
		if err := CheckIni(k, src.Ini[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.Name("ini", k), err))
			continue
		}
		st.Ini[k] = src.Ini[k]
	}
	errs = append(errs, checkPM(st.Directives, func(k string) string {
		if w, ok := where[k]; ok {
			return w
		}
		return src.Name("pool", k)
	}, func(k string) bool {
		_, ok := where[k]
		return ok && where[k] != src.Name("pool", k) || src.Set != nil && src.Set(k)
	})...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return st, nil
}

// checkPM checks the process manager directives as php-fpm does when a
// pool starts, so a bad combination fails before the first deploy; name
// says where a key was set, and set whether the operator set it in a file.
func checkPM(pool map[string]string, name func(string) string, set func(string) bool) []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name(key), fmt.Sprintf(format, args...)))
	}
	// addEither reports a problem between two keys under the first,
	// unless only the second is the operator's: then under the second,
	// since the first still holds its default and the second is what
	// changed.
	addEither := func(key, other, format string, args ...any) {
		if !set(key) && set(other) {
			key = other
		}
		add(key, format, args...)
	}
	if pm, ok := pool["pm"]; ok && pm != "static" && pm != "dynamic" && pm != "ondemand" {
		add("pm", "%q: want static, dynamic or ondemand", pm)
	}
	ints := map[string]int{}
	for _, k := range []string{"pm.max_children", "pm.start_servers", "pm.min_spare_servers", "pm.max_spare_servers"} {
		s, ok := pool[k]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(s)
		switch {
		case k == "pm.max_children" && (err != nil || n <= 0):
			add(k, "%q: want a positive integer", s)
		case err != nil || n < 0:
			add(k, "%q: want a non-negative integer", s)
		default:
			ints[k] = n
		}
	}
	if pool["pm"] != "dynamic" {
		return errs
	}
	maxChildren, hasMax := ints["pm.max_children"]
	minSpare, hasMin := ints["pm.min_spare_servers"]
	maxSpare, hasMaxSpare := ints["pm.max_spare_servers"]
	for _, k := range []string{"pm.min_spare_servers", "pm.max_spare_servers"} {
		if n, ok := ints[k]; ok && n == 0 {
			add(k, "must be positive when pm is dynamic")
		}
		if n, ok := ints[k]; ok && hasMax && n > maxChildren {
			addEither(k, "pm.max_children", "%s (%d) is greater than pm.max_children (%d)", k, n, maxChildren)
		}
	}
	if hasMin && hasMaxSpare && maxSpare < minSpare {
		addEither("pm.max_spare_servers", "pm.min_spare_servers", "pm.max_spare_servers (%d) is less than pm.min_spare_servers (%d)", maxSpare, minSpare)
	}
	if start, ok := ints["pm.start_servers"]; ok && start > 0 {
		if hasMin && start < minSpare {
			addEither("pm.start_servers", "pm.min_spare_servers", "pm.start_servers (%d) is less than pm.min_spare_servers (%d)", start, minSpare)
		}
		if hasMaxSpare && start > maxSpare {
			addEither("pm.start_servers", "pm.max_spare_servers", "pm.start_servers (%d) is greater than pm.max_spare_servers (%d)", start, maxSpare)
		}
	}
	return errs
}

func joinKey(prefix, key string) string {
	if key == "" {
		return prefix
	}
	return prefix + "." + key
}

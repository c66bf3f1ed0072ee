// phpfpm.go owns the php-fpm settings every release's pool starts with:
// read from the configuration's php_fpm files and maps by the pool
// package's rules once, when the configuration is loaded, so that fpmux
// serve refuses at its start (and a reload refuses) what a deploy would.

package supervisor

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/pool"
)

// PHPFPMSettings reads and checks cfg's php_fpm settings: pool_file and
// global_file as php-fpm reads them, with the pool, global and ini maps
// over them. Every problem comes back at once, each naming its key and
// line ("php_fpm.pool.listen (line 3): ...") or, for a file, its key and
// the file's line; the settings carry a warning for each directive of the
// files that fpmux sets itself, dropped.
func PHPFPMSettings(cfg *config.Config) (*pool.Settings, error) {
	st, err := phpfpmSettings(cfg)
	if err != nil {
		return nil, inLineOrder(err)
	}
	return st, nil
}

// inLineOrder sorts the problems err joins by the config file line each
// names ("(line 7)"), those without a line last, as config.Load does.
func inLineOrder(err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	errs := slices.Clone(j.Unwrap())
	line := func(e error) int {
		if m := lineRe.FindStringSubmatch(e.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return math.MaxInt
	}
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
	return errors.Join(errs...)
}

var lineRe = regexp.MustCompile(`^\S+ \(line (\d+)\)`)

func phpfpmSettings(cfg *config.Config) (*pool.Settings, error) {
	defaults := config.Default().PHPFPM.Pool
	isDefault := map[string]bool{}
	for k, v := range cfg.PHPFPM.Pool {
		if d, ok := defaults[k]; ok && d == v && cfg.KeyLine("php_fpm.pool."+k) == 0 {
			isDefault[k] = true
		}
	}
	return pool.LoadSettings(pool.Source{
		PoolFile:     cfg.PHPFPM.PoolFile,
		GlobalFile:   cfg.PHPFPM.GlobalFile,
		Pool:         cfg.PHPFPM.Pool,
		Global:       cfg.PHPFPM.Global,
		Ini:          cfg.PHPFPM.Ini,
		PoolDefaults: isDefault,
		Set:          func(k string) bool { return cfg.KeyLine("php_fpm.pool."+k) > 0 },
		Name: func(kind, key string) string {
			k := "php_fpm." + kind
			if key != "" {
				k += "." + key
			}
			if line := cfg.KeyLine(k); line > 0 {
				return fmt.Sprintf("%s (line %d)", k, line)
			}
			return k
		},
	})
}

// warnPHPFPM logs each directive of the operator's php-fpm files that was
// dropped because fpmux sets it itself, with what takes its place.
func (s *Supervisor) warnPHPFPM(st *pool.Settings) {
	for _, w := range st.Warnings {
		s.log.Warn("php-fpm directive dropped", "directive", w)
	}
}

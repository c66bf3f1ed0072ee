// This file owns reloading the configuration of a running supervisor.

package supervisor

import (
	"errors"
	"slices"

	"github.com/fpmux/fpmux/config"
)

// conf returns the configuration in force.
func (s *Supervisor) conf() *config.Config { return s.cfg.Load() }

// Reload puts cfg in force for what comes next: drain_timeout for the next
// drains, allowed_roots and php_fpm (binary, ini, pool directives, start and
// stop timeouts) for the next deploys. Pools already running keep the
// settings they were started with; a release deployed again gets the new
// ones. Keys whose change needs a restart (the listeners, state_dir,
// docroot) keep their running values and are returned, so the caller can
// say so. cfg must have passed Validate.
func (s *Supervisor) Reload(cfg *config.Config) (needRestart []string, err error) {
	if cfg == nil {
		return nil, errors.New("supervisor: reload with no config")
	}
	old := s.conf()
	next := *cfg
	for _, k := range []struct {
		key       string
		old, next *string
	}{
		{"listen", &old.Listen, &next.Listen},
		{"admin", &old.Admin, &next.Admin},
		{"metrics", &old.Metrics, &next.Metrics},
		{"state_dir", &old.StateDir, &next.StateDir},
		{"docroot", &old.Docroot, &next.Docroot},
	} {
		if *k.old != *k.next {
			needRestart = append(needRestart, k.key)
			*k.next = *k.old
		}
	}
	next.AllowedRoots = slices.Clone(cfg.AllowedRoots)
	s.cfg.Store(&next)
	return needRestart, nil
}

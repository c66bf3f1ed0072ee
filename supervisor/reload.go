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
// ones, and limits.max_in_flight the next deploys; admin_token the next
// admin request; keep_previous and keep_for the next release that drains
// (a kept release keeps the window it was given). Keys whose change needs a restart (the listeners,
// state_dir, docroot, admin_owner and admin_group, the other limits) keep their running values and are returned, so the caller can
// say so. cfg must have passed Validate.
func (s *Supervisor) Reload(cfg *config.Config) (needRestart []string, err error) {
	if cfg == nil {
		return nil, errors.New("supervisor: reload with no config")
	}
	st, err := PHPFPMSettings(cfg)
	if err != nil {
		return nil, err
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
		{"admin_owner", &old.AdminOwner, &next.AdminOwner},
		{"admin_group", &old.AdminGroup, &next.AdminGroup},
	} {
		if *k.old != *k.next {
			needRestart = append(needRestart, k.key)
			*k.next = *k.old
		}
	}
	// The FastCGI front reads its limits once; max_in_flight applies to
	// the next deploys.
	inFlight := next.Limits.MaxInFlight
	if next.Limits.MaxInFlight = old.Limits.MaxInFlight; next.Limits != old.Limits {
		needRestart = append(needRestart, "limits (but max_in_flight)")
	}
	next.Limits = old.Limits
	next.Limits.MaxInFlight = inFlight
	next.AllowedRoots = slices.Clone(cfg.AllowedRoots)
	s.warnPHPFPM(st)
	s.phpfpm.Store(st)
	s.cfg.Store(&next)
	if next.Symlink != old.Symlink {
		// A new link is pointed at the active release now, not at the
		// next activation.
		s.mu.Lock()
		if a := s.active.Load(); a != nil {
			s.pointSymlinkLocked(a)
		}
		s.mu.Unlock()
	}
	return needRestart, nil
}

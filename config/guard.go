package config

// This file owns the guard key: how a release is judged by its real
// traffic for a while after a deploy switched to it, and rolled back to the
// release before it when it errors.

import (
	"time"
)

// Guard is the guard after a switch. (fpmux extension.)
//
// A nil *Guard (no guard key, or "guard:" with nothing after it) turns the
// guard off; "guard: {}" turns it on with every default. A deploy may turn
// it on or off for itself (fpmux deploy -guard, -no-guard).
type Guard struct {
	// Window is how long after the switch the new release is judged, and
	// how long the release before it keeps its pool running, ready, to be
	// switched back to at once, whatever keep_previous says. Must be
	// positive. Default: 60s.
	Window Duration `yaml:"window"`

	// MaxErrorRatio is the share of the new release's answers with a
	// status of 500 or more (fpmux's own 502, 503 and 504 for it
	// included) over which it is rolled back, once MinRequests answers
	// were counted. 0 to 1 (0: a single 5xx rolls back). Default: 0.05.
	MaxErrorRatio float64 `yaml:"max_error_ratio"`

	// MinRequests is how many answers the new release must have given
	// before its error ratio is judged, so that one 500 among the first
	// requests is not 100%. At least 1. Default: 20.
	MinRequests int `yaml:"min_requests"`

	// MaxFatal is how many PHP fatal errors (fatal, parse, compile, core
	// errors, as php-fpm logs them) the new release may log in the window;
	// one more rolls it back, with no wait for MinRequests: a fatal is a
	// broken page whatever its status. At least 0. Default: 0.
	MaxFatal int `yaml:"max_fatal"`
}

// DefaultGuard returns the guard "guard: {}" turns on.
func DefaultGuard() Guard {
	return Guard{Window: Duration(60 * time.Second), MaxErrorRatio: 0.05, MinRequests: 20, MaxFatal: 0}
}

// UnmarshalYAML decodes a guard mapping over DefaultGuard, so a key left
// out keeps its default (a zero would be a meaningful value: max_fatal: 0
// is the default, max_error_ratio: 0 is not). It uses the decoder's own
// unmarshal, which keeps its strictness about unknown keys.
func (g *Guard) UnmarshalYAML(unmarshal func(any) error) error {
	p := guardFields(DefaultGuard())
	// On a type error the keys that did decode are kept, so Validate
	// reports on them too and the bad ones keep their defaults.
	err := unmarshal(&p)
	*g = Guard(p)
	return err
}

// guardFields is Guard without its UnmarshalYAML, for it to decode into.
type guardFields Guard

// maxGuardWindow bounds guard.window: the previous release's pool runs
// through it.
const maxGuardWindow = 24 * time.Hour

// validateGuard checks the guard key, when set.
func (v *validator) validateGuard(g *Guard) {
	if g == nil {
		return
	}
	v.positive("guard.window", g.Window)
	if time.Duration(g.Window) > maxGuardWindow {
		v.add("guard.window", "is %s: at most %s (the previous release's pool runs through it)", g.Window, maxGuardWindow)
	}
	if g.MaxErrorRatio < 0 || g.MaxErrorRatio > 1 || g.MaxErrorRatio != g.MaxErrorRatio {
		v.add("guard.max_error_ratio", "is %v: want a share from 0 to 1, like 0.05 for 5%%", g.MaxErrorRatio)
	}
	v.atLeast("guard.min_requests", g.MinRequests, 1)
	v.atLeast("guard.max_fatal", g.MaxFatal, 0)
}

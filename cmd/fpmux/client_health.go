// This file owns the health checks on the client side: fpmux deploy's
// -health and -no-health, and what deploy prints of the checks a release
// passed (or that only php-fpm's ping was checked).

package main

import (
	"flag"
	"fmt"

	"github.com/fpmux/fpmux/config"
)

// clientHealthResult is one health check's result in the release JSON.
type clientHealthResult struct {
	Path   string `json:"path"`
	Status int    `json:"status"`
	MS     int64  `json:"ms"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// clientHealthFlags are deploy's -health (repeatable) and -no-health.
type clientHealthFlags struct {
	paths clientPaths
	none  *bool
}

func addHealthFlags(fs *flag.FlagSet) *clientHealthFlags {
	h := &clientHealthFlags{}
	fs.Var(&h.paths, "health", "a `PATH` (and query) the new release must answer 200 before it is ready, within 5s; "+
		"repeat for more; replaces the config's health list")
	h.none = fs.Bool("no-health", false, "run no health check, whatever the config's health list says")
	return h
}

// check returns what is wrong with the flags, for a usage error.
func (h *clientHealthFlags) check() error {
	if *h.none && len(h.paths) > 0 {
		return fmt.Errorf("-health and -no-health exclude each other")
	}
	for _, p := range h.paths {
		if err := (config.HealthCheck{Path: p}).WithDefaults().Validate(); err != nil {
			return fmt.Errorf("-health: %v", err)
		}
	}
	return nil
}

// field is the deploy request's "health": absent (nil) takes the config's
// list, [] runs none, and each -health path is a check with the defaults.
func (h *clientHealthFlags) field() any {
	switch {
	case *h.none:
		return []struct{}{}
	case len(h.paths) == 0:
		return nil
	}
	checks := make([]map[string]string, len(h.paths))
	for i, p := range h.paths {
		checks[i] = map[string]string{"path": p}
	}
	return checks
}

// clientHealthSummary describes what a release was checked with beyond
// php-fpm's ping: its health checks, or, with neither health checks nor
// warm-up paths, that the ping was all.
func clientHealthSummary(r clientRelease) string {
	if len(r.Health) == 0 {
		if len(r.Warmup) == 0 {
			return "; only php-fpm's ping was checked: no health check or warm-up path ran PHP"
		}
		return ""
	}
	var ms int64
	for _, h := range r.Health {
		ms += h.MS
	}
	return fmt.Sprintf(", passed %d health checks in %dms", len(r.Health), ms)
}

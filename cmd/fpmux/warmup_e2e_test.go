package main

import (
	"strings"
	"testing"
)

// warmupProbe is what testdata/app/warmup.php shows a request that is not
// a warm-up: what the warm-up requests counted in the pool's APCu.
type warmupProbe struct {
	Release     string `json:"release"`
	Hits        int    `json:"hits"`
	Pids        int    `json:"pids"`
	URI         string `json:"uri"`
	WarmRelease string `json:"warm_release"`
}

// TestWarmupReachesThePoolBeforeActivation deploys with the config's
// warm-up list without activating, then activates: the first real request
// finds that the pool ran the path, once, on one worker (the others get
// php-fpm's ping), with the warm-up header and the release's id. Then a deploy's own list replaces the config's, and
// -no-warmup sends none.
func TestWarmupReachesThePoolBeforeActivation(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "warmup: [\"/warmup.php?from=config\"]\n"})
	root := s.newRelease("r1")
	code, out, errs := s.cli("deploy", "-id", "r1", "-root", root, "-no-activate")
	if code != 0 {
		t.Fatalf("deploy r1: exit %d: %s%s", code, out, errs)
	}
	if !strings.Contains(out, "warmed 1 paths in 1 requests") || strings.Contains(out, "failed") {
		t.Errorf("deploy r1 said %q, want the warm-up figures and no failure", out)
	}
	if st := s.releasesByID()["r1"].State; st != "ready" {
		t.Fatalf("r1 is %s, want ready (not active)", st)
	}
	if code, out, errs := s.cli("activate", "r1"); code != 0 {
		t.Fatalf("activate r1: exit %d: %s%s", code, out, errs)
	}
	var p warmupProbe
	getJSON(t, s, "/warmup.php", &p)
	want := warmupProbe{Release: "r1", Hits: 1, Pids: 1, URI: "/warmup.php?from=config", WarmRelease: "r1"}
	if p != want {
		t.Errorf("r1's pool after activation: %+v, want %+v", p, want)
	}

	// The deploy's own list, given by repeating -warmup; a route without
	// .php goes to the front controller.
	root = s.newRelease("r2")
	code, out, errs = s.cli("deploy", "-id", "r2", "-root", root,
		"-warmup", "/warmup.php?from=flag", "-warmup", "/some/route?ms=0")
	if code != 0 {
		t.Fatalf("deploy r2: exit %d: %s%s", code, out, errs)
	}
	if !strings.Contains(out, "warmed 2 paths in 2 requests") || strings.Contains(out, "failed") {
		t.Errorf("deploy r2 said %q, want 2 paths warmed and no failure", out)
	}
	getJSON(t, s, "/warmup.php", &p)
	want = warmupProbe{Release: "r2", Hits: 1, Pids: 1, URI: "/warmup.php?from=flag", WarmRelease: "r2"}
	if p != want {
		t.Errorf("r2's pool: %+v, want %+v", p, want)
	}
	log := s.logBuf.String()
	warmed, active := strings.Index(log, "release=r2 step=warmed_app"), strings.Index(log, "release=r2 step=active")
	if warmed < 0 || active < 0 || warmed > active {
		t.Errorf("want r2's step=warmed_app logged before its step=active (at %d and %d)", warmed, active)
	}

	root = s.newRelease("r3")
	if code, out, errs := s.cli("deploy", "-id", "r3", "-root", root, "-no-warmup"); code != 0 || strings.Contains(out, "warmed") {
		t.Fatalf("deploy r3 -no-warmup: exit %d: %s%s", code, out, errs)
	}
	getJSON(t, s, "/warmup.php", &p)
	if want := (warmupProbe{Release: "r3"}); p != want {
		t.Errorf("r3's pool after -no-warmup: %+v, want %+v", p, want)
	}
}

// TestWarmupFailureDoesNotFailTheDeploy names, under warmup_failures:
// warn, a path php-fpm answers 404 and one that answers 500: the deploy
// succeeds, active, and says which paths failed (under the default, fail,
// the same deploy is refused: TestChecksRefuseBadReleasesUnderLoad).
func TestWarmupFailureDoesNotFailTheDeploy(t *testing.T) {
	s := newStack(t, stackOptions{yaml: "warmup_failures: warn\n"})
	root := s.newRelease("r1")
	code, out, errs := s.cli("deploy", "-id", "r1", "-root", root, "-warmup", "/nope.php", "-warmup", "/warmup.php?fail=1")
	if code != 0 {
		t.Fatalf("deploy: exit %d: %s%s", code, out, errs)
	}
	if !strings.Contains(out, "warmed 2 paths in 2 requests, 2 failed: /nope.php 404, /warmup.php?fail=1 500") {
		t.Errorf("deploy said %q, want the failed paths with their status", out)
	}
	if st := s.releasesByID()["r1"].State; st != "active" {
		t.Errorf("r1 is %s, want active", st)
	}
	if v := s.metric("fpmux_warmup_failures_total"); v != 2 {
		t.Errorf("fpmux_warmup_failures_total = %v, want 2", v)
	}
	if code, out, errs := s.cli("deploy", "-id", "bad", "-root", root, "-warmup", "index.php"); code != 2 || !strings.Contains(errs, "must start with '/'") {
		t.Errorf("deploy -warmup index.php: exit %d: %s%s; want a usage error", code, out, errs)
	}
}

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memPHP answers the release and its memory_limit, after ?ms= milliseconds.
const memPHP = `<?php
usleep((int)($_GET['ms'] ?? 0) * 1000);
header('Content-Type: text/plain');
echo getenv('FPMUX_RELEASE'), ' memory_limit=', ini_get('memory_limit'), "\n";
`

// TestReloadPoolsUnderLoad changes php_fpm.ini's memory_limit in the
// config file under load through nginx, then `fpmux reload-pools`, then
// again with SIGHUP (reload_pools: true): no request fails, the request
// after each reload sees the new value, the release keeps its id (and
// FPMUX_RELEASE) with its pool's generation counted, and the pools before
// stop and leave their directories.
func TestReloadPoolsUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{ini: map[string]string{"memory_limit": "64M"}, yaml: "reload_pools: true\n"})
	root := s.newRelease("r1")
	if err := os.WriteFile(filepath.Join(root, "mem.php"), []byte(memPHP), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", root); code != 0 {
		t.Fatalf("deploy: exit %d: %s%s", code, out, errs)
	}
	s.notePgids()
	setLimit := func(v string) {
		t.Helper()
		b, err := os.ReadFile(s.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(string(b), "memory_limit: ")
		j := strings.IndexByte(string(b[i:]), '\n')
		next := string(b[:i]) + `memory_limit: "` + v + `"` + string(b[i+j:])
		if err := os.WriteFile(s.cfgPath, []byte(next), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	answer := func() string {
		t.Helper()
		code, body, err := s.get(c, "/mem.php")
		if err != nil || code != 200 {
			t.Fatalf("mem.php: %d %q %v", code, body, err)
		}
		return body
	}
	if got := answer(); got != "r1 memory_limit=64M\n" {
		t.Fatalf("before: %q", got)
	}

	stop := make(chan struct{})
	results := s.runLoad(4, "/mem.php?ms=30", stop)
	s.waitFor("load on r1", 60*time.Second, func() bool { return s.metric(`fpmux_requests_total{code="200",release="r1"}`) >= 30 })

	setLimit("99M")
	code, out, errs := s.cli("reload-pools")
	if code != 0 || !strings.Contains(out, "release r1 active on a fresh pool (generation 1") {
		t.Fatalf("reload-pools: exit %d: %q %q", code, out, errs)
	}
	if got := answer(); got != "r1 memory_limit=99M\n" {
		t.Errorf("the request after reload-pools: %q, want memory_limit=99M", got)
	}
	reloaded := time.Now()
	served := func(n float64) func() bool {
		from := s.metric(`fpmux_requests_total{code="200",release="r1"}`)
		return func() bool { return s.metric(`fpmux_requests_total{code="200",release="r1"}`) >= from+n }
	}
	s.waitFor("load on the fresh pool", 60*time.Second, served(30))

	setLimit("111M")
	if err := syscall.Kill(s.fpmuxPid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitFor("SIGHUP's fresh pool to serve", 60*time.Second, func() bool { return answer() == "r1 memory_limit=111M\n" })
	if got := answer(); got != "r1 memory_limit=111M\n" {
		t.Errorf("the request after that: %q", got)
	}
	s.waitFor("load on SIGHUP's fresh pool", 60*time.Second, served(30))
	close(stop)

	all := results()
	failed, after99 := 0, 0
	for _, r := range all {
		switch {
		case r.err != nil || r.status != 200 || !slices.Contains([]string{"64M", "99M", "111M"}, strings.TrimPrefix(strings.TrimSpace(r.body), "r1 memory_limit=")):
			if failed++; failed <= 5 {
				t.Errorf("request: %d %q %v", r.status, r.body, r.err)
			}
		case r.start.After(reloaded) && strings.Contains(r.body, "=64M"):
			t.Errorf("a request started after reload-pools returned saw the old pool: %q", r.body)
		case strings.Contains(r.body, "=99M"):
			after99++
		}
	}
	if failed > 0 || after99 == 0 {
		t.Errorf("%d of %d requests failed, %d served by generation 1", failed, len(all), after99)
	}
	t.Logf("%d requests across two pool reloads, %d failed", len(all), failed)

	s.waitFor("the pools before to stop and leave state_dir", 60*time.Second, func() bool {
		return slices.Equal(s.poolDirs(), []string{"r1+2"})
	})
	code, out, _ = s.cli("status")
	if code != 0 || !strings.Contains(out, "generation 2") {
		t.Errorf("status after two reloads: exit %d:\n%s", code, out)
	}
	if v := s.metric(`fpmux_release_state{release="r1",state="active"}`); v != 1 {
		t.Errorf("r1 active = %v, want 1", v)
	}

	// An upgrade in place adopts the reloaded pool from its directory.
	master := s.releasesByID()["r1"].Pool.Pid
	pid, _ := s.upgrade()
	t.Cleanup(func() { stopPid(t, pid) })
	if got := s.releasesByID()["r1"]; got.State != "active" || got.Pool == nil || got.Pool.Pid != master {
		t.Errorf("after the upgrade: r1 %s with pool %+v, want active on the reloaded master %d", got.State, got.Pool, master)
	}
	if got := answer(); got != "r1 memory_limit=111M\n" {
		t.Errorf("after the upgrade: %q", got)
	}
}

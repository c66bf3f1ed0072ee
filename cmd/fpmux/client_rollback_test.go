package main

import (
	"strings"
	"testing"
	"time"
)

// TestClientStatusShowsRollback: status marks a kept release with when its
// window ends and how each release can be rolled back to, and names the
// one `fpmux rollback` goes to; a server without these fields (an older
// fpmux) prints no such line.
func TestClientStatusShowsRollback(t *testing.T) {
	until := time.Date(2026, 11, 22, 12, 34, 56, 0, time.Local)
	srv := startClientTestServer(t, "unix")
	srv.answer(200, `[
	 {"id":"r1","state":"retired","rollback":"restart"},
	 {"id":"r2","state":"ready","rollback":"instant","kept_until":"`+until.Format(time.RFC3339)+`","rollback_target":true},
	 {"id":"r3","state":"active","rollback":""},
	 {"id":"r4","state":"ready"}
	]`)
	code, stdout, stderr := runClientTest("status", []string{"-admin", srv.admin})
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "\n" +
		"r1: rollback restarts its pool from its root\n" +
		"r2: kept until 12:34:56, rollback instant, fpmux rollback goes here\n"
	if !strings.HasSuffix(stdout, want) {
		t.Errorf("status:\n%s\nwant it to end with:\n%s", stdout, want)
	}
	for _, id := range []string{"r3", "r4"} {
		if strings.Contains(stdout, id+": ") {
			t.Errorf("status has a rollback line for %s, which cannot be rolled back to:\n%s", id, stdout)
		}
	}
}

// This file tests, through nginx and real php-fpm, that the errors PHP logs
// are counted per release and level in fpmux_php_errors_total and logged at
// their level.

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPHPErrorsCounted deploys a release with scripts that die of a parse
// error, of an uncaught exception (a stack trace over several lines), log
// a warning, or a deprecation and answer 200: after requests to them,
// /metrics counts each once per request under its level, the four series
// of a release exist at 0 as soon as it is deployed, and fpmux's log has
// the fatal at ERROR with source=php.
func TestPHPErrorsCounted(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deployErroring("r1")
	for _, l := range phpLevels {
		if v := s.metric(series("r1", l)); v != 0 {
			t.Errorf("%s right after the deploy = %v, want 0", series("r1", l), v)
		}
	}

	c := newHTTPClient()
	defer c.CloseIdleConnections()
	requests := []struct {
		path   string
		n      int
		status int
	}{
		{"/parse.php", 2, 500}, {"/uncaught.php", 3, 500}, {"/warn.php", 2, 200}, {"/deprecated.php", 1, 200},
	}
	for _, r := range requests {
		for i := 0; i < r.n; i++ {
			st, body, err := s.get(c, r.path)
			if err != nil || st != r.status {
				t.Fatalf("GET %s: status %d err %v body %.200q, want %d", r.path, st, err, body, r.status)
			}
		}
	}
	want := map[string]float64{"fatal": 5, "warning": 2, "notice": 0, "deprecated": 1}
	// php-fpm's output is read as it comes: poll for the counts, then
	// check none is over.
	s.waitFor("fpmux_php_errors_total to reach the requests' errors", 30*time.Second, func() bool {
		for l, n := range want {
			if s.metric(series("r1", l)) < n {
				return false
			}
		}
		return true
	})
	for _, l := range phpLevels {
		if v := s.metric(series("r1", l)); v != want[l] {
			t.Errorf("%s = %v, want %v", series("r1", l), v, want[l])
		}
	}
	logs := s.logBuf.String()
	var fatalLine, traceLine string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "PHP Fatal error:  Uncaught RuntimeException: boom") && fatalLine == "" {
			fatalLine = line
		}
		if strings.Contains(line, `msg="Stack trace:"`) && traceLine == "" {
			traceLine = line
		}
	}
	for what, line := range map[string]string{"the uncaught exception": fatalLine, "its stack trace": traceLine} {
		if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "source=php ") ||
			!strings.Contains(line, "php_level=fatal") || !strings.Contains(line, "release=r1") {
			t.Errorf("fpmux logged %s as %q, want level=ERROR source=php php_level=fatal release=r1", what, line)
		}
	}

	s.deploy("r2")
	for _, l := range phpLevels {
		if v := s.metric(series("r2", l)); v != 0 {
			t.Errorf("%s right after the deploy = %v, want 0", series("r2", l), v)
		}
	}
}

var phpLevels = []string{"fatal", "warning", "notice", "deprecated"}

// series is the fpmux_php_errors_total series of release id and level.
func series(id, level string) string {
	return `fpmux_php_errors_total{level="` + level + `",release="` + id + `"}`
}

// deployErroring deploys release id with scripts that make PHP log errors:
// parse.php and uncaught.php a fatal each, warn.php a warning,
// deprecated.php a deprecation.
func (s *stack) deployErroring(id string) {
	s.t.Helper()
	root := s.newRelease(id)
	for name, body := range map[string]string{
		"parse.php":      "<?php\nif (\n",
		"uncaught.php":   "<?php\nfunction f() { throw new RuntimeException(\"boom\"); }\nf();\n",
		"warn.php":       `<?php echo $undefined; echo "ok";`,
		"deprecated.php": `<?php trigger_error("old api", E_USER_DEPRECATED); echo "ok";`,
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	if code, out, errs := s.cli("deploy", "-id", id, "-root", root); code != 0 {
		s.t.Fatalf("deploy %s: exit %d: %s%s", id, code, out, errs)
	}
	s.notePgids()
}

// TestPHPErrorsCountedAfterUpgrade: the fpmux an upgrade started counts
// the errors of the pool it adopted from the output pipe the one before
// passed on: its series start at 0 (what the fpmux before counted went
// with it) and count what PHP logs from then on.
func TestPHPErrorsCountedAfterUpgrade(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deployErroring("r1")
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	fatal := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if st, body, err := s.get(c, "/uncaught.php"); err != nil || st != 500 {
				t.Fatalf("GET /uncaught.php: status %d err %v body %.200q, want 500", st, err, body)
			}
		}
	}
	fatal(1)
	s.waitFor("the fatal counted before the upgrade", 30*time.Second, func() bool { return s.metric(series("r1", "fatal")) == 1 })
	pid, _ := s.upgrade()
	t.Cleanup(func() { stopPid(t, pid) })
	c.CloseIdleConnections()
	if v := s.metric(series("r1", "fatal")); v != 0 {
		t.Errorf("%s right after the upgrade = %v, want 0", series("r1", "fatal"), v)
	}
	fatal(2)
	s.waitFor("the fatals counted after the upgrade", 30*time.Second, func() bool { return s.metric(series("r1", "fatal")) >= 2 })
	if v := s.metric(series("r1", "fatal")); v != 2 {
		t.Errorf("%s after two fatals since the upgrade = %v, want 2", series("r1", "fatal"), v)
	}
}

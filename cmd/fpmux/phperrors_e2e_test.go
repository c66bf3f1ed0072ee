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
	root := s.newRelease("r1")
	for name, body := range map[string]string{
		"parse.php":      "<?php\nif (\n",
		"uncaught.php":   "<?php\nfunction f() { throw new RuntimeException(\"boom\"); }\nf();\n",
		"warn.php":       `<?php echo $undefined; echo "ok";`,
		"deprecated.php": `<?php trigger_error("old api", E_USER_DEPRECATED); echo "ok";`,
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errs := s.cli("deploy", "-id", "r1", "-root", root); code != 0 {
		t.Fatalf("deploy r1: exit %d: %s%s", code, out, errs)
	}
	s.notePgids()
	levels := []string{"fatal", "warning", "notice", "deprecated"}
	series := func(id, level string) string {
		return `fpmux_php_errors_total{level="` + level + `",release="` + id + `"}`
	}
	for _, l := range levels {
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
	for _, l := range levels {
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
	for _, l := range levels {
		if v := s.metric(series("r2", l)); v != 0 {
			t.Errorf("%s right after the deploy = %v, want 0", series("r2", l), v)
		}
	}
}

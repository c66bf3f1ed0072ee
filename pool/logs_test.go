package pool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAccessLogAndSlowlogPerRelease: a pool's access.log and slowlog, with
// $pool or {release_id} in their paths, are the release's own files, and
// fpmux's own pings and status reads stay out of the access log while every
// request PHP ran is in it.
func TestAccessLogAndSlowlogPerRelease(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{
		"index.php": `<?php echo "up";`,
		"slow.php":  `<?php usleep(3000000); echo "slow";`,
	})
	logs := t.TempDir()
	const id = "r-logs"
	directives := ExpandAll(map[string]string{
		"pm": "static", "pm.max_children": "2",
		"access.log":              logs + "/$pool.access.log",
		"access.format":           `%R "%m %r%Q%q" %s %{milli}d`,
		"slowlog":                 logs + "/{release_id}.slow.log",
		"request_slowlog_timeout": "1s",
	}, id, root)
	p := startPool(t, Options{ID: id, Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t), Directives: directives})

	const pings, statuses, runs = 20, 5, 3
	for range pings {
		if err := p.Ping(t.Context()); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	for range statuses {
		if _, err := p.Status(t.Context()); err != nil {
			t.Fatalf("status: %v", err)
		}
	}
	for range runs {
		mustRun(t, p, "index.php", "a=1")
	}
	mustRun(t, p, "slow.php", "")

	accessLog := filepath.Join(logs, id+".access.log")
	var lines []string
	eventually(t, 10*time.Second, "the access log holds a line per request PHP ran", func() bool {
		b, _ := os.ReadFile(accessLog)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(lines) >= runs+1
	})
	t.Logf("access log: %d lines after %d pings, %d status reads and %d requests", len(lines), pings, statuses, runs+1)
	if len(lines) != runs+1 {
		t.Errorf("access log has %d lines after %d pings, %d status reads and %d requests, want %d:\n%s",
			len(lines), pings, statuses, runs+1, runs+1, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "fpmux-") {
			t.Errorf("fpmux's own request in the access log: %q", l)
		}
	}
	if !strings.Contains(lines[0], `"GET /index.php?a=1" 200`) {
		t.Errorf("access log line %q is not in the pool's access.format", lines[0])
	}
	eventually(t, 10*time.Second, "the slowlog names the slow script", func() bool {
		b, _ := os.ReadFile(filepath.Join(logs, id+".slow.log"))
		return strings.Contains(string(b), "slow.php")
	})
}

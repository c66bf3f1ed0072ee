package pool

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSlowlog(t *testing.T) {
	two := "\n[02-Dec-2026 00:05:01]  [pool r1] pid 1234\nscript_filename = /srv/r1/slow.php\n" +
		"[0x00007f3a1c013f80] usleep() /srv/r1/slow.php:2\n[0x00007f3a1c013e90] wait() /srv/r1/slow.php:5\n" +
		"\n[02-Dec-2026 00:05:09]  [pool r1] pid 1240\nscript_filename = /srv/r1/report.php\n[0x00007f3a1c013f80] sleep() /srv/r1/report.php:9\n"
	first := SlowEntry{Time: "02-Dec-2026 00:05:01", PID: 1234, Script: "/srv/r1/slow.php",
		Stack: []string{"[0x00007f3a1c013f80] usleep() /srv/r1/slow.php:2", "[0x00007f3a1c013e90] wait() /srv/r1/slow.php:5"}}
	second := SlowEntry{Time: "02-Dec-2026 00:05:09", PID: 1240, Script: "/srv/r1/report.php",
		Stack: []string{"[0x00007f3a1c013f80] sleep() /srv/r1/report.php:9"}}
	tests := []struct {
		name string
		text string
		want []SlowEntry
	}{
		{"two entries", two, []SlowEntry{first, second}},
		{"a tail that begins inside an entry", "usleep() /srv/r1/slow.php:2\n" + two[1:], []SlowEntry{first, second}},
		{"empty", "", nil},
		{"not a slowlog", "hello\nworld\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseSlowlog(tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseSlowlog = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestSlowLogReadsPHPFPMs: what php-fpm 8.2 writes for a request past
// request_slowlog_timeout comes back as an entry naming its script and
// the frame it slept in.
func TestSlowLogReadsPHPFPMs(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"slow.php": "<?php\nusleep(2500000);\necho 'slow';"})
	logs := t.TempDir()
	const id = "r-slow"
	p := startPool(t, Options{ID: id, Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Directives: ExpandAll(map[string]string{"pm": "static", "pm.max_children": "1",
			"slowlog": logs + "/$pool.slow.log", "request_slowlog_timeout": "1s"}, id, root)})
	if entries, path, err := p.SlowLog(5); err != nil || len(entries) != 0 || path != logs+"/r-slow.slow.log" {
		t.Fatalf("before any slow request: %v %q %v", entries, path, err)
	}
	mustRun(t, p, "slow.php", "")
	var entries []SlowEntry
	eventually(t, 10*time.Second, "the slowlog holds the slow request", func() bool {
		var err error
		entries, _, err = p.SlowLog(5)
		return err == nil && len(entries) == 1
	})
	e := entries[0]
	if e.Script != root+"/slow.php" || e.PID == 0 || e.Time == "" || len(e.Stack) == 0 || !strings.Contains(e.Stack[0], "usleep()") {
		t.Errorf("entry %+v, want slow.php in usleep()", e)
	}
}

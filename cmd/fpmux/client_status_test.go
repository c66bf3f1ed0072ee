package main

import (
	"strings"
	"testing"
	"time"
)

func TestClientActiveLine(t *testing.T) {
	now := time.Date(2026, 12, 1, 23, 10, 40, 0, time.Local)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	tests := []struct {
		name string
		r    clientRelease
		want string
	}{
		{"active", clientRelease{State: "active", ActivatedAt: at(-5 * time.Minute)}, "active since 23:05:40 (5m)"},
		{"active since yesterday", clientRelease{State: "active", ActivatedAt: at(-25 * time.Hour)}, "active since 2026-11-30 22:10:40 (25h)"},
		{"kept after its switch-away", clientRelease{State: "ready", ActivatedAt: at(-time.Minute), DrainingAt: at(-10 * time.Second)},
			"was active from 23:09:40 to 23:10:30 (50s)"},
		{"activated before its last drain", clientRelease{State: "draining", ActivatedAt: at(-time.Minute), DrainingAt: at(-2 * time.Minute)},
			"last activated 23:09:40"},
		{"never active", clientRelease{State: "ready"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &client{now: func() time.Time { return now }}
			if got := c.activeLine(tt.r); got != tt.want {
				t.Errorf("activeLine = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientStatusOneFull(t *testing.T) {
	srv := startClientTestServer(t, "unix")
	srv.answer(200, `{"id":"r2","root":"/srv/r2","state":"active","in_flight":1,"requests":9,
	  "pool":{"pid":1234,"restarts":0,"active_processes":1,"idle_processes":2,"held_processes":1,"total_processes":3,"slow_requests":2,
	   "processes":[
	    {"pid":11,"state":"Running","busy":true,"requests":4,"method":"GET","uri":"/r.php?token=REDACTED","duration_ms":2068},
	    {"pid":12,"state":"Reading headers","held":true,"requests":3,"duration_ms":1200},
	    {"pid":13,"state":"Idle","requests":5,"method":"POST","uri":"/up.php","duration_ms":31,"last_cpu_percent":12.5,"last_memory_bytes":2097152}],
	   "slowlog_path":"/var/log/php/r2.slow.log","slowlog":[{"time":"02-Dec-2026 00:05:01","pid":11,"script":"/srv/r2/r.php",
	    "stack":["[0x00007f3a1c013f80] usleep() /srv/r2/r.php:2","[0x00007f3a1c013e90] main() /srv/r2/r.php:5"]}]}}`)
	code, stdout, stderr := runClientTest("status", []string{"r2", "-admin", srv.admin, "-full"})
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if got := srv.requests(); len(got) != 1 || got[0].Path != "/v1/releases/r2" {
		t.Errorf("requests %+v, want one GET /v1/releases/r2?full", got)
	}
	for _, want := range []string{
		"r2: pool pid 1234, processes 3 (active 1, idle 2, 1 of them on fpmux's kept connections), slow requests 2, restarts 0",
		"PID  STATE                   REQUESTS  DURATION  CPU     MEMORY  REQUEST\n",
		"11   busy (Running)          4         2.068s    -       -       GET /r.php?token=REDACTED\n",
		"12   idle (kept connection)  3         1.2s      -       -       -\n",
		"13   idle                    5         31ms      12.50%  2.0MiB  POST /up.php\n",
		"\nslow requests, the last 1 in /var/log/php/r2.slow.log:\n  02-Dec-2026 00:05:01 pid 11 /srv/r2/r.php: [0x00007f3a1c013f80] usleep() /srv/r2/r.php:2\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status r2 -full lacks %q:\n%s", want, stdout)
		}
	}
	if code, _, stderr := runClientTest("status", []string{"-admin", srv.admin, "-full"}); code != 2 || !strings.Contains(stderr, "-full needs a release ID") {
		t.Errorf("status -full without ID: exit %d, %q", code, stderr)
	}
}

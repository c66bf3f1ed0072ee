package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLogfmt(t *testing.T) {
	for _, tc := range []struct {
		line string
		want map[string]string
	}{
		{`time=2026-12-02T10:19:16.168Z level=INFO msg="release healthy" release=mw1 step=healthy in=475ms since_deploy=475ms`,
			map[string]string{"time": "2026-12-02T10:19:16.168Z", "level": "INFO", "msg": "release healthy", "release": "mw1", "step": "healthy", "in": "475ms", "since_deploy": "475ms"}},
		{`msg="say \"hi\" = x" k=v`, map[string]string{"msg": `say "hi" = x`, "k": "v"}},
		{`a=1 not a pair`, map[string]string{"a": "1"}},
		{`msg="unterminated`, map[string]string{}},
		{``, map[string]string{}},
	} {
		got := logfmt(tc.line)
		if len(got) != len(tc.want) {
			t.Errorf("logfmt(%q) = %v, want %v", tc.line, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("logfmt(%q)[%q] = %q, want %q", tc.line, k, got[k], v)
			}
		}
	}
}

func TestReleaseSteps(t *testing.T) {
	log := filepath.Join(t.TempDir(), "fpmux.log")
	if err := os.WriteFile(log, []byte(`time=2026-12-02T10:19:15.693Z level=INFO msg="release starting" release=mw1 root=/r/mw1
time=2026-12-02T10:19:15.772Z level=INFO msg="php-fpm spawned" release=mw1 step=spawned pid=31651
time=2026-12-02T10:19:16.168Z level=INFO msg="release healthy" release=mw1 step=healthy in=475ms since_deploy=475ms
time=2026-12-02T10:19:16.200Z level=INFO msg="release healthy" release=mw10 step=healthy in=5ms since_deploy=5ms
time=2026-12-02T10:19:44.460Z level=INFO msg="release warmed_app" release=mw1 step=warmed_app in=28.292s since_deploy=28.767s paths=3
`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := releaseSteps(log, "mw1")
	if err != nil {
		t.Fatal(err)
	}
	want := []stepLine{
		{"healthy", time.Date(2026, 12, 2, 10, 19, 16, 168e6, time.UTC), 475 * time.Millisecond},
		{"warmed_app", time.Date(2026, 12, 2, 10, 19, 44, 460e6, time.UTC), 28767 * time.Millisecond},
	}
	if len(got) != len(want) {
		t.Fatalf("releaseSteps = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].step != want[i].step || !got[i].at.Equal(want[i].at) || got[i].since != want[i].since {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCPUBy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	trace := []cpuAt{{t0, 10}, {t0.Add(time.Second), 20}, {t0.Add(2 * time.Second), 30}}
	for _, tc := range []struct {
		at   time.Time
		want time.Duration
	}{
		{t0.Add(-time.Second), 0},
		{t0, 10},
		{t0.Add(1500 * time.Millisecond), 20},
		{t0.Add(time.Hour), 30},
	} {
		if got := cpuBy(trace, tc.at); got != tc.want {
			t.Errorf("cpuBy(%v) = %v, want %v", tc.at.Sub(t0), got, tc.want)
		}
	}
}

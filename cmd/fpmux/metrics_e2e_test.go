package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMetricsFollowADeployUnderLoad scrapes /metrics while r2 is deployed
// under load and a slow request holds r1: the in-flight, state, drain and
// pool figures must move as a switch and its drain do, and r1's series
// must leave the gauges once it is retired.
func TestMetricsFollowADeployUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")

	stop := make(chan struct{})
	results := s.runLoad(2, "/index.php?ms=5", stop)
	defer func() {
		close(stop)
		all := results()
		failed := 0
		for _, r := range all {
			if r.err != nil || r.status != 200 {
				failed++
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d requests failed", failed, len(all))
		}
	}()

	slow := s.slowRequestInFlight("r1", 12000) // long enough to outlast a deploy at load average 20
	want := func(series string, ok func(v float64) bool, what string) {
		t.Helper()
		if v := s.metric(series); !ok(v) {
			t.Errorf("%s = %v, want %s", series, v, what)
		}
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	is := func(n float64) func(float64) bool { return func(v float64) bool { return v == n } }
	absent := func(v float64) bool { return v == -1 }

	// Before: r1 active, serving, with its pool's figures.
	want(`fpmux_release_state{release="r1",state="active"}`, is(1), "1")
	want(`fpmux_active_release_info{release="r1"}`, is(1), "1")
	want(`fpmux_requests_in_flight{release="r1"}`, atLeast(1), ">= 1 (the slow request)")
	want(`fpmux_pool_processes{release="r1",state="active"}`, atLeast(1), ">= 1")
	want(`fpmux_pool_max_listen_queue{release="r1"}`, atLeast(0), "present")
	want(`fpmux_pool_slow_requests{release="r1"}`, atLeast(0), "present")
	want(`fpmux_pool_memory_bytes{kind="pss",release="r1"}`, atLeast(1<<20), ">= 1 MiB")
	want(`fpmux_pool_memory_bytes{kind="rss",release="r1"}`, atLeast(1<<20), ">= 1 MiB")
	want(`fpmux_pool_connections{release="r1",state="open"}`, atLeast(1), ">= 1")

	s.deploy("r2")
	// The switch: r2 active, r1 draining and still holding the slow request.
	want(`fpmux_active_release_info{release="r2"}`, is(1), "1")
	want(`fpmux_active_release_info{release="r1"}`, absent, "absent")
	want(`fpmux_release_state{release="r2",state="active"}`, is(1), "1")
	want(`fpmux_release_state{release="r1",state="draining"}`, is(1), "1")
	want(`fpmux_requests_in_flight{release="r1"}`, is(1), "1 (the slow request; new ones go to r2)")
	want(`fpmux_pool_memory_bytes{kind="pss",release="r1"}`, atLeast(1<<20), ">= 1 MiB while it drains")
	drainsBefore := s.metric(`fpmux_drain_duration_seconds_count`)

	// What holds r1: the slow request, listed by the admin API.
	body, err := s.adminGet("/v1/releases/r1")
	if err != nil {
		t.Fatal(err)
	}
	var r1 struct {
		State   string `json:"state"`
		Holding []struct {
			Method, URI string
			AgeMS       int64 `json:"age_ms"`
		} `json:"holding"`
	}
	if err := json.Unmarshal(body, &r1); err != nil {
		t.Fatalf("GET /v1/releases/r1: %v: %s", err, body)
	}
	if r1.State != "draining" || len(r1.Holding) != 1 || r1.Holding[0].Method != "GET" ||
		r1.Holding[0].URI != "/index.php?ms=12000" || r1.Holding[0].AgeMS <= 0 {
		t.Errorf("r1 while draining: %s, want one GET /index.php?ms=12000 holding it", body)
	}

	if r := <-slow; r.err != nil || r.status != 200 {
		t.Fatalf("slow request: %d %v", r.status, r.err)
	}
	s.waitFor("r1 retired", 15*time.Second, func() bool {
		return s.metric(`fpmux_release_state{release="r1",state="retired"}`) == 1
	})
	// After: the drain is counted, and r1's live gauges are gone.
	want(`fpmux_drain_duration_seconds_count`, is(drainsBefore+1), "one more drain")
	want(`fpmux_drain_duration_seconds_sum`, atLeast(0.5), ">= 0.5 s (the slow request's remaining time)")
	want(`fpmux_drains_forced_total`, is(0), "0")
	want(`fpmux_requests_in_flight{release="r1"}`, absent, "absent once retired")
	want(`fpmux_pool_memory_bytes{kind="pss",release="r1"}`, absent, "absent once retired")
	want(`fpmux_pool_connections{release="r1",state="open"}`, absent, "absent once retired")
	want(`fpmux_requests_total{code="200",release="r1"}`, atLeast(1), ">= 1")
	want(`fpmux_requests_total{code="200",release="r2"}`, atLeast(1), ">= 1")
	want(`fpmux_deploys_total{outcome="ok"}`, is(2), "2")

	// One log line per step of r1's life, each with its release and time.
	log := s.logBuf.String()
	for _, step := range []string{"spawned", "healthy", "warmed", "ready", "active", "drained", "retired"} {
		re := regexp.MustCompile(`(?m)^.*release=r1 .*step=` + step + `( .*)?$`)
		line := re.FindString(log)
		if line == "" || (step != "spawned" && !strings.Contains(line, " in=")) {
			t.Errorf("no log line for step %s of r1 with its duration (found %q)", step, line)
		}
	}
}

package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgiclient"
	"github.com/fpmux/fpmux/internal/logtest"
	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
)

// keepStack is a Supervisor with real php-fpm pools, its log and its
// metrics registry.
type keepStack struct {
	t   *testing.T
	s   *Supervisor
	dir string
	log *logtest.Buffer
	reg *prometheus.Registry
}

// newKeepStack returns a Supervisor that keeps keep releases for keepFor.
// Without php-fpm the test is skipped (failed under CI).
func newKeepStack(t *testing.T, keep int, keepFor time.Duration) *keepStack {
	t.Helper()
	if _, err := pool.FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("php-fpm is required on CI: %v", err)
		}
		t.Skipf("php-fpm not installed: %v", err)
	}
	dir := t.TempDir()
	// php-fpm workers (www-data when the tests run as root) chdir into
	// the release.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.AllowedRoots = []string{filepath.Join(dir, "releases")}
	cfg.Admin = "unix:" + filepath.Join(dir, "admin.sock")
	cfg.KeepPrevious = keep
	cfg.KeepFor = config.Duration(keepFor)
	cfg.PHPFPM.Pool = map[string]string{"pm": "static", "pm.max_children": "2"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k := &keepStack{t: t, dir: dir, log: &logtest.Buffer{}, reg: prometheus.NewRegistry()}
	s, err := New(Options{Config: cfg, Registerer: k.reg,
		Logger: k.log.Logger(slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	k.s = s
	t.Cleanup(func() {
		s.Close(context.Background())
		if t.Failed() {
			t.Logf("fpmux log:\n%s", k.log.String())
		}
	})
	return k
}

// root writes a release root holding an index.php.
func (k *keepStack) root(id string) string {
	k.t.Helper()
	root := filepath.Join(k.dir, "releases", id)
	if err := os.MkdirAll(root, 0o755); err != nil {
		k.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte("<?php echo 1;"), 0o644); err != nil {
		k.t.Fatal(err)
	}
	return root
}

func (k *keepStack) deploy(id string) Release {
	k.t.Helper()
	rel, err := k.s.Deploy(k.t.Context(), DeployRequest{ID: id, Root: k.root(id), Activate: true})
	if err != nil {
		k.t.Fatalf("deploy %s: %v", id, err)
	}
	return rel
}

func (k *keepStack) get(id string) Release {
	k.t.Helper()
	rel, err := k.s.Get(k.t.Context(), id)
	if err != nil {
		k.t.Fatal(err)
	}
	return rel
}

// waitState polls until release id is in state want, for up to 20 s.
func (k *keepStack) waitState(id string, want State) Release {
	k.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rel := k.get(id)
		if rel.State == want {
			return rel
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("release %s is %s after 20s, want %s", id, rel.State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pid returns a live release's php-fpm master pid.
func (k *keepStack) pid(id string) int {
	k.t.Helper()
	rel := k.get(id)
	if rel.Pool == nil || rel.Pool.Pid == 0 {
		k.t.Fatalf("release %s (%s) has no master", id, rel.State)
	}
	return rel.Pool.Pid
}

// logHas tells whether a log line names release id and holds every one of
// words.
func (k *keepStack) logHas(id string, words ...string) bool {
	for _, line := range strings.Split(k.log.String(), "\n") {
		if !strings.Contains(line, "release="+id+" ") {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}

// gauge returns the value of one series of fpmux's metrics, or -1.
func (k *keepStack) gauge(name string, labels map[string]string) float64 {
	k.t.Helper()
	mfs, err := k.reg.Gather()
	if err != nil {
		k.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestKeptReleaseRollsBackInstantly: with keep_previous 1, the release a
// deploy switched away from goes back to ready once drained, with the same
// php-fpm master; rollback makes it active without starting a pool, and
// requests pinned to it go through a fresh Backend. The release switched
// away from by the rollback is kept in turn, and activate brings it back
// as fast.
func TestKeptReleaseRollsBackInstantly(t *testing.T) {
	k := newKeepStack(t, 1, time.Minute)
	k.deploy("r1")
	pid1 := k.pid("r1")
	oldBackend := k.s.active.Load().backend
	k.deploy("r2")
	pid2 := k.pid("r2")
	before := time.Now()
	rel := k.waitState("r1", StateReady)
	if rel.Pool == nil || rel.Pool.Pid != pid1 {
		t.Fatalf("kept r1's pool: %+v, want master %d still running", rel.Pool, pid1)
	}
	if rel.Rollback != rollbackInstant || !rel.RollbackTarget || rel.KeptUntil == nil {
		t.Errorf("kept r1 shows rollback %q, target %v, kept_until %v; want instant, true, a time", rel.Rollback, rel.RollbackTarget, rel.KeptUntil)
	} else if d := rel.KeptUntil.Sub(before); d < 50*time.Second || d > time.Minute {
		t.Errorf("r1 kept until %v, %v after it was kept; want about keep_for (1m) after it stopped being active", rel.KeptUntil, d)
	}
	if !k.logHas("r1", "step=kept") {
		t.Error("no step=kept line for r1")
	}
	if r2 := k.get("r2"); r2.Rollback != "" || r2.RollbackTarget {
		t.Errorf("active r2 shows rollback %q target %v, want none", r2.Rollback, r2.RollbackTarget)
	}
	if v := k.gauge("fpmux_release_state", map[string]string{"release": "r1", "state": "ready"}); v != 1 {
		t.Errorf("fpmux_release_state{r1,ready} = %v, want 1", v)
	}
	// A kept pool is live: php-fpm's own figures and its memory are read.
	if v := k.gauge("fpmux_pool_processes", map[string]string{"release": "r1", "state": "idle"}); v < 0 {
		t.Error("no fpmux_pool_processes{r1,idle}: a kept pool's figures are not collected")
	}
	if v := k.gauge("fpmux_pool_memory_bytes", map[string]string{"release": "r1", "kind": "rss"}); v <= 0 {
		t.Errorf("fpmux_pool_memory_bytes{r1,rss} = %v, want a kept pool's memory", v)
	}
	pin, err := k.s.Pin()
	if err != nil || pin.Release != "r2" {
		t.Fatalf("pin while r2 is active: %+v %v; a kept release must not get new requests", pin, err)
	}
	pin.Tracker.Done(200, 0)

	rel, err = k.s.Rollback(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rel.ID != "r1" || rel.State != StateActive || k.pid("r1") != pid1 {
		t.Fatalf("rollback: %s %s master %d, want r1 active on master %d", rel.ID, rel.State, k.pid("r1"), pid1)
	}
	if n := strings.Count(k.log.String(), `msg="release starting" release=r1 `); n != 1 {
		t.Errorf("r1 started %d times, want once: a rollback to a kept release starts no pool", n)
	}
	pin, err = k.s.Pin()
	if err != nil || pin.Release != "r1" {
		t.Fatalf("pin after rollback: %+v %v, want r1", pin, err)
	}
	if pin.Backend == oldBackend {
		t.Error("r1 is served through the Backend its drain closed")
	}
	k.s.mu.Lock()
	p1 := k.s.releases["r1"].pool
	k.s.mu.Unlock()
	ping := func(_ int, c net.Conn) error {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := fcgiclient.Do(ctx, c, fcgiclient.Request{Params: fcgiclient.Page(p1.PingPath(), "")})
		return err
	}
	if err := pin.Backend.Warm(1, nil, ping); err != nil {
		t.Errorf("a request to the kept pool through its Backend: %v", err)
	}
	pin.Tracker.Done(200, 0)

	// r2 is kept in turn; activate switches back to it as fast.
	k.waitState("r2", StateReady)
	if _, err := k.s.Activate("r2"); err != nil {
		t.Fatal(err)
	}
	if k.pid("r2") != pid2 || k.get("r2").State != StateActive {
		t.Errorf("activate kept r2: master %d state %s, want %d active", k.pid("r2"), k.get("r2").State, pid2)
	}
	k.waitState("r1", StateReady)
	if k.pid("r1") != pid1 {
		t.Errorf("r1 kept a second time on master %d, want %d", k.pid("r1"), pid1)
	}
}

// TestKeepPreviousBoundsKeptReleases deploys r1 to r4 and checks which
// releases are kept: the newest keep_previous of those switched away from,
// the older ones retired with their php-fpm gone.
func TestKeepPreviousBoundsKeptReleases(t *testing.T) {
	for _, tt := range []struct {
		keep int
		want map[string]State
	}{
		{0, map[string]State{"r1": StateRetired, "r2": StateRetired, "r3": StateRetired}},
		{1, map[string]State{"r1": StateRetired, "r2": StateRetired, "r3": StateReady}},
		{2, map[string]State{"r1": StateRetired, "r2": StateReady, "r3": StateReady}},
	} {
		t.Run(fmt.Sprintf("keep_previous=%d", tt.keep), func(t *testing.T) {
			k := newKeepStack(t, tt.keep, time.Minute)
			pids := map[string]int{}
			for i := 1; i <= 4; i++ {
				id := fmt.Sprintf("r%d", i)
				k.deploy(id)
				pids[id] = k.pid(id)
				if i > 1 { // the one before has settled: kept or retired
					prev := fmt.Sprintf("r%d", i-1)
					k.waitState(prev, map[bool]State{true: StateReady, false: StateRetired}[tt.keep > 0])
				}
			}
			for id, want := range tt.want {
				rel := k.waitState(id, want)
				if want == StateReady && (rel.Pool == nil || rel.Pool.Pid != pids[id]) {
					t.Errorf("kept %s: pool %+v, want master %d", id, rel.Pool, pids[id])
				}
				if want == StateRetired && syscall.Kill(pids[id], 0) == nil {
					t.Errorf("retired %s: master %d still runs", id, pids[id])
				}
			}
			// With keep_previous 1, r2 was kept and pushed out by r3.
			if tt.keep == 1 && !k.logHas("r2", "step=retired", `reason="more than keep_previous kept"`) {
				t.Error(`no retired line for r2 with reason "more than keep_previous kept"`)
			}
			if k.get("r4").State != StateActive {
				t.Errorf("r4 is %s, want active", k.get("r4").State)
			}
		})
	}
}

// TestKeptReleaseRetiredWhenWindowEnds: a kept release is retired keep_for
// after it stopped being active, its master stops, and rollback then
// starts it again from its root.
func TestKeptReleaseRetiredWhenWindowEnds(t *testing.T) {
	k := newKeepStack(t, 1, 1500*time.Millisecond)
	k.deploy("r1")
	pid1 := k.pid("r1")
	k.deploy("r2")
	k.waitState("r1", StateRetired)
	if !k.logHas("r1", "step=kept") {
		t.Error("r1 was retired without having been kept")
	}
	if !k.logHas("r1", "step=retired", `reason="keep_for ended"`) {
		t.Error(`no retired line for r1 with reason "keep_for ended"`)
	}
	if syscall.Kill(pid1, 0) == nil {
		t.Errorf("r1's master %d outlived its window", pid1)
	}
	if rel := k.get("r1"); rel.Rollback != rollbackRestart || !rel.RollbackTarget || rel.KeptUntil != nil {
		t.Errorf("retired r1 shows rollback %q target %v kept_until %v, want restart, true, none", rel.Rollback, rel.RollbackTarget, rel.KeptUntil)
	}
	rel, err := k.s.Rollback(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rel.ID != "r1" || rel.State != StateActive || rel.Pool == nil || rel.Pool.Pid == pid1 {
		t.Fatalf("rollback past the window: %+v, want r1 active on a new master", rel)
	}
}

// TestRetireKeptRelease: retire ID stops a kept release at once, and says
// so in its retired line; a retired release is not kept on the way.
func TestRetireKeptRelease(t *testing.T) {
	k := newKeepStack(t, 2, time.Minute)
	k.deploy("r1")
	pid1 := k.pid("r1")
	k.deploy("r2")
	k.waitState("r1", StateReady)
	if _, err := k.s.Retire("r1"); err != nil {
		t.Fatal(err)
	}
	k.waitState("r1", StateRetired)
	if syscall.Kill(pid1, 0) == nil {
		t.Errorf("retired kept r1: master %d still runs", pid1)
	}
	if !k.logHas("r1", "step=retired", `reason="retire requested"`) {
		t.Error(`no retired line for r1 with reason "retire requested"`)
	}
	if _, err := k.s.Retire("r2"); err == nil {
		t.Error("retiring the active release succeeded")
	}
	// A release asked to retire while it drains is stopped, not kept.
	pin, err := k.s.Pin()
	if err != nil {
		t.Fatal(err)
	}
	k.deploy("r3")
	if _, err := k.s.Retire("r2"); err != nil {
		t.Fatal(err)
	}
	pin.Tracker.Done(200, 0)
	k.waitState("r2", StateRetired)
}

// TestRollbackWaitsForAKeptDrain: a rollback to a release still draining,
// which will be kept, waits for its drain and then switches to the same
// master instead of starting a new one.
func TestRollbackWaitsForAKeptDrain(t *testing.T) {
	k := newKeepStack(t, 1, time.Minute)
	k.deploy("r1")
	pid1 := k.pid("r1")
	pin, err := k.s.Pin() // a request in flight on r1 holds its drain
	if err != nil {
		t.Fatal(err)
	}
	k.deploy("r2")
	if rel := k.get("r1"); rel.State != StateDraining || rel.Rollback != rollbackInstant {
		t.Fatalf("r1 holding a request after the switch: %s, rollback %q; want draining, instant", rel.State, rel.Rollback)
	}
	done := make(chan error, 1)
	go func() {
		_, err := k.s.Rollback(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("rollback returned while r1 still drained: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	pin.Tracker.Done(200, 0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("rollback did not return within 20s of r1's drain")
	}
	if rel := k.get("r1"); rel.State != StateActive || rel.Pool == nil || rel.Pool.Pid != pid1 {
		t.Fatalf("after rollback: r1 %s on %+v, want active on master %d", rel.State, rel.Pool, pid1)
	}
}

// TestKeepReloadApplies: keep_previous lowered to 0 by a reload applies at
// the next switch: the release switched away from is retired, and so is
// the one kept before.
func TestKeepReloadApplies(t *testing.T) {
	k := newKeepStack(t, 1, time.Minute)
	k.deploy("r1")
	k.deploy("r2")
	k.waitState("r1", StateReady)
	next := *k.s.conf()
	next.KeepPrevious = 0
	if _, err := k.s.Reload(&next); err != nil {
		t.Fatal(err)
	}
	k.deploy("r3")
	k.waitState("r2", StateRetired)
	k.waitState("r1", StateRetired)
}

// TestCloseStopsKeepTimers: a kept release's window timer is owned by the
// Supervisor, so Close stops it rather than leaving it to fire on a
// Supervisor that is gone.
func TestCloseStopsKeepTimers(t *testing.T) {
	k := newKeepStack(t, 1, time.Hour)
	k.deploy("r1")
	k.deploy("r2")
	k.waitState("r1", StateReady)
	k.s.mu.Lock()
	timer := k.s.releases["r1"].keep.timer
	k.s.mu.Unlock()
	if timer == nil {
		t.Fatal("kept r1 has no window timer")
	}
	if err := k.s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if timer.Stop() {
		t.Error("r1's keep_for timer still ran after Close")
	}
}

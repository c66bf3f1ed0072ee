package supervisor

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/pool"
	dto "github.com/prometheus/client_model/go"
)

// rollbacks reads fpmux_guard_rollbacks_total.
func (k *keepStack) rollbacks() float64 {
	var m dto.Metric
	if err := k.s.m.GuardRollbacks.Write(&m); err != nil {
		k.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// newGuardStack is a keepStack (real php-fpm pools) whose config has the
// guard g (nil: none) and keeps keep releases.
func newGuardStack(t *testing.T, keep int, g *config.Guard) *keepStack {
	t.Helper()
	k := newKeepStack(t, keep, time.Minute)
	reconfigure(t, k.s, func(c *config.Config) { c.Guard = g })
	return k
}

// answer ends one request pinned to the active release per status, as the
// FastCGI front does, and returns the release each went to.
func (k *keepStack) answer(statuses ...int) []string {
	k.t.Helper()
	var to []string
	for _, st := range statuses {
		pin, err := k.s.Pin()
		if err != nil {
			k.t.Fatalf("pin: %v", err)
		}
		to = append(to, pin.Release)
		pin.Tracker.Done(st, time.Millisecond)
	}
	return to
}

// repeat returns n statuses where every k-th one is bad and the others 200.
func repeat(n, every, bad int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 200
		if every > 0 && i%every == every-1 {
			out[i] = bad
		}
	}
	return out
}

func guardConf(window time.Duration, ratio float64, min int) *config.Guard {
	return &config.Guard{Window: config.Duration(window), MaxErrorRatio: ratio, MinRequests: min, MaxFatal: 0}
}

// TestGuardJudgesTheNewRelease: answers of the release a deploy switched to
// are counted as they end; once min_requests were answered, a share of
// 5xx (PHP's 500 and fpmux's own 502, 503 and 504 alike) over
// max_error_ratio switches back at once to the previous release, which
// kept its master; the release rolled back from is failed with the figures
// once drained, counted, and left out of the rollback history. Below the
// bound, or before min_requests, nothing switches.
func TestGuardJudgesTheNewRelease(t *testing.T) {
	tests := []struct {
		name       string
		answers    []int
		rolledBack bool
		atAnswer   int // the answer that switched back (1-based)
	}{
		{"30% 500", repeat(40, 3, 500), true, 20},
		{"fpmux's 502", repeat(40, 2, 502), true, 20},
		{"fpmux's 503 and 504", append(repeat(20, 4, 503), repeat(20, 4, 504)...), true, 20},
		{"5% is not over 5%", repeat(40, 20, 500), false, 0},
		{"all 500 but fewer than min_requests", repeat(19, 1, 500), false, 0},
		{"4xx are no errors", repeat(40, 1, 404), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newGuardStack(t, 0, guardConf(time.Hour, 0.05, 20))
			k.deploy("r1")
			pid1 := k.pid("r1")
			k.deploy("r2")
			if r1 := k.get("r1"); r1.State != StateReady || r1.KeptUntil == nil || r1.Rollback != rollbackInstant {
				t.Fatalf("r1 in r2's window: %s kept_until %v rollback %q; want ready, kept until the window ends, instant",
					r1.State, r1.KeptUntil, r1.Rollback)
			}
			if g := k.get("r2").Guard; g == nil || g.State != guardWatching || g.Previous != "r1" || g.LeftMS <= 0 {
				t.Fatalf("r2's guard: %+v, want watching with r1 as the way back and time left", g)
			}
			to := k.answer(tt.answers...)
			switched := 0
			for i, id := range to {
				if id == "r1" && switched == 0 {
					switched = i // answers 0..i-1 went to r2: the i-th one switched
				}
			}
			rollbacks := k.rollbacks()
			if !tt.rolledBack {
				if switched != 0 || k.s.ActiveID() != "r2" || rollbacks != 0 {
					t.Fatalf("switched back after answer %d (active %s, %v rollbacks); want no switch", switched, k.s.ActiveID(), rollbacks)
				}
				if g := k.get("r2").Guard; g.State != guardWatching || g.Answered != int64(len(tt.answers)) {
					t.Errorf("r2's guard: %+v, want still watching, %d answered", g, len(tt.answers))
				}
				return
			}
			if switched != tt.atAnswer || k.s.ActiveID() != "r1" || rollbacks != 1 {
				t.Fatalf("switched back after answer %d, active %s, %v rollbacks; want after answer %d, r1, 1",
					switched, k.s.ActiveID(), rollbacks, tt.atAnswer)
			}
			if got := k.pid("r1"); got != pid1 {
				t.Errorf("r1 serves on master %d, want %d: the rollback must not start its pool again", got, pid1)
			}
			r2 := k.waitState("r2", StateFailed)
			if g := r2.Guard; g == nil || g.State != guardRolledBack || g.Answered != int64(tt.atAnswer) || !strings.Contains(r2.Error, "guard rolled back to r1") ||
				!strings.Contains(r2.Error, "of its 20 answers had status 500 or more") {
				t.Errorf("r2 after the rollback: error %q guard %+v; want rolled_back with the figures", r2.Error, g)
			}
			if !k.logHas("r2", `msg="guard rolled back"`, "to=r1") {
				t.Error(`no "guard rolled back" line for r2`)
			}
			if r2.Rollback != rollbackRestart || r2.RollbackTarget {
				t.Errorf("r2 shows rollback %q target %v; the release rolled back from must not be the rollback target", r2.Rollback, r2.RollbackTarget)
			}
			if _, err := k.s.Rollback(t.Context()); err == nil || !strings.Contains(err.Error(), "no previous release") {
				t.Errorf("rollback after the guard's: %v, want no previous release (r2 left the history)", err)
			}
		})
	}
}

// TestGuardPassesAndThePreviousGoesItsWay: a window with no error over the
// bound passes; the previous release is then retired (keep_previous 0) or
// kept (keep_previous 1) as for any switch.
func TestGuardPassesAndThePreviousGoesItsWay(t *testing.T) {
	for _, tt := range []struct {
		keep int
		want State
	}{{0, StateRetired}, {1, StateReady}} {
		t.Run(string(tt.want), func(t *testing.T) {
			k := newGuardStack(t, tt.keep, guardConf(300*time.Millisecond, 0.05, 5))
			k.deploy("r1")
			pid1 := k.pid("r1")
			k.deploy("r2")
			k.answer(repeat(10, 0, 0)...)
			deadline := time.Now().Add(20 * time.Second)
			for k.get("r2").Guard.State == guardWatching {
				if time.Now().After(deadline) {
					t.Fatal("the guard still watches 20s after its 300ms window")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if g := k.get("r2").Guard; g.State != guardPassed || g.Answered != 10 || g.LeftMS != 0 {
				t.Errorf("r2's guard: %+v, want passed with 10 answers", g)
			}
			r1 := k.waitState("r1", tt.want)
			if tt.want == StateReady && (r1.Pool == nil || r1.Pool.Pid != pid1) {
				t.Errorf("kept r1: %+v, want master %d", r1.Pool, pid1)
			}
			if tt.want == StateRetired && syscall.Kill(pid1, 0) == nil {
				t.Errorf("retired r1's master %d still runs", pid1)
			}
			if k.s.ActiveID() != "r2" || k.rollbacks() != 0 {
				t.Errorf("active %s, rollbacks %v; want r2, 0", k.s.ActiveID(), k.rollbacks())
			}
			k.answer(repeat(30, 1, 500)...) // after the window: no guard
			if k.s.ActiveID() != "r2" {
				t.Error("a switch after the window passed")
			}
		})
	}
}

// TestGuardEndsWhenAnOperatorActs: an activate, a rollback or a deploy
// during the window, or a retire of the previous release, ends the guard:
// later errors of r2 switch nothing.
func TestGuardEndsWhenAnOperatorActs(t *testing.T) {
	tests := []struct {
		name   string
		act    func(k *keepStack)
		active string
	}{
		{"activate the previous", func(k *keepStack) {
			if _, err := k.s.Activate("r1"); err != nil {
				k.t.Fatal(err)
			}
		}, "r1"},
		{"activate another", func(k *keepStack) {
			if _, err := k.s.Deploy(k.t.Context(), DeployRequest{ID: "r3", Root: k.root("r3")}); err != nil {
				k.t.Fatal(err)
			}
			if _, err := k.s.Activate("r3"); err != nil {
				k.t.Fatal(err)
			}
		}, "r3"},
		{"rollback", func(k *keepStack) {
			if _, err := k.s.Rollback(k.t.Context()); err != nil {
				k.t.Fatal(err)
			}
		}, "r1"},
		{"deploy", func(k *keepStack) {
			no := false
			if _, err := k.s.Deploy(k.t.Context(), DeployRequest{ID: "r3", Root: k.root("r3"), Activate: true, Guard: &no}); err != nil {
				k.t.Fatal(err)
			}
		}, "r3"},
		{"retire the previous", func(k *keepStack) {
			if _, err := k.s.Retire("r1"); err != nil {
				k.t.Fatal(err)
			}
		}, "r2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newGuardStack(t, 1, guardConf(time.Hour, 0.05, 20))
			k.deploy("r1")
			k.deploy("r2")
			g := k.s.watching
			tt.act(k)
			k.s.mu.Lock()
			watching := k.s.watching
			k.s.mu.Unlock()
			if gi := k.get("r2").Guard; gi == nil || gi.State != guardEnded || watching == g {
				t.Fatalf("r2's guard after %s: %+v, want ended", tt.name, gi)
			}
			if g.timer.Stop() {
				t.Error("the ended guard's timer was still set")
			}
			k.answer(repeat(40, 1, 500)...)
			if id := k.s.ActiveID(); id != tt.active || k.rollbacks() != 0 {
				t.Errorf("active %s after errors, want %s: the guard switched after an operator acted", id, tt.active)
			}
		})
	}
}

// TestGuardEndsAtShutdownAndUpgrade: Close and Freeze during a window end
// the guard and stop its timer; after Freeze the previous release drains
// and, with keep_previous 0, is retired.
func TestGuardEndsAtShutdownAndUpgrade(t *testing.T) {
	for _, tt := range []string{"close", "freeze"} {
		t.Run(tt, func(t *testing.T) {
			k := newGuardStack(t, 0, guardConf(time.Hour, 0.05, 20))
			k.deploy("r1")
			k.deploy("r2")
			g := k.s.watching
			if tt == "close" {
				if err := k.s.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := k.s.Freeze(); err != nil {
					t.Fatal(err)
				}
				defer k.s.Thaw()
				k.waitState("r1", StateRetired)
			}
			if g.timer.Stop() {
				t.Errorf("%s left the guard's timer set", tt)
			}
			k.s.mu.Lock()
			state, watching := g.state, k.s.watching
			k.s.mu.Unlock()
			if state != guardEnded || watching != nil || g.rel.g.watch.Load() != nil {
				t.Errorf("after %s: guard %s, watching %v; want ended, none", tt, state, watching)
			}
			select {
			case <-g.ended:
			default:
				t.Error("the guard's ended channel is open")
			}
		})
	}
}

// TestGuardFor: the deploy's -guard or -no-guard over the config's key.
func TestGuardFor(t *testing.T) {
	yes, no := true, false
	conf := guardConf(time.Minute, 0.2, 3)
	def := config.DefaultGuard()
	for _, tt := range []struct {
		name string
		conf *config.Guard
		want *bool
		got  *config.Guard
	}{
		{"off", nil, nil, nil},
		{"config", conf, nil, conf},
		{"-no-guard", conf, &no, nil},
		{"-guard over the config", conf, &yes, conf},
		{"-guard with no config", nil, &yes, &def},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSupervisor(t)
			reconfigure(t, s, func(c *config.Config) { c.Guard = tt.conf })
			got := s.guardFor(tt.want)
			if (got == nil) != (tt.got == nil) || got != nil && *got != *tt.got {
				t.Errorf("guardFor = %+v, want %+v", got, tt.got)
			}
		})
	}
}

// TestGuardJudgesPHPFatals: more than max_fatal fatal errors PHP logged for
// the new release since the switch switch back at once, as each is counted
// (on php-fpm's output reader) and with no wait for min_requests; fatals
// logged before the switch, and warnings, do not count.
func TestGuardJudgesPHPFatals(t *testing.T) {
	for _, tt := range []struct {
		maxFatal, before, fatals int
		warnings                 int
		rolledBack               bool
	}{
		{maxFatal: 0, fatals: 1, rolledBack: true},
		{maxFatal: 0, warnings: 5, rolledBack: false},
		{maxFatal: 2, fatals: 2, rolledBack: false},
		{maxFatal: 2, fatals: 3, rolledBack: true},
		{maxFatal: 0, before: 3, rolledBack: false},
	} {
		t.Run(fmt.Sprintf("max_fatal=%d before=%d fatals=%d warnings=%d", tt.maxFatal, tt.before, tt.fatals, tt.warnings), func(t *testing.T) {
			g := guardConf(time.Hour, 0.05, 20)
			g.MaxFatal = tt.maxFatal
			k := newGuardStack(t, 0, g)
			k.deploy("r1")
			// r2's metrics exist once its deploy registered it: fatals
			// logged while it starts (its warm-up) come before the switch.
			k.s.hooks.deployStarting = func(id string) {
				k.s.mu.Lock()
				rm := k.s.releases[id].metrics
				k.s.mu.Unlock()
				for range tt.before {
					rm.phpError(pool.PHPFatal)
				}
			}
			k.deploy("r2")
			k.s.mu.Lock()
			rm := k.s.releases["r2"].metrics
			k.s.mu.Unlock()
			for range tt.warnings {
				rm.phpError(pool.PHPWarning)
			}
			for range tt.fatals {
				rm.phpError(pool.PHPFatal)
			}
			want := map[bool]string{true: "r1", false: "r2"}[tt.rolledBack]
			if id := k.s.ActiveID(); id != want {
				t.Fatalf("active %s after %d fatals, want %s", id, tt.fatals, want)
			}
			gi := k.get("r2").Guard
			if gi.Fatals != int64(tt.fatals) {
				t.Errorf("guard counted %d fatals, want %d", gi.Fatals, tt.fatals)
			}
			if tt.rolledBack && (gi.State != guardRolledBack || !strings.Contains(gi.Reason, fmt.Sprintf("PHP logged %d fatal ", tt.fatals)) ||
				!strings.Contains(gi.Reason, fmt.Sprintf(" for it (over max_fatal %d)", tt.maxFatal))) {
				t.Errorf("guard %+v, want rolled_back naming the fatals", gi)
			}
		})
	}
}

// TestGuardedDoneAllocatesNothing: judging each answer of a guarded
// release costs the request path no allocation (atomic counters only).
func TestGuardedDoneAllocatesNothing(t *testing.T) {
	k := newGuardStack(t, 0, guardConf(time.Hour, 0.05, 1<<30))
	k.deploy("r1")
	k.deploy("r2")
	k.answer(200) // the status's requests_total series is made on its first request
	allocs := testing.AllocsPerRun(1000, func() {
		pin, err := k.s.Pin()
		if err != nil {
			t.Fatal(err)
		}
		pin.Tracker.Done(200, time.Millisecond)
	})
	if g := k.get("r2").Guard; g == nil || g.State != guardWatching || g.Answered < 1000 {
		t.Fatalf("guard %+v, want watching with every answer counted", g)
	}
	if allocs != 0 {
		t.Errorf("Pin and Done of a guarded release: %v allocations, want 0", allocs)
	}
}

func TestRatioReason(t *testing.T) {
	for _, tt := range []struct {
		bad, n int64
		ratio  float64
		want   string
	}{
		{6, 20, 0.05, "6 of its 20 answers had status 500 or more (30.0%, over max_error_ratio 5%)"},
		{2, 20, 0.07, "2 of its 20 answers had status 500 or more (10.0%, over max_error_ratio 7%)"},
		{1, 1000, 0.00075, "1 of its 1000 answers had status 500 or more (0.1%, over max_error_ratio 0.075%)"},
		{1, 20, 0, "1 of its 20 answers had status 500 or more (5.0%, over max_error_ratio 0%)"},
	} {
		if got := ratioReason(tt.bad, tt.n, tt.ratio); got != tt.want {
			t.Errorf("ratioReason(%d, %d, %v) =\n %q\nwant %q", tt.bad, tt.n, tt.ratio, got, tt.want)
		}
	}
}

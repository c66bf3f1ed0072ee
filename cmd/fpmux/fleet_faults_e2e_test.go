// Fleet rollouts through faults: a host killed mid-rollout, the
// coordinator killed mid-rollout and resumed, etcd stopped mid-rollout
// and started again, and a host joining late. Real etcd, real hosts.

package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fleet"
)

// deployInBackground runs fleet deploy on its own goroutine; the function
// returned waits for it, up to bound, and returns its exit code and output.
func (f *fleetStack) deployInBackground(args ...string) func(bound time.Duration) (int, string) {
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := f.cli("deploy", args...)
		done <- result{code, out + errs}
	}()
	return func(bound time.Duration) (int, string) {
		f.t.Helper()
		select {
		case r := <-done:
			return r.code, r.out
		case <-time.After(bound):
			f.t.Fatalf("fleet deploy %v did not end within %v", args, bound)
			return 0, ""
		}
	}
}

// TestFleetHostKilledMidRollout: a host killed (SIGKILL) during a rollout
// of one host per batch loses its key with its lease; the coordinator goes
// on without it and the rollout is done; started again, the host brings
// back its old release and converges to the fleet's new one.
func TestFleetHostKilledMidRollout(t *testing.T) {
	f := newFleet(t, 5, nil)
	f.deploy("r1")
	root := f.release("r2")
	result := f.deployInBackground("-id", "r2", "-root", root, "-batch", "1", "-timeout", "2m")
	f.waitFor("the first batch", 60*time.Second, func(st fleet.Status) bool {
		return st.Rollout != nil && st.Rollout.ID == "r2" && st.Rollout.Batches >= 1
	})
	f.hosts[4].stopFpmux(syscall.SIGKILL)
	code, res := result(3 * time.Minute)
	t.Logf("fleet deploy r2 (h5 killed): exit %d\n%s", code, res)
	if code != 0 || !strings.Contains(res, "host h5 is gone") {
		t.Fatalf("fleet deploy: exit %d; want 0 and h5 named gone", code)
	}
	for i, h := range f.hosts[:4] {
		if got := h.releasesByID()["r2"].State; got != "active" {
			t.Errorf("host %s: r2 is %q, want active", f.names[i], got)
		}
	}
	f.hosts[4].startFpmux()
	f.hosts[4].waitFor("h5 to converge to r2", 60*time.Second, func() bool {
		return f.hosts[4].releasesByID()["r2"].State == "active"
	})
	code, body, err := f.hosts[4].get(newHTTPClient(), "/index.php?ms=0")
	if rel, _, _ := servedBy(body); err != nil || code != 200 || rel != "r2" {
		t.Errorf("h5 after its restart: %d %q %v, want r2", code, body, err)
	}
}

// TestFleetCoordinatorKilledThenResumed: a coordinator killed (SIGKILL)
// while it judges the canary leaves the rollout in a state fleet status
// names (switching, 1 of 2 batches, h1 on r2, the others on r1); a second
// deploy is refused; -resume takes over once the dead one's lock expired
// and finishes the rollout.
func TestFleetCoordinatorKilledThenResumed(t *testing.T) {
	f := newFleet(t, 3, nil)
	f.deploy("r1")
	root := f.release("r2")
	cmd := exec.Command(os.Args[0], "fleet", "deploy", "-etcd", f.etcd.Endpoint(), "-app", "shop",
		"-id", "r2", "-root", root, "-canary", "1", "-canary-wait", "5m")
	var out bytes.Buffer
	cmd.Env = append(os.Environ(), "FPMUX_TEST_EXEC=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	f.waitFor("the canary switched", 60*time.Second, func(st fleet.Status) bool {
		return st.Rollout != nil && st.Rollout.ID == "r2" && st.Rollout.Batches == 1 && len(st.Hosts) == 3 && st.Hosts[0].Active == "r2"
	})
	cmd.Process.Kill()
	<-exited
	st := f.status()
	if st.Rollout.State != fleet.StateSwitching || st.Rollout.Batches != 1 || len(st.Rollout.Plan) != 2 ||
		st.Hosts[0].Active != "r2" || st.Hosts[1].Active != "r1" || st.Hosts[2].Active != "r1" {
		t.Fatalf("status after the coordinator died: %+v", st)
	}
	code, text, _ := f.cli("status")
	t.Logf("fleet status:\n%s", text)
	if code != 0 || !strings.Contains(text, "switching, 1 of 2 batches written") {
		t.Errorf("fleet status does not name the unfinished batch: %q", text)
	}
	if code, _, errs := f.cli("deploy", "-id", "r3", "-root", f.release("r3")); code == 0 || !(strings.Contains(errs, "holds the app's lock") || strings.Contains(errs, "unfinished")) {
		t.Errorf("a new deploy during the unfinished rollout: exit %d %q, want refused", code, errs)
	}
	var resumed string
	f.hosts[0].waitFor("-resume to take the lock and finish", 60*time.Second, func() bool {
		code, out, errs := f.cli("deploy", "-resume", "-timeout", "1m")
		resumed = out + errs
		if code != 0 && !strings.Contains(errs, "holds the app's lock") {
			t.Fatalf("fleet deploy -resume: exit %d: %s", code, resumed)
		}
		return code == 0
	})
	t.Logf("fleet deploy -resume:\n%s", resumed)
	f.wantServing("r2")
	if st := f.status(); st.Active != "r2" || st.Rollout.State != fleet.StateDone {
		t.Errorf("after -resume: active %q, rollout %s", st.Active, st.Rollout.State)
	}
}

// TestFleetEtcdStoppedMidRollout: etcd stopped after the canary switched:
// every host keeps serving what it served (h1 r2, the others r1) and says
// etcd is down (fpmux_fleet_etcd_up 0, a log line); the coordinator fails
// with a clear message and so does fleet status; with etcd back the hosts
// report again without a restart, and fleet rollback converges the fleet.
func TestFleetEtcdStoppedMidRollout(t *testing.T) {
	f := newFleet(t, 3, nil)
	f.deploy("r1")
	root := f.release("r2")
	result := f.deployInBackground("-id", "r2", "-root", root, "-canary", "1", "-canary-wait", "5m", "-timeout", "20s")
	f.waitFor("the canary switched", 60*time.Second, func(st fleet.Status) bool {
		return st.Rollout != nil && st.Rollout.ID == "r2" && st.Rollout.Batches == 1 && len(st.Hosts) == 3 && st.Hosts[0].Active == "r2"
	})
	f.etcd.Stop()
	code, res := result(2 * time.Minute)
	t.Logf("fleet deploy with etcd stopped: exit %d\n%s", code, res)
	if code == 0 || !strings.Contains(res, "unreachable") {
		t.Errorf("fleet deploy with etcd stopped: exit %d, want it to fail saying etcd is unreachable", code)
	}
	for i, h := range f.hosts {
		h.waitFor(f.names[i]+" to say etcd is down", 30*time.Second, func() bool {
			return h.metric("fpmux_fleet_etcd_up") == 0 && strings.Contains(h.logBuf.String(), "etcd unreachable")
		})
	}
	if code, out, errs := f.hosts[1].cli("status"); code != 0 || !strings.Contains(out, "fleet: app shop, host h2: etcd UNREACHABLE") {
		t.Errorf("fpmux status with etcd down: exit %d %q %q; want it to say etcd is unreachable", code, out, errs)
	}
	if got := f.serving(); got[0] != "r2" || got[1] != "r1" || got[2] != "r1" {
		t.Errorf("with etcd down the hosts serve %v, want [r2 r1 r1] as before", got)
	}
	if code, _, errs := f.cli("status"); code == 0 || !strings.Contains(errs, "etcd unreachable") {
		t.Errorf("fleet status with etcd down: exit %d %q", code, errs)
	}
	f.etcd.Restart()
	for i, h := range f.hosts {
		h.waitFor(f.names[i]+" to reach etcd again", 60*time.Second, func() bool { return h.metric("fpmux_fleet_etcd_up") == 1 })
	}
	if code, out, _ := f.hosts[1].cli("status"); code != 0 || !strings.Contains(out, "fleet: app shop, host h2: etcd reachable") {
		t.Errorf("fpmux status with etcd back: exit %d %q", code, out)
	}
	var out string
	f.hosts[0].waitFor("fleet rollback", 60*time.Second, func() bool {
		code, o, errs := f.cli("rollback", "-timeout", "30s")
		out = o + errs
		return code == 0
	})
	t.Logf("fleet rollback:\n%s", out)
	f.wantServing("r1")
}

// TestFleetHostJoinsLate: a host that joins after the fleet's rollouts
// prepares the fleet's active release and serves it, and tells systemd
// READY=1 only once it does.
func TestFleetHostJoinsLate(t *testing.T) {
	f := newFleet(t, 2, nil)
	f.deploy("r1")
	f.deploy("r2")
	o := f.hostOptions("h3")
	o.notify = true
	late := newStack(t, o)
	_, ready := late.waitNotify("READY=1", 0, 60*time.Second, lineIs("READY=1"))
	code, body, err := late.get(newHTTPClient(), "/index.php?ms=0")
	if rel, _, _ := servedBy(body); err != nil || code != 200 || rel != "r2" {
		t.Errorf("the late host, once ready: %d %q %v, want r2", code, body, err)
	}
	at, ok := switchAt(f.status(), "h3", "r2")
	if !ok || ready.at.Before(at) {
		t.Errorf("READY=1 at %v, the switch to r2 at %v (reported %v): want READY=1 after it", ready.at, at, ok)
	}
}

func TestFleetLine(t *testing.T) {
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.Local)
	for _, c := range []struct {
		info fleet.Info
		want string
	}{
		{fleet.Info{App: "shop", Host: "h1", EtcdUp: true, EtcdSince: since}, "fleet: app shop, host h1: etcd reachable (since 10:00:00)"},
		{fleet.Info{App: "shop", Host: "h1", EtcdSince: since}, "fleet: app shop, host h1: etcd UNREACHABLE: serving the active release as before, acting on the fleet again once etcd answers (since 10:00:00)"},
		{fleet.Info{App: "shop", Host: "h1"}, "fleet: app shop, host h1: etcd UNREACHABLE: serving the active release as before, acting on the fleet again once etcd answers"},
	} {
		if got := fleetLine(c.info); got != c.want {
			t.Errorf("fleetLine(%+v) = %q, want %q", c.info, got, c.want)
		}
	}
}

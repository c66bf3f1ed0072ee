// End-to-end tests of a host's own guard in fleet mode, and of the
// coordinator's judging of the batches after the canary: real etcd, real
// fpmux hosts with php-fpm and nginx, load through every host.

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fleet"
)

// brokenRelease writes release id whose pages answer 500.
func (f *fleetStack) brokenRelease(id string) string {
	f.t.Helper()
	root := f.release(id)
	broken := "<?php http_response_code(500); echo 'param=" + id + " files=broken@" + id + "', \"\\n\";"
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte(broken), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return root
}

// onlyServed fails when a host other than those in hosts (by index)
// answered with release id.
func (f *fleetStack) onlyServed(results [][]loadResult, id string, hosts ...int) {
	f.t.Helper()
	for i, rs := range results {
		allowed := false
		for _, h := range hosts {
			allowed = allowed || h == i
		}
		for _, r := range rs {
			if strings.Contains(r.body, id) && !allowed {
				f.t.Errorf("host %s served %s: %q", f.names[i], id, r.body)
				break
			}
		}
	}
}

// TestFleetHostGuardRollsBack: the canary host's own guard: key judges
// the release its fleet switch made active (the coordinator's canary
// bounds are opened wide here, so only the host's guard can act), rolls
// it back on the host, reports that under the host's key, and the
// coordinator rolls the rollout back and exits non-zero naming the guard.
func TestFleetHostGuardRollsBack(t *testing.T) {
	f := newFleet(t, 3, func(i int, o *stackOptions) {
		if i == 0 {
			o.yaml += "guard:\n  window: 60s\n  max_error_ratio: 0.05\n  min_requests: 5\n"
		}
	})
	f.deploy("r1")
	results := f.deployFails("r2", f.brokenRelease("r2"), []string{"host h1 failed on r2", "guard rolled back to r1", "rolled back to r1"},
		"-canary", "1", "-canary-wait", "20s", "-max-error-ratio", "1", "-max-fatal", "1000000")
	f.wantServing("r1")
	st := f.status()
	if st.Rollout.State != fleet.StateRolledBack || st.Active != "r1" || len(st.Batches) != 1 {
		t.Errorf("after the host's guard: rollout %s, active %q, %d batches", st.Rollout.State, st.Active, len(st.Batches))
	}
	if h := hostMap(st)["h1"]; !strings.Contains(h.Reason, "guard rolled back") {
		t.Errorf("h1's record: prepare %q reason %q, want the guard's rollback", h.Prepare, h.Reason)
	}
	f.onlyServed(results, "r2", 0)
}

// TestFleetBatchWait: -batch-wait puts an interval between batches (each
// batch record at least that long after the one before), during which
// every switched host is judged as the canary is: a release whose pages
// answer 500 is rolled back after its first batch, and the hosts of the
// later batches never serve it.
func TestFleetBatchWait(t *testing.T) {
	f := newFleet(t, 3, nil)
	f.deploy("r1", "-batch", "1", "-batch-wait", "1s")
	f.wantServing("r1")
	st := f.status()
	if len(st.Batches) != 3 {
		t.Fatalf("%d batches of r1 written, want 3", len(st.Batches))
	}
	for i := 1; i < len(st.Batches); i++ {
		if gap := st.Batches[i].At.Sub(st.Batches[i-1].At); gap < time.Second {
			t.Errorf("batch %d written %v after batch %d, want at least -batch-wait 1s", i+1, gap, i)
		}
	}
	results := f.deployFails("r2", f.brokenRelease("r2"), []string{"batch 1: ", "5xx", "rolled back to r1"},
		"-batch", "1", "-batch-wait", "20s", "-min-requests", "10")
	f.wantServing("r1")
	st = f.status()
	if st.Rollout.State != fleet.StateRolledBack || st.Active != "r1" || len(st.Batches) != 1 {
		t.Errorf("after batch 1 of r2 was judged: rollout %s, active %q, %d batches", st.Rollout.State, st.Active, len(st.Batches))
	}
	f.onlyServed(results, "r2", 0)
}

// TestFleetHostGuardAfterTheRollout: a host's guard that rolls the
// release back after its rollout was done (its window outlasts the last
// batch) has the last word on that host: it stays on the release before,
// says so under its key, and does not deploy the fleet's release again.
func TestFleetHostGuardAfterTheRollout(t *testing.T) {
	f := newFleet(t, 2, func(i int, o *stackOptions) {
		if i == 0 {
			o.yaml += "guard:\n  window: 60s\n  max_error_ratio: 0.05\n  min_requests: 5\n"
		}
	})
	f.deploy("r1")
	root := f.release("r2")
	if err := os.WriteFile(filepath.Join(root, "bad.php"), []byte("<?php http_response_code(500);"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := f.cli("deploy", "-id", "r2", "-root", root); code != 0 {
		t.Fatalf("fleet deploy r2: exit %d: %s%s", code, out, errs)
	}
	f.wantServing("r2")
	h1 := f.hosts[0]
	c := newHTTPClient()
	// 500s until the guard rolls r2 back after min_requests (5), then
	// 404s from r1, which has no bad.php.
	for range 10 {
		if code, body, err := h1.get(c, "/bad.php"); err != nil || (code != 500 && code != 404) {
			t.Fatalf("GET /bad.php on h1: %d %q %v, want 500 (r2) or 404 (r1)", code, body, err)
		}
	}
	st := f.waitFor("h1 reports its guard's rollback", 30*time.Second, func(st fleet.Status) bool {
		h := hostMap(st)["h1"]
		return h.Active == "r1" && h.Prepare == fleet.PrepFailed && strings.Contains(h.Reason, "guard rolled back to r1")
	})
	// Two more publications of h1's record, each after a reconcile of its
	// agent: it still serves r1.
	since := hostMap(st)["h1"].At
	f.waitFor("two more records of h1", 30*time.Second, func(st fleet.Status) bool {
		return hostMap(st)["h1"].At.After(since.Add(1500 * time.Millisecond))
	})
	if got := f.serving(); got[0] != "r1" || got[1] != "r2" || st.Active != "r2" {
		t.Errorf("hosts serve %v, fleet active %q; want h1 on r1 (its guard's word), h2 on r2", got, st.Active)
	}
}

// End-to-end tests of fleet mode: a real etcd, five fpmux hosts on this
// machine (each its own fpmux, state_dir, sockets, nginx and php-fpm
// pools, sharing one releases directory as hosts share a root path), the
// coordinator run as `fpmux fleet ...`, and load through every host judged
// as the atomicity test judges it (failed, mixed, stale).

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fleet"
	"github.com/fpmux/fpmux/fleet/etcdtest"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// fleetStack is etcd and the hosts of one app ("shop").
type fleetStack struct {
	t        *testing.T
	etcd     *etcdtest.Server
	hosts    []*stack
	names    []string
	releases string
	// auth are the fleet commands' flags for a secure etcd (-ca ...), and
	// fleetYAML the lines the hosts' fleet key gets for it.
	auth      []string
	fleetYAML string
}

// newFleet starts etcd and n hosts h1..hn; opts, when set, adds to host
// i's options. It waits until every host has registered.
func newFleet(t *testing.T, n int, opts func(i int, o *stackOptions)) *fleetStack {
	t.Helper()
	needTools(t)
	return startHosts(t, &fleetStack{t: t, etcd: etcdtest.Start(t), releases: filepath.Join(tempDir(t), "releases")}, n, opts)
}

// startHosts starts f's n hosts, as newFleet says.
func startHosts(t *testing.T, f *fleetStack, n int, opts func(i int, o *stackOptions)) *fleetStack {
	t.Helper()
	var wg sync.WaitGroup
	f.hosts = make([]*stack, n)
	for i := range n {
		f.names = append(f.names, fmt.Sprintf("h%d", i+1))
		o := f.hostOptions(f.names[i])
		if opts != nil {
			opts(i, &o)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.hosts[i] = newStack(t, o)
		}()
	}
	wg.Wait()
	for _, h := range f.hosts {
		if h == nil {
			t.FailNow()
		}
	}
	f.waitFor("every host registered", 30*time.Second, func(st fleet.Status) bool { return len(st.Hosts) == n })
	return f
}

// hostOptions are the options of fleet host name.
func (f *fleetStack) hostOptions(name string) stackOptions {
	return stackOptions{releases: f.releases,
		yaml: fmt.Sprintf("fleet:\n  etcd: [%s]\n  app: shop\n  host: %s\n", f.etcd.Endpoint(), name) + f.fleetYAML}
}

// cli runs `fpmux fleet CMD -etcd ... -app shop ARGS...` in-process.
func (f *fleetStack) cli(cmd string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append(append([]string{"fleet", cmd, "-etcd", f.etcd.Endpoint(), "-app", "shop"}, f.auth...), args...), &out, &errb)
	return code, out.String(), errb.String()
}

// status is `fpmux fleet status -json`, decoded.
func (f *fleetStack) status() fleet.Status {
	f.t.Helper()
	code, out, errs := f.cli("status", "-json")
	if code != 0 {
		f.t.Fatalf("fleet status: exit %d: %s%s", code, out, errs)
	}
	var st fleet.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.t.Fatalf("fleet status -json: %v: %s", err, out)
	}
	return st
}

func (f *fleetStack) waitFor(what string, bound time.Duration, cond func(fleet.Status) bool) fleet.Status {
	f.t.Helper()
	var st fleet.Status
	f.hosts[0].waitFor(what, bound, func() bool {
		st = f.status()
		return cond(st)
	})
	return st
}

// release writes release id in the shared releases directory.
func (f *fleetStack) release(id string) string { return f.hosts[0].newRelease(id) }

// deploy runs fleet deploy of a fresh release id and wants it to succeed.
func (f *fleetStack) deploy(id string, args ...string) string {
	f.t.Helper()
	root := f.release(id)
	code, out, errs := f.cli("deploy", append([]string{"-id", id, "-root", root, "-timeout", "2m"}, args...)...)
	if code != 0 {
		f.t.Fatalf("fleet deploy %s: exit %d:\n%s%s", id, code, out, errs)
	}
	return out
}

// deployFails runs fleet deploy of id from root under load through every
// host, wants it to exit non-zero with every one of words in its stderr,
// and returns the load's results.
func (f *fleetStack) deployFails(id, root string, words []string, args ...string) [][]loadResult {
	f.t.Helper()
	stop := make(chan struct{})
	wait := f.load(2, stop)
	code, out, errs := f.cli("deploy", append([]string{"-id", id, "-root", root, "-timeout", "2m"}, args...)...)
	close(stop)
	results := wait()
	f.t.Logf("fleet deploy %s: exit %d\n%s%s", id, code, out, errs)
	for _, w := range words {
		if code == 0 || !strings.Contains(errs, w) {
			f.t.Errorf("fleet deploy %s: exit %d, stderr %q; want non-zero and %q", id, code, errs, w)
		}
	}
	return results
}

// serving returns each host's active release, as its admin API says.
func (f *fleetStack) serving() []string {
	var out []string
	for _, h := range f.hosts {
		active := ""
		for id, r := range h.releasesByID() {
			if r.State == "active" {
				active = id
			}
		}
		out = append(out, active)
	}
	return out
}

// wantServing fails unless every host serves id.
func (f *fleetStack) wantServing(id string) {
	f.t.Helper()
	for i, got := range f.serving() {
		if got != id {
			f.t.Errorf("host %s serves %q, want %q", f.names[i], got, id)
		}
	}
}

// load sends requests through every host's nginx until stop is closed.
func (f *fleetStack) load(perHost int, stop <-chan struct{}) func() [][]loadResult {
	var waits []func() []loadResult
	for _, h := range f.hosts {
		waits = append(waits, h.runLoad(perHost, "/index.php?ms=30", stop))
	}
	return func() [][]loadResult {
		var all [][]loadResult
		for _, w := range waits {
			all = append(all, w())
		}
		return all
	}
}

// switchAt returns when host switched to release in rollout key, by its
// own clock.
func switchAt(st fleet.Status, host, release string) (time.Time, bool) {
	for _, h := range st.Hosts {
		if h.Host != host {
			continue
		}
		for _, s := range slices.Backward(h.Switches) {
			if s.Release == release {
				return s.At, true
			}
		}
	}
	return time.Time{}, false
}

// judgeHosts judges each host's load: from the start on from, then from
// its own switch to id on (by its timestamp), id; none may fail, be mixed
// or be stale.
func (f *fleetStack) judgeHosts(results [][]loadResult, from, id string, st fleet.Status) {
	f.t.Helper()
	for i, rs := range results {
		marks := []deployMark{{from, time.Time{}}}
		if at, ok := switchAt(st, f.names[i], id); ok {
			marks = append(marks, deployMark{id, at})
		}
		fig, examples := judge(rs, marks)
		f.t.Logf("host %s: sent=%d failed=%d mixed=%d stale=%d", f.names[i], fig.sent, fig.failed, fig.mixed, fig.stale)
		if fig.sent == 0 || fig.failed+fig.mixed+fig.stale > 0 {
			f.t.Errorf("host %s: sent=%d failed=%d mixed=%d stale=%d; first ones: %v", f.names[i], fig.sent, fig.failed, fig.mixed, fig.stale, examples[:min(len(examples), 5)])
		}
	}
}

// TestFleetDeployOneBatch: a fleet deploy under load through every host
// switches all five in one batch; no request fails, mixes or is stale.
func TestFleetDeployOneBatch(t *testing.T) {
	f := newFleet(t, 5, nil)
	f.deploy("r1")
	f.wantServing("r1")

	stop := make(chan struct{})
	wait := f.load(2, stop)
	time.Sleep(300 * time.Millisecond) // load before the switch, for the judge
	out := f.deploy("r2")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	results := wait()
	st := f.status()
	t.Logf("fleet deploy r2:\n%s", out)
	f.wantServing("r2")
	if st.Active != "r2" || st.Rollout == nil || st.Rollout.State != fleet.StateDone || len(st.Batches) != 1 {
		t.Errorf("status after the deploy: active %q rollout %+v batches %d", st.Active, st.Rollout, len(st.Batches))
	}
	f.judgeHosts(results, "r1", "r2", st)
	first, last, n := fleet.Spread(hostMap(st), st.Rollout.Key, 1)
	t.Logf("switch spread of the batch: %d hosts within %v", n, last.Sub(first))
	if n != 5 {
		t.Errorf("%d hosts reported their switch in batch 1, want 5", n)
	}
}

func hostMap(st fleet.Status) map[string]fleet.HostRecord {
	m := map[string]fleet.HostRecord{}
	for _, h := range st.Hosts {
		m[h.Host] = h
	}
	return m
}

// TestFleetDeployBatchesOfTwo: -batch 2 switches the five hosts as 2, 2
// and 1, and by the hosts' own timestamps never more than 2 switched
// between two batch records; the load through every host sees no failed,
// mixed or stale answer.
func TestFleetDeployBatchesOfTwo(t *testing.T) {
	f := newFleet(t, 5, nil)
	f.deploy("r1")
	stop := make(chan struct{})
	wait := f.load(2, stop)
	time.Sleep(300 * time.Millisecond)
	f.deploy("r2", "-batch", "2")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	results := wait()
	st := f.status()
	f.wantServing("r2")
	f.judgeHosts(results, "r1", "r2", st)
	if len(st.Batches) != 3 {
		t.Fatalf("%d batches written, want 3: %+v", len(st.Batches), st.Batches)
	}
	// The picture of this rollout: FPMUX_FLEET_PICTURE=$PWD/docs/fleet-rollout.svg
	// makes docs/fleet.md's.
	picture := os.Getenv("FPMUX_FLEET_PICTURE")
	if picture == "" {
		picture = filepath.Join(t.TempDir(), "rollout.svg")
	}
	if code, _, errs := f.cli("status", "-svg", picture); code != 0 {
		t.Errorf("fleet status -svg: exit %d: %s", code, errs)
	} else if b, err := os.ReadFile(picture); err != nil || strings.Count(string(b), "<line") != 3 || !strings.Contains(string(b), "rollout of r2 (from r1)") {
		t.Errorf("fleet status -svg wrote %q, %v; want the rollout with 3 batch lines", b, err)
	}
	var switches []time.Time
	for _, name := range f.names {
		at, ok := switchAt(st, name, "r2")
		if !ok {
			t.Fatalf("host %s reported no switch to r2", name)
		}
		switches = append(switches, at)
	}
	for i, b := range st.Batches {
		end := time.Now().Add(time.Hour)
		if i+1 < len(st.Batches) {
			end = st.Batches[i+1].At
		}
		n := 0
		for _, at := range switches {
			if !at.Before(b.At) && at.Before(end) {
				n++
			}
		}
		t.Logf("batch %d %v: %d hosts switched before the next batch record", b.N, b.Hosts, n)
		if n > 2 {
			t.Errorf("batch %d: %d hosts switched between its record and the next, want at most 2", b.N, n)
		}
		for _, h := range b.Hosts {
			if at, _ := switchAt(st, h, "r2"); at.Before(b.At) {
				t.Errorf("host %s switched at %v, before its batch %d was written at %v", h, at, b.N, b.At)
			}
		}
	}
}

// TestFleetPrepareFailure: a host whose health check refuses the release
// aborts the rollout: the command exits non-zero naming the host and its
// reason, no host switched, and the release is retired everywhere.
func TestFleetPrepareFailure(t *testing.T) {
	f := newFleet(t, 5, func(i int, o *stackOptions) {
		if i == 2 {
			o.yaml += "health:\n  - path: /missing-health.php\n"
		}
	})
	// r1 passes h3's check: it has the file.
	root := f.release("r1")
	if err := os.WriteFile(filepath.Join(root, "missing-health.php"), []byte("<?php echo 'ok';"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := f.cli("deploy", "-id", "r1", "-root", root); code != 0 {
		t.Fatalf("fleet deploy r1: exit %d: %s%s", code, out, errs)
	}
	results := f.deployFails("r2", f.release("r2"), []string{"host h3 could not prepare r2", "404", "nothing switched"})
	f.wantServing("r1")
	f.judgeHosts(results, "r1", "none", f.status())
	for i, h := range f.hosts {
		h.waitFor("r2 retired on "+f.names[i], 30*time.Second, func() bool {
			r, ok := h.releasesByID()["r2"]
			return !ok || r.State == "retired" || r.State == "failed"
		})
	}
	if st := f.status(); st.Rollout.State != fleet.StateAborted || st.Active != "r1" || len(st.Batches) != 0 {
		t.Errorf("after the abort: rollout %s, active %q, %d batches", st.Rollout.State, st.Active, len(st.Batches))
	}
}

// TestFleetCanaryErrors: a release whose pages answer 500 is switched on
// the canary host only, judged by the figures it publishes, and rolled
// back there; the other hosts never leave r1, and the command fails.
func TestFleetCanaryErrors(t *testing.T) {
	f := newFleet(t, 5, nil)
	f.deploy("r1")
	root := f.release("r2")
	broken := "<?php http_response_code(500); echo 'param=r2 files=broken@r2', \"\\n\";"
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	results := f.deployFails("r2", root, []string{"rolled back to r1", "5xx"},
		"-canary", "1", "-canary-wait", "20s", "-min-requests", "10")
	f.wantServing("r1")
	st := f.status()
	if st.Rollout.State != fleet.StateRolledBack || st.Active != "r1" || len(st.Batches) != 1 {
		t.Errorf("after the canary: rollout %s, active %q, %d batches", st.Rollout.State, st.Active, len(st.Batches))
	}
	// Only the canary (h1) ever served r2.
	for i, rs := range results {
		for _, r := range rs {
			if strings.Contains(r.body, "r2") && i != 0 {
				t.Errorf("host %s served r2: %q", f.names[i], r.body)
				break
			}
		}
	}
}

// TestFleetSecondCoordinatorRefused: while a coordinator holds the app's
// lock, another fleet deploy is refused at once and changes nothing.
func TestFleetSecondCoordinatorRefused(t *testing.T) {
	f := newFleet(t, 1, nil)
	f.deploy("r1")
	c := f.etcd.Client(t)
	sess, err := concurrency.NewSession(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	m := concurrency.NewMutex(sess, "/fpmux/shop/lock/")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, out, errs := f.cli("deploy", "-id", "r2", "-root", f.release("r2"))
	if code == 0 || !strings.Contains(errs, "holds the app's lock") {
		t.Errorf("second coordinator: exit %d: %s%s; want it refused", code, out, errs)
	}
	if code, _, errs := f.cli("rollback"); code == 0 || !strings.Contains(errs, "holds the app's lock") {
		t.Errorf("rollback under another's lock: exit %d: %s", code, errs)
	}
	f.wantServing("r1")
	if st := f.status(); st.Rollout.ID != "r1" {
		t.Errorf("the refused deploy wrote a rollout of %s", st.Rollout.ID)
	}
}

// TestNoFleetKeyNoAgent: without the fleet key fpmux starts no agent,
// registers no fleet metric and deploys as before.
func TestNoFleetKeyNoAgent(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	if v := s.metric("fpmux_fleet_etcd_up"); v != -1 {
		t.Errorf("fpmux_fleet_etcd_up = %v without a fleet key, want no such series", v)
	}
	if strings.Contains(s.logBuf.String(), "fleet") {
		t.Errorf("fpmux logged about a fleet without the key:\n%s", s.logBuf.String())
	}
	code, body, err := s.get(newHTTPClient(), "/index.php?ms=0")
	if rel, _, _ := servedBy(body); err != nil || code != 200 || rel != "r1" {
		t.Errorf("GET: %d %q %v, want r1", code, body, err)
	}
}

package supervisor

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// TestReloadPools: a reload gives the active release a fresh pool under
// the configuration in force and leaves the kept previous release, the
// rollback target, alone; a reload whose pool does not start leaves the
// pool before serving; with no active release there is nothing to reload.
func TestReloadPools(t *testing.T) {
	k := newKeepStack(t, 1, time.Hour)
	if _, err := k.s.ReloadPools(t.Context()); !isStatus(err, 409) || !strings.Contains(err.Error(), "no release is active") {
		t.Fatalf("reload with no active release: %v, want 409", err)
	}
	k.deploy("r1")
	k.deploy("r2")
	k.waitState("r1", StateReady) // kept: keep_previous 1
	before := k.pid("r2")

	cfg := *k.s.conf()
	cfg.PHPFPM.Pool = map[string]string{"pm": "static", "pm.max_children": "3"}
	if _, err := k.s.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	rel, err := k.s.ReloadPools(t.Context())
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if rel.ID != "r2" || rel.State != StateActive || rel.Generation != 1 || rel.PoolReloadedAt == nil || rel.Pool == nil || rel.Pool.Pid == before {
		t.Errorf("after the reload: %+v, want r2 active on a fresh pool, generation 1", rel)
	}
	if got := k.get("r2"); got.Pool == nil || got.Pool.TotalProcesses == nil || *got.Pool.TotalProcesses != 3 {
		t.Errorf("the fresh pool's processes: %+v, want 3 (pm.max_children now)", got.Pool)
	}
	if r1 := k.get("r1"); r1.State != StateReady || !r1.RollbackTarget {
		t.Errorf("r1 after the reload: %s, rollback target %v; want ready and the rollback target", r1.State, r1.RollbackTarget)
	}
	k.waitGone(before)

	bad := cfg
	bad.PHPFPM.Binary = "/bin/false"
	if _, err := k.s.Reload(&bad); err != nil {
		t.Fatal(err)
	}
	kept := k.pid("r2")
	if _, err := k.s.ReloadPools(t.Context()); !isStatus(err, 502) {
		t.Errorf("reload with a php-fpm that does not start: %v, want 502", err)
	}
	if got := k.get("r2"); got.State != StateActive || got.Generation != 1 || got.Pool == nil || got.Pool.Pid != kept {
		t.Errorf("after the failed reload: %+v, want generation 1 serving on, pid %d", got, kept)
	}
}

func isStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// waitGone polls until process pid is gone (or a zombie), for up to 20 s.
func (k *keepStack) waitGone(pid int) {
	k.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, err := proc.ReadStat(pid); err != nil || !st.Live() {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("process %d still runs after 20s", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

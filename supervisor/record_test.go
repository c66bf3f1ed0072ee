package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/pool"
)

// TestUnrecordedActivationIsRefused puts a directory where state.json is
// to be replaced, which stops root too (rename(2) of a file over a
// directory fails): a deploy or an activation that cannot be recorded must
// not switch, since the next fpmux would bring back the release state.json
// still names. Once state.json can be written, activation works again.
func TestUnrecordedActivationIsRefused(t *testing.T) {
	if _, err := pool.FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("php-fpm is required on CI: %v", err)
		}
		t.Skipf("php-fpm not installed: %v", err)
	}
	s, dir := newTestSupervisor(t)
	// php-fpm workers (www-data when the tests run as root) chdir into
	// the release.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	newRoot := func(id string) string {
		root := filepath.Join(dir, "releases", id)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "index.php"), []byte("<?php echo 1;"), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	ctx := t.Context()
	if _, err := s.Deploy(ctx, DeployRequest{ID: "r1", Root: newRoot("r1"), Activate: true}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(s.conf().StateDir, stateFile)
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}

	rel, err := s.Deploy(ctx, DeployRequest{ID: "r2", Root: newRoot("r2"), Activate: true})
	var e *Error
	if !errors.As(err, &e) || e.Status != 500 || !strings.Contains(e.Msg, stateFile) || !strings.Contains(e.Msg, "release r1 keeps serving") {
		t.Fatalf("deploy with state.json not writable: %v, want a 500 naming state.json and r1", err)
	}
	if rel.State != StateFailed || s.ActiveID() != "r1" {
		t.Errorf("after the refused deploy: r2 %s, active %q; want failed and r1", rel.State, s.ActiveID())
	}
	if pools, _ := os.ReadDir(s.poolsDir()); len(pools) != 1 || pools[0].Name() != "r1" {
		t.Errorf("pool dirs after the refused deploy: %v, want only r1 (r2's pool stopped)", pools)
	}

	if _, err := s.Deploy(ctx, DeployRequest{ID: "r3", Root: newRoot("r3")}); err != nil {
		t.Fatalf("deploy without activation needs no record: %v", err)
	}
	if _, err := s.Activate("r3"); !errors.As(err, &e) || e.Status != 500 {
		t.Errorf("activate with state.json not writable: %v, want a 500", err)
	}
	if r3, _ := s.Get(ctx, "r3"); r3.State != StateReady || s.ActiveID() != "r1" {
		t.Errorf("after the refused activation: r3 %s, active %q; want ready and r1", r3.State, s.ActiveID())
	}

	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Activate("r3"); err != nil {
		t.Fatalf("activate once state.json can be written: %v", err)
	}
	st, err := readState(s.conf().StateDir)
	if err != nil || st.Active == nil || st.Active.ID != "r3" || len(st.History) != 1 || st.History[0].ID != "r1" {
		t.Errorf("state.json after the activation: %+v %v, want r3 active after r1", st, err)
	}
}

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/pool"
)

// newPoolSupervisor returns a test supervisor whose releases run real
// php-fpm pools (the test is skipped without php-fpm, and fails under CI),
// and a function that writes a release root for an id.
func newPoolSupervisor(t *testing.T) (*Supervisor, func(id string) string) {
	t.Helper()
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
	return s, func(id string) string {
		root := filepath.Join(dir, "releases", id)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "index.php"), []byte("<?php echo 1;"), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
}

// TestUnrecordedActivationIsRefused puts a directory where state.json is
// to be replaced, which stops root too (rename(2) of a file over a
// directory fails): a deploy or an activation that cannot be recorded must
// not switch, since the next fpmux would bring back the release state.json
// still names. Once state.json can be written, activation works again.
func TestUnrecordedActivationIsRefused(t *testing.T) {
	s, newRoot := newPoolSupervisor(t)
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

// recordingFS is a stateFS that logs each step and fails syncDir while
// failSync is set.
type recordingFS struct {
	steps    []string
	failSync bool
}

func (r *recordingFS) fs() stateFS {
	return stateFS{
		rename: func(oldpath, newpath string) error {
			r.steps = append(r.steps, "rename "+filepath.Base(newpath))
			return os.Rename(oldpath, newpath)
		},
		syncDir: func(dir string) error {
			r.steps = append(r.steps, "fsync "+filepath.Base(dir))
			if r.failSync {
				return errors.New("injected EIO")
			}
			return syncDir(dir)
		},
	}
}

// TestStateWriteSyncsTheDirectory checks that state.json is renamed into
// place and then its directory fsynced (without which a power loss can
// lose the rename), and that a failing fsync of the directory fails the
// write and puts back the file as it was, or removes it when there was
// none.
func TestStateWriteSyncsTheDirectory(t *testing.T) {
	before := persisted{Active: &histEntry{"r1", "/srv/r1"}}
	next := persisted{Active: &histEntry{"r2", "/srv/r2"}, History: []histEntry{{"r1", "/srv/r1"}}}
	tests := []struct {
		name      string
		existing  *persisted
		failSync  bool
		wantSteps []string
		wantErr   bool
		want      *persisted // state.json afterwards; nil: none
	}{
		{"first write", nil, false, []string{"rename state.json", "fsync state"}, false, &next},
		{"replace", &before, false, []string{"rename state.json", "fsync state"}, false, &next},
		{"fsync fails, previous put back", &before, true,
			[]string{"rename state.json", "fsync state", "rename state.json", "fsync state"}, true, &before},
		{"fsync fails, no previous", nil, true, []string{"rename state.json", "fsync state", "fsync state"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if tt.existing != nil {
				if err := osStateFS.write(dir, *tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			rec := &recordingFS{failSync: tt.failSync}
			err := rec.fs().write(dir, next)
			if (err != nil) != tt.wantErr || (err != nil && !strings.Contains(err.Error(), "injected EIO")) {
				t.Errorf("write: %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(rec.steps, tt.wantSteps) {
				t.Errorf("steps %q, want %q", rec.steps, tt.wantSteps)
			}
			got, err := os.ReadFile(filepath.Join(dir, stateFile))
			switch {
			case tt.want == nil && !errors.Is(err, os.ErrNotExist):
				t.Errorf("state.json afterwards: %q %v, want none", got, err)
			case tt.want != nil:
				if err != nil || !strings.Contains(string(got), fmt.Sprintf("%q", tt.want.Active.ID)) {
					t.Errorf("state.json afterwards: %q %v, want it to name %s", got, err, tt.want.Active.ID)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 1 {
				t.Errorf("state dir holds %d entries, want no temp file left", len(entries))
			}
		})
	}
}

// TestUnsyncedActivationIsRefused: a deploy whose switch is renamed into
// state.json but whose directory fsync fails is refused like one that
// cannot be written (500, the active release keeps serving, the new pool
// is stopped), and state.json names the active release again.
func TestUnsyncedActivationIsRefused(t *testing.T) {
	s, newRoot := newPoolSupervisor(t)
	ctx := t.Context()
	if _, err := s.Deploy(ctx, DeployRequest{ID: "r1", Root: newRoot("r1"), Activate: true}); err != nil {
		t.Fatal(err)
	}
	rec := &recordingFS{failSync: true}
	s.mu.Lock()
	s.stateFS = rec.fs()
	s.mu.Unlock()
	rel, err := s.Deploy(ctx, DeployRequest{ID: "r2", Root: newRoot("r2"), Activate: true})
	var e *Error
	if !errors.As(err, &e) || e.Status != 500 || !strings.Contains(e.Msg, "injected EIO") || !strings.Contains(e.Msg, "release r1 keeps serving") {
		t.Fatalf("deploy whose directory fsync fails: %v, want a 500 naming the error and r1", err)
	}
	if rel.State != StateFailed || s.ActiveID() != "r1" {
		t.Errorf("after the refused deploy: r2 %s, active %q; want failed and r1", rel.State, s.ActiveID())
	}
	if pools, _ := os.ReadDir(s.poolsDir()); len(pools) != 1 || pools[0].Name() != "r1" {
		t.Errorf("pool dirs after the refused deploy: %v, want only r1 (r2's pool stopped)", pools)
	}
	if st, err := readState(s.conf().StateDir); err != nil || st.Active.ID != "r1" {
		t.Errorf("state.json after the refused deploy: %+v %v, want r1 active", st, err)
	}
}

// TestReadStateRefusesWhatFpmuxNeverWrote: a state.json that names no
// active release with an id and a root is not one fpmux wrote; reading it
// fails with a message that names the file and what to move away, rather
// than leaving fpmux to start with no release.
func TestReadStateRefusesWhatFpmuxNeverWrote(t *testing.T) {
	for _, content := range []string{
		"", "null", "{}", `{"current": "r1"}`, "\x00\x00\x00\x00", `{"active": {"id": "r1", "root": "/srv/r1"`,
		`{"active": {"id": "", "root": ""}}`, `{"active": {"id": "r2", "root": "/srv/r2"}, "history": [{"id": "r1"}]}`,
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, stateFile)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := readState(dir)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "mv "+path+" "+path+".broken") {
			t.Errorf("state.json %q: %+v %v, want an error naming it and what to move away", content, st, err)
		}
	}
}

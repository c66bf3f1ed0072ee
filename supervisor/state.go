// This file owns what survives a restart of fpmux: state.json in state_dir,
// naming the active release and the ones before it, and bringing the active
// one back before fpmux serves again.

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fpmux/fpmux/pool"
)

const stateFile = "state.json"

// persisted is state.json.
type persisted struct {
	Active  *histEntry  `json:"active"`
	History []histEntry `json:"history"`
}

// recordLocked writes state.json, naming active and the releases before
// it, atomically (temp file, fsync, rename). While fpmux shuts down it
// writes nothing: the file keeps naming the release to bring back.
func (s *Supervisor) recordLocked(active *release, history []histEntry) error {
	if s.stopping {
		return nil
	}
	return writeState(s.conf().StateDir, persisted{Active: &histEntry{active.id, active.root}, History: history})
}

func writeState(dir string, st persisted) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	f, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write state %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write state %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write state %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func readState(dir string) (persisted, error) {
	var st persisted
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// Restore is called once before serving: it stops php-fpm masters a
// previous fpmux left behind (killed before it could stop them), then
// starts the release that was active and activates it. A release that no
// longer starts is logged and left out: fpmux then serves 503 until the
// next deploy, rather than not starting at all.
func (s *Supervisor) Restore(ctx context.Context) error {
	if err := os.MkdirAll(s.poolsDir(), 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s.reapStalePools()
	if link := s.conf().Symlink; link != "" {
		removeSymlinkTemps(link)
	}
	st, err := readState(s.conf().StateDir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s.mu.Lock()
	s.history = st.History
	s.mu.Unlock()
	if st.Active == nil {
		return nil
	}
	s.log.Info("restoring the active release", "release", st.Active.ID, "root", st.Active.Root)
	if _, err := s.deploy(ctx, DeployRequest{ID: st.Active.ID, Root: st.Active.Root, Activate: true}, true); err != nil {
		s.log.Error("could not restore the active release; serving 503 until the next deploy", "release", st.Active.ID, "err", err)
		return nil
	}
	return nil
}

// reapStalePools stops what a killed fpmux left in state_dir/pools: each
// pool directory's php-fpm master (found by its pid file and checked to be
// php-fpm) with its whole process group, then the directory itself.
func (s *Supervisor) reapStalePools() {
	entries, err := os.ReadDir(s.poolsDir())
	if err != nil {
		s.log.Warn("look for stale pools", "err", err)
		return
	}
	for _, e := range entries {
		dir := filepath.Join(s.poolsDir(), e.Name())
		killed, err := pool.Reap(dir)
		if err != nil {
			s.log.Warn("stale pool", "release", e.Name(), "err", err)
			continue
		}
		if killed > 0 {
			s.log.Warn("stopped a php-fpm master left by a previous fpmux", "release", e.Name(), "pid", killed)
		}
	}
}

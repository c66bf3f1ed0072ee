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
// it, durably (see stateFS.write). While fpmux shuts down it writes
// nothing: the file keeps naming the release to bring back.
func (s *Supervisor) recordLocked(active *release, history []histEntry) error {
	if s.stopping {
		return nil
	}
	return s.stateFS.write(s.conf().StateDir, persisted{Active: &histEntry{active.id, active.root}, History: history})
}

// stateFS holds the file system steps of writing state.json whose order
// makes a switch durable; a test swaps them to watch the order and to make
// one fail.
type stateFS struct {
	rename  func(oldpath, newpath string) error
	syncDir func(dir string) error
}

var osStateFS = stateFS{rename: os.Rename, syncDir: syncDir}

// syncDir fsyncs a directory: what makes a rename in it survive a power
// loss, which fsyncing the file renamed does not.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// write replaces state.json in dir with st: a temp file, fsynced, renamed
// over state.json, then the directory fsynced. Only then is the switch
// recorded: without the directory's fsync a power loss can lose the rename,
// and the next fpmux would bring back the release before a deploy that
// answered 201. When the directory's fsync fails, the rename may or may not
// last, so the file as it was is put back (best effort) and the record
// fails: the caller does not switch.
func (fs stateFS) write(dir string, st persisted) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	path := filepath.Join(dir, stateFile)
	was, wasErr := os.ReadFile(path)
	if err := fs.replace(dir, append(b, '\n')); err != nil {
		return err
	}
	if err := fs.syncDir(dir); err != nil {
		err = fmt.Errorf("write state %s: fsync %s after the rename: %w", path, dir, err)
		switch {
		case wasErr == nil:
			if uerr := fs.replace(dir, was); uerr != nil {
				err = errors.Join(err, fmt.Errorf("put the previous state back: %w", uerr))
			}
		case errors.Is(wasErr, os.ErrNotExist):
			if uerr := os.Remove(path); uerr != nil {
				err = errors.Join(err, fmt.Errorf("put the previous state back: %w", uerr))
			}
		}
		_ = fs.syncDir(dir)
		return err
	}
	return nil
}

// replace writes b to a temp file in dir, fsyncs it and renames it over
// state.json.
func (fs stateFS) replace(dir string, b []byte) error {
	f, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
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
	if err := fs.rename(f.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// readState reads state.json in dir; no file is no state (a first start).
// A file that cannot be read, or does not name an active release with its
// id and root (fpmux writes none that does not), is an error that says
// how to recover: fpmux must not guess which release to serve, nor
// silently serve none.
func readState(dir string) (persisted, error) {
	var st persisted
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err == nil {
		err = st.check()
	}
	if err != nil {
		return persisted{}, fmt.Errorf("read state %s: %w; it names the release fpmux serves after a restart, "+
			"so fpmux does not start without it. To start with no active release, move it away (mv %s %s.broken) "+
			"and start fpmux again, then deploy the release to serve", path, err, path, path)
	}
	return st, nil
}

// check tells whether st is a state fpmux writes: an active release and
// history entries, each with an id and a root.
func (st persisted) check() error {
	if st.Active == nil {
		return errors.New("no active release in it")
	}
	for _, e := range append([]histEntry{*st.Active}, st.History...) {
		if e.ID == "" || e.Root == "" {
			return fmt.Errorf("a release without an id or root in it (%+v)", e)
		}
	}
	return nil
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

// This file owns the `current` symlink (config key symlink): at each
// activation, and for the release a restart brings back, fpmux points it at
// the active release's real root, so what the web server serves itself
// (static files, try_files) comes from the release PHP runs.

package supervisor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// symlinkTempInfix marks the temporary links swapSymlink makes next to the
// link: <link>.fpmux-<random>.
const symlinkTempInfix = ".fpmux-"

// checkSymlink returns an error when link exists and is not a symlink: a
// real directory or file there is the operator's, and fpmux does not
// replace it. A link that does not exist yet is fine.
func checkSymlink(link string) error {
	if link == "" {
		return nil
	}
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("symlink %s: %w", link, err)
	case fi.Mode()&os.ModeSymlink == 0:
		what := "a file"
		if fi.IsDir() {
			what = "a directory"
		}
		return fmt.Errorf("symlink %s exists and is %s, not a symlink: fpmux does not replace it; "+
			"move it away (it becomes the link at the next activation) or set symlink to another path", link, what)
	}
	return nil
}

// swapSymlink points link at target in one step: a new symlink
// <link>.fpmux-<random> is made next to it and renamed over it (rename(2)
// is atomic), so the web server finds either the old target or the new
// one, never no link. It refuses to replace anything but a symlink, and
// leaves no temporary link behind when it fails.
func swapSymlink(link, target string) error {
	if err := checkSymlink(link); err != nil {
		return err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("symlink %s: %w", link, err)
	}
	tmp := link + symlinkTempInfix + hex.EncodeToString(rnd[:])
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("symlink %s: %w", link, err)
	}
	return nil
}

// removeSymlinkTemps removes the temporary links a killed fpmux may have
// left next to link (only symlinks, only with swapSymlink's name).
func removeSymlinkTemps(link string) {
	matches, _ := filepath.Glob(link + symlinkTempInfix + "*")
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			os.Remove(m)
		}
	}
}

// pointSymlinkLocked points the configured symlink, if any, at r's root.
// activateLocked calls it once state.json names r and before the active
// pointer moves, so from the first request pinned to r the web server's
// static files are r's too. A failure is logged and counted
// (fpmux_symlink_errors_total) and does not undo the switch: state.json
// already names r, and the old release starts draining either way; PHP is
// served from r whatever the link says, and the next activation (or a
// restart) sets the link again. The caller holds s.mu.
func (s *Supervisor) pointSymlinkLocked(r *release) {
	link := s.conf().Symlink
	if link == "" {
		return
	}
	if err := swapSymlink(link, r.root); err != nil {
		s.m.SymlinkErrors.Inc()
		s.log.Error("the symlink could not be pointed at the active release; the web server's static files are not in step",
			"release", r.id, "symlink", link, "target", r.root, "err", err)
		return
	}
	s.log.Info("symlink points at the release", "release", r.id, "symlink", link, "target", r.root)
}

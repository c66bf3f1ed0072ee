// This file owns `fpmux check`, fpmux's `php-fpm -t`: it loads a config as
// serve would, then checks that what the config names is there and usable
// (docroot's parent, allowed_roots, state_dir, symlink's directory,
// admin_owner and admin_group, the php-fpm binary), prints every problem and exits 0 or 1, so a config
// change or a new host is tested before fpmux runs with it.

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/fpmux/fpmux/config"
)

func runCheck(args []string, stdout, stderr io.Writer) int {
	cfgPath, code, ok := parseConfigFlag("check", "YAML config `file` to test; empty: the embedded defaults", args, stderr)
	if !ok {
		return code
	}
	name := cfgPath
	if name == "" {
		name = "embedded defaults"
	}
	problems, phpLine := checkConfig(cfgPath)
	for _, p := range problems {
		fmt.Fprintf(stderr, "fpmux check: %s\n", p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "fpmux check: %s: %d problem(s)\n", name, len(problems))
		return 1
	}
	fmt.Fprintf(stdout, "fpmux check: %s: ok (%s)\n", name, phpLine)
	return 0
}

// checkConfig returns every problem with the config at path ("" for the
// embedded defaults), one line each, and on success php-fpm's version line
// with its path. A config that does not load gives its own problems only:
// what it names cannot be trusted yet.
func checkConfig(path string) (problems []string, php string) {
	cfg, err := config.Load(path)
	if err != nil {
		var errs []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		} else {
			errs = []error{err}
		}
		for _, e := range errs {
			problems = append(problems, e.Error())
		}
		return problems, ""
	}
	c := &checker{cfg: cfg}
	c.docroot()
	c.allowedRoots()
	c.stateDir()
	c.symlink()
	c.adminAccounts()
	php = c.phpFPM()
	// Issue 14 adds here: render the pool config of a sample release
	// from cfg (as pool.Start would) into a temp dir and run the php-fpm
	// found above with -t on it, each complaint a problem.
	return c.problems, php
}

// checker gathers the problems of one config's paths.
type checker struct {
	cfg      *config.Config
	problems []string
}

// add records a problem with key.
func (c *checker) add(key, format string, args ...any) {
	c.problems = append(c.problems, c.where(key)+": "+fmt.Sprintf(format, args...))
}

// where names key and, when the file set it, its line.
func (c *checker) where(key string) string {
	if line := c.cfg.KeyLine(key); line > 0 {
		return fmt.Sprintf("%s (line %d)", key, line)
	}
	return key
}

// docroot: the path itself need not exist (fpmux maps it onto a release
// root; with symlink it may be the link fpmux makes), but the directory it
// lies in must, or nginx's root and a symlink there cannot be.
func (c *checker) docroot() {
	parent := filepath.Dir(c.cfg.Docroot)
	if err := isDir(parent); err != nil {
		c.add("docroot", "%s: its directory %v: create it (the web server's root lies in it)", c.cfg.Docroot, err)
	}
}

// allowedRoots: each must be a directory, or no deploy can pass.
func (c *checker) allowedRoots() {
	for i, r := range c.cfg.AllowedRoots {
		if err := isDir(r); err != nil {
			c.add(fmt.Sprintf("allowed_roots[%d]", i), "%v: create it, or no release root can lie under it", err)
		}
	}
}

// stateDir: serve creates it when missing (as systemd's StateDirectory=
// does), so then the nearest directory above must be writable.
func (c *checker) stateDir() {
	dir := c.cfg.StateDir
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		c.add("state_dir", "%s is not a directory", dir)
		return
	case errors.Is(err, fs.ErrNotExist):
		up := existingAncestor(dir)
		if err := writableDir(up); err != nil {
			c.add("state_dir", "%s does not exist and cannot be created: %v", dir, err)
		}
		return
	case err != nil:
		c.add("state_dir", "%v", err)
		return
	}
	if err := writableDir(dir); err != nil {
		c.add("state_dir", "%v: fpmux writes pool configs, sockets and state.json there", err)
	}
}

// symlink: fpmux renames a new link into its directory at each activation.
func (c *checker) symlink() {
	if c.cfg.Symlink == "" {
		return
	}
	if err := writableDir(filepath.Dir(c.cfg.Symlink)); err != nil {
		c.add("symlink", "%s: fpmux makes the link in its directory: %v", c.cfg.Symlink, err)
	}
}

// adminAccounts: serve refuses to start when admin_owner or admin_group
// names no user or group of this host.
func (c *checker) adminAccounts() {
	for _, a := range []struct {
		key, name string
		lookup    func(string) (string, error)
	}{{"admin_owner", c.cfg.AdminOwner, lookupUID}, {"admin_group", c.cfg.AdminGroup, lookupGID}} {
		if _, err := accountID(c.where(a.key), a.name, a.lookup); err != nil {
			c.problems = append(c.problems, err.Error())
		}
	}
}

// phpFPM: the binary a pool would run must run and say it is PHP.
func (c *checker) phpFPM() string {
	path, line, err := phpFPMVersion(c.cfg.PHPFPM.Binary)
	if err != nil {
		c.add("php_fpm.binary", "%v", err)
		return ""
	}
	return line + ", " + path
}

// isDir is nil when p is a directory (through symlinks), else why not.
func isDir(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", p)
	}
	return nil
}

// writableDir is nil when p is a directory this process may create files
// in (access(2) with W_OK and X_OK: permissions and a read-only mount).
func writableDir(p string) error {
	if err := isDir(p); err != nil {
		return err
	}
	if err := syscall.Access(p, 0o2|0o1); err != nil {
		return fmt.Errorf("%s is not writable by uid %d: %w", p, os.Geteuid(), err)
	}
	return nil
}

// existingAncestor is the nearest directory above p that exists ("/" at
// worst).
func existingAncestor(p string) string {
	for {
		p = filepath.Dir(p)
		if _, err := os.Stat(p); err == nil || p == "/" {
			return p
		}
	}
}

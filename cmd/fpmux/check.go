// This file owns `fpmux check`, fpmux's `php-fpm -t`: it loads a config as
// serve would, then checks that what the config names is there and usable
// (docroot's parent, allowed_roots, state_dir, symlink's directory,
// admin_owner and admin_group, the php-fpm binary), checks php_fpm by
// php-fpm's rules as a deploy would, runs php-fpm -t on the pool config of
// a sample release, prints every problem and exits 0 or 1, so a config
// change or a new host is tested before fpmux runs with it. serve refuses
// to start on the subset that would fail every deploy (servable).

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/pool"
	"github.com/fpmux/fpmux/supervisor"
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
	problems, warnings, phpLine := checkConfig(cfgPath)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "fpmux check: warning: %s\n", w)
	}
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
func checkConfig(path string) (problems, warnings []string, php string) {
	cfg, err := config.Load(path)
	if err != nil {
		for _, e := range unjoinErr(err) {
			problems = append(problems, e.Error())
		}
		return problems, nil, ""
	}
	c := &checker{cfg: cfg}
	c.docroot()
	c.allowedRoots()
	c.stateDir()
	c.symlink()
	c.adminAccounts()
	php = c.phpFPM()
	if st := c.settings(); st != nil && php != "" {
		c.sample(st)
	}
	return c.problems, c.warnings, php
}

// servable returns what fpmux serve refuses to start with besides what
// config.Validate finds: what would fail every deploy. php-fpm's rules
// over php_fpm (supervisor.PHPFPMSettings), a missing allowed_roots
// directory, a php-fpm that does not run.
func servable(cfg *config.Config) []string {
	c := &checker{cfg: cfg}
	c.allowedRoots()
	c.phpFPM()
	c.settings()
	return c.problems
}

// settings checks php_fpm by php-fpm's rules, as a deploy would, and
// returns the settings; nil with the problems recorded.
func (c *checker) settings() *pool.Settings {
	st, err := supervisor.PHPFPMSettings(c.cfg)
	if err != nil {
		for _, e := range unjoinErr(err) {
			c.problems = append(c.problems, e.Error())
		}
		return nil
	}
	c.warnings = append(c.warnings, st.Warnings...)
	return st
}

// sample renders the pool config of a sample release (id "check", a
// temporary directory as its root) as a deploy would and runs php-fpm -t
// on it: what php-fpm itself refuses (an unknown directive, a bad value)
// is found before a deploy.
func (c *checker) sample(st *pool.Settings) {
	root, err := os.MkdirTemp("", "fpmux-check-")
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("php-fpm -t: %v", err))
		return
	}
	defer os.RemoveAll(root)
	const id = "check"
	err = pool.Test(context.Background(), pool.Options{
		ID: id, Root: root, Dir: filepath.Join(root, "pool"), Binary: c.cfg.PHPFPM.Binary,
		Ini:        pool.ExpandAll(st.Ini, id, root),
		Directives: pool.ExpandAll(st.Directives, id, root),
		Global:     pool.ExpandAll(st.Global, id, root),
		Bare:       st.Bare,
	})
	if err != nil {
		c.problems = append(c.problems, "php_fpm: "+err.Error())
	}
}

func unjoinErr(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checker gathers the problems of one config's paths.
type checker struct {
	cfg      *config.Config
	problems []string
	warnings []string // directives of the php-fpm files dropped (pool.Settings.Warnings)
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

// This file owns `fpmux version`: fpmux's version and commit, the Go that
// built it, and the php-fpm it would run with its own version line, so that
// a bug report or a fleet audit names everything a request passes through.

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/pool"
)

// version is fpmux's version when the build sets it, as the Debian package
// does (scripts/build-deb.sh: -ldflags "-X main.version=<package version>"),
// so that `fpmux version` and `dpkg -l fpmux` agree. Empty: the module
// version Go recorded (see buildVersion).
var version string

// buildCommit is the git commit the build sets with -ldflags "-X main.buildCommit=...",
// used when Go recorded none: Go leaves version control information out of
// a build in a git worktree, and when -buildvcs=false, as a package build
// may run. Empty: Go's vcs.revision.
var buildCommit string

// phpVersionTimeout bounds `php-fpm -v`: a wrapper that hangs must not hang
// `fpmux version` or `fpmux check`.
const phpVersionTimeout = 10 * time.Second

func runVersion(args []string, stdout, stderr io.Writer) int {
	cfgPath, code, ok := parseConfigFlag("version", "YAML config `file` naming php_fpm.binary; empty: embedded defaults", args, stderr)
	if !ok {
		return code
	}
	info, _ := debug.ReadBuildInfo()
	for _, l := range versionLines(version, buildCommit, info) {
		fmt.Fprintln(stdout, l)
	}
	// fpmux's own version is known whatever the config says: a config
	// that does not load only costs the php-fpm line.
	binary := ""
	if cfgPath != "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			fmt.Fprintf(stdout, "php-fpm  unknown: %s\n", firstLine(err.Error()))
			return 1
		}
		binary = cfg.PHPFPM.Binary
	}
	// A missing php-fpm is said, not failed: fpmux's version stands on
	// its own (on a build machine, say); `fpmux check` is the judge.
	path, line, err := phpFPMVersion(binary)
	if err != nil {
		fmt.Fprintf(stdout, "php-fpm  none usable: %v\n", err)
		return 0
	}
	fmt.Fprintf(stdout, "php-fpm  %s (%s)\n", line, path)
	return 0
}

// versionLines are the fpmux, commit and Go lines of `fpmux version`, from
// the version and commit the build set (either may be empty) and Go's build
// info (may be nil), which wins for the commit when it has one.
func versionLines(set, setCommit string, info *debug.BuildInfo) []string {
	v := buildVersion(set, info)
	rev, at := setCommit, ""
	modified := false
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	c := "unknown (built without version control information)"
	if rev != "" {
		c = rev
		if at != "" {
			c += " " + at
		}
		if modified {
			c += " (modified: uncommitted changes were built in)"
		}
	}
	goVersion := runtime.Version()
	if info != nil && info.GoVersion != "" {
		goVersion = info.GoVersion
	}
	return []string{
		"fpmux    " + v,
		"commit   " + c,
		"go       " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// buildVersion is the version the build set, else the main module's
// version as Go recorded it: a tag, a pseudo-version from the commit
// ("v0.0.0-20261201224834-d718564abcde+dirty"), or "(devel)".
func buildVersion(set string, info *debug.BuildInfo) string {
	switch {
	case set != "":
		return set
	case info != nil && info.Main.Version != "":
		return info.Main.Version
	}
	return "(devel)"
}

// resolvePHPFPM is the php-fpm fpmux would run for a php_fpm.binary value:
// the lookup pool does when it is empty, PATH for a bare name (as exec
// does when a pool starts), the path itself otherwise.
func resolvePHPFPM(binary string) (string, error) {
	if binary == "" {
		return pool.FindBinary()
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("php_fpm.binary %s: %w", binary, err)
	}
	return p, nil
}

// phpFPMVersion resolves binary (see resolvePHPFPM) and returns its path
// and the first line `php-fpm -v` prints ("PHP 8.2.29 (fpm-fcgi) ...").
// A binary that does not run, or says something other than PHP's version,
// is an error: a pool would not start with it.
func phpFPMVersion(binary string) (path, line string, err error) {
	path, err = resolvePHPFPM(binary)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), phpVersionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-v")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	line = firstLine(out.String())
	switch {
	case runErr != nil && line != "":
		return path, "", fmt.Errorf("run %s -v: %w: %s", path, runErr, line)
	case runErr != nil:
		return path, "", fmt.Errorf("run %s -v: %w", path, runErr)
	case !strings.HasPrefix(line, "PHP "):
		return path, "", fmt.Errorf("run %s -v: not php-fpm's version line: %q", path, line)
	}
	return path, line, nil
}

// parseConfigFlag parses the flags of a command whose only flag is
// -config (check, version) and takes no arguments. When ok is false the
// command exits with code: 0 after -h, 2 (usage) for a bad flag or an
// argument.
func parseConfigFlag(name, usage string, args []string, stderr io.Writer) (path string, code int, ok bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", usage)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fpmux %s [-config FILE]\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fpmux %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", 2, false
	}
	return *cfgPath, 0, true
}

// firstLine is s up to its first newline, trimmed.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLines(t *testing.T) {
	info := func(version string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/fpmux/fpmux", Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	const rev = "d718564abcdef0123456789abcdef0123456789a"
	for _, tc := range []struct {
		name           string
		set, setCommit string
		info           *debug.BuildInfo
		fpmux, commit  string
	}{
		{"package build", "0.1.0~git20261201.d718564-1", "", info("(devel)", "vcs.revision", rev, "vcs.time", "2026-12-01T22:00:00Z", "vcs.modified", "false"),
			"0.1.0~git20261201.d718564-1", rev + " 2026-12-01T22:00:00Z"},
		{"go build in a dirty tree", "", "", info("v0.0.0-20261201220000-d718564abcde+dirty", "vcs.revision", rev, "vcs.modified", "true"),
			"v0.0.0-20261201220000-d718564abcde+dirty", rev + " (modified: uncommitted changes were built in)"},
		{"built in a worktree, commit set", "0.1.0-1", rev, info("(devel)"), "0.1.0-1", rev},
		{"vcs wins over the commit set", "", "0123", info("(devel)", "vcs.revision", rev), "(devel)", rev},
		{"no vcs", "", "", info("(devel)"), "(devel)", "unknown (built without version control information)"},
		{"no build info", "", "", nil, "(devel)", "unknown (built without version control information)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := versionLines(tc.set, tc.setCommit, tc.info)
			if len(got) != 3 || got[0] != "fpmux    "+tc.fpmux || got[1] != "commit   "+tc.commit || !strings.HasPrefix(got[2], "go       go1.") {
				t.Errorf("got %q, want fpmux %q, commit %q", got, tc.fpmux, tc.commit)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	phpFPM, _ := needTools(t)
	dir := t.TempDir()
	fake := filepath.Join(dir, "php-fpm-wrapper")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexec "+phpFPM+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "fpmux.yaml")
	if err := os.WriteFile(cfg, []byte("php_fpm:\n  binary: "+fake+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		php  *regexp.Regexp
	}{
		// No config: the binary pool.FindBinary finds.
		{[]string{"version"}, regexp.MustCompile(`(?m)^php-fpm  PHP 8\.\d+\.\d+\S* \(fpm-fcgi\).* \(` + regexp.QuoteMeta(phpFPM) + `\)$`)},
		{[]string{"version", "-config", cfg}, regexp.MustCompile(`(?m)^php-fpm  PHP 8\.\d+\.\d+\S* \(fpm-fcgi\).* \(` + regexp.QuoteMeta(fake) + `\)$`)},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 0 {
			t.Errorf("%q: exit %d: %s", tc.args, code, &stderr)
		}
		if !strings.HasPrefix(stdout.String(), "fpmux    ") || !strings.Contains(stdout.String(), "\ngo       go1.") || !tc.php.MatchString(stdout.String()) {
			t.Errorf("%q: stdout %q, want the fpmux, commit, go lines and php-fpm matching %s", tc.args, &stdout, tc.php)
		}
	}
}

package packaging

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// needTools returns the paths of the programs the package test runs. A
// missing one skips the test on a developer's machine and fails it under
// CI=true (.ci/run installs them). dpkg --root with chrootless maintainer
// scripts must run as root: the files it unpacks are root's.
func needTools(t *testing.T, names ...string) map[string]string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	paths := map[string]string{}
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/go/bin"} {
				if _, serr := os.Stat(filepath.Join(d, n)); serr == nil {
					p, err = filepath.Join(d, n), nil
					break
				}
			}
		}
		if err != nil {
			fail("%s is missing (CI installs it: .ci/run): %v", n, err)
		}
		paths[n] = p
	}
	if os.Geteuid() != 0 {
		fail("installing the package into a throwaway root needs root (dpkg --root unpacks root's files)")
	}
	return paths
}

// cmdTimeout bounds each program the test runs: a build at load average 20
// takes a minute or two, lintian about as long.
const cmdTimeout = 10 * time.Minute

// runCmd runs name with args and env added, and returns its exit code and
// output (stdout and stderr together). Not starting at all fails the test.
func runCmd(t *testing.T, env []string, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("run %s %q: %v\n%s", name, args, err, &out)
	}
	return 0, out.String()
}

// mustRun is runCmd that fails the test on a non-zero exit.
func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	code, out := runCmd(t, env, name, args...)
	if code != 0 {
		t.Fatalf("%s %q: exit %d\n%s", name, args, code, out)
	}
	return out
}

// newDpkgRoot makes an empty system for dpkg --root: a dpkg database with
// nothing installed and the account files groupadd --prefix edits.
func newDpkgRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{
		"var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
		"etc/group": "root:x:0:\n", "etc/gshadow": "root:*::\n", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestDebianPackage builds the package as a maintainer would, has lintian
// judge it (any E: tag fails; warnings are logged), installs it into a
// throwaway root, runs the installed fpmux there (version, check), has
// systemd-analyze verify the installed units, and purges it again.
func TestDebianPackage(t *testing.T) {
	tools := needTools(t, "go", "git", "dpkg", "dpkg-deb", "dpkg-query", "lintian", "systemd-analyze", "groupadd", "deb-systemd-helper")
	out := t.TempDir()
	// The build runs from this source tree (go test runs in packaging/).
	built := mustRun(t, []string{"PATH=" + os.Getenv("PATH") + ":" + filepath.Dir(tools["go"])}, "bash", "../scripts/build-deb.sh", "-o", out)
	deb := strings.TrimSpace(built)
	arch := strings.TrimSpace(mustRun(t, nil, "dpkg", "--print-architecture"))
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(out) + `/fpmux_(0\.0~git[0-9]{8}\.[0-9a-f]{12}(\+dirty)?-1)_` + arch + `\.deb$`).FindStringSubmatch(deb)
	if m == nil {
		t.Fatalf("build-deb.sh printed %q, want %s/fpmux_0.0~git<date>.<commit>-1_%s.deb", built, out, arch)
	}
	version := m[1]
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.TrimSpace(mustRun(t, nil, "git", "-c", "safe.directory="+src, "-C", src, "rev-parse", "HEAD"))
	if !strings.Contains(version, "."+commit[:12]) {
		t.Errorf("version %s does not name HEAD %s", version, commit)
	}
	t.Logf("built %s", deb)

	t.Run("lintian", func(t *testing.T) {
		code, report := runCmd(t, nil, tools["lintian"], "--pedantic", "--fail-on", "error", deb)
		t.Logf("lintian --pedantic %s: exit %d\n%s", filepath.Base(deb), code, report)
		for _, l := range strings.Split(report, "\n") {
			if strings.HasPrefix(l, "E: ") {
				t.Errorf("lintian error: %s", l)
			}
		}
		if code != 0 {
			t.Errorf("lintian exit %d", code)
		}
	})

	root := newDpkgRoot(t)
	// --force-script-chrootless: the maintainer scripts run on this host
	// with DPKG_ROOT=root, and must touch nothing outside it (the root has
	// no shell to chroot into). --force-depends: the root has no adduser.
	dpkg := func(args ...string) string {
		return mustRun(t, nil, tools["dpkg"], append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)...)
	}
	t.Logf("dpkg -i:\n%s", dpkg("-i", deb))

	t.Run("installed", func(t *testing.T) {
		for _, f := range []string{"usr/bin/fpmux", "etc/fpmux/fpmux.yaml", "usr/share/man/man8/fpmux.8.gz",
			"usr/share/doc/fpmux/copyright", "usr/share/doc/fpmux/changelog.Debian.gz", "usr/share/doc/fpmux/examples/app.yaml",
			"lib/systemd/system/fpmux.service", "lib/systemd/system/fpmux.socket", "lib/systemd/system/fpmux-admin.socket",
			"lib/systemd/system/fpmux@.service", "lib/systemd/system/fpmux@.socket", "lib/systemd/system/fpmux-admin@.socket",
			// postinst enabled the units, in the root.
			"etc/systemd/system/sockets.target.wants/fpmux.socket", "etc/systemd/system/sockets.target.wants/fpmux-admin.socket",
			"etc/systemd/system/multi-user.target.wants/fpmux.service",
			// postinst made the directory the packaged config's
			// allowed_roots names: fpmux serve refuses to start without it.
			"var/www/app/releases",
		} {
			if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
				t.Errorf("not installed: %v", err)
			}
		}
		group, err := os.ReadFile(filepath.Join(root, "etc/group"))
		if err != nil || !regexp.MustCompile(`(?m)^fpmux:x:[0-9]+:$`).Match(group) {
			t.Errorf("postinst made no fpmux group in the root's /etc/group (%v):\n%s", err, group)
		}
		conffiles := mustRun(t, nil, tools["dpkg-query"], "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Conffiles}", "fpmux")
		if !strings.Contains(conffiles, "/etc/fpmux/fpmux.yaml ") {
			t.Errorf("conffiles: %q, want /etc/fpmux/fpmux.yaml", conffiles)
		}
		conf, err := os.ReadFile(filepath.Join(root, "etc/fpmux/fpmux.yaml"))
		if err != nil || !regexp.MustCompile(`(?m)^listen: unix:/run/fpmux/fpmux\.sock `).Match(conf) {
			t.Errorf("/etc/fpmux/fpmux.yaml does not listen where fpmux.socket does (%v)", err)
		}
	})

	fpmux := filepath.Join(root, "usr/bin/fpmux")
	t.Run("fpmux version", func(t *testing.T) {
		v := mustRun(t, nil, fpmux, "version")
		t.Logf("fpmux version:\n%s", v)
		for _, want := range []string{"fpmux    " + version + "\n", "commit   " + commit + "\n", "\ngo       go1.", "\nphp-fpm  PHP 8."} {
			if !strings.Contains(v, want) {
				t.Errorf("fpmux version lacks %q", want)
			}
		}
	})

	t.Run("fpmux check", func(t *testing.T) {
		// The packaged config loads; what it names is a Debian box's
		// (/var/www/app/...), so on this host only path problems may come.
		conf := filepath.Join(root, "etc/fpmux/fpmux.yaml")
		code, got := runCmd(t, nil, fpmux, "check", "-config", conf)
		t.Logf("fpmux check -config %s: exit %d\n%s", conf, code, got)
		for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
			if code != 0 && !regexp.MustCompile(`^fpmux check: ((docroot|allowed_roots\[0\]|state_dir) \(line \d+\): |\S+: \d problem\(s\)$)`).MatchString(l) {
				t.Errorf("not a problem of a missing directory: %q", l)
			}
		}
		if code != 0 && code != 1 {
			t.Errorf("exit %d", code)
		}
		// The same file, pointed at directories that exist, as an
		// operator edits it: ok.
		dir := t.TempDir()
		for _, d := range []string{"app/releases", "state"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		text, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.NewReplacer("/var/www/app", dir+"/app", "/var/lib/fpmux", dir+"/state").Replace(string(text))
		mine := filepath.Join(dir, "fpmux.yaml")
		if err := os.WriteFile(mine, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := mustRun(t, nil, fpmux, "check", "-config", mine); !strings.HasPrefix(got, "fpmux check: "+mine+": ok (PHP 8.") {
			t.Errorf("fpmux check -config %s: %q", mine, got)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		// Units as installed, ExecStart= pointing at the installed binary
		// (verify wants it to exist), man pages looked up in the root.
		units := t.TempDir()
		sys := filepath.Join(root, "lib/systemd/system")
		entries, err := os.ReadDir(sys)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(sys, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.ReplaceAll(data, []byte("ExecStart=/usr/bin/fpmux "), []byte("ExecStart="+fpmux+" "))
			if err := os.WriteFile(filepath.Join(units, e.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		env := []string{"MANPATH=" + filepath.Join(root, "usr/share/man")}
		for _, set := range [][]string{
			{"fpmux.service", "fpmux.socket", "fpmux-admin.socket"},
			// The templates, as the instance of an app named shop.
			{"fpmux@shop.service", "fpmux@shop.socket", "fpmux-admin@shop.socket"},
		} {
			args := []string{"verify"}
			for _, u := range set {
				args = append(args, filepath.Join(units, u))
			}
			code, got := runCmd(t, env, tools["systemd-analyze"], args...)
			t.Logf("systemd-analyze verify %s: exit %d\n%s", strings.Join(set, " "), code, got)
			// Unknown or bad directives are only warned about: any word
			// about fpmux's units fails too.
			if code != 0 || strings.Contains(got, "fpmux") {
				t.Errorf("systemd-analyze verify %s: exit %d\n%s", strings.Join(set, " "), code, got)
			}
		}
	})

	t.Run("upgrade keeps an edited conffile", func(t *testing.T) {
		// The same package under the next Debian revision, as an upgrade
		// brings it: the operator's edit of /etc/fpmux/fpmux.yaml stays.
		tree := filepath.Join(t.TempDir(), "tree")
		mustRun(t, nil, tools["dpkg-deb"], "-R", deb, tree)
		control := filepath.Join(tree, "DEBIAN/control")
		text, err := os.ReadFile(control)
		if err != nil {
			t.Fatal(err)
		}
		next := strings.TrimSuffix(version, "-1") + "-2"
		text = bytes.Replace(text, []byte("\nVersion: "+version+"\n"), []byte("\nVersion: "+next+"\n"), 1)
		if err := os.WriteFile(control, text, 0o644); err != nil {
			t.Fatal(err)
		}
		debNext := filepath.Join(t.TempDir(), "fpmux_next.deb")
		mustRun(t, nil, tools["dpkg-deb"], "--root-owner-group", "-Znone", "--build", tree, debNext) // no compression: quick

		conf := filepath.Join(root, "etc/fpmux/fpmux.yaml")
		f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		const edit = "# edited by the operator\n"
		if _, err := f.WriteString(edit); err != nil {
			t.Fatal(err)
		}
		f.Close()
		t.Logf("dpkg -i (upgrade):\n%s", dpkg("-i", debNext))
		if got := mustRun(t, nil, tools["dpkg-query"], "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Version}", "fpmux"); got != next {
			t.Errorf("installed version %q, want %q", got, next)
		}
		if data, err := os.ReadFile(conf); err != nil || !strings.HasSuffix(string(data), edit) {
			t.Errorf("the upgrade lost the edit of %s (%v)", conf, err)
		}
	})

	t.Run("purge", func(t *testing.T) {
		t.Logf("dpkg --purge:\n%s", dpkg("--purge", "fpmux"))
		for _, f := range []string{"usr/bin/fpmux", "etc/fpmux/fpmux.yaml", "lib/systemd/system/fpmux.service",
			"etc/systemd/system/multi-user.target.wants/fpmux.service", "etc/systemd/system/sockets.target.wants/fpmux.socket"} {
			if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
				t.Errorf("%s left after purge", f)
			}
		}
	})
}

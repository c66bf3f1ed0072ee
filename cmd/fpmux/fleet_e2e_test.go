package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFleetDeployScript runs config/examples/fleet-deploy.sh, the two-phase
// deploy README shows, against three real fpmux hosts (each its own fpmux,
// nginx and pools, reached through a stand-in for ssh): a release prepared
// everywhere and then switched two hosts at a time; a release one host
// cannot prepare, which switches no host; and a host that cannot be reached
// to switch, which rolls the others back.
func TestFleetDeployScript(t *testing.T) {
	hosts := []*stack{newStack(t, stackOptions{}), newStack(t, stackOptions{}), newStack(t, stackOptions{})}
	var names []string
	for _, h := range hosts {
		h.deploy("r1")
		names = append(names, h.dir)
	}
	remote := filepath.Join(t.TempDir(), "remote")
	// As ssh HOST CMD... would, with a host that may be unreachable.
	err := os.WriteFile(remote, []byte(`#!/bin/sh
host=$1
shift
if [ "$host" = "$UNREACHABLE" ] && [ "$2" = "$UNREACHABLE_FOR" ]; then
	echo "ssh: connect to host $host port 22: Connection refused" >&2
	exit 255
fi
exec "$@"
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "config", "examples", "fleet-deploy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(id string, env ...string) (int, string) {
		cmd := exec.Command("sh", append([]string{script, id, "{host}/releases/" + id}, names...)...)
		cmd.Env = append(os.Environ(), "FPMUX_TEST_EXEC=1", "FPMUX="+os.Args[0], "REMOTE="+remote,
			"ADMIN=unix:{host}/admin.sock", "BATCH=2")
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	servedBy := func(want string) {
		t.Helper()
		for i, h := range hosts {
			code, body, err := h.get(newHTTPClient(), "/index.php?ms=0")
			if err != nil || code != 200 || !strings.Contains(body, "param="+want) {
				t.Errorf("host %d: %d %q %v, want it served by %s", i, code, body, err, want)
			}
		}
	}

	t.Run("prepared everywhere, switched two at a time", func(t *testing.T) {
		for _, h := range hosts {
			h.newRelease("r2")
		}
		code, out := run("r2")
		if code != 0 || !strings.Contains(out, "release r2 ready on 3 hosts") || strings.Count(out, "switched:") != 2 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		servedBy("r2")
	})
	t.Run("one host cannot prepare: no host switches", func(t *testing.T) {
		for _, h := range hosts[:2] {
			h.newRelease("r3") // the third host lacks it
		}
		code, out := run("r3")
		if code != 1 || !strings.Contains(out, "prepare failed on "+names[2]) || !strings.Contains(out, "nothing switched") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		servedBy("r2")
		for i, h := range hosts[:2] {
			if st := h.releasesByID()["r3"].State; st != "draining" && st != "retired" {
				t.Errorf("host %d: r3 is %s, want it retired after the failed prepare", i, st)
			}
		}
	})
	t.Run("a host unreachable to switch: the others roll back", func(t *testing.T) {
		for _, h := range hosts {
			h.newRelease("r4")
		}
		code, out := run("r4", "UNREACHABLE="+names[2], "UNREACHABLE_FOR=activate")
		if code != 1 || !strings.Contains(out, "activate failed on "+names[2]) || !strings.Contains(out, "rolling back: "+names[0]+" "+names[1]) {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		servedBy("r2")
	})
}

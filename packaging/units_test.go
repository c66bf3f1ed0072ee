package packaging

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// directives reads a systemd unit file as "[Section] Key=Value" lines,
// comments and blank lines left out, in file order.
func directives(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		default:
			out = append(out, section+" "+line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPackagedUnitsMatchExamples keeps the units the package installs alike
// with the ones config/examples/ documents for a manual install, and the
// per-app templates alike with the single units: a directive changed in
// one place only fails here, with what differs.
func TestPackagedUnitsMatchExamples(t *testing.T) {
	for _, tc := range []struct {
		base, packaged string
		// replace turns base's directives into what packaged must hold,
		// apart from the lines in only.
		replace []string
		// onlyBase and onlyPackaged are the directives that differ.
		onlyBase, onlyPackaged []string
	}{
		{
			base: "../config/examples/fpmux.service", packaged: "deb/units/fpmux.service",
			replace:      []string{"/usr/local/bin/fpmux", "/usr/bin/fpmux"},
			onlyBase:     []string{"[Unit] Documentation=https://github.com/fpmux/fpmux"},
			onlyPackaged: []string{"[Unit] Documentation=man:fpmux(8) https://github.com/fpmux/fpmux"},
		},
		{
			base: "../config/examples/fpmux.socket", packaged: "deb/units/fpmux.socket",
			onlyBase:     []string{"[Unit] Documentation=https://github.com/fpmux/fpmux"},
			onlyPackaged: []string{"[Unit] Documentation=man:fpmux(8)"},
		},
		{
			// The package has a group for the admin socket.
			base: "../config/examples/fpmux-admin.socket", packaged: "deb/units/fpmux-admin.socket",
			onlyBase:     []string{"[Unit] Documentation=https://github.com/fpmux/fpmux", "[Socket] SocketMode=0600"},
			onlyPackaged: []string{"[Unit] Documentation=man:fpmux(8)", "[Socket] SocketGroup=fpmux", "[Socket] SocketMode=0660"},
		},
		{
			base: "deb/units/fpmux.service", packaged: "deb/units/fpmux@.service",
			replace: []string{"fpmux.socket", "fpmux@%i.socket", "fpmux-admin.socket", "fpmux-admin@%i.socket",
				"/etc/fpmux/fpmux.yaml", "/etc/fpmux/%i.yaml", "StateDirectory=fpmux", "StateDirectory=fpmux/%i"},
			onlyBase:     []string{"[Unit] Description=fpmux: php-fpm release multiplexer"},
			onlyPackaged: []string{"[Unit] Description=fpmux for %i: php-fpm release multiplexer"},
		},
		{
			base: "deb/units/fpmux.socket", packaged: "deb/units/fpmux@.socket",
			replace:      []string{"/run/fpmux/", "/run/fpmux/%i/", "fpmux.service", "fpmux@%i.service"},
			onlyBase:     []string{"[Unit] Description=fpmux FastCGI socket"},
			onlyPackaged: []string{"[Unit] Description=fpmux FastCGI socket for %i"},
		},
		{
			base: "deb/units/fpmux-admin.socket", packaged: "deb/units/fpmux-admin@.socket",
			replace:      []string{"/run/fpmux/", "/run/fpmux/%i/", "fpmux.service", "fpmux@%i.service"},
			onlyBase:     []string{"[Unit] Description=fpmux admin API socket"},
			onlyPackaged: []string{"[Unit] Description=fpmux admin API socket for %i"},
		},
	} {
		t.Run(tc.packaged, func(t *testing.T) {
			r := strings.NewReplacer(tc.replace...)
			var base []string
			for _, d := range directives(t, tc.base) {
				base = append(base, r.Replace(d))
			}
			packaged := directives(t, tc.packaged)
			var onlyBase, onlyPackaged []string
			for _, d := range base {
				if !slices.Contains(packaged, d) {
					onlyBase = append(onlyBase, d)
				}
			}
			for _, d := range packaged {
				if !slices.Contains(base, d) {
					onlyPackaged = append(onlyPackaged, d)
				}
			}
			if !slices.Equal(onlyBase, tc.onlyBase) || !slices.Equal(onlyPackaged, tc.onlyPackaged) {
				t.Errorf("only in %s: %q\n    want %q\nonly in %s: %q\n    want %q",
					tc.base, onlyBase, tc.onlyBase, tc.packaged, onlyPackaged, tc.onlyPackaged)
			}
		})
	}
}

// This file tries, as a client that speaks FastCGI to fpmux itself
// (fcgiGet), every
// param php-fpm takes a script path from or that scripts trust as one, and
// the params php-fpm derives its status page's URI from, with a real php-fpm
// pool behind fpmux: a file outside the release must never run, and the
// pool's own pages must never answer.

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/pool"
)

// TestConfinedPathParams sends requests whose SCRIPT_FILENAME,
// PATH_TRANSLATED or DOCUMENT_ROOT leads to a secret file outside the
// release, in each form a web server (or an attacker) can give them:
// plain, behind Apache's proxy:fcgi:// and proxy:balancer:// prefixes, with
// REDIRECT_URL (which makes php-fpm run PATH_TRANSLATED), through a symlink
// out of the release, and as the DOCUMENT_ROOT a script includes from.
// Each is answered 404 by fpmux and the secret never runs. The legitimate
// forms of the same params still reach PHP, mapped onto the release.
func TestConfinedPathParams(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	root := filepath.Join(s.releases, "r1")
	// Outside the release and its docroot: a script, and a directory
	// holding an a.php, which index.php includes from DOCUMENT_ROOT.
	secret := filepath.Join(s.dir, "secret.php")
	evil := filepath.Join(s.dir, "evil")
	env := `<?php header('Content-Type: text/plain');
foreach (['SCRIPT_FILENAME', 'SCRIPT_NAME', 'PATH_INFO', 'PATH_TRANSLATED', 'DOCUMENT_ROOT'] as $k) {
	echo $k, '=', $_SERVER[$k] ?? '-', "\n";
}
`
	for name, body := range map[string]string{
		secret:                           "<?php echo 'SECRET';",
		filepath.Join(evil, "a.php"):     "<?php echo 'SECRET';",
		filepath.Join(evil, "b.php"):     "<?php",
		filepath.Join(root, "env.php"):   env,
		filepath.Join(root, "sub/x.txt"): "x",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{"linked.php": secret, "shared": evil} {
		if err := os.Symlink(to, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	d := s.docroot
	proxy := "proxy:fcgi://localhost"
	balancer := "proxy:balancer://app"
	tests := []struct {
		name   string
		script string   // SCRIPT_NAME
		file   string   // SCRIPT_FILENAME
		extra  []string // more params
		status int      // 404 from fpmux, or PHP's status
		body   []string // PHP's answer contains each (only when PHP answers)
	}{
		// SCRIPT_FILENAME in each form.
		{name: "plain script outside", script: "/x.php", file: secret, status: 404},
		{name: "plain script through a symlink", script: "/linked.php", file: d + "/linked.php", status: 404},
		{name: "proxy:fcgi script outside", script: "/x.php", file: proxy + secret, status: 404},
		{name: "proxy:fcgi dot-dot", script: "/x.php", file: proxy + d + "/../secret.php", status: 404},
		{name: "proxy:fcgi script through a symlink", script: "/linked.php", file: proxy + d + "/linked.php", status: 404},
		{name: "proxy:fcgi symlink hidden by a query", script: "/linked.php", file: proxy + d + "/linked.php?a=b", status: 404},
		{name: "proxy:fcgi symlink with path info", script: "/linked.php/x", file: proxy + d + "/linked.php/x", status: 404},
		{name: "PROXY:FCGI in capitals", script: "/x.php", file: "PROXY:FCGI://localhost" + secret, status: 404},
		{name: "proxy:balancer script outside", script: "/x.php", file: balancer + secret, status: 404},
		{name: "proxy:balancer script through a symlink", script: "/linked.php", file: balancer + d + "/linked.php", status: 404},
		// PATH_TRANSLATED, which php-fpm runs instead when REDIRECT_URL is set.
		{name: "PATH_TRANSLATED outside with REDIRECT_URL", script: "/probe.php", file: d + "/probe.php",
			extra: []string{"REDIRECT_URL", "/x", "PATH_TRANSLATED", secret}, status: 404},
		{name: "PATH_TRANSLATED through a symlink with REDIRECT_URL", script: "/probe.php", file: d + "/probe.php",
			extra: []string{"REDIRECT_URL", "/x", "PATH_TRANSLATED", d + "/linked.php"}, status: 404},
		{name: "PATH_TRANSLATED dot-dot with REDIRECT_URL", script: "/probe.php", file: d + "/probe.php",
			extra: []string{"REDIRECT_URL", "/x", "PATH_TRANSLATED", d + "/../secret.php"}, status: 404},
		{name: "PATH_TRANSLATED outside behind proxy:fcgi", script: "/probe.php", file: proxy + d + "/probe.php",
			extra: []string{"REDIRECT_URL", "/x", "PATH_TRANSLATED", secret}, status: 404},
		// DOCUMENT_ROOT, which index.php includes a.php from.
		{name: "DOCUMENT_ROOT outside", script: "/index.php", file: d + "/index.php",
			extra: []string{"DOCUMENT_ROOT", evil}, status: 404},
		{name: "DOCUMENT_ROOT through a symlink", script: "/index.php", file: d + "/index.php",
			extra: []string{"DOCUMENT_ROOT", d + "/shared"}, status: 404},
		{name: "DOCUMENT_ROOT dot-dot", script: "/index.php", file: d + "/index.php",
			extra: []string{"DOCUMENT_ROOT", d + "/../evil"}, status: 404},
		// What web servers send is still served, mapped onto the release.
		{name: "nginx PATH_TRANSLATED with path info", script: "/env.php", file: d + "/env.php",
			extra:  []string{"PATH_INFO", "/extra/path", "PATH_TRANSLATED", d + "/extra/path"},
			status: 200, body: []string{"SCRIPT_FILENAME=" + root + "/env.php\n", "PATH_TRANSLATED=" + root + "/extra/path\n", "DOCUMENT_ROOT=" + root + "\n"}},
		{name: "nginx PATH_TRANSLATED without path info", script: "/env.php", file: d + "/env.php",
			extra:  []string{"PATH_TRANSLATED", d},
			status: 200, body: []string{"PATH_TRANSLATED=" + root + "\n"}},
		{name: "Apache ProxyPassMatch with path info", script: "/env.php/extra/path", file: proxy + d + "/env.php/extra/path",
			status: 200, body: []string{"SCRIPT_FILENAME=" + root + "/env.php\n", "SCRIPT_NAME=/env.php\n", "PATH_INFO=/extra/path\n"}},
		{name: "Apache SetHandler with REDIRECT_URL", script: "/env.php", file: proxy + d + "/env.php",
			extra:  []string{"REDIRECT_URL", "/pretty/url", "PATH_TRANSLATED", d + "/pretty/url"},
			status: 200, body: []string{"SCRIPT_FILENAME=" + root + "/env.php\n", "PATH_TRANSLATED=" + root + "/pretty/url\n"}},
		{name: "proxy:balancer", script: "/env.php", file: balancer + d + "/env.php",
			status: 200, body: []string{"SCRIPT_FILENAME=" + root + "/env.php\n"}},
		{name: "a directory of the release as DOCUMENT_ROOT", script: "/env.php", file: d + "/env.php",
			extra:  []string{"DOCUMENT_ROOT", d + "/sub"},
			status: 200, body: []string{"DOCUMENT_ROOT=" + root + "/sub\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The extra params come after nginx's, so a DOCUMENT_ROOT among
			// them is the one sent.
			a := s.fcgiGet(t, s.nginxParams(tt.script, tt.file, tt.extra...))
			body := string(a.Body)
			if strings.Contains(body, "SECRET") {
				t.Fatalf("the file outside the release ran: %q", body)
			}
			fromFpmux := strings.HasPrefix(body, "fpmux: ")
			if a.Status != tt.status || fromFpmux != (tt.status == 404) {
				t.Fatalf("got %d %q (from fpmux: %v), want %d", a.Status, body, fromFpmux, tt.status)
			}
			for _, want := range tt.body {
				if !strings.Contains(body, want) {
					t.Errorf("PHP's answer lacks %q:\n%s", want, body)
				}
			}
		})
	}
}

// TestPoolPagesUnreachable asks for php-fpm's own ping and status pages
// through fpmux in each way php-fpm derives the URI it matches them
// against: SCRIPT_NAME, a PATH_INFO it takes the script name from, and
// REDIRECT_URL, with ?full (which lists other users' URIs and query
// strings), naming the paths pools used to have, the bare prefixes and the
// pool's own random paths. Each gets a 404 and never the page. Two pool
// starts draw different paths, and both serve their ping to fpmux.
func TestPoolPagesUnreachable(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	d := s.docroot
	dir := filepath.Join(s.stateDir, "pools", "r1")
	ping, status, err := pool.ReadPagePaths(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"/fpmux-status", "/fpmux-ping", pool.StatusPrefix + "-", status, ping} {
		for name, params := range map[string][]string{
			"SCRIPT_NAME": s.nginxParams(uri, d+uri, "QUERY_STRING", "full"),
			"PATH_INFO": s.nginxParams("/probe.php", d+"/probe.php/x",
				"PATH_INFO", uri+"/x", "QUERY_STRING", "full"),
			"REDIRECT_URL": s.nginxParams("/probe.php", d+"/probe.php",
				"REDIRECT_URL", uri, "PATH_TRANSLATED", d+"/index.php", "QUERY_STRING", "full"),
		} {
			a := s.fcgiGet(t, params)
			if body := string(a.Body); strings.Contains(body, "accepted conn") || strings.HasPrefix(body, "pong") || a.Status != 404 {
				t.Errorf("%s naming %s: got %d %q, want a 404 and not php-fpm's page", name, uri, a.Status, body)
			}
		}
	}
	// fpmux itself still reaches both pages: the release's pool figures
	// come from its status page.
	s.waitFor("r1's pool figures", 10*time.Second, func() bool {
		b, err := s.adminGet("/v1/releases/r1")
		var rel struct {
			Pool struct {
				TotalProcesses int `json:"total_processes"`
			} `json:"pool"`
		}
		return err == nil && json.Unmarshal(b, &rel) == nil && rel.Pool.TotalProcesses == 4
	})

	s.deploy("r2")
	ping2, status2, err := pool.ReadPagePaths(filepath.Join(s.stateDir, "pools", "r2"))
	if err != nil {
		t.Fatal(err)
	}
	if ping2 == ping || status2 == status {
		t.Errorf("r2's pool has r1's paths: %s %s", ping2, status2)
	}
}

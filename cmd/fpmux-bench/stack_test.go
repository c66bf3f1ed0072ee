package main

import (
	"strings"
	"testing"
)

// TestNginxConfig checks the main stack's three servers: direct and
// realpath_root reach r1's pool one connection per request, realpath_root
// by the resolved symlink, and via fpmux keeps its connections.
func TestNginxConfig(t *testing.T) {
	s := stackIn("/b", stackOptions{keepalive: 32}, "php-fpm", "nginx")
	s.direct, s.via, s.realpath = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
	servers := map[string]string{}
	for _, block := range strings.Split(s.nginxConfig(), "server {")[1:] {
		listen, _, _ := strings.Cut(strings.TrimSpace(block), ";")
		servers[strings.TrimPrefix(listen, "listen ")] = block
	}
	pool := "fastcgi_pass unix:/b/state/pools/r1/fpm.sock;"
	tests := []struct {
		name, addr string
		has        []string
		hasNot     []string
	}{
		{"direct", s.direct, []string{"root /b/www/releases/r1;", "SCRIPT_FILENAME $document_root$fastcgi_script_name;", pool},
			[]string{"fastcgi_keep_conn", "$realpath_root"}},
		{"realpath_root", s.realpath, []string{"root /b/www/current;", "SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
			"fastcgi_param DOCUMENT_ROOT $realpath_root;", pool}, []string{"fastcgi_keep_conn", "$document_root"}},
		{"via fpmux", s.via, []string{"root /b/www/current;", "SCRIPT_FILENAME $document_root$fastcgi_script_name;",
			"fastcgi_pass fpmux;", "fastcgi_keep_conn on;"}, []string{"$realpath_root", "fpm.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block, ok := servers[tt.addr]
			if !ok {
				t.Fatalf("no server listens on %s; servers: %v", tt.addr, servers)
			}
			for _, want := range tt.has {
				if !strings.Contains(block, want) {
					t.Errorf("server %s lacks %q:\n%s", tt.addr, want, block)
				}
			}
			for _, bad := range tt.hasNot {
				if strings.Contains(block, bad) {
					t.Errorf("server %s has %q:\n%s", tt.addr, bad, block)
				}
			}
		})
	}
}

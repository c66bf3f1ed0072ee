package config

import (
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in              string
		network, addr   string
		wantErrContains string
	}{
		{"unix:/run/fpmux/admin.sock", "unix", "/run/fpmux/admin.sock", ""},
		{"unix:/run//fpmux/../fpmux/a.sock", "unix", "/run/fpmux/a.sock", ""},
		{"127.0.0.1:9700", "tcp", "127.0.0.1:9700", ""},
		{"localhost:9700", "tcp", "localhost:9700", ""},
		{":9700", "tcp", ":9700", ""},
		{"[::1]:9701", "tcp", "[::1]:9701", ""},
		{"unix:run/admin.sock", "", "", "unix socket path must be absolute"},
		{"unix:", "", "", "unix socket path must be absolute"},
		{"/run/fpmux/admin.sock", "", "", "want unix:/path or host:port"},
		{"127.0.0.1", "", "", "want unix:/path or host:port"},
		{"::1:9700", "", "", "want unix:/path or host:port"},
		{"127.0.0.1:", "", "", "missing port"},
		{"", "", "", "want unix:/path or host:port"},
	}
	for _, tt := range tests {
		network, addr, err := ParseAddr(tt.in)
		if tt.wantErrContains != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErrContains) || !strings.Contains(err.Error(), "parse address") {
				t.Errorf("ParseAddr(%q) error = %v, want one containing %q", tt.in, err, tt.wantErrContains)
			}
			continue
		}
		if err != nil || network != tt.network || addr != tt.addr {
			t.Errorf("ParseAddr(%q) = %q, %q, %v; want %q, %q", tt.in, network, addr, err, tt.network, tt.addr)
		}
	}
}

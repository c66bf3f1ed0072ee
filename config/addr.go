package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// ParseAddr splits an fpmux address into the network and address that
// net.Listen and net.Dial take. "unix:/run/fpmux/admin.sock" is a unix
// socket (the form nginx writes); anything else must be "host:port" over TCP.
func ParseAddr(s string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !filepath.IsAbs(path) {
			return "", "", fmt.Errorf("parse address %q: unix socket path must be absolute", s)
		}
		return "unix", filepath.Clean(path), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("parse address %q: want unix:/path or host:port", s)
	}
	if port == "" {
		return "", "", fmt.Errorf("parse address %q: missing port", s)
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// IsLoopback reports whether a TCP "host:port" listens only on the loopback
// interface: 127.0.0.0/8, ::1 or "localhost". An empty host, a wildcard or
// any other name is not loopback.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

package config

// This file owns the fleet key: how a host joins a fleet whose releases
// are coordinated through etcd (see the fleet package and docs/fleet.md).

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Fleet makes this fpmux one host of a fleet: it registers under the app's
// prefix in etcd, prepares the releases a fleet deploy asks for and
// switches when its batch says so. (fpmux extension.)
//
// A nil *Fleet (no fleet key) leaves fpmux as it is without one: no etcd
// client, no agent, nothing changes.
type Fleet struct {
	// Etcd lists the etcd client endpoints ("https://10.0.0.1:2379", or
	// "host:port"). At least one.
	Etcd []string `yaml:"etcd"`

	// App names the fleet this host belongs to: the hosts of one app
	// serve the same release. Letters, digits, '.', '_' and '-'.
	// Required.
	App string `yaml:"app"`

	// Host is this host's name in the fleet, unique in the app. Default:
	// the machine's hostname.
	Host string `yaml:"host"`

	// Prefix is the etcd key prefix every fpmux key lies under, so that
	// one etcd serves other users too. Starts with '/'. Default: "/fpmux".
	Prefix string `yaml:"prefix"`

	// CA, Cert and Key are PEM files for TLS to etcd: the CA that signed
	// etcd's certificate, and this host's client certificate and key
	// (both or neither). Absolute paths. Default: "" (no TLS unless an
	// endpoint says https, then the system's CAs).
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`

	// Username and Password authenticate to etcd when its auth is on.
	// PasswordFile, an absolute path, holds the password instead (its
	// trailing newline dropped), so the config file need not; at most one
	// of the two. Default: "" (no auth).
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// DefaultFleetPrefix is the fleet key's default prefix.
const DefaultFleetPrefix = "/fpmux"

// reFleetName matches an app or host name: it is one etcd key segment.
var reFleetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckFleetName checks an app or host name (what names it, in the
// message): one etcd key segment.
func CheckFleetName(what, name string) error {
	if !reFleetName.MatchString(name) {
		return fmt.Errorf("%s %q: want 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// FleetPassword returns the etcd password: Password, or PasswordFile's
// content without its trailing newline.
func (f *Fleet) FleetPassword() (string, error) {
	if f.PasswordFile == "" {
		return f.Password, nil
	}
	b, err := os.ReadFile(f.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("read fleet.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// validateFleet checks the fleet key, when set, and fills in its defaults
// (host: the hostname; prefix: /fpmux).
func (v *validator) validateFleet(f *Fleet) {
	if f == nil {
		return
	}
	if len(f.Etcd) == 0 {
		v.add("fleet.etcd", "must list at least one etcd endpoint, like https://10.0.0.1:2379")
	}
	for i, e := range f.Etcd {
		if err := checkEtcdEndpoint(e); err != nil {
			v.add(fmt.Sprintf("fleet.etcd[%d]", i), "%v", err)
		}
	}
	if f.App == "" {
		v.add("fleet.app", "required: the name of the app this host serves in the fleet")
	} else if err := CheckFleetName("app", f.App); err != nil {
		v.add("fleet.app", "%v", err)
	}
	if f.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			v.add("fleet.host", "not set and the hostname is unknown: %v", err)
		}
		f.Host = h
	}
	if f.Host != "" {
		if err := CheckFleetName("host", f.Host); err != nil {
			v.add("fleet.host", "%v", err)
		}
	}
	if f.Prefix == "" {
		f.Prefix = DefaultFleetPrefix
	}
	if !strings.HasPrefix(f.Prefix, "/") || f.Prefix != "/" && strings.HasSuffix(f.Prefix, "/") || strings.ContainsAny(f.Prefix, " \t\n") {
		v.add("fleet.prefix", "%q: want a key prefix like /fpmux (a leading '/', no trailing '/', no spaces)", f.Prefix)
	}
	for _, k := range []struct{ key, p string }{{"fleet.ca", f.CA}, {"fleet.cert", f.Cert}, {"fleet.key", f.Key}, {"fleet.password_file", f.PasswordFile}} {
		if k.p != "" && !filepath.IsAbs(k.p) {
			v.add(k.key, "%q is not an absolute path", k.p)
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		v.add("fleet.cert", "fleet.cert and fleet.key go together: set both or neither")
	}
	if f.Password != "" && f.PasswordFile != "" {
		v.add("fleet.password", "set fleet.password or fleet.password_file, not both")
	}
	if (f.Password != "" || f.PasswordFile != "") && f.Username == "" {
		v.add("fleet.username", "required with a password")
	}
}

// checkEtcdEndpoint checks one etcd endpoint: http(s)://host:port or
// host:port.
func checkEtcdEndpoint(e string) error {
	hostport := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("etcd endpoint %q: %w", e, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("etcd endpoint %q: want http:// or https://", e)
		}
		if u.Path != "" && u.Path != "/" {
			return fmt.Errorf("etcd endpoint %q: want no path", e)
		}
		hostport = u.Host
	}
	if host, port, err := net.SplitHostPort(hostport); err != nil || host == "" || port == "" {
		return fmt.Errorf("etcd endpoint %q: want http(s)://host:port or host:port", e)
	}
	return nil
}

// End-to-end test of fleet mode against an etcd with TLS (client
// certificates required) and auth on: the hosts' fleet key (ca, cert,
// key, username, password_file) and the fleet commands' flags.

package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/fleet/etcdtest"
)

// TestFleetSecureEtcd: two hosts whose fleet key names the CA, a client
// certificate and a user with its password in a file register, and a
// fleet deploy run with the same as flags switches both; the commands
// without the password, or without the client certificate, fail.
func TestFleetSecureEtcd(t *testing.T) {
	needTools(t)
	etcd, sec := etcdtest.StartSecure(t, "/fpmux/")
	f := &fleetStack{t: t, etcd: etcd, releases: tempDir(t) + "/releases",
		auth: []string{"-ca", sec.CA, "-cert", sec.Cert, "-key", sec.Key, "-username", sec.User, "-password-file", sec.PasswordFile},
		fleetYAML: fmt.Sprintf("  ca: %s\n  cert: %s\n  key: %s\n  username: %s\n  password_file: %s\n",
			sec.CA, sec.Cert, sec.Key, sec.User, sec.PasswordFile)}
	startHosts(t, f, 2, nil)
	f.deploy("r1")
	f.wantServing("r1")
	for i, h := range f.hosts {
		if v := h.metric("fpmux_fleet_etcd_up"); v != 1 {
			t.Errorf("host %s: fpmux_fleet_etcd_up = %v, want 1", f.names[i], v)
		}
	}
	if st := f.status(); st.Active != "r1" || len(st.Hosts) != 2 {
		t.Errorf("fleet status: active %q, %d hosts; want r1 on 2", st.Active, len(st.Hosts))
	}
	for _, c := range []struct {
		name string
		drop string // the flag left out
	}{{"no password", "-password-file"}, {"no client certificate", "-cert"}} {
		var args []string
		for i := 0; i < len(f.auth); i += 2 {
			if f.auth[i] != c.drop && !(c.drop == "-cert" && f.auth[i] == "-key") {
				args = append(args, f.auth[i], f.auth[i+1])
			}
		}
		g := *f
		g.auth = args
		code, out, errs := g.cli("status")
		t.Logf("%s: fleet status exit %d: %s%s", c.name, code, out, errs)
		if code == 0 || !strings.Contains(errs, "etcd") {
			t.Errorf("%s: fleet status exit %d: %s%s; want it refused with etcd's error", c.name, code, out, errs)
		}
		// etcd answered: it is not unreachable, it refused the user.
		if c.drop == "-password-file" && (strings.Contains(errs, "unreachable") || !strings.Contains(errs, "refused")) {
			t.Errorf("%s: %q; want etcd's refusal named as such, not as etcd being unreachable", c.name, errs)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLoadFleet loads the fleet key: a full one as written, the defaults
// of a minimal one (prefix /fpmux, host the hostname), and none at all
// (nil: fpmux without a fleet, as before the key existed).
func TestLoadFleet(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	minimal := filepath.Join(t.TempDir(), "minimal.yaml")
	if err := os.WriteFile(minimal, []byte("fleet:\n  etcd: [127.0.0.1:2379]\n  app: shop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want *Fleet
	}{
		{"testdata/good-fleet.yaml", &Fleet{
			Etcd: []string{"https://10.0.0.1:2379", "10.0.0.2:2379"}, App: "shop", Host: "web-3", Prefix: "/fpmux",
			CA: "/etc/fpmux/etcd-ca.pem", Cert: "/etc/fpmux/etcd-client.pem", Key: "/etc/fpmux/etcd-client-key.pem",
			Username: "fpmux", PasswordFile: "/etc/fpmux/etcd-password",
		}},
		{minimal, &Fleet{Etcd: []string{"127.0.0.1:2379"}, App: "shop", Host: hostname, Prefix: "/fpmux"}},
		{"testdata/good-minimal.yaml", nil},
		{"examples/fpmux.yaml", nil},
	} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			cfg, err := Load(c.path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(cfg.Fleet, c.want) {
				t.Errorf("fleet = %+v, want %+v", cfg.Fleet, c.want)
			}
		})
	}
}

// TestLoadBadFleet wants every problem of a bad fleet key, each naming
// its key and line.
func TestLoadBadFleet(t *testing.T) {
	_, err := Load("testdata/bad-fleet.yaml")
	if err == nil {
		t.Fatal("Load succeeded")
	}
	want := []string{
		`fleet.etcd[0] (line 2): etcd endpoint "ftp://10.0.0.1:2379": want http:// or https://`,
		`fleet.etcd[1] (line 2): etcd endpoint "10.0.0.2": want http(s)://host:port or host:port`,
		`fleet.app (line 3): app "my shop": want 1 to 128 letters`,
		`fleet.host (line 4): host "-web": want 1 to 128 letters`,
		`fleet.prefix (line 5): "fpmux/": want a key prefix like /fpmux`,
		`fleet.cert (line 6): "client.pem" is not an absolute path`,
		"fleet.cert (line 6): fleet.cert and fleet.key go together",
		"fleet.password (line 7): set fleet.password or fleet.password_file, not both",
		"fleet.username: required with a password",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to hold %q", i, got[i], want[i])
		}
	}
}

func TestFleetPassword(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    Fleet
		want string
		err  string
	}{
		{"inline", Fleet{Password: "inline"}, "inline", ""},
		{"from a file, newline dropped", Fleet{PasswordFile: file}, "s3cret", ""},
		{"missing file", Fleet{PasswordFile: file + ".gone"}, "", "read fleet.password_file"},
		{"none", Fleet{}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.f.FleetPassword()
			if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
				t.Errorf("FleetPassword() = %q, %v; want %q, %q", got, err, c.want, c.err)
			}
		})
	}
}

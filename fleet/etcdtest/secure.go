package etcdtest

// This file owns the etcd a test runs with TLS (server certificate,
// client certificates required) and auth on: certificates made for the
// test with crypto/x509, and a user whose role reaches one key prefix
// only, as an operator sets etcd up for fpmux.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Secure is what a client of StartSecure's etcd needs: the CA that signed
// the server's and the client's certificates, the client's certificate
// and key (files), and a user (password also in PasswordFile) whose role
// reads and writes the keys under the prefix StartSecure was given.
type Secure struct {
	CA, Cert, Key          string
	User, Password         string
	PasswordFile           string
	rootUser, rootPassword string
}

// StartSecure runs etcd on https with --client-cert-auth, and auth enabled
// with a root user and Secure.User, whose role covers prefix only. The
// client certificate's common name is no etcd user: a client is let in by
// its certificate and authenticated by its password.
func StartSecure(t testing.TB, prefix string) (*Server, Secure) {
	t.Helper()
	dir := t.TempDir()
	sec := Secure{User: "fpmux", Password: "fleet-s3cret", rootUser: "root", rootPassword: "root-s3cret",
		PasswordFile: filepath.Join(dir, "password")}
	if err := os.WriteFile(sec.PasswordFile, []byte(sec.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey := makeCerts(t, dir, &sec)
	s := &Server{t: t, bin: FindBinary(t), dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "etcd.log"),
		client: "https://" + loopbackURL(t)[len("http://"):], peer: loopbackURL(t),
		extra: []string{"--cert-file", serverCert, "--key-file", serverKey, "--client-cert-auth", "--trusted-ca-file", sec.CA}}
	tc, err := transport.TLSInfo{TrustedCAFile: sec.CA, CertFile: sec.Cert, KeyFile: sec.Key}.ClientConfig()
	if err != nil {
		t.Fatalf("etcd client tls: %v", err)
	}
	s.tls = tc
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil && len(b) > 0 {
				t.Logf("etcd log (tail):\n%s", b[max(len(b)-8000, 0):])
			}
		}
	})
	s.Restart()
	enableAuth(t, s, &sec, prefix)
	s.user, s.password = sec.rootUser, sec.rootPassword
	return s, sec
}

// enableAuth adds the root user and sec.User with a role on prefix, then
// turns auth on, as `etcdctl user add`, `role grant-permission --prefix`
// and `auth enable` do.
func enableAuth(t testing.TB, s *Server, sec *Secure, prefix string) {
	t.Helper()
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, sec.rootUser, sec.rootPassword); return err },
		func() error { _, err := c.UserGrantRole(ctx, sec.rootUser, "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "fleet"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "fleet", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, sec.User, sec.Password); return err },
		func() error { _, err := c.UserGrantRole(ctx, sec.User, "fleet"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth setup, step %d: %v", i+1, err)
		}
	}
}

// makeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, naming the CA and client files in sec, and
// returns the server's certificate and key files.
func makeCerts(t testing.TB, dir string, sec *Secure) (cert, key string) {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("make CA certificate: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	sec.CA = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatalf("make %s certificate: %v", name, err)
		}
		kb, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kb)
	}
	cert, key = leaf("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	sec.Cert, sec.Key = leaf("fpmux-client", 3, x509.ExtKeyUsageClientAuth, nil)
	return cert, key
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientConfig is the config of a client of s: its TLS and, once auth is
// on, the root user.
func (s *Server) clientConfig() clientv3.Config {
	return clientv3.Config{Endpoints: []string{s.client}, DialTimeout: 5 * time.Second, Logger: nopLogger(),
		TLS: s.tls, Username: s.user, Password: s.password}
}

package etcdtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// TestClientAgainstServer checks that the etcd client fpmux is built with
// (v3.7.3) works against the etcd server the tests and Debian run (3.4)
// for every call the fleet makes: KV, Txn, Watch, Lease (expiry and
// keep-alive) and concurrency's Session and Mutex.
func TestClientAgainstServer(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w := c.Watch(ctx, "/t/", clientv3.WithPrefix())
	if _, err := c.Put(ctx, "/t/a", "1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	txn, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value("/t/a"), "=", "1")).
		Then(clientv3.OpPut("/t/b", "2"), clientv3.OpPut("/t/c", "3")).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("txn: %v %+v", err, txn)
	}
	got, err := c.Get(ctx, "/t/", clientv3.WithPrefix())
	if err != nil || got.Count != 3 {
		t.Fatalf("get prefix: %v, %d keys, want 3", err, got.Count)
	}
	// The txn's two puts arrive in one watch response, at one revision.
	seen := 0
	for seen < 3 {
		select {
		case wr := <-w:
			if err := wr.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			if len(wr.Events) == 2 && wr.Events[0].Kv.ModRevision != wr.Events[1].Kv.ModRevision {
				t.Errorf("txn events at two revisions")
			}
			seen += len(wr.Events)
		case <-ctx.Done():
			t.Fatalf("watch saw %d events of 3", seen)
		}
	}

	lease, err := c.Grant(ctx, 2)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := c.Put(ctx, "/t/leased", "x", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("put with lease: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := c.Get(ctx, "/t/leased")
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == 0 {
			break // the lease expired with no keep-alive, and its key went
		}
		if time.Now().After(deadline) {
			t.Fatal("a key under an expired lease is still there")
		}
		time.Sleep(100 * time.Millisecond)
	}

	s1, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s2.Close()
	m1, m2 := concurrency.NewMutex(s1, "/t/lock"), concurrency.NewMutex(s2, "/t/lock")
	if err := m1.TryLock(ctx); err != nil {
		t.Fatalf("first TryLock: %v", err)
	}
	if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("second TryLock = %v, want ErrLocked", err)
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := m2.TryLock(ctx); err != nil {
		t.Fatalf("TryLock after unlock: %v", err)
	}
}

// TestStopRestart checks the harness itself: a stopped etcd refuses, a
// restarted one serves the same data.
func TestStopRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	_, err := c.Get(short, "/k")
	cancelShort()
	if err == nil {
		t.Fatal("get from a stopped etcd succeeded")
	}
	s.Restart()
	r, err := c.Get(ctx, "/k")
	if err != nil || r.Count != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v %+v", err, r)
	}
}

// TestStartSecure: the secure etcd refuses a client without a
// certificate, lets the user in with its password under its prefix only,
// and refuses it without one.
func TestStartSecure(t *testing.T) {
	s, sec := StartSecure(t, "/fpmux/")
	tc, err := transport.TLSInfo{TrustedCAFile: sec.CA, CertFile: sec.Cert, KeyFile: sec.Key}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := transport.TLSInfo{TrustedCAFile: sec.CA}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		cfg       clientv3.Config
		key       string
		wantError bool
	}{
		{"user under its prefix", clientv3.Config{TLS: tc, Username: sec.User, Password: sec.Password}, "/fpmux/shop/x", false},
		{"user outside its prefix", clientv3.Config{TLS: tc, Username: sec.User, Password: sec.Password}, "/other", true},
		{"no password", clientv3.Config{TLS: tc}, "/fpmux/shop/x", true},
		{"no client certificate", clientv3.Config{TLS: noCert, Username: sec.User, Password: sec.Password}, "/fpmux/shop/x", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Endpoints, c.cfg.DialTimeout, c.cfg.Logger = []string{s.Endpoint()}, 3*time.Second, nopLogger()
			cl, err := clientv3.New(c.cfg)
			if err == nil {
				defer cl.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, err = cl.Put(ctx, c.key, "v")
			}
			if (err != nil) != c.wantError {
				t.Errorf("put %s: %v, want error %v", c.key, err, c.wantError)
			}
		})
	}
}

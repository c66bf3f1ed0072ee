// This file owns the wiring of a host's fleet agent in serve (config key
// fleet): the etcd client from the key, the supervisor as the agent's
// Releases, and the agent's lifetime.

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fleet"
	"github.com/fpmux/fpmux/supervisor"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClient makes an etcd client from the fleet key's endpoints, TLS
// files and credentials. It does not wait for etcd: a host whose etcd is
// down serves its active release and connects when etcd comes back.
func etcdClient(f *config.Fleet) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: f.Etcd, DialTimeout: 5 * time.Second, Username: f.Username, Logger: zap.NewNop(),
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 2 * time.Second}
	pw, err := f.FleetPassword()
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	cfg.Password = pw
	if f.CA != "" || f.Cert != "" {
		info := transport.TLSInfo{TrustedCAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd client: tls: %w", err)
		}
		cfg.TLS = tc
	} else if hasHTTPS(f.Etcd) {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", f.Etcd, err)
	}
	return c, nil
}

func hasHTTPS(endpoints []string) bool {
	for _, e := range endpoints {
		if len(e) > 8 && e[:8] == "https://" {
			return true
		}
	}
	return false
}

// startFleet starts the fleet agent when the config has a fleet key, waits
// (up to its prepare bound, or ctx) until the host serves the fleet's
// active release, so that a host joining or restarting takes traffic and
// tells systemd READY=1 only then, and returns the function that stops the
// agent (and its etcd client), safe to call twice. Without the key it
// starts nothing.
func startFleet(ctx context.Context, cfg *config.Config, sup *supervisor.Supervisor, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	if cfg.Fleet == nil {
		return func() {}, nil
	}
	c, err := etcdClient(cfg.Fleet)
	if err != nil {
		return nil, err
	}
	a, err := fleet.New(fleet.Options{Client: c, Prefix: cfg.Fleet.Prefix, App: cfg.Fleet.App, Host: cfg.Fleet.Host,
		Releases: supReleases{sup}, Logger: log, Registerer: reg,
		PrepareTimeout: prepareBound(cfg)})
	if err != nil {
		c.Close()
		return nil, err
	}
	sup.AddHandler("GET /v1/fleet", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.Info())
	}))
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(runCtx)
	}()
	log.Info("fleet agent started", "app", cfg.Fleet.App, "host", cfg.Fleet.Host, "etcd", cfg.Fleet.Etcd, "prefix", cfg.Fleet.Prefix)
	bound := time.NewTimer(prepareBound(cfg))
	defer bound.Stop()
	select {
	case <-a.Synced():
		log.Info("fleet: the host serves the fleet's release", "release", sup.ActiveID())
	case <-bound.C:
		log.Warn("fleet: not converged to the fleet's release in time; serving the restored one", "release", sup.ActiveID(), "bound", prepareBound(cfg))
	case <-ctx.Done():
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			c.Close()
		})
	}, nil
}

// prepareBound bounds one prepare on this host: the pool's start, its
// health checks and warm-up.
func prepareBound(cfg *config.Config) time.Duration {
	return time.Duration(cfg.PHPFPM.StartTimeout) + time.Minute
}

// supReleases is the supervisor as the fleet agent's Releases.
type supReleases struct{ s *supervisor.Supervisor }

func (r supReleases) Prepare(ctx context.Context, id, root string) error {
	if rel, err := r.s.Get(ctx, id); err == nil && (rel.State == supervisor.StateReady || rel.State == supervisor.StateActive) {
		return nil
	}
	_, err := r.s.Deploy(ctx, supervisor.DeployRequest{ID: id, Root: root})
	return err
}

func (r supReleases) Activate(id string, keep bool) error {
	var err error
	if keep {
		_, err = r.s.ActivateKeeping(id)
	} else {
		_, err = r.s.Activate(id)
		r.s.Unhold(id)
	}
	return err
}

func (r supReleases) Unhold(id string) { r.s.Unhold(id) }

func (r supReleases) Retire(id string) error {
	_, err := r.s.Retire(id)
	if errors.Is(err, supervisor.ErrNotFound) {
		return nil
	}
	return err
}

func (r supReleases) Active() string { return r.s.ActiveID() }

func (r supReleases) Why(id string) string {
	rel, err := r.s.Get(context.Background(), id)
	if err != nil || rel.Guard == nil || rel.Guard.State != "rolled_back" {
		return ""
	}
	return rel.Error
}

func (r supReleases) Figures() []fleet.ReleaseFigures {
	figs := r.s.Figures()
	out := make([]fleet.ReleaseFigures, len(figs))
	for i, f := range figs {
		out[i] = fleet.ReleaseFigures{ID: f.ID, State: string(f.State), Answered: f.Answered, Errors: f.Errors, Fatals: f.Fatals}
	}
	return out
}

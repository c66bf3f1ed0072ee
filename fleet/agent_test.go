package fleet

import (
	"context"
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDashboardFleetRow: every fpmux_fleet_* series the Grafana
// dashboard's fleet row queries is one the agent registers, and the row
// queries all of them.
func TestDashboardFleetRow(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := New(Options{Client: c, App: "shop", Host: "h1", Releases: nopReleases{}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var registered []string
	for _, mf := range mfs {
		registered = append(registered, mf.GetName())
	}
	b, err := os.ReadFile("../config/examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	queried := regexp.MustCompile(`fpmux_fleet_[a-z_]+`).FindAllString(string(b), -1)
	for _, q := range queried {
		if !slices.Contains(registered, q) {
			t.Errorf("the dashboard queries %s, which the agent does not register (it registers %v)", q, registered)
		}
	}
	for _, r := range registered {
		if !slices.Contains(queried, r) {
			t.Errorf("the dashboard's fleet row does not show %s", r)
		}
	}
}

// nopReleases is a host with nothing deployed.
type nopReleases struct{}

func (nopReleases) Prepare(ctx context.Context, id, root string) error { return nil }
func (nopReleases) Activate(id string, keep bool) error                { return nil }
func (nopReleases) Unhold(id string)                                   {}
func (nopReleases) Retire(id string) error                             { return nil }
func (nopReleases) Active() string                                     { return "" }
func (nopReleases) Figures() []ReleaseFigures                          { return nil }
func (nopReleases) Why(id string) string                               { return "" }

// unholdReleases records Unhold calls.
type unholdReleases struct {
	nopReleases
	unheld []string
}

func (u *unholdReleases) Unhold(id string) { u.unheld = append(u.unheld, id) }

// TestNewRolloutLetsGoOfKeptRelease: a host that missed the end of a
// rollout (etcd unreachable meanwhile) lets go of the release that
// rollout's switch kept once it reads the next rollout.
func TestNewRolloutLetsGoOfKeptRelease(t *testing.T) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rel := &unholdReleases{}
	a, err := New(Options{Client: c, App: "shop", Host: "h1", Releases: rel})
	if err != nil {
		t.Fatal(err)
	}
	a.read, a.rolloutKey = true, "r2@1"
	a.held["r2@1"] = "r1"
	a.view = view{rollout: &Rollout{Key: "r3@2", ID: "r3", State: StatePreparing, Hosts: []string{"h2"}}, hosts: map[string]HostRecord{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	a.reconcile(ctx, &wg)
	wg.Wait()
	if !slices.Equal(rel.unheld, []string{"r1"}) || len(a.held) != 0 {
		t.Errorf("after reading rollout r3@2: unheld %v, still held %v; want r1 let go", rel.unheld, a.held)
	}
}

package fleet

import (
	"context"
	"os"
	"regexp"
	"slices"
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

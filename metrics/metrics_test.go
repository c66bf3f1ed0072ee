package metrics

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gauges gathers reg and returns each gauge sample as
// name{label=value,...} -> value.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return got
}

// TestSupervisorGauges: what the supervisor reports at a scrape becomes
// the per-release gauges, each figure under its own name and labels, and
// a figure not read (nil) gives no series.
func TestSupervisorGauges(t *testing.T) {
	tests := []struct {
		name string
		sc   Scrape
		want map[string]float64
	}{
		{"none", Scrape{}, map[string]float64{}},
		{"retired", Scrape{Releases: []Release{{ID: "r1", State: "retired"}}}, map[string]float64{
			"fpmux_release_state{release=r1,state=active}":  0,
			"fpmux_release_state{release=r1,state=retired}": 1,
		}},
		{"draining, memory only", Scrape{Releases: []Release{{ID: "r1", State: "draining", Live: true, InFlight: 2, ConnsOpen: 3, ConnsIdle: 1,
			Memory: &pool.Memory{RSS: 100, PSS: 60}}}}, map[string]float64{
			"fpmux_release_state{release=r1,state=active}":   0,
			"fpmux_release_state{release=r1,state=draining}": 1,
			"fpmux_requests_in_flight{release=r1}":           2,
			"fpmux_pool_connections{release=r1,state=open}":  3,
			"fpmux_pool_connections{release=r1,state=idle}":  1,
			"fpmux_pool_memory_bytes{kind=rss,release=r1}":   100,
			"fpmux_pool_memory_bytes{kind=pss,release=r1}":   60,
		}},
		{"active, status", Scrape{Active: "r2", Releases: []Release{{ID: "r2", State: "active", Live: true,
			Status: &pool.Status{ActiveProcesses: 1, IdleProcesses: 4, ListenQueue: 5, MaxListenQueue: 6, MaxChildrenReached: 7, SlowRequests: 8}}}},
			map[string]float64{
				"fpmux_active_release_info{release=r2}":          1,
				"fpmux_release_state{release=r2,state=active}":   1,
				"fpmux_release_state{release=r2,state=draining}": 0,
				"fpmux_requests_in_flight{release=r2}":           0,
				"fpmux_pool_connections{release=r2,state=open}":  0,
				"fpmux_pool_connections{release=r2,state=idle}":  0,
				"fpmux_pool_processes{release=r2,state=active}":  1,
				"fpmux_pool_processes{release=r2,state=idle}":    4,
				"fpmux_pool_listen_queue{release=r2}":            5,
				"fpmux_pool_max_listen_queue{release=r2}":        6,
				"fpmux_pool_max_children_reached{release=r2}":    7,
				"fpmux_pool_slow_requests{release=r2}":           8,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewSupervisor([]string{"active", "draining", "retired"}, func() Scrape { return tt.sc })
			reg := prometheus.NewRegistry()
			if err := m.Register(reg); err != nil {
				t.Fatal(err)
			}
			got := gauges(t, reg)
			for _, k := range slices.Sorted(maps.Keys(got)) {
				if _, ok := tt.want[k]; !ok && !strings.HasPrefix(k, "fpmux_release_state{") {
					t.Errorf("unexpected %s = %v", k, got[k])
				}
			}
			for _, k := range slices.Sorted(maps.Keys(tt.want)) {
				if v, ok := got[k]; !ok || v != tt.want[k] {
					t.Errorf("%s = %v (present %v), want %v", k, v, ok, tt.want[k])
				}
			}
		})
	}
}

// TestDefinitionsRegister: every set registers on one registry without a
// clash, as fpmux serves them together.
func TestDefinitionsRegister(t *testing.T) {
	reg := NewRegistry()
	if err := NewSupervisor(nil, func() Scrape { return Scrape{} }).Register(reg); err != nil {
		t.Fatalf("supervisor: %v", err)
	}
	if err := NewFleet().Register(reg); err != nil {
		t.Fatalf("fleet: %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

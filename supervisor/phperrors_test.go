package supervisor

import (
	"testing"

	"github.com/fpmux/fpmux/metrics"
	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
)

// phpErrorSeries returns fpmux_php_errors_total's samples by release and level.
func phpErrorSeries(t *testing.T, m *metrics.Supervisor) map[[2]string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.PHPErrors)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var key [2]string
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "release":
					key[0] = l.GetValue()
				case "level":
					key[1] = l.GetValue()
				}
			}
			got[key] = s.GetCounter().GetValue()
		}
	}
	return got
}

// TestPHPErrorMetrics: a release's four series exist at 0 from its
// creation, count what its pool reports, fatals() counts the fatal ones of
// that release object alone, and forget drops the series.
func TestPHPErrorMetrics(t *testing.T) {
	s, _ := newTestSupervisor(t)
	rm := forRelease(s.m, "r1")
	other := forRelease(s.m, "r2")
	got := phpErrorSeries(t, s.m)
	for _, id := range []string{"r1", "r2"} {
		for _, l := range pool.PHPLevels {
			if v, ok := got[[2]string{id, string(l)}]; !ok || v != 0 {
				t.Errorf("fpmux_php_errors_total{release=%q,level=%q} = %v (present %v) at creation, want 0", id, l, v, ok)
			}
		}
	}
	opts := s.poolOptions("r1", "/srv/r1", rm)
	for _, l := range []pool.PHPLevel{pool.PHPFatal, pool.PHPWarning, pool.PHPFatal, pool.PHPDeprecated, pool.PHPFatal} {
		opts.OnPHPError(l)
	}
	got = phpErrorSeries(t, s.m)
	want := map[string]float64{"fatal": 3, "warning": 1, "notice": 0, "deprecated": 1}
	for l, n := range want {
		if v := got[[2]string{"r1", l}]; v != n {
			t.Errorf("fpmux_php_errors_total{release=\"r1\",level=%q} = %v, want %v", l, v, n)
		}
	}
	if rm.fatals() != 3 || other.fatals() != 0 {
		t.Errorf("fatals() = %d for r1, %d for r2; want 3 and 0", rm.fatals(), other.fatals())
	}
	again := forRelease(s.m, "r1") // the same id deployed again
	if again.fatals() != 0 {
		t.Errorf("fatals() of r1 deployed again = %d, want 0", again.fatals())
	}
	s.m.Forget("r1")
	for k := range phpErrorSeries(t, s.m) {
		if k[0] == "r1" {
			t.Errorf("series %v left after forget", k)
		}
	}
	if n := len(phpErrorSeries(t, s.m)); n != len(pool.PHPLevels) {
		t.Errorf("%d series after forgetting r1, want r2's %d", n, len(pool.PHPLevels))
	}
}

// The switch spread of a fleet batch: how far apart, by their own clocks,
// the hosts of one batch switch (see docs/fleet.md, Switch spread).

package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fleet"
	"github.com/fpmux/fpmux/internal/proc"
)

// TestFleetSwitchSpread runs rollouts of five hosts in one batch under
// load through every host (20, or FPMUX_FLEET_ROLLOUTS) and logs the
// distribution of the spread, first to last host's activation, with the
// machine's load average. It asserts no figure of time (the machine is
// shared): each rollout must finish with all five hosts switched and
// reported, and the load must see no failed or mixed answer.
func TestFleetSwitchSpread(t *testing.T) {
	rollouts := 20
	if v, err := strconv.Atoi(os.Getenv("FPMUX_FLEET_ROLLOUTS")); err == nil && v > 0 {
		rollouts = v
	}
	f := newFleet(t, 5, nil)
	f.deploy("s0")
	stop := make(chan struct{})
	wait := f.load(1, stop)
	var spreads, seen, lag []time.Duration
	load0 := loadAverage()
	for i := 1; i <= rollouts; i++ {
		id := fmt.Sprintf("s%d", i)
		f.deploy(id)
		st := f.status()
		first, last, n := fleet.Spread(hostMap(st), st.Rollout.Key, 1)
		if n != 5 {
			t.Fatalf("rollout %s: %d hosts reported their switch, want 5", id, n)
		}
		spreads = append(spreads, last.Sub(first))
		sf, sl, _ := fleet.SeenSpread(hostMap(st), st.Rollout.Key, 1)
		seen = append(seen, sl.Sub(sf))
		for _, h := range st.Hosts { // each host's own seen-to-active time
			for _, sw := range h.Switches {
				if sw.Rollout == st.Rollout.Key {
					lag = append(lag, sw.At.Sub(sw.Seen))
				}
			}
		}
	}
	close(stop)
	load1 := loadAverage()
	for i, rs := range wait() {
		for _, r := range rs {
			if _, mixed, ok := servedBy(r.body); r.err != nil || r.status != 200 || !ok || mixed {
				t.Errorf("host %s: %d %q %v", f.names[i], r.status, r.body, r.err)
				break
			}
		}
	}
	var all []string
	for _, s := range spreads {
		all = append(all, s.Round(10*time.Microsecond).String())
	}
	t.Logf("switch spread over %d rollouts of 5 hosts in one batch: %s; load average %s before, %s after",
		len(spreads), distribution(spreads), load0, load1)
	t.Logf("of which: spread of the batch's arrival from etcd %s; each host from arrival to active %s", distribution(seen), distribution(lag))
	t.Logf("every spread: %s", strings.Join(all, " "))
}

// distribution is p50, p99 and max of ds.
func distribution(ds []time.Duration) string {
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	pct := func(p float64) time.Duration {
		return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %v, p99 %v, max %v", pct(0.5), pct(0.99), pct(1))
}

// loadAverage is /proc/loadavg's first three fields, or "unknown".
func loadAverage() string {
	l, err := proc.LoadAverage()
	if err != nil {
		return "unknown"
	}
	return l
}

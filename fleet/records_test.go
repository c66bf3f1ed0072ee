package fleet

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	hosts := []string{"a", "b", "c", "d", "e"}
	for _, c := range []struct {
		name          string
		canary, batch int
		want          [][]string
	}{
		{"all at once", 0, 0, [][]string{{"a", "b", "c", "d", "e"}}},
		{"batches of 2", 0, 2, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"canary then the rest", 1, 0, [][]string{{"a"}, {"b", "c", "d", "e"}}},
		{"canary then batches of 3", 2, 3, [][]string{{"a", "b"}, {"c", "d", "e"}}},
		{"canary larger than the fleet", 9, 0, [][]string{{"a", "b", "c", "d", "e"}}},
		{"batch larger than the fleet", 0, 9, [][]string{{"a", "b", "c", "d", "e"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := plan(hosts, c.canary, c.batch); !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan(%d, %d) = %v, want %v", c.canary, c.batch, got, c.want)
			}
		})
	}
}

// TestParseView: a host acts only on the batches of the current rollout,
// and a record that does not decode is skipped and named.
func TestParseView(t *testing.T) {
	k := newKeys("/fpmux", "shop")
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	kvs := map[string][]byte{
		k.rollout():     enc(Rollout{Key: "r2@2", ID: "r2", State: StateSwitching, Hosts: []string{"h1", "h2", "h3"}}),
		k.batch(1):      enc(Batch{Rollout: "r2@2", N: 1, Hosts: []string{"h1"}}),
		k.batch(2):      enc(Batch{Rollout: "r2@1", N: 2, Hosts: []string{"h2"}}), // an older rollout's
		k.host("h1"):    enc(HostRecord{Host: "h1", Active: "r2"}),
		k.host("h2"):    []byte("{not json"),
		k.active():      enc(Active{Ref: Ref{"r1", "/r/r1"}, At: time.Unix(1, 0)}),
		"/fpmux/other/": []byte("x"),
	}
	v, bad := parseView(k, kvs)
	if len(bad) != 1 || len(v.hosts) != 1 || v.active.Release != "r1" || len(v.batches) != 2 {
		t.Fatalf("parseView: bad %v, hosts %v, active %+v, batches %v", bad, v.hosts, v.active, v.batches)
	}
	for _, c := range []struct {
		host string
		n    int // 0: none
	}{{"h1", 1}, {"h2", 0}, {"h3", 0}} {
		b, ok := v.batchOf(c.host)
		if got := map[bool]int{true: b.N}[ok]; got != c.n {
			t.Errorf("batchOf(%s) = %d, want %d", c.host, got, c.n)
		}
	}
}

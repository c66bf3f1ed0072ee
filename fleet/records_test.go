package fleet

import (
	"encoding/json"
	"reflect"
	"strings"
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

// TestPicture draws a rollout of two hosts in two batches: a bar of each
// release per host, a line per batch, and an error without a rollout.
func TestPicture(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ro := &Rollout{Key: "r2@1", ID: "r2", Previous: Ref{Release: "r1"}, Hosts: []string{"h1", "h2"}, State: StateDone, Started: t0, Updated: t0.Add(time.Second)}
	st := Status{App: "shop", Rollout: ro,
		Batches: []Batch{{Rollout: "r2@1", N: 1, Hosts: []string{"h1"}, At: t0.Add(500 * time.Millisecond)}, {Rollout: "r2@1", N: 2, Hosts: []string{"h2"}, At: t0.Add(700 * time.Millisecond)}},
		Hosts: []HostRecord{
			{Host: "h1", Switches: []Switch{{Release: "r2", Rollout: "r2@1", Batch: 1, At: t0.Add(510 * time.Millisecond)}}},
			{Host: "h2", Switches: []Switch{{Release: "r2", Rollout: "r2@1", Batch: 2, At: t0.Add(705 * time.Millisecond)}}},
		}}
	svg, err := Picture(st)
	if err != nil {
		t.Fatal(err)
	}
	s := string(svg)
	for _, want := range []string{"<svg", "rollout of r2 (from r1)", ">h1<", ">h2<", "batch 1", "batch 2", "r2 from", "</svg>"} {
		if !strings.Contains(s, want) {
			t.Errorf("picture lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "<line"); n != 2 {
		t.Errorf("%d batch lines, want 2", n)
	}
	if _, err := Picture(Status{App: "shop"}); err == nil {
		t.Error("Picture of no rollout: no error")
	}
}

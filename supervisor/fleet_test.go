package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/fpmux/fpmux/pool"
)

// TestActivateKeeping: a fleet switch keeps the release it replaces ready
// with the same master, whatever keep_previous says (0 here), so the way
// back is instant; Unhold lets it drain and retire as keep_previous says.
func TestActivateKeeping(t *testing.T) {
	k := newKeepStack(t, 0, time.Minute)
	k.deploy("r1")
	pid := k.pid("r1")
	if _, err := k.s.Deploy(t.Context(), DeployRequest{ID: "r2", Root: k.root("r2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.s.ActivateKeeping("r2"); err != nil {
		t.Fatal(err)
	}
	if got := k.get("r1"); got.State != StateReady || k.pid("r1") != pid {
		t.Fatalf("r1 after ActivateKeeping(r2): %s, want ready on master %d", got.State, pid)
	}
	if _, err := k.s.Activate("r1"); err != nil {
		t.Fatalf("switch back to the held release: %v", err)
	}
	if k.pid("r1") != pid || k.s.ActiveID() != "r1" {
		t.Fatalf("switched back to %s on master %d, want r1 on %d", k.s.ActiveID(), k.pid("r1"), pid)
	}
	k.waitState("r2", StateRetired) // an Activate holds nothing

	if _, err := k.s.Deploy(t.Context(), DeployRequest{ID: "r3", Root: k.root("r3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.s.ActivateKeeping("r3"); err != nil {
		t.Fatal(err)
	}
	k.s.Unhold("r1")
	k.waitState("r1", StateRetired)
}

// TestFigures counts answers, 5xx answers and fatals per live release.
func TestFigures(t *testing.T) {
	k := newKeepStack(t, 0, time.Minute)
	k.deploy("r1")
	for _, status := range []int{200, 500, 502, 404} {
		pin, err := k.s.Pin()
		if err != nil {
			t.Fatal(err)
		}
		pin.Tracker.Done(status, 0)
	}
	k.s.releases["r1"].metrics.phpError(pool.PHPFatal)
	got := k.s.Figures()
	want := Figures{ID: "r1", State: StateActive, Answered: 4, Errors: 2, Fatals: 1}
	if len(got) != 1 || got[0].ID != want.ID || got[0].State != want.State || got[0].Answered != 4 || got[0].Errors != 2 || got[0].Fatals != 1 {
		t.Fatalf("Figures() = %+v, want [%+v]", got, want)
	}
	k.s.Close(context.Background())
	if got := k.s.Figures(); len(got) != 0 {
		t.Errorf("Figures() after Close = %+v, want none", got)
	}
}

package supervisor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestAddHandler: a route added for the fleet sits behind the admin API's
// own checks: admin_token and the browser guard.
func TestAddHandler(t *testing.T) {
	s, _ := newTestSupervisor(t)
	s.AddHandler("GET /v1/fleet", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("{}")) }))
	h := s.Handler()
	if status, _, msg := adminCall(t, h, "GET", "/v1/fleet", "", nil); status != 200 {
		t.Fatalf("GET /v1/fleet without a token in force: %d %s", status, msg)
	}
	withToken(t, s, testToken)
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer " + testToken, 200}} {
		if status, _, msg := adminCall(t, h, "GET", "/v1/fleet", c.auth, nil); status != c.want {
			t.Errorf("GET /v1/fleet with %q: %d %s, want %d", c.auth, status, msg, c.want)
		}
	}
	req := adminRequest("GET", "/v1/fleet", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Origin", "https://evil.example")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code == 200 {
		t.Errorf("GET /v1/fleet from a browser page: %d, want it refused", rec.Code)
	}
}

// TestActivateKeepingStartsTheGuard: a fleet switch starts the config's
// guard: 5xx answers over its bound switch back to the kept release at
// once (same master) with the reason on the release rolled back from;
// and a guard whose window passes leaves the kept release ready until
// Unhold, since its rollout may still switch back to it.
func TestActivateKeepingStartsTheGuard(t *testing.T) {
	t.Run("rolled back", func(t *testing.T) {
		k := newGuardStack(t, 0, guardConf(time.Hour, 0.05, 5))
		k.deploy("r1")
		pid := k.pid("r1")
		if _, err := k.s.Deploy(t.Context(), DeployRequest{ID: "r2", Root: k.root("r2")}); err != nil {
			t.Fatal(err)
		}
		if _, err := k.s.ActivateKeeping("r2"); err != nil {
			t.Fatal(err)
		}
		if g := k.get("r2").Guard; g == nil || g.State != guardWatching {
			t.Fatalf("r2's guard after ActivateKeeping: %+v, want watching", g)
		}
		k.answer(repeat(10, 1, 500)...)
		if k.s.ActiveID() != "r1" || k.pid("r1") != pid {
			t.Fatalf("after 10 answers of 500: active %s on master %d, want r1 on %d", k.s.ActiveID(), k.pid("r1"), pid)
		}
		if r2 := k.get("r2"); !strings.Contains(r2.Error, "guard rolled back to r1") {
			t.Errorf("r2's error: %q, want the guard's rollback", r2.Error)
		}
		k.s.Unhold("r1") // the rollout ends: r1, active, stays
		if k.s.ActiveID() != "r1" || k.get("r1").State != StateActive {
			t.Errorf("after Unhold(r1): active %s, r1 %s", k.s.ActiveID(), k.get("r1").State)
		}
	})
	t.Run("passed", func(t *testing.T) {
		k := newGuardStack(t, 0, guardConf(200*time.Millisecond, 0.05, 5))
		k.deploy("r1")
		pid := k.pid("r1")
		if _, err := k.s.Deploy(t.Context(), DeployRequest{ID: "r2", Root: k.root("r2")}); err != nil {
			t.Fatal(err)
		}
		if _, err := k.s.ActivateKeeping("r2"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for k.get("r2").Guard.State == guardWatching {
			if time.Now().After(deadline) {
				t.Fatal("the guard still watches 20s after its 200ms window")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if r1 := k.get("r1"); r1.State != StateReady || k.pid("r1") != pid {
			t.Fatalf("r1 once r2's guard passed: %s, want ready on master %d (kept for the rollout)", r1.State, pid)
		}
		k.s.Unhold("r1")
		k.waitState("r1", StateRetired)
	})
}

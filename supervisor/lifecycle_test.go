package supervisor

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// parkBound bounds each wait of these tests for a goroutine to reach a
// hook or to return: generous, on a busy machine.
const parkBound = 60 * time.Second

// await waits for ch to be closed (or to send), failing the test after
// parkBound.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(parkBound):
		t.Fatalf("timed out after %v waiting for %s", parkBound, what)
	}
	panic("unreachable")
}

type deployResult struct {
	rel Release
	err error
}

// TestFailedActivationStopsItsPoolFirst parks a deploy whose activation
// failed (its switch could not be recorded) just before its pool is
// stopped, and deploys the same id meanwhile. That redeploy must be
// refused until the failed pool is stopped: the stop removes the pool's
// directory, which is the one a pool of the same id starts in. Once the
// failed deploy has returned, the same deploy succeeds and its pool, in
// its directory, answers.
func TestFailedActivationStopsItsPoolFirst(t *testing.T) {
	k := newKeepStack(t, 0, time.Minute)
	k.deploy("r1")
	k.s.stateFS = (&recordingFS{failSync: true}).fs()
	parked, resume := make(chan struct{}), make(chan struct{})
	k.s.hooks.activationFailed = func(string) {
		close(parked)
		<-resume
	}
	failed := make(chan deployResult, 1)
	go func() {
		rel, err := k.s.Deploy(context.Background(), DeployRequest{ID: "r2", Root: k.root("r2"), Activate: true})
		failed <- deployResult{rel, err}
	}()
	select {
	case <-parked:
	case res := <-failed:
		t.Fatalf("deploy r2 with a failing record: %+v %v, want it to reach the failed activation's stop", res.rel, res.err)
	case <-time.After(parkBound):
		t.Fatal("timed out waiting for the failed activation")
	}
	k.s.mu.Lock()
	k.s.stateFS = osStateFS
	k.s.hooks.activationFailed = nil
	k.s.mu.Unlock()

	_, redeployErr := k.s.Deploy(t.Context(), DeployRequest{ID: "r2", Root: k.root("r2"), Activate: true})
	close(resume)
	res := await(t, "the failed deploy to return", failed)
	var e *Error
	if !errors.As(res.err, &e) || e.Status != 500 || res.rel.State != StateFailed {
		t.Errorf("the failed deploy: %s %v, want failed with a 500", res.rel.State, res.err)
	}
	if redeployErr == nil {
		t.Errorf("deploy r2 while the failed r2's pool was being stopped succeeded; want a 409 until it is stopped")
	} else if !errors.As(redeployErr, &e) || e.Status != 409 {
		t.Errorf("deploy r2 while the failed r2's pool was being stopped: %v, want a 409", redeployErr)
	} else {
		k.deploy("r2")
	}

	k.s.mu.Lock()
	r2 := k.s.releases["r2"]
	state, p := r2.state, r2.pool
	k.s.mu.Unlock()
	if state != StateActive || p == nil {
		t.Fatalf("r2 is %s with pool %v, want active", state, p)
	}
	if _, err := os.Stat(p.Socket()); err != nil {
		t.Errorf("the active r2's socket: %v (its directory removed by the failed r2's stop)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		t.Errorf("the active r2's pool does not answer: %v", err)
	}
}

// TestRollbackToAStartingRelease: r1, active before r2 and retired since,
// is being deployed again (without activation) when a rollback asks for it.
// The rollback waits for that start and, once r1 is ready, switches to it
// at once, rather than waiting for a drain that never comes until its
// client gives up.
func TestRollbackToAStartingRelease(t *testing.T) {
	k := newKeepStack(t, 0, time.Minute)
	k.deploy("r1")
	k.deploy("r2")
	k.waitState("r1", StateRetired)

	starting, resume := make(chan struct{}), make(chan struct{})
	k.s.hooks.deployStarting = func(id string) {
		close(starting)
		<-resume
	}
	deployed := make(chan deployResult, 1)
	go func() {
		rel, err := k.s.Deploy(context.Background(), DeployRequest{ID: "r1", Root: k.root("r1")})
		deployed <- deployResult{rel, err}
	}()
	await(t, "r1 to be starting", starting)

	waiting := make(chan struct{})
	k.s.hooks.rollbackWaits = func(string) { close(waiting) }
	rolled := make(chan deployResult, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		rel, err := k.s.Rollback(ctx)
		rolled <- deployResult{rel, err}
	}()
	select {
	case <-waiting:
	case res := <-rolled:
		t.Fatalf("rollback while r1 starts returned at once: %+v %v, want it to wait for r1", res.rel, res.err)
	case <-time.After(parkBound):
		t.Fatal("timed out waiting for the rollback to wait")
	}
	close(resume)
	if res := await(t, "the deploy of r1", deployed); res.err != nil {
		t.Fatalf("deploy r1 again: %v", res.err)
	}
	res := await(t, "the rollback", rolled)
	if res.err != nil || res.rel.ID != "r1" || res.rel.State != StateActive || k.s.ActiveID() != "r1" {
		t.Errorf("rollback while r1 started: %s %s %v (active %q), want r1 active", res.rel.ID, res.rel.State, res.err, k.s.ActiveID())
	}
}

// TestRetireWhileRollbackWaits: a rollback waits for r1, which drains
// (a request holds it), and r1 is then retired. The retire is the later
// word: the rollback is refused (409) instead of starting r1 again once it
// has drained, and r2 stays active.
func TestRetireWhileRollbackWaits(t *testing.T) {
	k := newKeepStack(t, 0, time.Minute)
	k.deploy("r1")
	pin, err := k.s.Pin()
	if err != nil {
		t.Fatal(err)
	}
	k.deploy("r2")
	if rel := k.get("r1"); rel.State != StateDraining {
		t.Fatalf("r1 is %s with a request in flight, want draining", rel.State)
	}

	waiting := make(chan struct{})
	k.s.hooks.rollbackWaits = func(string) { close(waiting) }
	rolled := make(chan deployResult, 1)
	go func() {
		rel, err := k.s.Rollback(t.Context())
		rolled <- deployResult{rel, err}
	}()
	await(t, "the rollback to wait for r1's drain", waiting)
	if rel, err := k.s.Retire("r1"); err != nil {
		t.Fatalf("retire r1 while it drains: %s %v", rel.State, err)
	}
	pin.Tracker.Done(200, time.Millisecond)
	res := await(t, "the rollback", rolled)
	var e *Error
	if !errors.As(res.err, &e) || e.Status != 409 {
		t.Errorf("rollback to r1, retired while the rollback waited: %s %s %v, want a 409", res.rel.ID, res.rel.State, res.err)
	}
	k.waitState("r1", StateRetired)
	if id := k.s.ActiveID(); id != "r2" {
		t.Errorf("active after the refused rollback: %q, want r2", id)
	}
}

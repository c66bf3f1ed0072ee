package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// TestRetireAnAdoptedRelease: the release the next fpmux of an upgrade
// adopted is a release like any other once it is no longer active: kept
// after its drain (keep_previous), it can be retired, and the retire drains
// and stops its pool.
func TestRetireAnAdoptedRelease(t *testing.T) {
	k := newKeepStack(t, 1, time.Minute)
	k.deploy("r1")
	if _, err := k.s.Freeze(); err != nil {
		t.Fatalf("freeze: %v", err)
	}
	next, err := New(Options{Config: k.s.conf(), Logger: slog.New(slog.NewTextHandler(k.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close(context.Background()) })
	if err := next.RestoreAdopting(t.Context(), "r1", nil); err != nil {
		t.Fatalf("adopt r1: %v", err)
	}
	if err := k.s.HandOver(t.Context()); err != nil {
		t.Fatalf("hand over: %v", err)
	}
	k.s = next
	k.deploy("r2")
	k.waitState("r1", StateReady) // kept

	rel, err := func() (rel Release, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return next.Retire("r1")
	}()
	if err != nil || rel.State != StateDraining {
		t.Fatalf("retire the adopted r1, kept: %s %v, want draining", rel.State, err)
	}
	k.waitState("r1", StateRetired)
}

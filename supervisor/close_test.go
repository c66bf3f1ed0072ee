package supervisor

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCloseAfterTheBoundStopsByForce: Close called with its bound already
// passed (fpmux's shutdown once drain_timeout cut the requests in flight)
// stops every pool by force, though each is idle: a cut request's worker
// may still run its script, which a graceful stop would wait for up to
// stop_timeout. Three live pools (the active one and two kept), as each
// used to pick between idle and the bound at random.
func TestCloseAfterTheBoundStopsByForce(t *testing.T) {
	k := newKeepStack(t, 2, time.Minute)
	for _, id := range []string{"r1", "r2", "r3"} {
		k.deploy(id)
	}
	k.waitState("r1", StateReady)
	k.waitState("r2", StateReady)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	log := k.log.String()
	if n := strings.Count(log, "stopping php-fpm gracefully"); n > 0 {
		t.Errorf("%d of 3 pools stopped gracefully after the bound, want all by force", n)
	}
	if n := strings.Count(log, "terminating php-fpm"); n != 3 {
		t.Errorf("%d pools terminated, want 3", n)
	}
}

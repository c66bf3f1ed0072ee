package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpmux/fpmux/supervisor"
)

func TestStatusLine(t *testing.T) {
	rel := func(id string, st supervisor.State) supervisor.Release {
		return supervisor.Release{ID: id, State: st}
	}
	tests := []struct {
		name string
		rs   []supervisor.Release
		want string
	}{
		{"nothing deployed", nil, "no active release"},
		{"one active", []supervisor.Release{rel("r1", supervisor.StateActive)}, "active r1"},
		{"a switch", []supervisor.Release{
			rel("r0", supervisor.StateRetired), rel("r1", supervisor.StateDraining), rel("r2", supervisor.StateActive),
		}, "active r2; draining r1"},
		{"every live state", []supervisor.Release{
			rel("r1", supervisor.StateDraining), rel("r2", supervisor.StateDraining), rel("r3", supervisor.StateActive),
			rel("r4", supervisor.StateReady), rel("r5", supervisor.StateStarting), rel("bad", supervisor.StateFailed),
		}, "active r3; starting r5; ready r4; draining r1, r2"},
		{"a deploy while none is active", []supervisor.Release{rel("r1", supervisor.StateStarting)}, "no active release; starting r1"},
	}
	for _, tt := range tests {
		if got := statusLine(tt.rs); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// fakeLister is a supervisor whose List can be made to hang.
type fakeLister struct {
	mu   sync.Mutex
	rs   []supervisor.Release
	gate chan struct{} // non-nil: List waits until it is closed
}

func (f *fakeLister) List(context.Context) []supervisor.Release {
	f.mu.Lock()
	gate, rs := f.gate, f.rs
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return rs
}

func (f *fakeLister) set(rs ...supervisor.Release) {
	f.mu.Lock()
	f.rs = rs
	f.mu.Unlock()
}

func (f *fakeLister) wedge() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeLister) unwedge() {
	f.mu.Lock()
	close(f.gate)
	f.gate = nil
	f.mu.Unlock()
}

// runMonitor runs a monitor over sup with a watchdog of wd, refreshing the
// status every statusEvery, and returns the messages it sends.
func runMonitor(t *testing.T, sup lister, accepting func() bool, wd, statusEvery time.Duration) (*monitor, <-chan string) {
	t.Helper()
	msgs := make(chan string, 1000)
	m := newMonitor(sup, func(s string) { msgs <- s }, accepting, wd, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.every = statusEvery
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return m, msgs
}

// expectMsg waits for a message, discarding others.
func expectMsg(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %q within 5s", want)
		}
	}
}

// expectNoMsg fails if want is sent within d.
func expectNoMsg(t *testing.T, msgs <-chan string, want string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-msgs:
			if m == want {
				t.Fatalf("%q was sent", want)
			}
		case <-deadline:
			return
		}
	}
}

// drainFor discards what is sent for d.
func drainFor(msgs <-chan string, d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case <-msgs:
		case <-deadline:
			return
		}
	}
}

func TestMonitorPingsTheWatchdogOnlyWhileHealthy(t *testing.T) {
	sup := &fakeLister{}
	var accepting atomic.Bool
	// Status refreshes out of the way: only the watchdog lists.
	_, msgs := runMonitor(t, sup, accepting.Load, 40*time.Millisecond, time.Hour)

	// Before the FastCGI accept loop runs (fpmux restoring its release),
	// and after it stopped: no ping.
	expectNoMsg(t, msgs, "WATCHDOG=1", 300*time.Millisecond)
	accepting.Store(true)
	expectMsg(t, msgs, "WATCHDOG=1")

	// A supervisor that does not answer stops the pings; they resume when
	// it answers again.
	sup.wedge()
	drainFor(msgs, 100*time.Millisecond) // a List begun before may still answer
	expectNoMsg(t, msgs, "WATCHDOG=1", 300*time.Millisecond)
	sup.unwedge()
	expectMsg(t, msgs, "WATCHDOG=1")

	accepting.Store(false)
	drainFor(msgs, 100*time.Millisecond)
	expectNoMsg(t, msgs, "WATCHDOG=1", 300*time.Millisecond)
}

func TestMonitorSendsStatusWhenItChanges(t *testing.T) {
	sup := &fakeLister{}
	var accepting atomic.Bool
	accepting.Store(true)
	m, msgs := runMonitor(t, sup, accepting.Load, 0, 20*time.Millisecond)
	expectMsg(t, msgs, "STATUS=no active release")
	sup.set(supervisor.Release{ID: "r1", State: supervisor.StateActive})
	m.refresh()
	expectMsg(t, msgs, "STATUS=active r1")
	// Unchanged: not sent again; no watchdog configured: no pings.
	deadline := time.After(300 * time.Millisecond)
	for done := false; !done; {
		select {
		case msg := <-msgs:
			if strings.HasPrefix(msg, "STATUS=") || msg == "WATCHDOG=1" {
				t.Fatalf("sent %q with nothing changed and no watchdog", msg)
			}
		case <-deadline:
			done = true
		}
	}
}

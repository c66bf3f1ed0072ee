// This file owns what fpmux tells systemd (sd_notify): READY=1, RELOADING=1
// and STOPPING=1 as serve reaches them, a STATUS= line naming the active,
// starting, ready and draining releases, and WATCHDOG=1 while fpmux is
// healthy.

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/fpmux/fpmux/supervisor"
)

// notifier sends sd_notify messages when systemd asked for them
// (NOTIFY_SOCKET is set), and does nothing otherwise.
type notifier struct {
	log      *slog.Logger
	failures atomic.Int64
}

// send sends one message of newline-separated assignments. A failure is
// logged once: systemd going away does not stop fpmux.
func (n *notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && n.failures.Add(1) == 1 {
		n.log.Warn("telling systemd how fpmux is", "err", err)
	}
}

// statusLine is what systemd's STATUS= shows: the active release, then
// those starting, ready and draining, e.g. "active r2; draining r1".
func statusLine(rs []supervisor.Release) string {
	ids := map[supervisor.State][]string{}
	for _, r := range rs {
		ids[r.State] = append(ids[r.State], r.ID)
	}
	var parts []string
	if a := ids[supervisor.StateActive]; len(a) > 0 {
		parts = append(parts, "active "+strings.Join(a, ", "))
	} else {
		parts = append(parts, "no active release")
	}
	for _, st := range []supervisor.State{supervisor.StateStarting, supervisor.StateReady, supervisor.StateDraining} {
		if len(ids[st]) > 0 {
			parts = append(parts, string(st)+" "+strings.Join(ids[st], ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// lister is what the monitor needs of the supervisor.
type lister interface {
	List(ctx context.Context) []supervisor.Release
}

// monitor keeps systemd's view of fpmux current. Once a second, and at once
// when poked (after an admin request that may have changed a release), it
// lists the releases and sends STATUS= when the line changed. With a
// watchdog, at half its interval it sends WATCHDOG=1, but only while fpmux
// is healthy: the FastCGI accept loop runs and the supervisor answers List
// within that half interval. A wedged fpmux thus stops the pings and
// systemd restarts it.
type monitor struct {
	sup       lister
	notify    func(state string)
	accepting func() bool   // the FastCGI accept loop runs
	watchdog  time.Duration // WATCHDOG_USEC; 0: none
	every     time.Duration // how often STATUS= is refreshed; 1s when 0
	log       *slog.Logger
	poke      chan struct{} // buffered 1: refresh the status now
	say       chan string   // a message to send with the status line

	status  string                    // last STATUS= sent
	pending chan []supervisor.Release // a List that has not returned yet
	unwell  bool                      // the last watchdog check failed
	listCtx context.Context           // done: List skips php-fpm's status pages
}

func newMonitor(sup lister, notify func(string), accepting func() bool, watchdog time.Duration, log *slog.Logger) *monitor {
	// A done context makes List skip asking each pool's php-fpm for its
	// status page: the monitor needs states only, and must not cost php-fpm
	// a request a second.
	listCtx, cancel := context.WithCancel(context.Background())
	cancel()
	return &monitor{sup: sup, notify: notify, accepting: accepting, watchdog: watchdog,
		log: log, poke: make(chan struct{}, 1), say: make(chan string), listCtx: listCtx}
}

// announce has the running monitor send msg (READY=1) with the current
// status line, so systemd shows the releases the moment fpmux is ready.
func (m *monitor) announce(msg string) {
	m.say <- msg
}

// refresh asks for a status update soon, without waiting for it.
func (m *monitor) refresh() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// run works until ctx ends.
func (m *monitor) run(ctx context.Context) {
	every := m.every
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var pet <-chan time.Time
	if m.watchdog > 0 {
		t := time.NewTicker(m.watchdog / 2)
		defer t.Stop()
		pet = t.C
	}
	m.updateStatus(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.updateStatus(ctx)
		case <-m.poke:
			m.updateStatus(ctx)
		case msg := <-m.say:
			if line, ok := m.currentStatus(ctx, time.Second); ok {
				m.status = line
				msg += "\nSTATUS=" + line
			}
			m.notify(msg)
		case <-pet:
			m.petWatchdog(ctx)
		}
	}
}

// currentStatus lists the releases and returns the status line, or false
// when the supervisor did not answer within bound.
func (m *monitor) currentStatus(ctx context.Context, bound time.Duration) (string, bool) {
	rs, ok := m.list(ctx, bound)
	if !ok {
		return "", false
	}
	return statusLine(rs), true
}

func (m *monitor) updateStatus(ctx context.Context) {
	line, ok := m.currentStatus(ctx, time.Second)
	if ok && line != m.status {
		m.status = line
		m.notify("STATUS=" + line)
	}
}

func (m *monitor) petWatchdog(ctx context.Context) {
	problem := ""
	if !m.accepting() {
		problem = "the FastCGI accept loop is not running"
	} else if _, ok := m.list(ctx, m.watchdog/2); !ok {
		problem = fmt.Sprintf("the supervisor did not list the releases within %v", m.watchdog/2)
	}
	if problem != "" {
		if !m.unwell {
			m.log.Error("not pinging systemd's watchdog", "reason", problem)
		}
		m.unwell = true
		return
	}
	if m.unwell {
		m.log.Info("pinging systemd's watchdog again")
	}
	m.unwell = false
	m.notify("WATCHDOG=1")
}

// list calls List, waiting at most bound. A List that does not return in
// time is waited for again by the next call instead of being doubled, so a
// wedged supervisor costs one goroutine, not one a second.
func (m *monitor) list(ctx context.Context, bound time.Duration) ([]supervisor.Release, bool) {
	if m.pending == nil {
		ch := make(chan []supervisor.Release, 1)
		go func() { ch <- m.sup.List(m.listCtx) }()
		m.pending = ch
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case rs := <-m.pending:
		m.pending = nil
		return rs, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

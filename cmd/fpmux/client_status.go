// This file owns what `fpmux status` adds to its release table: since when
// a release has been active, and `fpmux status ID [-full]`, one release
// with its pool's processes as php-fpm lists them.

package main

import (
	"fmt"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/fpmux/fpmux/supervisor"
)

// activeLine says since when an active release has been active, or when a
// release that is no longer active was last, from activated_at (and
// draining_at, when it drained since).
func (c *client) activeLine(r clientRelease) string {
	if r.ActivatedAt == nil || r.ActivatedAt.IsZero() {
		return ""
	}
	now := c.now()
	if r.State == "active" {
		s := fmt.Sprintf("active since %s (%s)", clientClock(*r.ActivatedAt, now), clientAge(now.Sub(*r.ActivatedAt)))
		if r.Generation > 0 && r.PoolReloadedAt != nil {
			s += fmt.Sprintf(", on a pool reloaded at %s (generation %d)", clientClock(*r.PoolReloadedAt, now), r.Generation)
		}
		return s
	}
	if r.DrainingAt != nil && !r.DrainingAt.IsZero() && !r.DrainingAt.Before(*r.ActivatedAt) {
		return fmt.Sprintf("was active from %s to %s (%s)", clientClock(*r.ActivatedAt, now), clientClock(*r.DrainingAt, now),
			clientAge(r.DrainingAt.Sub(*r.ActivatedAt)))
	}
	return "last activated " + clientClock(*r.ActivatedAt, now)
}

// clientClock writes t in local time: the time of day when it is today,
// with the date otherwise.
func clientClock(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// printOne prints one release as the table does, then, with full, its
// pool's processes.
func (c *client) printOne(id string, full bool) error {
	path := "/v1/releases/" + clientPathEscape(id)
	if full {
		path += "?full"
	}
	data, err := c.do(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	r, ok := clientDecodeRelease(data)
	if !ok {
		return fmt.Errorf("decode release %s from fpmux at %s: not a release", id, c.admin)
	}
	if err := c.printTable([]clientRelease{r}); err != nil {
		return err
	}
	if !full {
		return nil
	}
	fmt.Fprintln(c.stdout)
	if r.Pool == nil || len(r.Pool.Processes) == 0 {
		_, err := fmt.Fprintf(c.stdout, "%s: no processes listed (its pool is not live, or its status page did not answer)\n", r.ID)
		return err
	}
	if err := c.printProcesses(r.Pool.Processes); err != nil {
		return err
	}
	return c.printSlowLog(r.Pool)
}

// printSlowLog prints the last requests the pool's slowlog holds, each
// with its innermost PHP frame, when the pool has a slowlog.
func (c *client) printSlowLog(p *clientPool) error {
	switch {
	case p.SlowLogError != "":
		_, err := fmt.Fprintf(c.stdout, "\nslowlog: %s\n", clientOneLine(p.SlowLogError))
		return err
	case p.SlowLogPath == "":
		return nil
	case len(p.SlowLog) == 0:
		_, err := fmt.Fprintf(c.stdout, "\nslow requests: none in %s\n", p.SlowLogPath)
		return err
	}
	fmt.Fprintf(c.stdout, "\nslow requests, the last %d in %s:\n", len(p.SlowLog), p.SlowLogPath)
	for _, e := range p.SlowLog {
		frame := "-"
		if len(e.Stack) > 0 {
			frame = e.Stack[0]
		}
		fmt.Fprintf(c.stdout, "  %s pid %d %s: %s\n", e.Time, e.PID, e.Script, clientOneLine(frame))
	}
	return nil
}

// printProcesses prints php-fpm's per-process view: for a busy worker its
// request and how long it has run, for an idle one the last request it
// served with its duration, CPU and memory.
func (c *client) printProcesses(ps []supervisor.PoolProcess) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tSTATE\tREQUESTS\tDURATION\tCPU\tMEMORY\tREQUEST")
	for _, p := range ps {
		state := "idle"
		switch {
		case p.Busy:
			state = "busy (" + p.State + ")"
		case p.Held:
			state = "idle (kept connection)"
		}
		cpu, mem, req := "-", "-", "-"
		if !p.Busy && !p.Held { // php-fpm shows them for a worker back in Idle only
			cpu = strconv.FormatFloat(p.LastCPUPercent, 'f', 2, 64) + "%"
			mem = clientBytes(p.LastMemoryBytes)
		}
		if p.URI != "" {
			req = clientOneLine(clientOr(p.Method, "-") + " " + p.URI)
		}
		dur := time.Duration(p.DurationMS) * time.Millisecond
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", p.PID, state, p.Requests, dur.Round(time.Millisecond), cpu, mem, req)
	}
	return tw.Flush()
}

// clientBytes writes n bytes in KiB or MiB.
func clientBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

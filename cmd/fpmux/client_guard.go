// This file owns the client's side of the guard after a switch: deploy's
// -guard, -no-guard and -wait-guard, and the guard line of status.

package main

import (
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// clientGuard is a release's guard as the admin API reports it.
type clientGuard struct {
	State         string     `json:"state"` // watching, passed, rolled_back, ended
	Previous      string     `json:"previous"`
	Until         *time.Time `json:"until,omitempty"`
	LeftMS        int64      `json:"left_ms"`
	Reason        string     `json:"reason,omitempty"`
	Answered      int64      `json:"answered"`
	Errors        int64      `json:"errors"`
	Fatals        int64      `json:"fatals"`
	Window        string     `json:"window"`
	MaxErrorRatio float64    `json:"max_error_ratio"`
	MinRequests   int        `json:"min_requests"`
	MaxFatal      int        `json:"max_fatal"`
}

// clientGuardFlags are deploy's guard flags.
type clientGuardFlags struct{ on, off, wait *bool }

func addClientGuardFlags(fs *flag.FlagSet) *clientGuardFlags {
	return &clientGuardFlags{
		on: fs.Bool("guard", false, "judge the release by its traffic after the switch and switch back to the previous one "+
			"when it errors (the config's guard key, or its defaults)"),
		off:  fs.Bool("no-guard", false, "no guard after this switch, whatever the config's guard key says"),
		wait: fs.Bool("wait-guard", false, "wait through the guard's window; exit 1 when the guard rolled the release back (implies -guard)"),
	}
}

// check refuses flags that contradict each other.
func (g *clientGuardFlags) check(fs *flag.FlagSet, noActivate bool) error {
	switch {
	case *g.off && (*g.on || *g.wait):
		return clientUsage(fs, "-no-guard excludes -guard and -wait-guard")
	case noActivate && (*g.on || *g.wait):
		return clientUsage(fs, "-guard and -wait-guard judge a switch: not with -no-activate")
	}
	return nil
}

// field is the deploy request's guard field: nil takes the config's key.
func (g *clientGuardFlags) field() *bool {
	switch {
	case *g.off:
		return new(bool)
	case *g.on || *g.wait:
		on := true
		return &on
	}
	return nil
}

// clientGuardPoll is how often -wait-guard asks how the guard goes.
const clientGuardPoll = 200 * time.Millisecond

// finishDeploy says what the guard of the release just deployed does and,
// with -wait-guard, waits until it ended: an error (exit 1) when it rolled
// the release back or could not judge it to the end.
func (g *clientGuardFlags) finishDeploy(c *client, r clientRelease) error {
	if r.Guard == nil {
		if *g.wait {
			fmt.Fprintf(c.stdout, "no guard for release %s: no release was active before it\n", r.ID)
		}
		return nil
	}
	fmt.Fprintf(c.stdout, "guard watching release %s for %s: %s\n", r.ID, r.Guard.Window, clientGuardRule(r.Guard))
	if !*g.wait {
		return nil
	}
	guard := r.Guard
	deadline := c.now().Add(time.Duration(guard.LeftMS)*time.Millisecond + clientTimeout)
	for guard.State == "watching" {
		if c.now().After(deadline) {
			return fmt.Errorf("guard of release %s still watching past its window", r.ID)
		}
		time.Sleep(clientGuardPoll)
		data, err := c.do(http.MethodGet, "/v1/releases/"+clientPathEscape(r.ID), nil)
		if err != nil {
			return fmt.Errorf("wait for the guard of release %s: %w", r.ID, err)
		}
		next, ok := clientDecodeRelease(data)
		if !ok || next.Guard == nil {
			return fmt.Errorf("wait for the guard of release %s: fpmux answered no guard", r.ID)
		}
		guard = next.Guard
	}
	figures := clientGuardFigures(guard)
	switch guard.State {
	case "passed":
		fmt.Fprintf(c.stdout, "guard passed: release %s served its %s window (%s)\n", r.ID, guard.Window, figures)
		return nil
	case "rolled_back":
		return fmt.Errorf("guard rolled release %s back to %s: %s (%s)", r.ID, guard.Previous, guard.Reason, figures)
	}
	return fmt.Errorf("guard of release %s ended before its window did: %s (%s)", r.ID, guard.Reason, figures)
}

// clientGuardRule says when a guard switches back.
func clientGuardRule(g *clientGuard) string {
	return fmt.Sprintf("back to %s if over %.4g%% of %d+ answers are 5xx or PHP logs over %d fatal errors",
		g.Previous, 100*g.MaxErrorRatio, g.MinRequests, g.MaxFatal)
}

// clientGuardFigures is what a guard counted.
func clientGuardFigures(g *clientGuard) string {
	ratio := 0.0
	if g.Answered > 0 {
		ratio = 100 * float64(g.Errors) / float64(g.Answered)
	}
	return fmt.Sprintf("%d answered, %d 5xx (%.1f%%), %d PHP fatal", g.Answered, g.Errors, ratio, g.Fatals)
}

// clientGuardLine is status's line for a release's guard.
func clientGuardLine(g *clientGuard) string {
	var b strings.Builder
	b.WriteString("guard ")
	switch g.State {
	case "watching":
		fmt.Fprintf(&b, "watching, %s left of %s: %s; %s", clientAge(time.Duration(g.LeftMS)*time.Millisecond),
			g.Window, clientGuardFigures(g), clientGuardRule(g))
		return b.String()
	case "rolled_back":
		fmt.Fprintf(&b, "rolled back to %s: %s", g.Previous, clientOneLine(g.Reason))
	case "ended":
		fmt.Fprintf(&b, "ended: %s", clientOneLine(g.Reason))
	default:
		b.WriteString(clientOneLine(g.State))
	}
	fmt.Fprintf(&b, " (%s)", clientGuardFigures(g))
	return b.String()
}

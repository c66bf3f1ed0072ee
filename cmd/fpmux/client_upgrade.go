// This file owns `fpmux upgrade`: it asks the running fpmux to start the
// next one in its place (POST /v1/upgrade), reports which pid serves now,
// and waits until the one before has handed its connections over and
// exited.

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

func clientUpgrade(args []string, stdout, stderr io.Writer) error {
	fs, target := clientFlags("upgrade", "[-admin ADDR] [-token TOKEN] [-timeout DUR] [-wait=false]", stderr)
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the next fpmux to serve and, with -wait, for the one before to exit")
	wait := fs.Bool("wait", true, "wait until the fpmux before has exited (it finishes the requests it holds first); needs fpmux on this host")
	pos, err := clientParse(fs, args)
	if err == nil && len(pos) > 0 {
		err = clientUsage(fs, "unexpected argument %q", pos[0])
	}
	var c *client
	if err == nil {
		c, err = target.client(*timeout, stdout)
	}
	if err != nil {
		return err
	}
	start := time.Now()
	data, err := c.do(http.MethodPost, "/v1/upgrade", struct{}{})
	if err != nil {
		return err
	}
	var out struct {
		OldPID  int    `json:"old_pid"`
		NewPID  int    `json:"new_pid"`
		Release string `json:"release"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.NewPID == 0 {
		return fmt.Errorf("upgrade: unexpected answer %q", clientOneLine(string(data)))
	}
	serving := "no release"
	if out.Release != "" {
		serving = "release " + out.Release + " (same php-fpm master)"
	}
	fmt.Fprintf(stdout, "upgraded: pid %d serves %s; pid %d hands its connections over\n", out.NewPID, serving, out.OldPID)
	if !*wait {
		return nil
	}
	deadline := start.Add(*timeout)
	for processLives(out.OldPID) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still runs after %v (it exits at drain_timeout at the latest)", out.OldPID, *timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(stdout, "pid %d exited; upgrade took %v\n", out.OldPID, time.Since(start).Round(time.Millisecond))
	return nil
}

// processLives tells whether pid runs (a zombie has exited).
func processLives(pid int) bool {
	st, err := proc.ReadStat(pid)
	return err == nil && st.Live()
}

// This file owns the child processes the bench starts itself (fpmux,
// nginx, the compare section's php-fpm): each in its own process group,
// waited for by one goroutine, ready once it answers, and stopped by a
// signal with a bound.

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one child process the bench started, in its own process group
// (so a Ctrl-C at the terminal reaches only the bench, which stops the
// children in order). One goroutine waits for it.
type proc struct {
	name     string
	cmd      *exec.Cmd
	done     chan struct{} // closed once Wait returned
	gone     atomic.Bool   // set just before done is closed
	stopOnce sync.Once
	stopErr  error
}

// startLogged starts cmd as startProc does, its stdout and stderr going to
// a new file at logPath.
func startLogged(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: create %s: %w", name, logPath, err)
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	return startProc(name, cmd)
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		p.gone.Store(true)
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool { return p.gone.Load() }

// waitUp waits up to bound for ready to hold, and fails at once, quoting
// the last lines of the file at logPath, when p exits first.
func (p *proc) waitUp(ctx context.Context, bound time.Duration, logPath string, ready func() bool) error {
	return waitFor(ctx, p.name, bound, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited at start: %s", p.name, tail(logPath, 20))
		}
		return ready(), nil
	})
}

// accepting reports whether each of addrs on network ("tcp", "unix")
// accepts a connection: a server that listens.
func accepting(network string, addrs ...string) bool {
	for _, a := range addrs {
		c, err := net.Dial(network, a)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends sig and waits up to bound for the process to exit, then kills
// its process group; that, or an exit before being asked, is an error.
func (p *proc) stop(sig syscall.Signal, bound time.Duration) error {
	p.stopOnce.Do(func() {
		if p.exited() {
			p.stopErr = fmt.Errorf("%s had exited before the end of the run: %v", p.name, p.cmd.ProcessState)
			return
		}
		logf("stopping %s (pid %d) with %v", p.name, p.pid(), sig)
		p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
			if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.ExitStatus() != 0 {
				p.stopErr = fmt.Errorf("%s exited with %v after %v", p.name, p.cmd.ProcessState, sig)
			}
		case <-time.After(bound):
			syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
			p.stopErr = fmt.Errorf("%s did not exit within %v of %v; killed", p.name, bound, sig)
		}
	})
	return p.stopErr
}

// process.go owns one php-fpm master process: spawning it in its own process
// group with an explicit environment (or adopting one another fpmux spawned,
// at an upgrade), reading its output, waiting for it (one goroutine),
// signalling its group and making sure the group is gone.

package pool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
	"golang.org/x/sys/unix"
)

// childPath is the whole environment php-fpm gets: nothing of fpmux's own
// (no NOTIFY_SOCKET, no LISTEN_FDS) leaks into the master.
const childPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const (
	tailLines   = 20   // php-fpm output lines kept for error messages
	maxLineLen  = 8192 // longer output lines are cut
	logDrainMax = 2 * time.Second
)

// master is one php-fpm master process. Exactly one goroutine (wait, or
// watch for an adopted master) sees it exit; it kills what is left of the
// process group and then closes exited.
type master struct {
	pid     int // also the process group id (Setpgid)
	started time.Time
	cmd     *exec.Cmd // nil for an adopted master: it is not our child
	tail    *tail
	out     *os.File // the read end of the output pipe, nil if there is none

	exited  chan struct{} // closed once the master is reaped and its group SIGKILLed
	waitErr error         // cmd.Wait's result; read only after exited is closed
	logDone chan struct{} // closed when the output reader reached EOF
}

// spawn starts binary with args in its own process group. Its stdout and
// stderr go to a pipe read line by line into logger (and the tail), PHP's
// errors counted through onPHPError (may be nil).
func spawn(binary string, args []string, dir string, logger *slog.Logger, onPHPError func(PHPLevel)) (*master, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = []string{childPath}
	cmd.Stdout = w
	cmd.Stderr = w
	// No parent-death signal: it would fire when this fpmux exits after
	// an upgrade handed the master to the next one. The lifeline (see
	// lifeline.go) stops the masters once no fpmux is left.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close() // the child holds its own copies
	if err != nil {
		r.Close()
		return nil, err
	}
	m := &master{
		pid:     cmd.Process.Pid,
		started: time.Now(),
		cmd:     cmd,
		tail:    &tail{},
		out:     r,
		exited:  make(chan struct{}),
		logDone: make(chan struct{}),
	}
	go m.readOutput(r, logger.With("pid", m.pid), onPHPError)
	go m.wait()
	return m, nil
}

// adoptMaster takes over a running master that another fpmux spawned (an
// upgrade): not being its parent, this process cannot wait(2) for it, so
// its exit is watched through a pidfd (Linux 5.3 and later). out is the
// read end of its output pipe the other fpmux passed on, or nil: PHP's
// errors are counted through onPHPError (may be nil) from what is read
// from it, so only those logged after the adoption, and none without it.
func adoptMaster(pid int, out *os.File, logger *slog.Logger, onPHPError func(PHPLevel)) (*master, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("watch php-fpm master %d: pidfd_open: %w", pid, err)
	}
	m := &master{
		pid:     pid,
		started: time.Now(),
		tail:    &tail{},
		out:     out,
		exited:  make(chan struct{}),
		logDone: make(chan struct{}),
	}
	if out != nil {
		go m.readOutput(out, logger.With("pid", pid), onPHPError)
	} else {
		close(m.logDone)
	}
	go m.watch(fd)
	return m, nil
}

// watch is wait for an adopted master: the pidfd turns readable when the
// process exits. Its exit status is its parent's to collect, not ours.
func (m *master) watch(pidfd int) {
	defer unix.Close(pidfd)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || fds[0].Revents != 0 {
			break
		}
	}
	_ = syscall.Kill(-m.pid, syscall.SIGKILL)
	m.waitErr = errors.New("exited (adopted from the fpmux before an upgrade: exit status unknown)")
	close(m.exited)
}

// stopReading ends the output reader without closing the pipe's other
// copies: the next fpmux reads php-fpm's output from now on.
func (m *master) stopReading() {
	if m.out != nil {
		m.out.SetReadDeadline(time.Now())
	}
}

// wait is the one goroutine that calls cmd.Wait.
func (m *master) wait() {
	err := m.cmd.Wait()
	// Orphaned workers would keep the listening socket and never exit.
	_ = syscall.Kill(-m.pid, syscall.SIGKILL)
	m.waitErr = err
	close(m.exited)
}

// exitDesc describes how the master ended; call after exited is closed.
func (m *master) exitDesc() string {
	if m.waitErr == nil {
		return "exit status 0"
	}
	return m.waitErr.Error()
}

// signal sends sig to the master only.
func (m *master) signal(sig syscall.Signal) {
	_ = syscall.Kill(m.pid, sig)
}

// signalGroup sends sig to every process of the master's group.
func (m *master) signalGroup(sig syscall.Signal) {
	_ = syscall.Kill(-m.pid, sig)
}

// isExited reports whether the master has been reaped.
func (m *master) isExited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the group and waits until the master is reaped, the group
// is gone and the output is read (each bounded).
func (m *master) kill() error {
	m.signalGroup(syscall.SIGKILL)
	return m.waitGone(5 * time.Second)
}

// waitGone waits up to d for the master to be reaped and every process of
// its group to be gone, then up to logDrainMax for the output reader.
func (m *master) waitGone(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.exited:
	case <-t.C:
		return fmt.Errorf("php-fpm master %d still running after SIGKILL", m.pid)
	}
	if err := waitGroupGone(m.pid, d); err != nil {
		return err
	}
	select {
	case <-m.logDone:
	case <-time.After(logDrainMax):
	}
	return nil
}

// readOutput logs each line php-fpm writes (PHP's errors classified, see
// outputLog), keeps the last ones, and ends at EOF (when the master and all
// its workers have closed the pipe).
func (m *master) readOutput(r *os.File, logger *slog.Logger, onPHPError func(PHPLevel)) {
	defer close(m.logDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLineLen)
	out := &outputLog{logger: logger, onError: onPHPError}
	for {
		line, err := readLine(br)
		if line != "" {
			m.tail.add(out.line(line))
		}
		if err != nil {
			return
		}
	}
}

// readLine returns the next line without its newline, cut at maxLineLen;
// the rest of an over-long line is discarded so the pipe never stalls.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s := string(b)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err == nil || err == io.EOF {
			return s + " [cut]", err
		}
		return s, err
	}
	return strings.TrimRight(string(b), "\r\n"), err
}

// parseFPMLine strips php-fpm's "[22-Nov-2026 20:16:16] " timestamp (slog
// has its own) and maps its level to slog's. Lines without a level (worker
// output with decorate_workers_output = no) are logged at Info.
func parseFPMLine(line string) (slog.Level, string) {
	text := line
	if strings.HasPrefix(text, "[") {
		if i := strings.Index(text, "] "); i > 0 && i < 32 {
			text = text[i+2:]
		}
	}
	switch {
	case strings.HasPrefix(text, "DEBUG: "):
		return slog.LevelDebug, text
	case strings.HasPrefix(text, "NOTICE: "):
		return slog.LevelInfo, text
	case strings.HasPrefix(text, "WARNING: "):
		return slog.LevelWarn, text
	case strings.HasPrefix(text, "ERROR: "), strings.HasPrefix(text, "ALERT: "):
		return slog.LevelError, text
	}
	return slog.LevelInfo, text
}

// tail keeps the last tailLines lines.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, s)
}

// String returns the kept lines joined by "; ".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "; ")
}

// groupAlive reports whether any process of group pgid is still alive.
// Zombies do not count: they hold no socket or memory, and reaping them is
// up to their new parent (pid 1), which may be slow in a container.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	g, err := proc.Group(pgid)
	return err != nil || len(g) > 0 // cannot tell: kill(2) said something is there
}

// waitGroupGone polls until no live process is left in group pgid, for at
// most d.
func waitGroupGone(pgid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of group %d still alive after %v", pgid, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

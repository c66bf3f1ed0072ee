// lifeline.go owns what makes every php-fpm master follow fpmux when it is
// killed: a small watcher process, started once per fpmux service, that
// reaps the pools left in the pools directory when the last fpmux process
// holding its pipe is gone.
//
// A parent-death signal (Pdeathsig) did this before, but it follows the
// thread that spawned the master: it fires when that fpmux exits even if
// another fpmux took the pools over in an upgrade, and a process that is not
// the master's parent cannot wait(2) for it. The lifeline instead holds the
// read end of a pipe whose write ends only fpmux processes hold (an
// upgrade passes its copy on); the read ends at EOF exactly when every one
// of them is gone, however it went.

package pool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// lifelineEnv names, in the watcher's environment, the pools directory it
// reaps; a binary that finds it set runs as the watcher (see LifelineMain).
const lifelineEnv = "FPMUX_POOL_LIFELINE"

// lifelineFd is the pipe's read end in the watcher (the first ExtraFile).
const lifelineFd = 3

// Lifeline is fpmux's end of the watcher's pipe: the watcher reaps the pools
// once every copy of it is closed. Its file is close-on-exec, so no php-fpm
// master ever holds it.
type Lifeline struct {
	w *os.File
}

// StartLifeline starts the watcher for poolsDir: this program run again
// (os.Executable) in a session of its own, with only the pipe's read end and
// stderr, and an environment without systemd's variables. The program's main
// must call LifelineMain first.
func StartLifeline(poolsDir string) (*Lifeline, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start lifeline: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start lifeline: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(lifelineEnviron(), lifelineEnv+"="+poolsDir)
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stderr = os.Stderr
	// A session of its own: a terminal's ^C or a signal to fpmux's group
	// does not reach it. systemd's cgroup kill still does, which is right.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start lifeline: %w", err)
	}
	// It outlives this process by design (that is its point): nobody here
	// waits for it, and its parent after fpmux is gone reaps it.
	cmd.Process.Release()
	return &Lifeline{w: w}, nil
}

// AdoptLifeline takes over the write end an fpmux passed at fd (an upgrade),
// making it close-on-exec so that php-fpm never inherits it.
func AdoptLifeline(fd int) (*Lifeline, error) {
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "lifeline")
	if f == nil {
		return nil, fmt.Errorf("adopt lifeline: fd %d is not open", fd)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		f.Close()
		return nil, fmt.Errorf("adopt lifeline: fd %d is not a pipe", fd)
	}
	return &Lifeline{w: f}, nil
}

// File returns the write end, to pass on to the next fpmux at an upgrade.
func (l *Lifeline) File() *os.File { return l.w }

// Close drops this process's hold; the watcher reaps once no fpmux holds one.
func (l *Lifeline) Close() error { return l.w.Close() }

// lifelineEnviron is the environment without what systemd gave fpmux: the
// watcher must not answer for the service to systemd.
func lifelineEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID", lifelineEnv:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// LifelineMain runs the watcher and exits when this process was started as
// one; otherwise it returns at once. It waits for EOF on the pipe, then
// kills the master of every pool directory left in the pools directory
// with its process group (as Reap does, leaving the directories). It ignores the signals a terminal or an
// impatient script sends: it has nothing to stop but what it is for.
func LifelineMain() {
	dir, ok := os.LookupEnv(lifelineEnv)
	if !ok {
		return
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	os.Exit(runLifeline(os.NewFile(lifelineFd, "lifeline"), dir, os.Stderr))
}

func runLifeline(r *os.File, dir string, log io.Writer) int {
	if r == nil {
		fmt.Fprintln(log, "fpmux lifeline: no pipe at fd 3")
		return 2
	}
	_, err := io.Copy(io.Discard, r) // returns at EOF: every fpmux is gone
	r.Close()
	if err != nil {
		fmt.Fprintf(log, "fpmux lifeline: reading the pipe: %v; reaping the pools now\n", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		fmt.Fprintf(log, "fpmux lifeline: %v\n", err)
		return 1
	}
	// Every pool at once: a group's SIGKILL takes the kernel a while to
	// carry out (opcache's shared memory is unmapped by each worker).
	var mu sync.Mutex
	var wg sync.WaitGroup
	code := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The directory stays: the next fpmux clears it (see Reap),
			// and it tells what was left behind.
			killed, err := killLeftMaster(filepath.Join(dir, e.Name()))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(log, "fpmux lifeline: %v\n", err)
				code = 1
			}
			if killed > 0 {
				fmt.Fprintf(log, "fpmux lifeline: fpmux is gone; stopped php-fpm master %d of pool %s\n", killed, e.Name())
			}
		}()
	}
	wg.Wait()
	return code
}

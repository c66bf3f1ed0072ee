// This file owns the in-place upgrade (SIGUSR2, `fpmux upgrade`, POST
// /v1/upgrade). The fpmux running starts the next one (this binary as it is
// on disk now, with the same arguments), passing it the listeners, the
// lifeline and the active pool's output pipe as file descriptors, and waits
// until it serves. The next one adopts the active pool from state_dir
// instead of starting it. Then the one before stops accepting, hands every
// kept web server connection to the next one between two requests (over a
// unix socket, SCM_RIGHTS), finishes the requests it holds, stops the pools
// it did not hand over, and exits, leaving the adopted pool running.
//
// Own fd passing rather than tableflip or systemd's fd store: besides the
// listeners, the upgrade passes the lifeline, a pipe and live connections,
// and the readiness handshake has to carry the next fpmux's failure back;
// a few dozen lines of ForkExec and SCM_RIGHTS do all of it.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/pool"
	"github.com/fpmux/fpmux/supervisor"
	"golang.org/x/sys/unix"
)

// upgradeEnv carries, to the fpmux an upgrade starts, which inherited
// descriptor is which: "fastcgi=3,admin=4,handoff=5,lifeline=6,...".
const upgradeEnv = "FPMUX_UPGRADE"

// upgradeReadyBound bounds the wait for the next fpmux to serve, beyond
// php_fpm.start_timeout (the bound on adopting the pool).
const upgradeReadyBound = 30 * time.Second

// inherited is what an fpmux started by an upgrade got from the one
// before; nil when fpmux was started otherwise.
type inherited struct {
	fastcgi, admin, metrics    net.Listener
	fastcgiPassed, adminPassed bool // systemd's sockets: never removed
	handoff                    *net.UnixConn
	lifeline                   *pool.Lifeline
	output                     *os.File // the active pool's output, or nil
	release                    string   // the active release handed over
}

// takeInherited reads upgradeEnv (and unsets it, so nothing fpmux starts
// sees it) and takes over the descriptors it names, each made
// close-on-exec.
func takeInherited() (*inherited, error) {
	spec, ok := os.LookupEnv(upgradeEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(upgradeEnv)
	in := &inherited{}
	fds := map[string]int{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "release":
			in.release = v
		case "fastcgi_passed":
			in.fastcgiPassed = v == "1"
		case "admin_passed":
			in.adminPassed = v == "1"
		default:
			fd, err := strconv.Atoi(v)
			if err != nil || fd < 3 {
				return nil, fmt.Errorf("%s: bad descriptor %q for %s", upgradeEnv, v, k)
			}
			syscall.CloseOnExec(fd)
			fds[k] = fd
		}
	}
	var err error
	listener := func(name string) net.Listener {
		fd, ok := fds[name]
		if !ok || err != nil {
			return nil
		}
		f := os.NewFile(uintptr(fd), name)
		var ln net.Listener
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			err = fmt.Errorf("inherited %s listener (fd %d): %w", name, fd, err)
		}
		return ln
	}
	in.fastcgi, in.admin, in.metrics = listener("fastcgi"), listener("admin"), listener("metrics")
	if err == nil && (in.fastcgi == nil || in.admin == nil) {
		err = errors.New("the fpmux before passed no FastCGI or no admin listener")
	}
	if fd, ok := fds["handoff"]; ok && err == nil {
		f := os.NewFile(uintptr(fd), "handoff")
		var c net.Conn
		c, err = net.FileConn(f)
		f.Close()
		if err == nil {
			in.handoff, _ = c.(*net.UnixConn)
		}
	}
	if fd, ok := fds["lifeline"]; ok && err == nil {
		in.lifeline, err = pool.AdoptLifeline(fd)
	}
	if fd, ok := fds["output"]; ok && err == nil {
		in.output = os.NewFile(uintptr(fd), "php-fpm output")
	}
	if err == nil && (in.handoff == nil || in.lifeline == nil) {
		err = errors.New("the fpmux before passed no handoff socket or no lifeline")
	}
	if err != nil {
		in.close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	return in, nil
}

func (in *inherited) close() {
	for _, ln := range []net.Listener{in.fastcgi, in.admin, in.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
	if in.handoff != nil {
		in.handoff.Close()
	}
	if in.lifeline != nil {
		in.lifeline.Close()
	}
	if in.output != nil {
		in.output.Close()
	}
}

// listeners are the inherited listeners as serve uses them. The socket
// files stay the fpmux before's until this one serves (see owned).
func (in *inherited) listeners() *listeners {
	return &listeners{fastcgi: in.fastcgi, admin: in.admin, metrics: in.metrics,
		fastcgiPassed: in.fastcgiPassed, adminPassed: in.adminPassed}
}

// tell sends the fpmux before one line: "ready" or "fail: <why>".
func (in *inherited) tell(msg string) {
	in.handoff.SetWriteDeadline(time.Now().Add(5 * time.Second))
	in.handoff.Write([]byte(msg))
}

// receiveConns serves each web server connection the fpmux before hands
// over, until it closes its end (it exited) or serve closes this one.
func (in *inherited) receiveConns(front *fcgimux.Server, log *slog.Logger) {
	buf := make([]byte, 16)
	oob := make([]byte, syscall.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := in.handoff.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			return
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			log.Warn("upgrade: a bad message from the fpmux before", "err", err)
			continue
		}
		for _, m := range msgs {
			fds, err := syscall.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				syscall.CloseOnExec(fd)
				f := os.NewFile(uintptr(fd), "handed connection")
				nc, err := net.FileConn(f)
				f.Close()
				if err != nil {
					log.Warn("upgrade: a handed connection", "err", err)
					continue
				}
				if !front.Adopt(nc) {
					nc.Close()
				}
			}
		}
	}
}

// nextFpmux is the fpmux an upgrade started, seen from the one before.
type nextFpmux struct {
	pid     int
	conn    *net.UnixConn // the handoff socket
	exited  chan struct{} // closed once it exited (it is our child)
	status  string        // how it exited; read after exited is closed
	release string
}

// upgradeFiles are the descriptors serve hands to startNext.
type upgradeFiles struct {
	lns      *listeners
	lifeline *pool.Lifeline
	handed   supervisor.Handed
	watchdog time.Duration
}

// startNext starts the next fpmux and waits, at most bound, until it
// serves. On failure the next one is gone and nothing here has changed.
func startNext(uf upgradeFiles, bound time.Duration, log *slog.Logger) (*nextFpmux, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("upgrade: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "handoff")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		syscall.Close(pair[1])
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	next := &nextFpmux{conn: c.(*net.UnixConn), exited: make(chan struct{}), release: uf.handed.ID}

	// Duplicates, so that nothing of ours changes (an os.File's Fd would
	// make the listener blocking); closed once the child has its copies.
	files := []uintptr{0, 1, 2}
	var dups []int
	spec := []string{"release=" + uf.handed.ID,
		"fastcgi_passed=" + boolFlag(uf.lns.fastcgiPassed), "admin_passed=" + boolFlag(uf.lns.adminPassed)}
	add := func(name string, sc syscall.Conn) error {
		fd, err := dupFd(sc)
		if err != nil {
			return fmt.Errorf("upgrade: pass %s: %w", name, err)
		}
		dups = append(dups, fd)
		spec = append(spec, name+"="+strconv.Itoa(len(files)))
		files = append(files, uintptr(fd))
		return nil
	}
	defer func() {
		for _, fd := range dups {
			syscall.Close(fd)
		}
	}()
	dups = append(dups, pair[1])
	spec = append(spec, "handoff="+strconv.Itoa(len(files)))
	files = append(files, uintptr(pair[1]))
	for _, p := range []struct {
		name string
		sc   any
	}{{"fastcgi", uf.lns.fastcgi}, {"admin", uf.lns.admin}, {"metrics", uf.lns.metrics},
		{"lifeline", uf.lifeline.File()}, {"output", uf.handed.Output}} {
		sc, ok := p.sc.(syscall.Conn)
		if !ok || isNil(p.sc) {
			continue
		}
		if err := add(p.name, sc); err != nil {
			next.conn.Close()
			return nil, err
		}
	}
	env := []string{upgradeEnv + "=" + strings.Join(spec, ",")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, upgradeEnv+"=") && !strings.HasPrefix(kv, "WATCHDOG_") {
			env = append(env, kv)
		}
	}
	if uf.watchdog > 0 {
		// Without WATCHDOG_PID: the next fpmux takes it as its own.
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(uf.watchdog.Microseconds(), 10))
	}
	pid, err := syscall.ForkExec(exe, os.Args, &syscall.ProcAttr{Env: env, Files: files})
	if err != nil {
		next.conn.Close()
		return nil, fmt.Errorf("upgrade: start %s: %w", exe, err)
	}
	next.pid = pid
	for _, fd := range dups {
		syscall.Close(fd) // the child has its copies; its end of the socket must be its alone
	}
	dups = nil
	log.Info("upgrade: started the next fpmux", "pid", pid, "binary", exe, "release", uf.handed.ID)
	proc, _ := os.FindProcess(pid)
	go func() {
		// Our child until we exit; after a successful upgrade this
		// goroutine ends with this process.
		st, err := proc.Wait()
		if err != nil {
			next.status = err.Error()
		} else {
			next.status = st.String()
		}
		close(next.exited)
	}()
	if err := next.awaitReady(bound); err != nil {
		next.conn.Close()
		return nil, err
	}
	return next, nil
}

// awaitReady reads the next fpmux's first word: "ready", or why it failed.
func (n *nextFpmux) awaitReady(bound time.Duration) error {
	n.conn.SetReadDeadline(time.Now().Add(bound))
	buf := make([]byte, 4096)
	k, err := n.conn.Read(buf)
	n.conn.SetReadDeadline(time.Time{})
	msg := string(buf[:k])
	switch {
	case err == nil && msg == "ready":
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		syscall.Kill(n.pid, syscall.SIGKILL)
		<-n.exited
		return fmt.Errorf("the next fpmux (pid %d) did not serve within %v; killed it", n.pid, bound)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(n.pid, syscall.SIGKILL)
		<-n.exited
	}
	if why, ok := strings.CutPrefix(msg, "fail: "); ok {
		return fmt.Errorf("the next fpmux (pid %d) did not start: %s", n.pid, why)
	}
	return fmt.Errorf("the next fpmux (pid %d) exited before serving (%s); its log says why", n.pid, n.status)
}

// pass hands one web server connection to the next fpmux (fcgimux's
// Handoff): a duplicate of its descriptor goes over the handoff socket.
func (n *nextFpmux) pass(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		n.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _, werr = n.conn.WriteMsgUnix([]byte{'c'}, syscall.UnixRights(int(fd)), nil)
	}); err != nil {
		return false
	}
	return werr == nil
}

// dupFd duplicates the descriptor behind sc, close-on-exec.
func dupFd(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

func isNil(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case net.Listener:
		return x == nil
	case *os.File:
		return x == nil
	}
	return false
}

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// upgradeAsk is one upgrade asked for: by SIGUSR2 (reply nil) or the admin
// API, which waits for the outcome.
type upgradeAsk struct {
	reply chan upgradeReply
}

type upgradeReply struct {
	out supervisor.UpgradeOutcome
	err error
}

// askUpgrade is what POST /v1/upgrade calls: it asks serve's loop for an
// upgrade and waits for its outcome.
func askUpgrade(asks chan<- upgradeAsk) func(ctx context.Context) (supervisor.UpgradeOutcome, error) {
	return func(ctx context.Context) (supervisor.UpgradeOutcome, error) {
		a := upgradeAsk{reply: make(chan upgradeReply, 1)}
		select {
		case asks <- a:
		case <-ctx.Done():
			return supervisor.UpgradeOutcome{}, ctx.Err()
		}
		r := <-a.reply // the loop always answers
		return r.out, r.err
	}
}

// handOver is the end of the fpmux before an upgrade, once the next one
// serves: no STOPPING=1 for systemd (the service goes on under MAINPID),
// the listeners' sockets are left in place, every kept connection goes to
// the next fpmux between requests, and the adopted pool is not stopped.
// Bounded by drain_timeout: requests still in flight then are cut.
func handOver(next *nextFpmux, sv *serving) {
	log := sv.log
	start := time.Now()
	bound, cancel := context.WithTimeout(context.Background(), sv.drainTimeout)
	defer cancel()
	for _, ln := range []net.Listener{sv.lns.fastcgi, sv.lns.admin, sv.lns.metrics} {
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // the next fpmux listens on it now
		}
	}
	sv.lns.files = nil
	adminCtx, adminCancel := context.WithTimeout(bound, 5*time.Second)
	if err := sv.admin.Shutdown(adminCtx); err != nil {
		sv.admin.Close()
	}
	adminCancel()
	if err := sv.front.Handoff(bound, next.pass); err != nil {
		log.Warn("upgrade: requests cut at drain_timeout", "err", err)
	}
	<-sv.acceptDone
	if err := sv.sup.HandOver(bound); err != nil {
		log.Error("upgrade: stopping the pools not handed over", "err", err)
	}
	if sv.metrics != nil {
		sv.metrics.Close()
	}
	next.conn.Close()
	log.Info("fpmux handed over and stopped", "next_pid", next.pid, "took", time.Since(start).Round(time.Millisecond))
}

// serving is what handOver needs of serve.
type serving struct {
	log          *slog.Logger
	drainTimeout time.Duration
	lns          *listeners
	admin        *http.Server
	metrics      *http.Server
	acceptDone   <-chan struct{}
	front        *fcgimux.Server
	sup          *supervisor.Supervisor
}

// socketFiles are the unix socket files this fpmux removes when it stops,
// once it serves: those of the inherited listeners systemd did not pass.
func (in *inherited) socketFiles() []string {
	var files []string
	for _, p := range []struct {
		ln     net.Listener
		passed bool
	}{{in.fastcgi, in.fastcgiPassed}, {in.admin, in.adminPassed}, {in.metrics, false}} {
		if ul, ok := p.ln.(*net.UnixListener); ok && !p.passed {
			files = append(files, ul.Addr().String())
		}
	}
	return files
}

// tellUpgradeFailure tells the fpmux before, when this one was started by
// an upgrade, why it cannot serve (before serve takes the descriptors
// over: a bad config), so that the upgrade fails with the reason.
func tellUpgradeFailure(err error) {
	spec, ok := os.LookupEnv(upgradeEnv)
	if !ok {
		return
	}
	for _, kv := range strings.Split(spec, ",") {
		if v, ok := strings.CutPrefix(kv, "handoff="); ok {
			if fd, aerr := strconv.Atoi(v); aerr == nil && fd > 2 {
				syscall.Write(fd, []byte("fail: "+err.Error()))
			}
		}
	}
}

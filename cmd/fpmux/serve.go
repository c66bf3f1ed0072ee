// This file owns `fpmux serve`: flags over the config, the listeners
// (systemd-passed or opened here), wiring the supervisor to the FastCGI
// front, the admin API and metrics, reloading the config on SIGHUP, when
// systemd is told READY, RELOADING and STOPPING, and the order things stop
// in.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/metrics"
	"github.com/fpmux/fpmux/pool"
	"github.com/fpmux/fpmux/supervisor"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func runServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config `file`; empty: embedded defaults")
	listen := fs.String("listen", "", "FastCGI `addr` for the web server (unix:/path or host:port)")
	admin := fs.String("admin", "", "admin API `addr`")
	metrics := fs.String("metrics", "", "Prometheus `addr`; \"off\" turns metrics off")
	stateDir := fs.String("state-dir", "", "`dir` for pool configs, sockets and persisted state")
	docroot := fs.String("docroot", "", "the `path` prefix the web server sends (the current symlink)")
	phpFPM := fs.String("php-fpm", "", "php-fpm binary `path`")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	profile := fs.Bool("pprof", false, "serve Go's profiles at /debug/pprof/ on the metrics listener (for measuring fpmux; off in production)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fpmux serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	setProcs()
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "fpmux serve: %v\n", err)
		return 2
	}
	// load reads the config file (or the defaults) with the command line's
	// flags on top; SIGHUP calls it again.
	load := func() (*config.Config, error) {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return nil, err
		}
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "listen":
				cfg.Listen = *listen
			case "admin":
				cfg.Admin = *admin
			case "metrics":
				cfg.Metrics = *metrics
				if *metrics == "off" {
					cfg.Metrics = ""
				}
			case "state-dir":
				cfg.StateDir = *stateDir
			case "docroot":
				cfg.Docroot = *docroot
			case "php-fpm":
				cfg.PHPFPM.Binary = *phpFPM
			}
		})
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		// What a deploy would refuse is refused now (check.go).
		if probs := servable(cfg); len(probs) > 0 {
			return nil, errors.New(strings.Join(probs, "\n"))
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "fpmux serve: %v\n", err)
		tellUpgradeFailure(err)
		return 1
	}
	if err := serve(cfg, load, log, *profile); err != nil {
		log.Error("fpmux stopped", "err", err)
		return 1
	}
	return 0
}

// setProcs lets the Go scheduler run on a quarter of the CPUs fpmux may use
// (at least one), unless GOMAXPROCS is set. fpmux does little per request
// and shares the machine with the web server and php-fpm; with a scheduler
// thread per CPU, the runtime spent more CPU waking threads and polling
// than relaying. fpmux-bench's hello section on 2 CPUs: 63 µs of fpmux CPU
// per request with GOMAXPROCS=2, 48 µs with 1, and 0.87 to 0.93 of direct
// throughput against 0.94. At 48 µs per request one CPU relays some 20,000
// requests a second, which a quarter of a machine's CPUs stays above for
// any PHP workload that machine can run.
func setProcs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)/4))
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// listeners are the sockets fpmux serves on, and the unix socket files it
// created and removes when it stops. A socket systemd passed is never
// removed: its socket unit owns the file, and keeps the socket listening
// while fpmux restarts.
type listeners struct {
	fastcgi, admin, metrics    net.Listener
	fastcgiPassed, adminPassed bool // came from systemd
	files                      []string
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.fastcgi, l.admin, l.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
	for _, f := range l.files {
		os.Remove(f)
	}
}

// openListeners takes the sockets systemd passed (named "fastcgi" and
// "admin" with FileDescriptorName=; others are taken in the order systemd
// passed them, the FastCGI socket first), and opens the rest from the
// config.
func openListeners(cfg *config.Config, log *slog.Logger) (*listeners, error) {
	l := &listeners{}
	var unnamed []net.Listener
	for _, f := range activation.Files(true) {
		name, fd := f.Name(), f.Fd()
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			l.close()
			for _, ln := range unnamed {
				ln.Close()
			}
			return nil, fmt.Errorf("systemd socket %s (fd %d): %w", name, fd, err)
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // already so for a passed socket; the socket unit owns the file
		}
		switch {
		case name == "fastcgi" && l.fastcgi == nil:
			l.fastcgi, l.fastcgiPassed = ln, true
		case name == "admin" && l.admin == nil:
			l.admin, l.adminPassed = ln, true
		default:
			unnamed = append(unnamed, ln)
		}
	}
	for _, ln := range unnamed {
		switch {
		case l.fastcgi == nil:
			l.fastcgi, l.fastcgiPassed = ln, true
		case l.admin == nil:
			l.admin, l.adminPassed = ln, true
		default:
			log.Warn("closing a socket systemd passed that fpmux has no use for", "addr", ln.Addr())
			ln.Close()
		}
	}
	var err error
	if l.fastcgiPassed {
		log.Info("using the FastCGI socket systemd passed", "addr", l.fastcgi.Addr())
	} else if l.fastcgi, err = listenAddr(cfg.Listen, 0o666, &l.files); err != nil {
		l.close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	if l.adminPassed {
		log.Info("using the admin socket systemd passed", "addr", l.admin.Addr())
		if cfg.AdminOwner != "" || cfg.AdminGroup != "" {
			log.Warn("admin_owner and admin_group do not apply to a socket systemd passed: set SocketUser=, SocketGroup= and SocketMode=0660 in its socket unit")
		}
	} else if l.admin, err = listenAdmin(cfg, &l.files, log); err != nil {
		l.close()
		return nil, err
	}
	if cfg.Metrics != "" {
		if l.metrics, err = listenAddr(cfg.Metrics, 0o660, &l.files); err != nil {
			l.close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return l, nil
}

// listenAddr listens on an fpmux address. A unix socket gets mode perm
// (the FastCGI socket must be reachable by the web server's user; the admin
// socket only by its owner and group) from the moment it exists, after a
// stale file from a previous run is removed.
func listenAddr(addr string, perm os.FileMode, files *[]string) (net.Listener, error) {
	network, address, err := config.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := os.MkdirAll(filepath.Dir(address), 0o755); err != nil {
			return nil, err
		}
		if c, err := net.Dial("unix", address); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is serving on it", address)
		}
		if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	// The umask makes the socket file with no more than perm, so no one
	// else can connect before the chmod below.
	old := syscall.Umask(0o777 &^ int(perm))
	ln, err := net.Listen(network, address)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		*files = append(*files, address)
		if err := os.Chmod(address, perm); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// serve runs fpmux until SIGTERM or SIGINT, then stops in order: no new
// deploys, no new connections, in-flight requests finish (bounded by
// drain_timeout), every pool stops. A second signal cuts the wait short.
// SIGHUP reloads the configuration with load. Under systemd it reports
// READY=1 once the restored release serves, STATUS=, RELOADING=1 and
// STOPPING=1, and pings the watchdog (see monitor).
func serve(cfg *config.Config, load func() (*config.Config, error), log *slog.Logger, profile bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Caught until serve returns: a SIGHUP while fpmux stops is ignored
	// rather than killing it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	reg := metrics.NewRegistry()
	sup, err := supervisor.New(supervisor.Options{Config: cfg, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	front, err := fcgimux.NewServer(fcgimux.Options{
		Docroot:             cfg.Docroot,
		Router:              sup,
		Logger:              log,
		MaxParamsBytes:      cfg.Limits.MaxParamsBytes,
		ReadTimeout:         time.Duration(cfg.Limits.ReadTimeout),
		IdleTimeout:         time.Duration(cfg.Limits.IdleTimeout),
		WriteTimeout:        time.Duration(cfg.Limits.WriteTimeout),
		BackendTimeout:      time.Duration(cfg.Limits.BackendTimeout),
		MaxConns:            cfg.Limits.MaxConnections,
		ReservedScriptNames: []string{pool.PingPrefix, pool.StatusPrefix},
	})
	if err != nil {
		return err
	}
	metrics.RegisterFront(reg, front)
	sup.ListRequestsWith(front.InFlight) // status shows what holds a drain
	// Started by an upgrade: the fpmux before passed its listeners, the
	// lifeline and the active pool (see upgrade.go).
	in, err := takeInherited()
	if err != nil {
		return err
	}
	// Before any pool starts: the lifeline stops every master in state_dir
	// once no fpmux holds its pipe, however fpmux ended (kill -9 included).
	var life *pool.Lifeline
	if in != nil {
		life = in.lifeline
	} else if life, err = pool.StartLifeline(filepath.Join(cfg.StateDir, "pools")); err != nil {
		return err
	}
	defer life.Close()
	var lns *listeners
	if in != nil {
		lns = in.listeners()
		defer in.handoff.Close()
	} else if lns, err = openListeners(cfg, log); err != nil {
		return err
	}
	defer lns.close()

	notify := &notifier{log: log}
	notifying := os.Getenv("NOTIFY_SOCKET") != ""
	watchdog, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		log.Warn("ignoring systemd's watchdog settings", "err", err)
	}
	var accepting atomic.Bool
	mon := newMonitor(sup, notify.send, accepting.Load, watchdog, log)
	monCtx, monStop := context.WithCancel(context.Background())
	defer monStop()
	monDone := make(chan struct{})
	if notifying {
		go func() {
			defer close(monDone)
			mon.run(monCtx)
		}()
	} else {
		close(monDone)
	}

	// The listeners are open, so the web server's connections wait in the
	// backlog while the active release comes back; nothing is accepted
	// before it serves.
	if in != nil {
		err = sup.RestoreAdopting(ctx, in.release, in.output)
	} else {
		err = sup.Restore(ctx)
	}
	if err != nil {
		if in != nil {
			in.tell("fail: " + err.Error())
		}
		sup.Close(context.Background())
		return err
	}

	stopFleet, err := startFleet(ctx, cfg, sup, reg, log)
	if err != nil {
		sup.Close(context.Background())
		return err
	}
	defer stopFleet()

	errc := make(chan error, 3)
	acceptDone := make(chan struct{})
	accepting.Store(true)
	go func() {
		err := front.Serve(lns.fastcgi)
		accepting.Store(false)
		close(acceptDone)
		errc <- ignoreClosed(err)
	}()
	upgrades := make(chan upgradeAsk)
	sup.OnUpgrade(askUpgrade(upgrades))
	reloads, loopDone := make(chan reloadAsk), make(chan struct{})
	sup.OnReloadConfig(askReload(reloads, loopDone))
	var poolReloads sync.WaitGroup // SIGHUP's reload-pools (reloadpools.go); waited for after the pools stop
	defer poolReloads.Wait()
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	adminHandler := sup.Handler()
	if cfg.Fleet != nil {
		adminHandler = withFleetHeader(adminHandler) // fleet_client.go
	}
	if notifying {
		adminHandler = refreshAfter(adminHandler, mon.refresh)
	}
	adminSrv := &http.Server{Handler: adminHandler, ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- ignoreClosed(adminSrv.Serve(lns.admin)) }()
	var metricsSrv *http.Server
	if lns.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		if profile {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ignoreClosed(metricsSrv.Serve(lns.metrics)) }()
	}
	log.Info("fpmux serving", "listen", lns.fastcgi.Addr().String(), "admin", lns.admin.Addr().String(),
		"metrics", cfg.Metrics, "docroot", cfg.Docroot, "state_dir", cfg.StateDir, "active", sup.ActiveID())
	ready := "READY=1"
	if in != nil {
		in.tell("ready")
		go in.receiveConns(front, log)
		lns.files = in.socketFiles()
		ready = fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid())
	}
	if notifying {
		mon.announce(ready)
	}

	// upgrade starts the next fpmux; it returns it once it serves, or nil
	// (logged, and told to the admin client asking) with this one serving on.
	upgrade := func(reply chan upgradeReply) *nextFpmux {
		handed, err := sup.Freeze()
		var next *nextFpmux
		if err == nil {
			uf := upgradeFiles{lns: lns, lifeline: life, handed: handed, watchdog: watchdog}
			if next, err = startNext(uf, time.Duration(cfg.PHPFPM.StartTimeout)+upgradeReadyBound, log); err != nil {
				sup.Thaw()
			}
		}
		out := supervisor.UpgradeOutcome{OldPID: os.Getpid(), Release: handed.ID}
		if err != nil {
			log.Error("upgrade failed; this fpmux keeps serving", "err", err)
		} else {
			out.NewPID = next.pid
			log.Info("upgrade: the next fpmux serves; handing over", "next_pid", next.pid, "release", handed.ID)
			if notifying {
				notify.send(fmt.Sprintf("MAINPID=%d", next.pid))
			}
		}
		if reply != nil {
			reply <- upgradeReply{out: out, err: err}
		}
		return next
	}
	var next *nextFpmux

	var serveErr error
wait:
	for {
		select {
		case <-usr2:
			if next = upgrade(nil); next != nil {
				break wait
			}
		case a := <-upgrades:
			if next = upgrade(a.reply); next != nil {
				break wait
			}
		case <-ctx.Done():
			log.Info("stopping: finishing in-flight requests", "bound", time.Duration(cfg.DrainTimeout))
			break wait
		case serveErr = <-errc:
			log.Error("a listener failed; stopping", "err", serveErr)
			break wait
		case <-hup:
			notify.send("RELOADING=1\n" + daemon.SdNotifyMonotonicUsec())
			var err error
			if cfg, err = reload(sup, cfg, load, lns, log); err == nil && cfg.ReloadPools {
				reloadPoolsOnHUP(sup, cfg, &poolReloads, log)
			}
			if notifying {
				mon.announce("READY=1")
			}
		case a := <-reloads:
			var err error
			cfg, err = reload(sup, cfg, load, lns, log)
			a.reply <- err
		}
	}
	close(loopDone)
	stop()      // a second signal now kills the process the default way
	stopFleet() // the host's key goes with its lease: it takes no more part
	monStop()
	<-monDone
	if next != nil {
		handOver(next, &serving{log: log, drainTimeout: time.Duration(cfg.DrainTimeout), lns: lns, admin: adminSrv,
			metrics: metricsSrv, acceptDone: acceptDone, front: front, sup: sup})
		return nil
	}
	notify.send("STOPPING=1\nSTATUS=stopping: finishing in-flight requests, then stopping the pools")

	bound, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.DrainTimeout))
	defer cancel()
	adminCtx, adminCancel := context.WithTimeout(bound, 5*time.Second)
	if err := adminSrv.Shutdown(adminCtx); err != nil {
		adminSrv.Close()
	}
	adminCancel()
	// Shutdown stops accepting and serves the connections accepted a
	// moment ago; at the bound it cuts every request, so the pools stop in
	// time (by force). A systemd socket stays open in systemd: what arrives
	// from now on waits in its backlog for the next fpmux.
	if err := front.Shutdown(bound); err != nil {
		log.Warn("in-flight requests cut at the shutdown bound", "err", err)
	}
	<-acceptDone
	if err := sup.Close(bound); err != nil {
		log.Error("stopping pools", "err", err)
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	log.Info("fpmux stopped")
	return serveErr
}

// reload reads the configuration again (SIGHUP) and puts it in force for
// what comes next: drain_timeout, allowed_roots and php_fpm (see
// supervisor.Reload). It returns the configuration now in force: cur when
// the file is bad, which is logged with every problem's key and line, and
// returned.
func reload(sup *supervisor.Supervisor, cur *config.Config, load func() (*config.Config, error), lns *listeners, log *slog.Logger) (*config.Config, error) {
	next, err := load()
	if err == nil {
		var restart []string
		if restart, err = sup.Reload(next); err == nil {
			// A socket systemd passed does not come from the config.
			restart = slices.DeleteFunc(restart, func(k string) bool {
				return k == "listen" && lns.fastcgiPassed || k == "admin" && lns.adminPassed
			})
			if len(restart) > 0 {
				log.Warn("reload: these keys changed but keep their running values until fpmux restarts", "keys", strings.Join(restart, ", "))
			}
			log.Info("configuration reloaded; it applies to the next deploys and drains",
				"drain_timeout", time.Duration(next.DrainTimeout), "allowed_roots", next.AllowedRoots, "php_fpm", next.PHPFPM.Binary,
				"max_in_flight", next.Limits.MaxInFlight, "admin_token", tokenChange(cur.AdminToken, next.AdminToken))
			return next, nil
		}
	}
	log.Error("reload failed; the configuration in force is unchanged", "err", err)
	return cur, err
}

// tokenChange says what a reload did to admin_token, for the log, without
// showing it: so an operator can confirm a rotation.
func tokenChange(old, next string) string {
	switch {
	case old == next && next == "":
		return "none"
	case old == next:
		return "unchanged"
	case next == "":
		return "removed"
	case old == "":
		return "set"
	}
	return "rotated"
}

// refreshAfter has the monitor refresh systemd's status line after every
// admin request that may have changed a release.
func refreshAfter(h http.Handler, refresh func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			refresh()
		}
	})
}

func ignoreClosed(err error) error {
	if errors.Is(err, fcgimux.ErrServerClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

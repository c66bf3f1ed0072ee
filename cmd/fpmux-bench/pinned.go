// This file owns the pinned section: nginx, fpmux and php-fpm on one CPU
// and the load client on another, so that the hop's cost shows as it does
// on a saturated server rather than being hidden by an idle second core.
// It compares fpmux with the same pool reached directly four ways: without
// keep-alive (the stock nginx config: no fastcgi_keep_conn, no upstream
// keepalive) and with it, each over a unix socket and over TCP between
// nginx and fpmux.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// pinnedWay is one comparison of the pinned section.
type pinnedWay struct {
	name      string
	keepAlive bool
	tcp       bool // nginx reaches fpmux over TCP
}

var pinnedWays = []pinnedWay{
	{"no keep-alive, unix", false, false},
	{"no keep-alive, TCP", false, true},
	{"keep-alive, unix", true, false},
	{"keep-alive, TCP", true, true},
}

// pinnedTargets are the fpmux/direct ratio and fpmux's CPU per request the
// section is judged by (issue 16): without keep-alive fpmux/direct >= 0.90
// and <= 25 µs of fpmux CPU per request; with keep-alive >= 1.0.
const (
	pinnedMinRatio     = 0.90
	pinnedMaxFpmuxCPU  = 25.0
	pinnedMinKeptRatio = 1.0
)

// pinned runs the section. The fpmux of the main stack serves the unix
// ways; a second fpmux, listening on TCP with a pool of its own for r1 and
// the same settings, serves the TCP ways, each compared with its own pool
// reached directly. nginx runs one worker, since it has one CPU.
func (b *bench) pinned(ctx context.Context) (_ *table, err error) {
	if runtime.NumCPU() < 2 {
		return nil, errors.New("pinned: needs 2 CPUs, one for the servers and one for the client")
	}
	tcp, err := b.tcpStack(ctx)
	if err != nil {
		if tcp != nil {
			err = errors.Join(err, tcp.close())
		}
		return nil, err
	}
	defer func() {
		if cerr := tcp.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop the TCP stack: %w", cerr))
		}
	}()
	addrs, err := b.pinnedNginx(ctx, tcp)
	if err != nil {
		return nil, err
	}
	servers := []int{tcp.nginx.pid(), b.s.fpmux.pid(), tcp.fpmux.pid()}
	all := allCPUs()
	if err := pinTrees(servers, []int{0}); err != nil {
		return nil, err
	}
	if err := pinTrees([]int{os.Getpid()}, []int{1}); err != nil {
		return nil, err
	}
	defer func() {
		// Every later section runs unpinned; a pool fpmux starts later
		// inherits fpmux's mask.
		if uerr := pinTrees(append(servers, os.Getpid()), all); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	b.cpu = func() cpuSnap { return takeCPU(tcp.nginx, b.s.fpmux, tcp.fpmux) }
	defer func() { b.cpu = nil }()

	t := &table{
		title: fmt.Sprintf("pinned: GET /hello.php, closed loop, %d connections; nginx (1 worker), fpmux and php-fpm on CPU 0, the client on CPU 1", b.o.children),
		header: []string{"way", "direct req/s", "fpmux req/s", "fpmux/direct", "CPU µs/request direct: nginx, php-fpm",
			"CPU µs/request via fpmux: nginx, fpmux, php-fpm", "fpmux/direct the CPU allows", "target", "met?"},
	}
	for i, w := range pinnedWays {
		section := "pinned " + w.name
		res, err := b.ab(ctx, section, modeNames, [2]target{newTarget(addrs[2*i], "/hello.php"), newTarget(addrs[2*i+1], "/hello.php")},
			closedRun(b.o.children), true, nil)
		if err != nil {
			return t, err
		}
		d, f := res[0], res[1]
		ratio := f.rps / d.rps
		target, ok := fmt.Sprintf(">= %.2f", pinnedMinKeptRatio), ratio >= pinnedMinKeptRatio
		if !w.keepAlive {
			target = fmt.Sprintf(">= %.2f, fpmux <= %.0f µs", pinnedMinRatio, pinnedMaxFpmuxCPU)
			ok = ratio >= pinnedMinRatio && f.cpu["fpmux"] <= pinnedMaxFpmuxCPU
		}
		t.add(w.name, fmtRate(d.rps), fmtRate(f.rps), fmtRatio(ratio),
			fmt.Sprintf("%.0f, %.0f", d.cpu["nginx"], d.cpu["php-fpm"]),
			fmt.Sprintf("%.0f, %.1f, %.0f", f.cpu["nginx"], f.cpu["fpmux"], f.cpu["php-fpm"]), fmtRatio(cpuBound(d, f)), target, met(ok))
		t.note("%s: per round, direct: %s; fpmux: %s; others' CPU (median) %.0f%% / %.0f%% of the machine.",
			w.name, d.rounds, f.rounds, 100*d.others, 100*f.others)
		failed := d.failed + f.failed
		if failed > 0 {
			t.note("%s: %d requests failed.", w.name, failed)
		}
	}
	t.note("Medians over %d round(s) of %v per mode, direct and fpmux alternating. Without keep-alive nginx opens a connection per request to php-fpm or fpmux (the stock config: no fastcgi_keep_conn, no upstream keepalive); with it, fastcgi_keep_conn on and upstream keepalive %d (to php-fpm too, with keepalive_timeout 2s so that kept connections free the pool's children before the next phase).", b.o.rounds, b.o.duration, b.o.children)
	t.note("The CPU allows: direct's CPU per request (nginx and php-fpm) over fpmux's (nginx, fpmux and php-fpm), the ratio one saturated core gives; it moves less with other processes than the measured one.")
	t.note("The TCP ways use a second fpmux listening on 127.0.0.1 with its own pool of r1 (same settings); their direct column is that pool. CPU per request: user+system time in /proc over a phase, divided by its requests.")
	return t, nil
}

// cpuBound is the fpmux/direct throughput ratio that one saturated CPU
// allows, given the CPU each request costs the processes on it.
func cpuBound(d, f summary) float64 {
	return (d.cpu["nginx"] + d.cpu["php-fpm"]) / (f.cpu["nginx"] + f.cpu["fpmux"] + f.cpu["php-fpm"])
}

// tcpStack starts a second fpmux serving the main stack's releases on a
// TCP port, and deploys r1 on it.
func (b *bench) tcpStack(ctx context.Context) (*stack, error) {
	s, err := b.s.sub("tcp", b.s.o.children)
	if err != nil {
		return nil, err
	}
	s.releases, s.current = b.s.releases, b.s.current
	if s.sock, err = freeAddr(); err != nil {
		return nil, err
	}
	if err := s.startFpmux(ctx); err != nil {
		return s, err
	}
	if _, _, err := s.deploy(ctx, "r1", filepath.Join(s.releases, "r1"), true, nil); err != nil {
		return s, err
	}
	return s, nil
}

// pinnedNginx starts tcp's nginx with a pair of servers (direct, fpmux)
// per pinned way, and returns their addresses in pinnedWays' order.
func (b *bench) pinnedNginx(ctx context.Context, tcp *stack) ([]string, error) {
	addrs, err := tcp.launchNginx(ctx, 2*len(pinnedWays), func(addrs []string) string { return b.pinnedConfig(tcp, addrs) })
	if err != nil {
		return nil, err
	}
	logf("pinned: nginx started (pid %d)", tcp.nginx.pid())
	for _, a := range addrs {
		if code, body, err := fetch(newTarget(a, "/hello.php")); err != nil || code != 200 {
			return nil, fmt.Errorf("pinned: check http://%s/hello.php: %d %v %.200s", a, code, err, body)
		}
	}
	return addrs, nil
}

// pinnedConfig is the pinned section's nginx config: a pair of servers
// (direct, fpmux) per pinned way, on addrs in pinnedWays' order.
func (b *bench) pinnedConfig(tcp *stack, addrs []string) string {
	var conf strings.Builder
	conf.WriteString(strings.Replace(nginxHead, "{{workers}}", "1", 1))
	for i, w := range pinnedWays {
		st := b.s
		if w.tcp {
			st = tcp
		}
		pool := "unix:" + st.poolSock("r1")
		front := "unix:" + st.sock
		if w.tcp {
			front = st.sock
		}
		for j, pass := range []string{pool, front} {
			root := filepath.Join(b.s.releases, "r1")
			if j == 1 {
				root = b.s.current
			}
			if w.keepAlive {
				up := fmt.Sprintf("kept%d_%d", i, j)
				conf.WriteString(nginxUpstream(up, pass, b.o.children, "        keepalive_timeout 2s;\n"))
				pass = up
			}
			conf.WriteString(nginxServer(addrs[2*i+j], root, "$document_root", pass, w.keepAlive))
		}
	}
	conf.WriteString("}\n")
	return conf.String()
}

// pinTrees sets the CPU affinity of every thread of each of pids and of
// all their descendants (nginx's workers, php-fpm's masters and children)
// to cpus.
func pinTrees(pids []int, cpus []int) error {
	var errs []error
	for _, pid := range pids {
		errs = append(errs, setAffinity(pid, cpus))
		for _, p := range descendants(pid) {
			errs = append(errs, setAffinity(p, cpus))
		}
	}
	return errors.Join(errs...)
}

// allCPUs lists every CPU of the machine.
func allCPUs() []int {
	all := make([]int, runtime.NumCPU())
	for i := range all {
		all[i] = i
	}
	return all
}

// setAffinity pins each thread of pid to cpus (sched_setaffinity acts on
// one thread; threads started later inherit their creator's mask).
func setAffinity(pid int, cpus []int) error {
	var set [16]uint64 // 1024 CPUs
	for _, c := range cpus {
		set[c/64] |= 1 << (c % 64)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("pin pid %d: %w", pid, err)
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set)))
		if e != 0 && e != syscall.ESRCH {
			return fmt.Errorf("pin thread %d of pid %d to CPUs %v: %w", tid, pid, cpus, e)
		}
	}
	return nil
}

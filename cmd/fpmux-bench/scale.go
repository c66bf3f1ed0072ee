// This file owns the scale section: thousands of idle FastCGI keep-alive
// connections held straight to fpmux's socket, what they cost in memory and
// goroutines, and whether they slow the requests that do run; and the
// snapshot of fpmux's resources it shares with the deploys section.

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/fcgiclient"
)

// snapshot is fpmux's resources at one moment.
type snapshot struct {
	goroutines float64
	fds        fdUse
	rssKB      int64
	heapStack  float64 // bytes of Go heap and goroutine stacks in use
	phpFPM     int
}

// quietSnapshot pauses, so that pool connections left idle are closed,
// and takes a snapshot.
func (b *bench) quietSnapshot(ctx context.Context) (snapshot, error) {
	if err := b.pause(ctx); err != nil {
		return snapshot{}, err
	}
	return b.snapshot()
}

// snapshot reads fpmux's figures five times 200 ms apart and keeps the
// lowest goroutine and descriptor counts: a status poll or a scrape in
// progress adds a goroutine or a connection for a moment, and the baseline
// is what stays. Memory and processes are the last reading's.
func (b *bench) snapshot() (snapshot, error) {
	pid := b.s.fpmux.pid()
	var sn snapshot
	for i := range 5 {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		fds, err := fdsOf(pid, b.s.sock, b.s.adminSock)
		if err != nil {
			return sn, err
		}
		m, err := b.s.metrics()
		if err != nil {
			return sn, err
		}
		g, ok := m["go_goroutines"]
		if !ok {
			return sn, fmt.Errorf("read metrics: no go_goroutines")
		}
		if i == 0 || fds.total < sn.fds.total {
			sn.fds = fds
		}
		if i == 0 || g < sn.goroutines {
			sn.goroutines = g
		}
		sn.heapStack = m["go_memstats_heap_inuse_bytes"] + m["go_memstats_stack_inuse_bytes"]
		if sn.rssKB, err = procKB(pid, "status", "VmRSS:"); err != nil {
			return sn, err
		}
	}
	sn.phpFPM = len(phpFPMBelow(pid))
	return sn, nil
}

// metrics reads fpmux's /metrics and returns its unlabelled samples by
// name (go_goroutines, go_memstats_heap_inuse_bytes, ...).
func (s *stack) metrics() (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// idleConns are FastCGI connections held open and idle.
type idleConns struct {
	conns  []net.Conn
	failed int
	first  string
}

// helloParams are the CGI params nginx's fastcgi_params would send for GET
// /hello.php under docroot.
func helloParams(docroot string) map[string]string {
	return fcgiclient.GET(map[string]string{"SERVER_SOFTWARE": "fpmux-bench", "REMOTE_PORT": "40000",
		"DOCUMENT_ROOT": docroot, "SCRIPT_NAME": "/hello.php", "SCRIPT_FILENAME": docroot + "/hello.php"})
}

// openIdle opens n keep-alive FastCGI connections straight to fpmux's
// socket, each doing one hello request, 32 at a time.
func (b *bench) openIdle(ctx context.Context, n int) *idleConns {
	req := fcgiclient.Request{Params: helloParams(b.s.current)}
	ic := &idleConns{conns: make([]net.Conn, 0, n)}
	var mu sync.Mutex
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := net.DialTimeout("unix", b.s.sock, 5*time.Second)
				if err == nil {
					rctx, cancel := context.WithTimeout(ctx, requestTimeout)
					var resp *fcgiclient.Response
					resp, err = fcgiclient.Do(rctx, c, req)
					cancel()
					if err == nil && (resp.Status != 200 || string(resp.Body) != "hello\n") {
						err = fmt.Errorf("fastcgi hello: status %d, body %.200q", resp.Status, resp.Body)
					}
					if err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					if ic.failed == 0 {
						ic.first = err.Error()
					}
					ic.failed++
				} else {
					ic.conns = append(ic.conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		if ctx.Err() != nil {
			break
		}
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return ic
}

// closeAll closes the connections and returns how many fpmux still held
// open: on an idle connection it holds open, a read waits (and times out).
func (ic *idleConns) closeAll() int {
	open := 0
	for _, c := range ic.conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var ne net.Error
		if _, err := c.Read(make([]byte, 1)); errors.As(err, &ne) && ne.Timeout() {
			open++
		}
		c.Close()
	}
	ic.conns = nil
	return open
}

func (b *bench) scale(ctx context.Context) (*table, error) {
	n := b.o.idleConns
	t := &table{
		title:  fmt.Sprintf("scale: %d idle FastCGI keep-alive connections to fpmux", n),
		header: []string{"metric", "without idle connections", fmt.Sprintf("with %d idle", n), "with/without or difference", "target", "met?"},
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		verdict := "enough"
		if rl.Max < uint64(2*n+100) {
			verdict = fmt.Sprintf("below the %d this section needs", 2*n+100)
		}
		t.note("RLIMIT_NOFILE of the bench: soft %d, hard %d (%s; fpmux inherits it).", rl.Cur, rl.Max, verdict)
	}
	via := newTarget(b.s.via, "/hello.php")
	logf("scale: warm-up %v", b.o.warmup)
	if p, err := closedLoop(ctx, via, b.o.conns, b.o.warmup); err != nil {
		return nil, err
	} else {
		b.count("scale warm-up", p)
	}
	before, err := b.quietSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	ic := b.openIdle(ctx, n)
	var idleFailed int
	countIdle := func(ic *idleConns) {
		idleFailed += ic.failed
		b.fail(ic.failed, "scale: %d idle-connection requests failed, first: %s", ic.failed, ic.first)
		if ic.failed > 0 {
			logf("scale: %d of the idle connections failed, first: %s", ic.failed, ic.first)
		}
	}
	countIdle(ic)
	defer func() {
		if ic != nil {
			ic.closeAll()
		}
	}()
	time.Sleep(time.Second) // let fpmux settle: the last answers and their pool connections
	after, err := b.snapshot()
	if err != nil {
		return nil, err
	}
	held := len(ic.conns)
	kb := float64(after.rssKB-before.rssKB) / float64(held)
	b.goPerConn = (after.goroutines - before.goroutines) / float64(held)
	logf("scale: %d idle connections: RSS %d -> %d KB, goroutines %.0f -> %.0f, fds %d -> %d",
		held, before.rssKB, after.rssKB, before.goroutines, after.goroutines, before.fds.total, after.fds.total)

	var stillOpen []string
	hook := func(mode int) error {
		switch {
		case mode == 0 && ic == nil:
			ic = b.openIdle(ctx, n)
			countIdle(ic)
			logf("scale: reopened %d idle connections", len(ic.conns))
		case mode == 1 && ic != nil:
			held := len(ic.conns)
			stillOpen = append(stillOpen, fmt.Sprintf("%d/%d", ic.closeAll(), held))
			ic = nil
		}
		return ctx.Err()
	}
	res, err := b.ab(ctx, "scale", [2]string{"with", "without"}, [2]target{via, via}, closedRun(b.o.conns), false, hook)
	if err != nil {
		return nil, err
	}
	w, wo := res[0], res[1]
	t.add("fpmux RSS (MB)", fmtMB(before.rssKB), fmtMB(after.rssKB), fmt.Sprintf("%+.1f MB", float64(after.rssKB-before.rssKB)/1024), "", "")
	t.add("RSS per idle connection (KB)", "", "", fmt.Sprintf("%.1f", kb), "", "")
	t.add("Go heap + stacks in use (MB)", fmt.Sprintf("%.1f", before.heapStack/(1<<20)), fmt.Sprintf("%.1f", after.heapStack/(1<<20)),
		fmt.Sprintf("%.1f KB per connection", (after.heapStack-before.heapStack)/1024/float64(held)), "", "")
	t.add("go_goroutines", fmt.Sprint(before.goroutines), fmt.Sprint(after.goroutines), fmt.Sprintf("%+.0f (%.2f per connection)", after.goroutines-before.goroutines, b.goPerConn), "", "")
	t.add("fpmux open fds", fmt.Sprint(before.fds.total), fmt.Sprint(after.fds.total), fmt.Sprintf("%+d", after.fds.total-before.fds.total), "", "")
	t.add("hello via fpmux, requests/s", fmtRate(wo.rps), fmtRate(w.rps), fmtRatio(w.rps/wo.rps), "", "")
	t.add("hello via fpmux, p50 (ms)", fmtMS(wo.p50), fmtMS(w.p50), fmtDiffMS(w.p50-wo.p50), "", "")
	t.add("hello via fpmux, p99 (ms)", fmtMS(wo.p99), fmtMS(w.p99), fmtDiffMS(w.p99-wo.p99), "", "")
	t.add("failed requests", fmt.Sprint(wo.failed), fmt.Sprint(w.failed+idleFailed), "", "0", met(w.failed+wo.failed+idleFailed == 0))
	addCPURows(t, wo, w)
	t.note("Each idle connection did one GET /hello.php with FCGI_KEEP_CONN and then stayed open; RSS is VmRSS, after 1 s of quiet; it can grow less than the heap when Go reuses memory freed earlier, so the heap and stacks in use (go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes) are shown too. %d of %d connections opened.", held, n)
	t.note("Load: closed loop, %d connections through nginx, medians over %d round(s) of %v, with and without alternating. Per round, with: %s.", b.o.conns, b.o.rounds, b.o.duration, w.rounds)
	t.note("Per round, without: %s.", wo.rounds)
	if len(stillOpen) > 0 {
		t.note("Idle connections fpmux still held open when each with-phase ended: %s.", strings.Join(stillOpen, ", "))
	}
	return t, nil
}

func fmtMB(kb int64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

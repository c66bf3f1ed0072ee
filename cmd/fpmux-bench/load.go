// This file owns the HTTP load client: one keep-alive connection per
// worker, a closed loop (each worker sends its next request as soon as the
// last one ends) and an open loop (requests start at fixed intended times,
// whatever the server does), and the latency statistics of a phase.
//
// The client is a raw HTTP/1.1 writer with net/http's response parser
// (http.ReadResponse) rather than an http.Client. On two cores the client
// shares the CPU with nginx, fpmux and php-fpm, and http.Transport adds two
// goroutines per connection with channel hand-offs for every request; what
// the client burns is taken from the server side in both modes and dilutes
// the difference being measured. Writing a fixed request and parsing the
// answer with ReadResponse (status line, headers, chunked bodies) keeps the
// parsing standard and the per-request cost small.

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// requestTimeout bounds one request; a phase never waits longer than its
// duration plus this.
const requestTimeout = 30 * time.Second

// target is one page on one nginx server.
type target struct {
	addr string // host:port
	path string
	req  []byte // the request, encoded once
}

func newTarget(addr, path string) target {
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fpmux-bench\r\nAccept: */*\r\n\r\n", path, addr)
	return target{addr: addr, path: path, req: []byte(req)}
}

func (t target) String() string { return "http://" + t.addr + t.path }

// httpConn is one keep-alive connection to nginx.
type httpConn struct {
	t  target
	nc net.Conn
	br *bufio.Reader
}

func dialHTTP(t target) (*httpConn, error) {
	nc, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", t.addr, err)
	}
	return &httpConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}, nil
}

// errStatus is a response other than 200.
type errStatus struct {
	code int
	body string
}

func (e *errStatus) Error() string { return fmt.Sprintf("status %d: %.200q", e.code, e.body) }

// exchange sends req (an encoded request for the connection's server) and
// reads the whole response. The body is returned when keepBody is set or
// the status is not 200, else discarded. reuse is false when the
// connection must not carry another request (an error, or the server said
// Connection: close).
func (c *httpConn) exchange(req []byte, keepBody bool) (status int, body []byte, reuse bool, err error) {
	c.nc.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := c.nc.Write(req); err != nil {
		return 0, nil, false, fmt.Errorf("write request to %s: %w", c.t.addr, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, false, fmt.Errorf("read response from %s: %w", c.t, err)
	}
	if keepBody || resp.StatusCode != http.StatusOK {
		body, err = io.ReadAll(resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, false, fmt.Errorf("read body from %s: %w", c.t, err)
	}
	return resp.StatusCode, body, !resp.Close, nil
}

func (c *httpConn) Close() error { return c.nc.Close() }

// worker keeps one connection, redialing after an error or a close.
type worker struct {
	t target
	c *httpConn
}

// do runs one request, dialing first when needed.
func (w *worker) do() error {
	status, body, err := w.send(w.t.req, false)
	if err == nil && status != http.StatusOK {
		err = &errStatus{code: status, body: string(body)}
	}
	return err
}

// send runs req, dialing first when needed, and returns the status and,
// as exchange does, the body.
func (w *worker) send(req []byte, keepBody bool) (status int, body []byte, err error) {
	if w.c == nil {
		c, err := dialHTTP(w.t)
		if err != nil {
			return 0, nil, err
		}
		w.c = c
	}
	status, body, reuse, err := w.c.exchange(req, keepBody)
	if !reuse {
		w.c.Close()
		w.c = nil
	}
	return status, body, err
}

func (w *worker) close() {
	if w.c != nil {
		w.c.Close()
		w.c = nil
	}
}

// phase is the outcome of one load phase.
type phase struct {
	lat      []time.Duration // sorted, every request that ended (failed ones too)
	ok       int             // requests that ended 200 within the phase
	failed   int
	firstErr string
	elapsed  time.Duration
	cpu      cpuUse // filled by the caller, which can see the processes
}

func (p phase) rps() float64       { return float64(p.ok) / p.elapsed.Seconds() }
func (p phase) p50() time.Duration { return percentile(p.lat, 50) }
func (p phase) p99() time.Duration { return percentile(p.lat, 99) }

// errCounter collects failures from many goroutines, keeping the first
// message as a sample.
type errCounter struct {
	mu    sync.Mutex
	n     int
	first string
}

func (e *errCounter) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.first = err.Error()
	}
	e.n++
}

// dialWorkers opens n connections to t, one worker each, before a load
// loop's clock starts; after an error it closes those it opened.
func dialWorkers(t target, n int) ([]*worker, error) {
	workers := make([]*worker, n)
	for i := range workers {
		c, err := dialHTTP(t)
		if err != nil {
			for _, w := range workers[:i] {
				w.close()
			}
			return nil, err
		}
		workers[i] = &worker{t: t, c: c}
	}
	return workers, nil
}

// closedLoop runs conns workers against t for d: each sends a request as
// soon as its previous one ended. Connections are opened before the clock
// starts. Throughput counts the requests that ended by the deadline;
// latencies include the ones in flight at the deadline.
func closedLoop(ctx context.Context, t target, conns int, d time.Duration) (phase, error) {
	workers, err := dialWorkers(t, conns)
	if err != nil {
		return phase{}, fmt.Errorf("closed loop: %w", err)
	}
	end := time.Now().Add(d)
	start, samples, errs := closedLoopUntil(ctx, workers, end)
	p := phase{lat: make([]time.Duration, 0, len(samples)), failed: errs.n, firstErr: errs.first, elapsed: d}
	for _, s := range samples {
		p.lat = append(p.lat, s.lat)
		if !s.failed && !start.Add(s.intended+s.lat).After(end) {
			p.ok++
		}
	}
	slices.Sort(p.lat)
	return p, ctx.Err()
}

// closedLoopUntil runs each worker on a goroutine of its own, sending its
// target's request as soon as its previous one ended, until end (zero:
// none) or ctx ends, then closes it. It returns when it began, every
// request run, in no order (a closed loop's request is meant to start when
// it starts), and the failures.
func closedLoopUntil(ctx context.Context, workers []*worker, end time.Time) (time.Time, []sample, *errCounter) {
	var (
		wg    sync.WaitGroup
		errs  errCounter
		mu    sync.Mutex
		all   []sample
		start = time.Now()
	)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			mine := make([]sample, 0, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !end.IsZero() && !t0.Before(end) {
					break
				}
				err := w.do()
				lat := time.Since(t0)
				mine = append(mine, sample{intended: t0.Sub(start), lat: lat, failed: err != nil, done: true})
				if err != nil {
					errs.add(err)
					if w.c == nil && lat < time.Millisecond {
						time.Sleep(10 * time.Millisecond) // a refused dial: do not spin
					}
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return start, all, &errs
}

// sample is one open-loop request: when it was meant to start (from the
// phase's start) and how long it took from then.
type sample struct {
	intended time.Duration
	lat      time.Duration
	failed   bool
	done     bool
}

// openPhase is the outcome of an open-loop phase.
type openPhase struct {
	phase
	start    time.Time // intended offsets count from here
	samples  []sample  // in intended order
	conns    int       // connections it needed
	waited   int       // times a request waited for a connection (0 unless maxConns was reached)
	rate     float64
	lateness time.Duration // how late the dispatcher was at worst
}

// openLoop sends requests at rate per second for d, each at its intended
// start time start+i/rate whatever the server does, and measures latency
// from that intended start: a server that stalls is charged for every
// request that should have started meanwhile (no coordinated omission). A
// request is handed to an idle connection, or to a new one when none is
// idle, so it never queues behind another request in the client; only past
// maxConns connections does a request wait, and that is counted.
func openLoop(ctx context.Context, t target, rate float64, d time.Duration, maxConns int) (openPhase, error) {
	return openLoopEach(ctx, t, rate, d, maxConns, func(w *worker, _ int) error { return w.do() })
}

// openRequests is how many requests an open loop at rate for d sends.
func openRequests(rate float64, d time.Duration) int { return int(rate * d.Seconds()) }

// openLoopEach is openLoop with request i made by each on worker w (whose
// connection goes to t; with t zero, each makes its own and no connection
// is opened before the clock starts); an error it returns counts the
// request as failed. Each i is handed to one call only, so each may write
// to an i-th slot without a lock.
func openLoopEach(ctx context.Context, t target, rate float64, d time.Duration, maxConns int, each func(w *worker, i int) error) (openPhase, error) {
	n := openRequests(rate, d)
	period := time.Duration(float64(time.Second) / rate)
	samples := make([]sample, n)
	jobs := make(chan int) // unbuffered: a send succeeds only when a worker is idle
	var (
		wg     sync.WaitGroup
		errs   errCounter
		start  time.Time
		nconns int
	)
	run := func(first int, w *worker) {
		defer wg.Done()
		defer w.close()
		handle := func(i int) {
			err := each(w, i)
			s := &samples[i]
			s.lat = time.Since(start.Add(s.intended))
			s.done = true
			if err != nil {
				s.failed = true
				errs.add(err)
			}
		}
		if first >= 0 {
			handle(first)
		}
		for i := range jobs {
			handle(i)
		}
	}
	// Open some connections before the clock starts: enough for the
	// requests of a few milliseconds.
	var pre []*worker
	if t.addr != "" {
		var err error
		if pre, err = dialWorkers(t, min(maxConns, max(8, int(math.Ceil(rate*0.005))))); err != nil {
			return openPhase{}, fmt.Errorf("open loop: %w", err)
		}
	}
	for _, w := range pre {
		wg.Add(1)
		nconns++
		go run(-1, w)
	}
	var waited int
	var lateness time.Duration
	start = time.Now()
	sent := 0
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		intended := time.Duration(i) * period
		samples[i].intended = intended
		if wait := intended - time.Since(start); wait > 0 {
			time.Sleep(wait)
		} else if -wait > lateness {
			lateness = -wait
		}
		sent++
		select {
		case jobs <- i:
			continue
		default:
		}
		if nconns < maxConns {
			nconns++
			wg.Add(1)
			go run(i, &worker{t: t})
			continue
		}
		waited++
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	samples = samples[:sent]
	p := openPhase{start: start, samples: samples, conns: nconns, waited: waited, rate: rate, lateness: lateness}
	p.elapsed = time.Duration(sent) * period
	for _, s := range samples {
		p.lat = append(p.lat, s.lat)
		if !s.failed {
			p.ok++
		}
	}
	slices.Sort(p.lat)
	p.failed, p.firstErr = errs.n, errs.first
	if ctx.Err() != nil {
		return p, ctx.Err()
	}
	return p, nil
}

// timeBins puts samples into buckets of bin by their intended start, over
// span: each bucket's count, failures, p50 and p99. mark, when not nil, is
// called with each sample's index and its bucket, for what else a bucket
// counts.
func timeBins(samples []sample, bin, span time.Duration, mark func(i int, b *chartBin)) []chartBin {
	bins := make([]chartBin, int((span+bin-1)/bin))
	lats := make([][]time.Duration, len(bins))
	for i, s := range samples {
		k := int(s.intended / bin)
		if k < 0 || k >= len(bins) {
			continue
		}
		lats[k] = append(lats[k], s.lat)
		bins[k].n++
		bins[k].failed += btoi(s.failed)
		if mark != nil {
			mark(i, &bins[k])
		}
	}
	for k, l := range lats {
		slices.Sort(l)
		bins[k].p50, bins[k].p99 = percentile(l, 50), percentile(l, 99)
	}
	return bins
}

// percentile returns the nearest-rank pct-th percentile of sorted: the
// smallest recorded value such that at least pct percent of the values are
// at or below it (sorted[ceil(pct/100*n)-1]). No interpolation: every
// figure reported is a latency that was actually measured. Zero for none.
func percentile(sorted []time.Duration, pct float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The small epsilon keeps 99/100*100 from becoming 99.00000000000001.
	k := int(math.Ceil(pct/100*float64(n) - 1e-9))
	k = max(1, min(k, n))
	return sorted[k-1]
}

// median returns the middle of xs (the mean of the two middle ones for an
// even count); the rounds of a section are summarised by it so one noisy
// round does not move the figure.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fetch gets t once on a fresh connection and returns the status and body,
// to check before a section that both servers serve the same page.
func fetch(t target) (int, []byte, error) {
	w := &worker{t: t}
	defer w.close()
	return w.send(t.req, true)
}

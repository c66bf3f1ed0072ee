// This file owns how the supervisor counts into its metrics, which package
// metrics defines: per-request figures are counted as requests end, through
// series looked up once per release; the per-release gauges are read at
// scrape time (scrape), so a release that leaves the registry leaves the
// metrics too.

package supervisor

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmux/fpmux/metrics"
	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
)

// newMetrics returns s's metrics, their gauges read from s at each scrape.
func newMetrics(s *Supervisor) *metrics.Supervisor {
	states := make([]string, len(allStates))
	for i, st := range allStates {
		states[i] = string(st)
	}
	return metrics.NewSupervisor(states, s.scrape)
}

// releaseMetrics holds one release's request series, looked up once, so that
// counting a request is two atomic adds and no label lookup or allocation.
type releaseMetrics struct {
	m        *metrics.Supervisor
	id       string
	duration prometheus.Observer
	// byCode[status] is the requests_total series of that status, made
	// on its first request.
	byCode [600]atomic.Pointer[prometheus.Counter]
	// phpErrors are the php_errors_total series by level; fatalCount
	// counts the fatal ones of this release alone (the series outlives a
	// release deployed again under its id), for the guard.
	phpErrors  map[pool.PHPLevel]prometheus.Counter
	fatalCount atomic.Int64
	// onFatal, when set, hears each fatal as it is counted: the guard
	// judging the release (guard.go).
	onFatal atomic.Pointer[func()]
	// answered and errors count the release's answers and those of status
	// 500 or more, for a fleet host's figures (fleet.go).
	answered, errors atomic.Int64
}

// forRelease returns release id's series, each at 0 from the start.
func forRelease(m *metrics.Supervisor, id string) *releaseMetrics {
	return &releaseMetrics{m: m, id: id, duration: m.Duration.WithLabelValues(id), phpErrors: m.ForRelease(id)}
}

// phpError counts one error PHP logged for the release. It is the pool's
// OnPHPError, called on the goroutine reading php-fpm's output: an atomic
// add or two, never a lock.
func (rm *releaseMetrics) phpError(level pool.PHPLevel) {
	if c, ok := rm.phpErrors[level]; ok {
		c.Inc()
	}
	if level == pool.PHPFatal {
		rm.fatalCount.Add(1)
		if f := rm.onFatal.Load(); f != nil {
			(*f)()
		}
	}
}

// fatals is how many fatal errors PHP has logged for this release since it
// was created (or adopted, after an upgrade: see pool.Options.OnPHPError).
func (rm *releaseMetrics) fatals() int64 { return rm.fatalCount.Load() }

// observe counts one ended request.
func (rm *releaseMetrics) observe(code int, d time.Duration) {
	rm.duration.Observe(d.Seconds())
	rm.answered.Add(1)
	if code >= 500 {
		rm.errors.Add(1)
	}
	if code < 0 || code >= len(rm.byCode) {
		rm.m.Requests.WithLabelValues(rm.id, strconv.Itoa(code)).Inc()
		return
	}
	c := rm.byCode[code].Load()
	if c == nil {
		counter := rm.m.Requests.WithLabelValues(rm.id, strconv.Itoa(code))
		rm.byCode[code].CompareAndSwap(nil, &counter)
		c = &counter
	}
	(*c).Inc()
}

// scrape reports the releases for a scrape: each one's state and, while its
// pool runs, its figures, php-fpm's status page only while it is ready or
// active (a draining pool is being stopped). The pools are read all at
// once, without s.mu, each status page bounded by statusTimeout.
func (s *Supervisor) scrape() metrics.Scrape {
	s.mu.Lock()
	var sc metrics.Scrape
	if a := s.active.Load(); a != nil {
		sc.Active = a.id
	}
	pools := map[int]*pool.Pool{} // by index in sc.Releases
	for _, r := range s.releases {
		mr := metrics.Release{ID: r.id, State: string(r.state)}
		if r.pool != nil && r.state.live() {
			mr.Live, mr.InFlight = true, r.pool.InFlight()
			mr.ConnsOpen, mr.ConnsIdle = r.backend.Open(), r.backend.Idle()
			pools[len(sc.Releases)] = r.pool
		}
		sc.Releases = append(sc.Releases, mr)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readPool(&sc.Releases[i], p)
		}()
	}
	wg.Wait()
	return sc
}

// readPool reads the figures of mr's live pool p: its memory and, unless it
// is draining, php-fpm's status page; a figure that cannot be read stays nil.
func readPool(mr *metrics.Release, p *pool.Pool) {
	if mem, err := p.Memory(); err == nil {
		mr.Memory = &mem
	}
	if mr.State != string(StateReady) && mr.State != string(StateActive) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	if st, err := p.Status(ctx); err == nil {
		mr.Status = &st
	}
}

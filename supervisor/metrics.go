// This file owns the supervisor's Prometheus metrics: every metric it
// defines is defined here (cmd/fpmux/metrics.go defines the web server
// front's, which the supervisor cannot see). Per-request figures are
// counted as requests end; per-release gauges are read at scrape time by a
// collector, so a release that leaves the registry leaves the metrics too.

package supervisor

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	s            *Supervisor
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	drainSeconds prometheus.Histogram
	drainsForced prometheus.Counter
	restarts     *prometheus.CounterVec
	wedged       *prometheus.CounterVec // masters killed by the wedge check
	phpErrors    *prometheus.CounterVec // see releaseMetrics.phpError
	deploys      *prometheus.CounterVec
	preview      *prometheus.CounterVec // see preview.go
	unrouted     prometheus.Counter
	// warmupFailures and symlinkErrors: see warmApp and pointSymlinkLocked.
	warmupFailures prometheus.Counter
	healthFailures prometheus.Counter // see checkHealth
	symlinkErrors  prometheus.Counter
	guardRollbacks prometheus.Counter // see guard.go

	codesMu sync.Mutex
	codes   map[int]string // status code -> label, so requests do not format it each time

	inFlight    *prometheus.Desc
	state       *prometheus.Desc
	activeInfo  *prometheus.Desc
	poolProcs   *prometheus.Desc
	listenQueue *prometheus.Desc
	maxQueue    *prometheus.Desc
	maxReached  *prometheus.Desc
	slow        *prometheus.Desc
	memory      *prometheus.Desc
	conns       *prometheus.Desc
}

func newMetrics(s *Supervisor) *metrics {
	rel := []string{"release"}
	m := &metrics{
		s: s,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_requests_total", Help: "Requests relayed, by release and HTTP status.",
		}, []string{"release", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fpmux_request_duration_seconds", Help: "Time from a request's params to its last byte, by release.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, rel),
		drainSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fpmux_drain_duration_seconds", Help: "Time from a release's switch-away to its pool's stop.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		drainsForced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_drains_forced_total", Help: "Drains cut at drain_timeout with requests still in flight.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_pool_restarts_total", Help: "php-fpm masters restarted after dying, by release.",
		}, rel),
		wedged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_pool_wedged_total", Help: "php-fpm masters killed and started again because their pool was wedged (alive, answering nothing), by release.",
		}, rel),
		phpErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_php_errors_total", Help: "Errors PHP logged through php-fpm, by release and level (fatal, warning, notice, deprecated); not those PHP logs elsewhere (its error_log setting).",
		}, []string{"release", "level"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_deploys_total", Help: "Deploys by outcome: ok, refused (bad id or root), failed (pool did not start, release failed a health check, its workers' access check or its warm-up, or its activation could not be recorded in state_dir).",
		}, []string{"outcome"}),
		preview: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_preview_requests_total",
			Help: "Requests that named a release in X-Fpmux-Release, by outcome: routed (to that ready release), active (it was the active release), " +
				"bad_token (no or a wrong X-Fpmux-Preview-Token: served by the active release), not_ready (unknown or not ready: 503), " +
				"conflict (a header repeated with another value: 503), off (preview_token is empty: served by the active release).",
		}, []string{"outcome"}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_requests_unrouted_total", Help: "Requests answered 503 by fpmux itself because no release was active.",
		}),
		warmupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_warmup_failures_total", Help: "App warm-up requests that got no answer, a 404 or a 5xx (under warmup_failures: fail, each fails its deploy).",
		}),
		healthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_health_check_failures_total", Help: "Health checks a new release failed before it was ready (each fails its deploy).",
		}),
		symlinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_symlink_errors_total", Help: "Activations after which the symlink could not be pointed at the active release.",
		}),
		guardRollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_guard_rollbacks_total", Help: "Switches back to the previous release by the guard, after a release errored in its window.",
		}),
		codes:       map[int]string{},
		inFlight:    prometheus.NewDesc("fpmux_requests_in_flight", "Requests pinned to a release and not yet ended.", rel, nil),
		state:       prometheus.NewDesc("fpmux_release_state", "1 for the state a release is in, 0 for the others.", []string{"release", "state"}, nil),
		activeInfo:  prometheus.NewDesc("fpmux_active_release_info", "The release new requests go to (value 1).", rel, nil),
		poolProcs:   prometheus.NewDesc("fpmux_pool_processes", "php-fpm worker processes of a live release's pool, by state (active, idle).", []string{"release", "state"}, nil),
		listenQueue: prometheus.NewDesc("fpmux_pool_listen_queue", "Connections waiting in a pool's accept queue.", rel, nil),
		maxQueue:    prometheus.NewDesc("fpmux_pool_max_listen_queue", "The longest a pool's accept queue has been since it started.", rel, nil),
		maxReached:  prometheus.NewDesc("fpmux_pool_max_children_reached", "Times a pool hit pm.max_children since it started.", rel, nil),
		slow:        prometheus.NewDesc("fpmux_pool_slow_requests", "Requests of a pool that ran past request_slowlog_timeout since it started.", rel, nil),
		memory:      prometheus.NewDesc("fpmux_pool_memory_bytes", "Memory of a live pool's master and workers: rss counts shared pages in every process, pss shares them out, so pss adds up across pools.", []string{"release", "kind"}, nil),
		conns:       prometheus.NewDesc("fpmux_pool_connections", "fpmux's connections to a live pool: open (busy or idle) and idle.", []string{"release", "state"}, nil),
	}
	for _, o := range []string{previewRouted, previewActive, previewBadToken, previewNotReady, previewConflict, previewOff} {
		m.preview.WithLabelValues(o) // each outcome at 0 from the start
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.drainSeconds, m.drainsForced, m.restarts, m.wedged, m.phpErrors, m.deploys, m.preview, m.unrouted, m.warmupFailures, m.healthFailures, m.symlinkErrors, m.guardRollbacks, m} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) codeLabel(code int) string {
	m.codesMu.Lock()
	defer m.codesMu.Unlock()
	l, ok := m.codes[code]
	if !ok {
		l = strconv.Itoa(code)
		m.codes[code] = l
	}
	return l
}

// releaseMetrics holds one release's request series, looked up once, so that
// counting a request is two atomic adds and no label lookup or allocation.
type releaseMetrics struct {
	m        *metrics
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

func (m *metrics) forRelease(id string) *releaseMetrics {
	m.wedged.WithLabelValues(id) // 0 from the start, for alerts on increase()
	m.restarts.WithLabelValues(id)
	rm := &releaseMetrics{m: m, id: id, duration: m.duration.WithLabelValues(id),
		phpErrors: make(map[pool.PHPLevel]prometheus.Counter, len(pool.PHPLevels))}
	for _, l := range pool.PHPLevels { // every level at 0 from the start, as wedged
		rm.phpErrors[l] = m.phpErrors.WithLabelValues(id, string(l))
	}
	return rm
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
		rm.m.requests.WithLabelValues(rm.id, rm.m.codeLabel(code)).Inc()
		return
	}
	c := rm.byCode[code].Load()
	if c == nil {
		counter := rm.m.requests.WithLabelValues(rm.id, rm.m.codeLabel(code))
		rm.byCode[code].CompareAndSwap(nil, &counter)
		c = &counter
	}
	(*c).Inc()
}

// forget drops the series of a release that left the registry.
func (m *metrics) forget(release string) {
	m.requests.DeletePartialMatch(prometheus.Labels{"release": release})
	m.duration.DeleteLabelValues(release)
	m.restarts.DeleteLabelValues(release)
	m.wedged.DeleteLabelValues(release)
	m.phpErrors.DeletePartialMatch(prometheus.Labels{"release": release})
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.inFlight, m.state, m.activeInfo, m.poolProcs, m.listenQueue, m.maxQueue, m.maxReached, m.slow, m.memory, m.conns} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the per-release gauges, read now.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	s.mu.Lock()
	var lives []*release
	for _, r := range s.releases {
		for _, st := range allStates {
			v := 0.0
			if r.state == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, r.id, string(st))
		}
		if r.pool != nil && r.state.live() {
			ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(r.pool.InFlight()), r.id)
			ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(r.backend.Open()), r.id, "open")
			ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(r.backend.Idle()), r.id, "idle")
			lives = append(lives, r)
		}
	}
	states := make(map[*release]State, len(lives))
	for _, r := range lives {
		states[r] = r.state
	}
	s.mu.Unlock()
	if a := s.active.Load(); a != nil {
		ch <- prometheus.MustNewConstMetric(m.activeInfo, prometheus.GaugeValue, 1, a.id)
	}
	var wg sync.WaitGroup
	for _, r := range lives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.collectPool(ch, r, states[r])
		}()
	}
	wg.Wait()
}

// collectPool sends a live pool's memory and, unless it is draining (being
// stopped), php-fpm's own status figures.
func (m *metrics) collectPool(ch chan<- prometheus.Metric, r *release, state State) {
	if mem, err := r.pool.Memory(); err == nil {
		ch <- prometheus.MustNewConstMetric(m.memory, prometheus.GaugeValue, float64(mem.RSS), r.id, "rss")
		ch <- prometheus.MustNewConstMetric(m.memory, prometheus.GaugeValue, float64(mem.PSS), r.id, "pss")
	}
	if state != StateReady && state != StateActive {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	st, err := r.pool.Status(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.poolProcs, prometheus.GaugeValue, float64(st.ActiveProcesses), r.id, "active")
	ch <- prometheus.MustNewConstMetric(m.poolProcs, prometheus.GaugeValue, float64(st.IdleProcesses), r.id, "idle")
	ch <- prometheus.MustNewConstMetric(m.listenQueue, prometheus.GaugeValue, float64(st.ListenQueue), r.id)
	ch <- prometheus.MustNewConstMetric(m.maxQueue, prometheus.GaugeValue, float64(st.MaxListenQueue), r.id)
	ch <- prometheus.MustNewConstMetric(m.maxReached, prometheus.GaugeValue, float64(st.MaxChildrenReached), r.id)
	ch <- prometheus.MustNewConstMetric(m.slow, prometheus.GaugeValue, float64(st.SlowRequests), r.id)
}

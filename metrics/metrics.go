// Package metrics owns fpmux's Prometheus metrics: every metric fpmux
// exports is defined in this file, with its name, help, labels and type
// (CONTRACT.md lists them), and so is the private registry they are served
// from. The supervisor (Supervisor), the fleet agent (Fleet) and the web
// server front (RegisterFront) each get their set and count into it; the
// gauges that describe the releases are read at scrape time from what the
// supervisor reports (Scrape), so a release that leaves its registry
// leaves the metrics too. It reads the figures of pool and fcgimux and
// imports no other fpmux package.
package metrics

import (
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/pool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns the registry fpmux serves at /metrics, with Go's
// and the process's own collectors: a private one, never the global
// registry, so that nothing a library registers there is served.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// register registers each of cs on reg, stopping at the first failure.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// The outcomes of a deploy, in fpmux_deploys_total.
const (
	DeployOK      = "ok"
	DeployRefused = "refused" // a bad id or root
	DeployFailed  = "failed"
)

// The outcomes of a request that names a release, in
// fpmux_preview_requests_total (see supervisor/preview.go).
const (
	PreviewRouted   = "routed"    // pinned to the ready release it named
	PreviewActive   = "active"    // it named the active release: an ordinary request
	PreviewBadToken = "bad_token" // no or a wrong token: hint ignored, served by the active release
	PreviewNotReady = "not_ready" // the release is unknown or in another state: 503
	PreviewConflict = "conflict"  // a header came twice with different values: 503
	PreviewOff      = "off"       // preview_token is empty: hint ignored
)

// Supervisor is the supervisor's metrics: the counters and histograms it
// counts into as requests, deploys and drains end, and, read at each
// scrape from what its scrape function reports, the per-release gauges.
type Supervisor struct {
	Requests       *prometheus.CounterVec   // release, code
	Duration       *prometheus.HistogramVec // release
	DrainSeconds   prometheus.Histogram
	DrainsForced   prometheus.Counter
	Restarts       *prometheus.CounterVec // release
	Wedged         *prometheus.CounterVec // release: masters killed by the wedge check
	PHPErrors      *prometheus.CounterVec // release, level (pool.PHPLevels)
	Deploys        *prometheus.CounterVec // outcome: DeployOK, DeployRefused, DeployFailed
	Preview        *prometheus.CounterVec // outcome: the Preview constants
	Unrouted       prometheus.Counter
	WarmupFailures prometheus.Counter
	HealthFailures prometheus.Counter
	SymlinkErrors  prometheus.Counter
	GuardRollbacks prometheus.Counter

	states []string
	scrape func() Scrape

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

// Scrape is what the supervisor reports at a scrape: its releases and the
// active one.
type Scrape struct {
	Releases []Release
	Active   string // the active release's id, or ""
}

// Release is one release at a scrape.
type Release struct {
	ID    string
	State string // one of the states NewSupervisor was given
	// Live: its pool runs (starting, ready, active or draining), and
	// InFlight (requests pinned to it), ConnsOpen and ConnsIdle (fpmux's
	// connections to it, busy or idle, and idle) are its figures.
	Live                 bool
	InFlight             int64
	ConnsOpen, ConnsIdle int
	// Memory is its pool's, and Status php-fpm's status page of it (read
	// only while it is ready or active); each nil when not read.
	Memory *pool.Memory
	Status *pool.Status
}

// NewSupervisor returns the supervisor's metrics, not yet registered:
// states are every state a release can be in (each a series of
// fpmux_release_state), and scrape reports the releases at each scrape.
func NewSupervisor(states []string, scrape func() Scrape) *Supervisor {
	rel := []string{"release"}
	m := &Supervisor{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_requests_total", Help: "Requests relayed, by release and HTTP status.",
		}, []string{"release", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fpmux_request_duration_seconds", Help: "Time from a request's params to its last byte, by release.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, rel),
		DrainSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fpmux_drain_duration_seconds", Help: "Time from a release's switch-away to its pool's stop.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		DrainsForced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_drains_forced_total", Help: "Drains cut at drain_timeout with requests still in flight.",
		}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_pool_restarts_total", Help: "php-fpm masters restarted after dying, by release.",
		}, rel),
		Wedged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_pool_wedged_total", Help: "php-fpm masters killed and started again because their pool was wedged (alive, answering nothing), by release.",
		}, rel),
		PHPErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_php_errors_total", Help: "Errors PHP logged through php-fpm, by release and level (fatal, warning, notice, deprecated); not those PHP logs elsewhere (its error_log setting).",
		}, []string{"release", "level"}),
		Deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_deploys_total", Help: "Deploys by outcome: ok, refused (bad id or root), failed (pool did not start, release failed a health check, its workers' access check or its warm-up, or its activation could not be recorded in state_dir).",
		}, []string{"outcome"}),
		Preview: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fpmux_preview_requests_total",
			Help: "Requests that named a release in X-Fpmux-Release, by outcome: routed (to that ready release), active (it was the active release), " +
				"bad_token (no or a wrong X-Fpmux-Preview-Token: served by the active release), not_ready (unknown or not ready: 503), " +
				"conflict (a header repeated with another value: 503), off (preview_token is empty: served by the active release).",
		}, []string{"outcome"}),
		Unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_requests_unrouted_total", Help: "Requests answered 503 by fpmux itself because no release was active.",
		}),
		WarmupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_warmup_failures_total", Help: "App warm-up requests that got no answer, a 404 or a 5xx (under warmup_failures: fail, each fails its deploy).",
		}),
		HealthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_health_check_failures_total", Help: "Health checks a new release failed before it was ready (each fails its deploy).",
		}),
		SymlinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_symlink_errors_total", Help: "Activations after which the symlink could not be pointed at the active release.",
		}),
		GuardRollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fpmux_guard_rollbacks_total", Help: "Switches back to the previous release by the guard, after a release errored in its window.",
		}),
		states:      states,
		scrape:      scrape,
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
	for _, o := range []string{PreviewRouted, PreviewActive, PreviewBadToken, PreviewNotReady, PreviewConflict, PreviewOff} {
		m.Preview.WithLabelValues(o) // each outcome at 0 from the start
	}
	return m
}

// Register registers every supervisor metric on reg.
func (m *Supervisor) Register(reg prometheus.Registerer) error {
	return register(reg, m.Requests, m.Duration, m.DrainSeconds, m.DrainsForced, m.Restarts, m.Wedged, m.PHPErrors, m.Deploys,
		m.Preview, m.Unrouted, m.WarmupFailures, m.HealthFailures, m.SymlinkErrors, m.GuardRollbacks, m)
}

// ForRelease makes release's series that count from 0 (restarts, wedged,
// every level of php_errors), so that alerts on increase() see its first
// one, and returns its php_errors series by level.
func (m *Supervisor) ForRelease(release string) map[pool.PHPLevel]prometheus.Counter {
	m.Wedged.WithLabelValues(release)
	m.Restarts.WithLabelValues(release)
	byLevel := make(map[pool.PHPLevel]prometheus.Counter, len(pool.PHPLevels))
	for _, l := range pool.PHPLevels {
		byLevel[l] = m.PHPErrors.WithLabelValues(release, string(l))
	}
	return byLevel
}

// Forget drops the series of a release that left the registry.
func (m *Supervisor) Forget(release string) {
	m.Requests.DeletePartialMatch(prometheus.Labels{"release": release})
	m.Duration.DeleteLabelValues(release)
	m.Restarts.DeleteLabelValues(release)
	m.Wedged.DeleteLabelValues(release)
	m.PHPErrors.DeletePartialMatch(prometheus.Labels{"release": release})
}

// Describe implements prometheus.Collector for the per-release gauges.
func (m *Supervisor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.inFlight, m.state, m.activeInfo, m.poolProcs, m.listenQueue, m.maxQueue, m.maxReached, m.slow, m.memory, m.conns} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the per-release gauges, from
// what the supervisor reports now.
func (m *Supervisor) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	sc := m.scrape()
	if sc.Active != "" {
		gauge(m.activeInfo, 1, sc.Active)
	}
	for _, r := range sc.Releases {
		for _, st := range m.states {
			v := 0.0
			if r.State == st {
				v = 1
			}
			gauge(m.state, v, r.ID, st)
		}
		if r.Live {
			gauge(m.inFlight, float64(r.InFlight), r.ID)
			gauge(m.conns, float64(r.ConnsOpen), r.ID, "open")
			gauge(m.conns, float64(r.ConnsIdle), r.ID, "idle")
		}
		if mem := r.Memory; mem != nil {
			gauge(m.memory, float64(mem.RSS), r.ID, "rss")
			gauge(m.memory, float64(mem.PSS), r.ID, "pss")
		}
		if st := r.Status; st != nil {
			gauge(m.poolProcs, float64(st.ActiveProcesses), r.ID, "active")
			gauge(m.poolProcs, float64(st.IdleProcesses), r.ID, "idle")
			gauge(m.listenQueue, float64(st.ListenQueue), r.ID)
			gauge(m.maxQueue, float64(st.MaxListenQueue), r.ID)
			gauge(m.maxReached, float64(st.MaxChildrenReached), r.ID)
			gauge(m.slow, float64(st.SlowRequests), r.ID)
		}
	}
}

// Fleet is a fleet host's metrics (package fleet's Agent).
type Fleet struct {
	EtcdUp   prometheus.Gauge
	Switches prometheus.Counter
	Prepares *prometheus.CounterVec // outcome: fleet.PrepReady, fleet.PrepFailed
}

// NewFleet returns a fleet host's metrics, not yet registered.
func NewFleet() *Fleet {
	return &Fleet{
		EtcdUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fpmux_fleet_etcd_up",
			Help: "1 while this host's last write to etcd succeeded, 0 while etcd is unreachable (the host keeps serving its release)."}),
		Switches: prometheus.NewCounter(prometheus.CounterOpts{Name: "fpmux_fleet_switches_total",
			Help: "Activations this host made as its fleet asked (batches, rollbacks, converging to the fleet's release)."}),
		Prepares: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fpmux_fleet_prepares_total",
			Help: "Releases this host prepared for its fleet, by outcome (ready, failed)."}, []string{"outcome"}),
	}
}

// Register registers every fleet metric on reg.
func (m *Fleet) Register(reg prometheus.Registerer) error {
	return register(reg, m.EtcdUp, m.Switches, m.Prepares)
}

// RegisterFront registers the metrics of the web server front on reg: its
// connections and the requests it answered itself, read from front at
// each scrape (fcgimux, which holds them, defines no metrics).
func RegisterFront(reg prometheus.Registerer, front *fcgimux.Server) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fpmux_connections_open",
			Help: "Web server connections open now (bounded by limits.max_connections)."},
			func() float64 { n, _ := front.ConnStats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fpmux_connections_refused_total",
			Help: "Web server connections closed at once for being over limits.max_connections."},
			func() float64 { _, n := front.ConnStats(); return float64(n) }),
	)
	for _, r := range fcgimux.Refusals() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fpmux_requests_refused_total",
			Help:        "Requests fpmux answered itself instead of relaying, by reason: script (404), malformed (400), params_size (431), busy (503, limits.max_in_flight), backend_timeout (504, or cut if the response had started: limits.backend_timeout).",
			ConstLabels: prometheus.Labels{"reason": r.String()}},
			func() float64 { return float64(front.Refused(r)) }))
	}
}

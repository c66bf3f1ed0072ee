// This file owns the metrics of the web server front (fcgimux.Server): its
// connections and the requests it answered itself. They are defined here,
// not in supervisor/metrics.go beside the others, because the supervisor
// does not hold the front; fcgimux, which does, defines no metrics.

package main

import (
	"github.com/fpmux/fpmux/fcgimux"
	"github.com/prometheus/client_golang/prometheus"
)

// registerFrontMetrics registers the front's figures on reg, read from
// front at each scrape.
func registerFrontMetrics(reg *prometheus.Registry, front *fcgimux.Server) {
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

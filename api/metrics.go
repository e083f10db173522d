package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the HTTP series of the server. Every label value comes from a
// closed set, so no request can add series: method is a standard method or
// "other", route a registered route template or "unmatched", status the
// status the server wrote.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// routes are the registered route templates, filled by track once every
	// route is added.
	routes map[string]bool
	// series caches the children of requests and duration by seriesKey
	// (*series): WithLabelValues hashes the labels and takes the vector's
	// lock on every call, which showed in the join's profile. The key set is
	// as closed as the labels.
	series sync.Map
}

type seriesKey struct {
	method, route string
	status        int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (m *metrics) seriesOf(method, route string, status int) *series {
	k := seriesKey{method, route, status}
	if s, ok := m.series.Load(k); ok {
		return s.(*series)
	}
	n := &series{requests: m.requests.WithLabelValues(method, route, strconv.Itoa(status))}
	if route != liveRoute { // a stream lasts as long as its client: not a latency
		n.duration = m.duration.WithLabelValues(method, route)
	}
	s, _ := m.series.LoadOrStore(k, n)
	return s.(*series)
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viewpulse_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "viewpulse_http_request_duration_seconds", Help: "HTTP request latency by method and route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route"}),
		routes: map[string]bool{},
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// track records the route templates of e as the route label's values.
func (m *metrics) track(e *echo.Echo) {
	for _, r := range e.Routes() {
		m.routes[r.Path] = true
	}
}

func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the answer now so its status is counted
		}
		route := c.Path()
		if !m.routes[route] {
			// echo's 404 leaves the path empty or sets a partial match.
			route = "unmatched"
		}
		s := m.seriesOf(methodLabel(c.Request().Method), route, c.Response().Status)
		s.requests.Inc()
		if s.duration != nil {
			s.duration.Observe(time.Since(start).Seconds())
		}
		return nil
	}
}

// methodLabel is method when it is one of the standard methods, else
// "other": a client can send any token as a method.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

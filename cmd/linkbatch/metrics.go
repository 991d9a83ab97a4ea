package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// metricsShutdown bounds how long stopping the metrics server waits for
// scrapes in progress.
const metricsShutdown = 5 * time.Second

// metrics holds the Prometheus metrics of one run in a registry of its own.
// Its methods and hooks are safe for concurrent use.
type metrics struct {
	reg         *prometheus.Registry
	rows        *prometheus.CounterVec
	requests    *prometheus.CounterVec
	rateLimited prometheus.Counter
	inFlight    prometheus.Gauge
	duration    *prometheus.HistogramVec
}

// newMetrics returns the run's metrics. The retry count, the pace and the
// learned limit are read from p at each scrape; p may be nil (a dry run),
// which reads as zeros.
func newMetrics(p *ratelimit.Pacer) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "linkbatch_rows_total",
			Help: "Rows with a result written, by status.",
		}, []string{"status"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "linkbatch_requests_total",
			Help: "HTTP requests sent to the tenant, by kind (link, get_user) and HTTP status code (0: no answer).",
		}, []string{"kind", "code"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "linkbatch_rate_limited_total",
			Help: "Requests the tenant answered with 429 Too Many Requests.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "linkbatch_in_flight",
			Help: "Rows being processed by a worker.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "linkbatch_request_duration_seconds",
			Help:    "Latency of HTTP requests to the tenant, by kind.",
			Buckets: prometheus.DefBuckets,
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.rows, m.requests, m.rateLimited, m.inFlight, m.duration,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "linkbatch_retries_total",
			Help: "Requests sent again after a 429, a 5xx answer or a network error.",
		}, func() float64 {
			if p == nil {
				return 0
			}
			return float64(p.Stats().Retries)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "linkbatch_pace_requests_per_second",
			Help: "Current pace of requests for all workers together.",
		}, func() float64 { return readPace(p).Rate }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "linkbatch_learned_limit_requests_per_second",
			Help: "Refill rate of the tenant's rate-limit bucket learned from its answers; 0 until learned.",
		}, func() float64 { return readPace(p).Learned }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "linkbatch_learned_limit_burst",
			Help: "Size of the tenant's rate-limit bucket shown by its answers; 0 until seen.",
		}, func() float64 { return float64(readPace(p).Burst) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Every status is exported from the start, at 0, so that rates and
	// alerts work before the first such row.
	for _, st := range batch.Statuses {
		m.rows.WithLabelValues(string(st))
	}
	return m
}

// Hooks returns the callbacks that feed m.
func (m *metrics) Hooks() batch.Hooks {
	return batch.Hooks{
		Attempt: func(a batch.Attempt) {
			m.requests.WithLabelValues(a.Kind, strconv.Itoa(a.Status)).Inc()
			m.duration.WithLabelValues(a.Kind).Observe(a.Latency.Seconds())
			if a.RateLimited {
				m.rateLimited.Inc()
			}
		},
		Result: func(res batch.Result) { m.rows.WithLabelValues(string(res.Status)).Inc() },
		Active: func(delta int) { m.inFlight.Add(float64(delta)) },
	}
}

// Handler serves m in the Prometheus text format.
func (m *metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// serveMetrics listens on addr (":9090", "127.0.0.1:0") and serves h at
// /metrics until stop is called or ctx is done. It returns the listen
// error, e.g. when the port is taken, and logs the address it bound. stop
// shuts the server down gracefully, waiting up to metricsShutdown for
// scrapes in progress, and returns the server's error, if any; it may be
// called more than once.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *zap.Logger) (stop func() error, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	errLog, _ := zap.NewStdLogAt(log.With(zap.String("server", "metrics")), zap.WarnLevel) // only fails for an invalid level
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
	}
	log.Info("serving metrics", zap.String("addr", ln.Addr().String()), zap.String("path", "/metrics"))

	var (
		wg       sync.WaitGroup
		once     sync.Once
		stopErr  error
		served   = make(chan error, 1)
		stopping = make(chan struct{})
	)
	shutdown := func() {
		once.Do(func() {
			close(stopping)
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metricsShutdown)
			defer cancel()
			err := srv.Shutdown(sctx)
			if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			if err != nil {
				stopErr = fmt.Errorf("serve metrics: %w", err)
			}
		})
	}
	wg.Go(func() { served <- srv.Serve(ln) })
	wg.Go(func() {
		select {
		case <-ctx.Done():
			shutdown()
		case <-stopping:
		}
	})
	return func() error {
		shutdown()
		wg.Wait()
		return stopErr
	}, nil
}

// combineHooks returns hooks that call, for each event, the callbacks of
// hs that are set, in order. A callback none of hs sets stays nil.
func combineHooks(hs ...batch.Hooks) batch.Hooks {
	var (
		plans    []func(rows, todo int)
		attempts []func(batch.Attempt)
		results  []func(batch.Result)
		actives  []func(delta int)
	)
	for _, h := range hs {
		if h.Plan != nil {
			plans = append(plans, h.Plan)
		}
		if h.Attempt != nil {
			attempts = append(attempts, h.Attempt)
		}
		if h.Result != nil {
			results = append(results, h.Result)
		}
		if h.Active != nil {
			actives = append(actives, h.Active)
		}
	}
	var c batch.Hooks
	if len(plans) > 0 {
		c.Plan = func(rows, todo int) {
			for _, f := range plans {
				f(rows, todo)
			}
		}
	}
	if len(attempts) > 0 {
		c.Attempt = func(a batch.Attempt) {
			for _, f := range attempts {
				f(a)
			}
		}
	}
	switch len(results) {
	case 0:
	case 1: // called once per row: as it is
		c.Result = results[0]
	default:
		c.Result = func(res batch.Result) {
			for _, f := range results {
				f(res)
			}
		}
	}
	if len(actives) > 0 {
		c.Active = func(delta int) {
			for _, f := range actives {
				f(delta)
			}
		}
	}
	return c
}

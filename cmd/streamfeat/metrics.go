package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/promexport"
)

// metricsShutdownTimeout bounds how long a scrape still running at exit
// may hold the process.
const metricsShutdownTimeout = 5 * time.Second

// addRPCMetrics puts the RPC metrics' interceptors into cfg's server
// settings and returns them, or returns nil when --metrics-listen is off.
func addRPCMetrics(cfg *serveConfig) *promexport.RPCMetrics {
	if cfg.metricsListen == "" {
		return nil
	}
	m := promexport.NewRPCMetrics()
	sc := &cfg.server
	sc.UnaryInterceptors = append([]grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()},
		sc.UnaryInterceptors...)
	sc.StreamInterceptors = append([]grpc.StreamServerInterceptor{m.StreamServerInterceptor()},
		sc.StreamInterceptors...)
	return m
}

// metricsServer serves /metrics, and /debug/pprof/ with --pprof, over HTTP.
type metricsServer struct {
	http   *http.Server
	served chan error
}

// startMetrics listens on --metrics-listen and serves the engine's and the
// RPCs' metrics, with the Go runtime's and the process's, until stop. It
// returns nil, and serves nothing, when --metrics-listen is off.
func startMetrics(cfg serveConfig, engine *streamfeat.Engine, rpc *promexport.RPCMetrics,
	snaps *snapshotMetrics, log *slog.Logger) (*metricsServer, error) {
	if cfg.metricsListen == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		promexport.NewCollector(engine.Metrics),
		rpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if snaps != nil {
		reg.MustRegister(snaps.duration, snaps.size, snaps.failures)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	lis, err := net.Listen("tcp", cfg.metricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	m := &metricsServer{
		http:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		served: make(chan error, 1),
	}
	go func() { m.served <- m.http.Serve(lis) }()

	addr := lis.Addr().String()
	log.Info("serving metrics", "addr", addr, "metrics", "http://"+addr+"/metrics",
		"pprof", cfg.pprof)
	if ip := lis.Addr().(*net.TCPAddr).IP; cfg.pprof && !ip.IsLoopback() {
		log.Warn("pprof is served on a non-loopback address: whoever reaches it can profile " +
			"the process and read its command line; bind --metrics-listen to 127.0.0.1")
	}
	return m, nil
}

// stop lets running scrapes finish for a moment, then closes the server,
// and returns an error if the server had failed. A nil server does nothing.
func (m *metricsServer) stop() error {
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
	defer cancel()
	if err := m.http.Shutdown(ctx); err != nil {
		m.http.Close()
	}
	if err := <-m.served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// snapshotMetrics time and size the state directory's snapshots. The engine
// does not write files, so these are measured here, where they are written.
type snapshotMetrics struct {
	duration prometheus.Histogram
	size     prometheus.Gauge
	failures prometheus.Counter
}

// newSnapshotMetrics returns the snapshot families, or nil when metrics are
// off or there is no state directory.
func newSnapshotMetrics(cfg serveConfig, dir *stateDir) *snapshotMetrics {
	if cfg.metricsListen == "" || dir == nil {
		return nil
	}
	m := &snapshotMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamfeat_snapshot_duration_seconds",
			Help:    "Time to take and write one snapshot to the state directory.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms to 4.4 min
		}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamfeat_snapshot_size_bytes",
			Help: "Size of the newest snapshot written.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamfeat_snapshot_failures_total",
			Help: "Snapshots that could not be written.",
		}),
	}
	dir.metrics = m
	return m
}

// observe records one snapshot; it does nothing on a nil receiver.
func (m *snapshotMetrics) observe(took time.Duration, size int64, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failures.Inc()
		return
	}
	m.duration.Observe(took.Seconds())
	m.size.Set(float64(size))
}

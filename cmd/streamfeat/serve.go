package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	// Clients may gzip their requests: large batches shrink several times.
	// The decompressed size is bounded by --max-recv-bytes like any other.
	_ "google.golang.org/grpc/encoding/gzip"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/grpcserver"
)

// serveConfig is what the serve flags set.
type serveConfig struct {
	listen    string
	engine    streamfeat.Config
	clock     string // "wall" or "event"
	server    grpcserver.Config
	logFormat string // "text" or "json"

	metricsListen string // address of /metrics; empty: off
	pprof         bool   // also serve /debug/pprof/ there

	state stateConfig // --state-dir and its companions (state.go)
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, newLogger(cfg.logFormat, stderr))
}

const serveUsage = `Usage: streamfeat serve [flags]

Serve the streamfeat engine over gRPC until SIGINT or SIGTERM. Clients
register feature names, send batches of events (entity id, timestamp,
feature values) and ask for the count, mean and variance of a feature over
the short (5 minute) and long (1 hour) rolling windows, per entity or over
all entities, and whether the short window has drifted from the long one.
State is kept in memory; with --state-dir it is also written to snapshots
and restored on start (docs/SNAPSHOT.md). The service is streamfeat.v1.StreamFeat
(proto/streamfeat/v1/streamfeat.proto); the server also answers the standard
gRPC health check and reflection, so grpcurl needs no proto file. With
--metrics-listen it serves Prometheus metrics at /metrics over HTTP, and with
--pprof also Go's profiles at /debug/pprof/.

Example:
  streamfeat serve --clock event
  grpcurl -plaintext 127.0.0.1:7070 list
  grpcurl -plaintext -d '{"feature_names": ["latency_ms"]}' \
      127.0.0.1:7070 streamfeat.v1.StreamFeat/RegisterSchema

On SIGINT or SIGTERM the health check turns NOT_SERVING, running calls get
--drain-timeout to finish, queued events are applied, and the process exits 0.

Flags (each can also be set by the environment variable shown; the command
line wins):
`

// parseServeFlags reads the serve flags from args and, for flags not on the
// command line, from the environment through lookupEnv.
func parseServeFlags(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var (
		cfg       serveConfig
		clock     = newChoice("wall", "wall", "event")
		logFormat = newChoice("text", "text", "json")
		maxRecv   = byteSize(grpcserver.DefaultMaxRecvMsgBytes)
	)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:7070",
		"TCP `address` to listen on (:7070 listens on every interface)")
	fs.IntVar(&cfg.engine.Shards, "shards", streamfeat.DefaultShards,
		"state shards, each owned by one goroutine; one or two per core")
	fs.IntVar(&cfg.engine.QueueDepth, "queue-depth", streamfeat.DefaultQueueDepth,
		"batches a shard may queue; further batches are dropped and counted")
	fs.DurationVar(&cfg.engine.IdleSpin, "idle-spin", streamfeat.DefaultIdleSpin,
		"how long a shard idle after a query, or a query awaiting its answer, polls before it parks; "+
			"lower saves CPU, higher cuts query latency; at most 1ms; 0: never poll")
	fs.DurationVar(&cfg.engine.EntityTTL, "entity-ttl", streamfeat.DefaultEntityTTL,
		"release an idle entity's state after this long; at least 1h")
	fs.Var(clock, "clock",
		"what now is: wall (machine time) or event (newest event time seen)")
	fs.IntVar(&cfg.server.MaxBatchEvents, "max-batch-events", grpcserver.DefaultMaxBatchEvents,
		"most events one IngestBatch call may carry")
	fs.Var(&maxRecv, "max-recv-bytes",
		"largest request accepted, in `bytes`; suffixes KiB, MiB, GiB")
	fs.DurationVar(&cfg.server.DrainTimeout, "drain-timeout", grpcserver.DefaultDrainTimeout,
		"on shutdown, time running calls get before they are cancelled")
	fs.Var(logFormat, "log-format", "log format on stderr")
	fs.StringVar(&cfg.metricsListen, "metrics-listen", "",
		"TCP `address` to serve Prometheus metrics on at /metrics, such as 127.0.0.1:9090 (empty: off)")
	fs.BoolVar(&cfg.pprof, "pprof", false,
		"also serve Go profiles at /debug/pprof/ on --metrics-listen")
	addStateFlags(fs, &cfg.state)
	fs.Usage = func() { printServeUsage(fs) }

	if err := applyEnv(fs, lookupEnv, stderr); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve takes no arguments, got %q\n", fs.Args())
		return cfg, errUsage
	}

	if cfg.pprof && cfg.metricsListen == "" {
		fmt.Fprintln(stderr, "--pprof needs --metrics-listen: profiles are served beside /metrics")
		return cfg, errUsage
	}
	if err := cfg.state.check(); err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, errUsage
	}

	cfg.clock = clock.value
	if cfg.clock == "event" {
		cfg.engine.Clock = streamfeat.NewEventClock()
	}
	cfg.server.MaxRecvMsgBytes = int(maxRecv)
	cfg.logFormat = logFormat.value
	if cfg.engine.IdleSpin == 0 {
		// The engine reads 0 as its default; on the command line 0 says off.
		cfg.engine.IdleSpin = -1
	}
	return cfg, nil
}

// printServeUsage writes the help text: what serve does, an example, and
// every flag with its environment variable and default.
func printServeUsage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), serveUsage)
	printFlags(fs, true)
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// serve runs the server until ctx ends, then shuts it down.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	engine, err := streamfeat.New(cfg.engine)
	if err != nil {
		lis.Close()
		return err
	}
	stateDir, err := restoreState(cfg.state, engine, log)
	if err != nil {
		lis.Close()
		engine.Close()
		return err
	}
	rpcMetrics := addRPCMetrics(&cfg) // nil without --metrics-listen
	srv, err := grpcserver.New(engine, cfg.server)
	if err != nil {
		lis.Close()
		engine.Close()
		return err
	}

	metrics, err := startMetrics(cfg, engine, rpcMetrics, newSnapshotMetrics(cfg, stateDir), log)
	if err != nil {
		lis.Close()
		srv.Shutdown(context.Background())
		return err
	}

	state := startState(stateDir, cfg.state, engine, log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	logStart(log, lis.Addr(), cfg, engine.Config(), srv.Config())

	// Wait for a signal, or for the listener to fail.
	var failed error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain_timeout", srv.Config().DrainTimeout.String())
	case failed = <-serveErr:
		log.Error("server failed; shutting down", "err", failed)
	}

	start := time.Now()
	err = srv.Shutdown(context.Background())
	if failed == nil {
		failed = <-serveErr
	}
	logSummary(log, engine.Metrics(), time.Since(start), err)
	if errors.Is(err, grpcserver.ErrDrainTimeout) {
		// Running calls were cancelled, as --drain-timeout asks; every
		// acknowledged batch was still applied, so this is a clean stop.
		err = nil
	}
	// After Shutdown closed the engine, so it holds every acknowledged event.
	saveErr := state.final()
	// The metrics stay up until here, so the drain can be watched.
	return errors.Join(failed, err, saveErr, metrics.stop())
}

// logStart logs the settings in force, defaults filled in, so that a flag
// left at 0 shows what it means.
func logStart(log *slog.Logger, addr net.Addr, cfg serveConfig, ec streamfeat.Config,
	sc grpcserver.Config) {
	shards, queueDepth, ttl := ec.Shards, ec.QueueDepth, ec.EntityTTL
	idleSpin := ec.IdleSpin.String()
	if ec.IdleSpin < 0 {
		idleSpin = "off"
	}
	log.Info("serving streamfeat.v1.StreamFeat",
		"addr", addr.String(),
		"shards", shards,
		"queue_depth", queueDepth,
		"entity_ttl", ttl.String(),
		"idle_spin", idleSpin,
		"clock", cfg.clock,
		"max_batch_events", sc.MaxBatchEvents,
		"max_recv_bytes", sc.MaxRecvMsgBytes,
		"drain_timeout", sc.DrainTimeout.String(),
	)
}

func logSummary(log *slog.Logger, m streamfeat.Metrics, took time.Duration, err error) {
	attrs := []any{
		"took", took.Round(time.Millisecond).String(),
		"events_accepted", m.EventsAccepted,
		"events_dropped", m.DroppedTooOld + m.DroppedTooNew + m.DroppedInvalid + m.DroppedOverloaded,
		"dropped_too_old", m.DroppedTooOld,
		"dropped_too_new", m.DroppedTooNew,
		"dropped_invalid", m.DroppedInvalid,
		"dropped_overloaded", m.DroppedOverloaded,
		"values_accepted", m.ValuesAccepted,
		"values_rejected", m.ValuesRejected,
	}
	switch {
	case errors.Is(err, grpcserver.ErrDrainTimeout):
		log.Warn("stopped; calls still running at the end of the drain time were cancelled",
			append(attrs, "err", err)...)
	case err != nil:
		log.Error("stopped with an error", append(attrs, "err", err)...)
	default:
		log.Info("stopped", attrs...)
	}
	if m.DroppedOverloaded > 0 {
		log.Warn("some batches were dropped because a shard queue was full; " +
			"raise --queue-depth or --shards, or send backfills with wait_for_capacity")
	}
	if m.DroppedTooNew > 0 { // only the wall clock has a future
		log.Warn("some events were stamped too far in the future for the wall clock; " +
			"check client clocks, or replay old logs with --clock event")
	}
}

// Package promexport exports a streamfeat server's metrics to Prometheus.
//
// The engine keeps no dependency on Prometheus: it only counts, in atomics,
// and hands out a snapshot through Engine.Metrics. This package turns that
// snapshot into Prometheus metrics at scrape time, and times the gRPC
// handlers through interceptors. It lives in its own package, not in
// grpcserver, so that a program embedding the engine or the gRPC server
// without Prometheus links none of client_golang; cmd/streamfeat wires it
// in behind --metrics-listen.
//
// # Collectors
//
// Collector reads the snapshot on every scrape and holds no state of its
// own, so it can never drift from the engine's counters; a scrape costs one
// Metrics call (a few atomic loads per shard). Engine counters become
// Prometheus counters, levels become gauges, and per-shard figures carry the
// label shard ("0", "1", …). The engine counts every event exactly once, so
// streamfeat_events_accepted_total plus the sum of
// streamfeat_events_dropped_total over its reasons is every event that
// reached Ingest.
//
// RPCMetrics times the service's handlers (IngestBatch, and the queries
// GetFeatureStats and GetDrift by rpc and scope), and counts every RPC by
// method and status code with the go-grpc-middleware Prometheus provider.
// Those families keep that provider's usual grpc_server_ names, so existing
// gRPC dashboards and alerts work on them unchanged. Its interceptors go
// into grpcserver.Config.
//
// Both types are safe for concurrent use. Register each with one registry.
//
// # Not exported yet
//
// The engine does not measure the size of the micro-batches its shards
// apply, the time from enqueue to applied, or snapshots (the state is in
// memory only); Collector marks where they would go.
package promexport

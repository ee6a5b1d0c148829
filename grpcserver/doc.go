// Package grpcserver serves a streamfeat.Engine over gRPC, as the service
// streamfeat.v1.StreamFeat defined in proto/streamfeat/v1/streamfeat.proto.
//
// The package is an adapter and nothing more: every handler checks what
// only the wire can get wrong (an unspecified enum, a population query that
// names an entity, a batch over the size limits), converts the request into
// an engine call, and converts the answer or the engine's sentinel error back.
// Statistics, windows, drift and the rules for late or invalid events are the
// engine's. A Server owns its engine: Shutdown closes it.
//
// # Status codes
//
// Engine errors map to codes by their sentinel (errors.Is): a bad window,
// feature id, entity id or drift option is INVALID_ARGUMENT, an unregistered
// feature id is NOT_FOUND, a schema past its feature limit and a wait for
// queue space that outlived the RPC deadline are RESOURCE_EXHAUSTED, and a
// closed engine is UNAVAILABLE, so a client retries elsewhere during a
// rollout. Ingest never fails for individual bad events: the engine drops and
// counts them, and the response carries the counts. The exceptions are a
// feature id below 1, which only a client that forgot to set the field
// sends, and a batch with more events than Config.MaxBatchEvents; both fail
// the whole batch with INVALID_ARGUMENT before anything reaches the engine.
// A request larger than Config.MaxRecvMsgBytes is refused by the gRPC
// transport with RESOURCE_EXHAUSTED before any handler runs. So a batch is
// applied whole or refused whole at the transport; past it, the engine's
// per-shard queues decide.
//
// Undefined statistics are left unset on the wire, never sent as NaN: the
// mean and both variances of an empty window, and the sample variance of a
// window of one value.
//
// # Drift thresholds
//
// GetDrift's thresholds are optional fields. Unset means the engine default.
// streamfeat.DriftOptions reads a zero threshold as "use the default" too, so
// an explicit 0 on the wire, which asks to flag any shift at all, is sent as
// the smallest threshold that does that: the smallest positive float64 for
// mean_z_threshold and 1 for variance_ratio_threshold (a ratio of standard
// deviations or its inverse is always at least 1). A negative, NaN or
// infinite threshold, or a variance ratio threshold below 1, is
// INVALID_ARGUMENT.
//
// # Health and shutdown
//
// The server registers the standard gRPC health service, reporting SERVING
// for the whole server ("") and for streamfeat.v1.StreamFeat, and server
// reflection, so grpcurl works without the proto file.
//
// Shutdown runs in a fixed order. Health turns NOT_SERVING, so load
// balancers and probes move on. GracefulStop then refuses new RPCs and waits
// for the running ones, for at most Config.DrainTimeout: a client that keeps
// a stream open, such as an idle health Watch, would otherwise hold it
// forever. When the drain time runs out, Stop cancels what is left. Last,
// the engine is closed, which applies every batch already queued, so no
// event whose IngestBatch call succeeded is lost.
package grpcserver

//go:generate bash ../scripts/gen.sh

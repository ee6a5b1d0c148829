package grpcserver_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/grpcserver"
)

// BenchmarkGRPCIngest measures IngestBatch end to end: a generated client
// and a server in one process, talking over a loopback TCP connection. Each
// batch size runs against two servers of the same service, one after the
// other in the same run:
//
//   - server=engine is grpcserver.Server on an engine with the defaults the
//     streamfeat binary serves with and the event-time clock, warmed up with
//     a whole long window of event time, as the root package's ingest
//     benchmarks are, so the timed part is the steady state.
//   - server=noop has an IngestBatch that does nothing past what gRPC does
//     for every call, decoding the request; it only counts the events.
//
// So engine/noop is the share of the end-to-end cost that is not the wire.
//
// The load is the root package's: 10 features per event, entity ids drawn
// uniformly at random from 100,000 for each event, and event time moving a
// fixed step per event. Every request asks to wait for queue space, and the
// benchmark fails if any event or value is dropped.
//
// benchInflight client goroutines share one connection, as the goroutines of
// a real producer would, and each keeps one call in flight: a fixed number of
// RPCs in flight, whatever GOMAXPROCS is. Each goroutine owns one request,
// built before the timer starts; before each call it draws fresh entity ids
// and stamps fresh timestamps into it, a few nanoseconds an event against
// the microseconds an event of the call itself, and the same for both
// servers.
//
// Besides the rates, p50-ns and p99-ns are the latency of a single call as
// its client sees it. With benchInflight calls in flight on two cores, a call
// mostly waits behind the others: the median is about benchInflight times
// the time the machine spends on one call, not one call's time alone.
func BenchmarkGRPCIngest(b *testing.B) {
	ids := benchEntityIDs(benchEntities)
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("server=engine/batch=%d", batch), func(b *testing.B) {
			benchGRPCIngest(b, startEngineTarget(b, ids), ids, batch)
		})
		b.Run(fmt.Sprintf("server=noop/batch=%d", batch), func(b *testing.B) {
			benchGRPCIngest(b, startNoopTarget(b), ids, batch)
		})
	}
}

const (
	benchT0       = 1_700_000_000_000 // a round start time for generated events
	benchEntities = 100_000
	benchFeatures = 10

	// benchStepMs is the event time between two consecutive events: the root
	// package's one entity event per 1,000,000 ms spread over 1e5 entities.
	benchStepMs = 10

	// benchLongMs is the long window of the default engine geometry: warm-up
	// runs this much event time.
	benchLongMs = 3_600_000

	// benchInflight is the number of client goroutines, each with one call in
	// flight. On the 2-core target machine two already saturate the cores
	// with batches of 1000 events; calls of one event, which spend most of
	// their time waiting on round trips, need about eight. More only lengthen
	// the queue, and with it every call's latency.
	benchInflight = 8

	// benchRoundTimeout bounds one round of a sub-benchmark, so a server
	// that stops answering fails the benchmark instead of hanging it.
	benchRoundTimeout = 5 * time.Minute
)

// benchTarget is a server on a loopback port and a client connected to it.
type benchTarget struct {
	client pb.StreamFeatClient

	// clock hands out event time: the next unused timestamp.
	clock *atomic.Int64

	// barrier waits until the server has applied every event it accepted.
	barrier func(ctx context.Context) error

	// warm, if not nil, brings the server to its steady state.
	warm func(b *testing.B)

	// received reports the events the server saw, or -1 if it cannot say;
	// the engine's own counts come back in every response instead.
	received func() int64

	close func()
}

// startEngineTarget serves an engine with feature ids 1 to 10; its warm
// function brings the engine to the steady state.
func startEngineTarget(b *testing.B, ids []string) *benchTarget {
	b.Helper()
	engine, err := streamfeat.New(streamfeat.Config{Clock: streamfeat.NewEventClock()})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := grpcserver.New(engine, grpcserver.Config{})
	if err != nil {
		engine.Close()
		b.Fatal(err)
	}

	t := &benchTarget{clock: new(atomic.Int64), received: func() int64 { return -1 }}
	t.clock.Store(benchT0)
	t.close = serveBench(b, srv.Serve, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
	}, t)
	t.warm = func(b *testing.B) { warmEngine(b, engine, ids, t.clock) }

	// A population query reaches every shard through its queue, behind the
	// batches queued before it.
	t.barrier = func(ctx context.Context) error {
		_, err := t.client.GetFeatureStats(ctx, &pb.GetFeatureStatsRequest{
			FeatureId: 1, Window: pb.Window_WINDOW_SHORT, Population: true,
		})
		return err
	}
	return t
}

// noopServer implements the StreamFeat service with an IngestBatch that
// does only what gRPC does for every call, decode the request. It counts the
// events, so the decoded request is used.
type noopServer struct {
	pb.UnimplementedStreamFeatServer
	events atomic.Int64
}

func (s *noopServer) IngestBatch(_ context.Context, req *pb.IngestBatchRequest) (*pb.IngestBatchResponse, error) {
	s.events.Add(int64(len(req.GetEvents())))
	return &pb.IngestBatchResponse{}, nil
}

// startNoopTarget serves a noopServer with the receive limit that
// grpcserver.Server uses.
func startNoopTarget(b *testing.B) *benchTarget {
	b.Helper()
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(grpcserver.DefaultMaxRecvMsgBytes))
	noop := &noopServer{}
	pb.RegisterStreamFeatServer(gs, noop)

	t := &benchTarget{
		clock:    new(atomic.Int64),
		barrier:  func(context.Context) error { return nil },
		received: noop.events.Load,
	}
	t.clock.Store(benchT0)
	t.close = serveBench(b, gs.Serve, gs.GracefulStop, t)
	return t
}

// serveBench serves on a fresh 127.0.0.1 port, connects t.client to it and
// returns a function that closes the client, stops the server with stop and
// checks that serve returned cleanly.
func serveBench(b *testing.B, serve func(net.Listener) error, stop func(), t *benchTarget) func() {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stop()
		<-served
		b.Fatal(err)
	}
	t.client = pb.NewStreamFeatClient(conn)
	return func() {
		conn.Close()
		stop()
		if err := <-served; err != nil {
			b.Errorf("Serve: %v", err)
		}
	}
}

func benchGRPCIngest(b *testing.B, t *benchTarget, ids []string, batch int) {
	defer t.close()
	if t.warm != nil {
		t.warm(b)
	}
	ctx, cancel := context.WithTimeout(b.Context(), benchRoundTimeout)
	defer cancel()

	workers := make([]*benchWorker, benchInflight)
	for i := range workers {
		workers[i] = newBenchWorker(ids, batch, uint64(i+1))
	}
	// One untimed call per worker opens the connection and lets HTTP/2 flow
	// control grow its windows to the batch size.
	runWorkers(ctx, b, workers, t, make([]time.Duration, len(workers)))
	if b.Failed() {
		return
	}
	runtime.GC()

	lat := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	runWorkers(ctx, b, workers, t, lat)
	if err := t.barrier(ctx); err != nil {
		b.Fatalf("barrier: %v", err)
	}
	b.StopTimer()

	if b.Failed() {
		return
	}
	checkWorkers(b, workers, t)
	events := b.N * batch
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/sec, "events/s")
	b.ReportMetric(float64(events*benchFeatures)/sec, "values/s")
	b.ReportMetric(sec*1e9/float64(events), "ns/event")
	b.ReportMetric(0, "ns/op") // per-call throughput depends on the batch size: events/s says it
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// runWorkers makes len(lat) calls from all the workers at once and records
// each call's latency in lat. The first failure cancels the rest.
func runWorkers(ctx context.Context, b *testing.B, workers []*benchWorker, t *benchTarget,
	lat []time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			if err := w.run(ctx, t, &next, lat); err != nil {
				b.Error(err)
				cancel()
			}
		})
	}
	wg.Wait()
}

// checkWorkers fails b unless every event sent was accepted whole.
func checkWorkers(b *testing.B, workers []*benchWorker, t *benchTarget) {
	var sent, accepted, dropped, rejected int64
	for _, w := range workers {
		sent += w.sent
		accepted += w.accepted
		dropped += w.dropped
		rejected += w.rejected
	}
	if dropped != 0 || rejected != 0 {
		b.Fatalf("%d of %d events dropped, %d values rejected", dropped, sent, rejected)
	}
	if n := t.received(); n >= 0 {
		accepted = n // the no-op server's responses are empty
	}
	if accepted != sent {
		b.Fatalf("server accepted %d of %d events", accepted, sent)
	}
}

// benchWorker is one client goroutine's request and tallies.
type benchWorker struct {
	rng *rand.Rand
	ids []string
	req *pb.IngestBatchRequest

	sent, accepted, dropped, rejected int64
}

// newBenchWorker builds a request of batch events with random values; run
// fills in entity ids and timestamps.
func newBenchWorker(ids []string, batch int, seed uint64) *benchWorker {
	rng := rand.New(rand.NewPCG(seed, 2))
	events := make([]*pb.Event, batch)
	for i := range events {
		values := make([]*pb.FeatureValue, benchFeatures)
		for f := range values {
			values[f] = &pb.FeatureValue{FeatureId: int32(f + 1), Value: 100 + 10*rng.NormFloat64()}
		}
		events[i] = &pb.Event{Values: values}
	}
	return &benchWorker{
		rng: rng,
		ids: ids,
		req: &pb.IngestBatchRequest{Events: events, WaitForCapacity: true},
	}
}

// run makes calls until next, which all workers share, passes len(lat).
// Call i's latency goes to lat[i].
func (w *benchWorker) run(ctx context.Context, t *benchTarget, next *atomic.Int64,
	lat []time.Duration) error {
	n := int64(len(w.req.Events))
	for i := next.Add(1) - 1; i < int64(len(lat)); i = next.Add(1) - 1 {
		ts := t.clock.Add(n*benchStepMs) - n*benchStepMs
		for _, ev := range w.req.Events {
			ev.EntityId = w.ids[w.rng.IntN(len(w.ids))]
			ev.TimestampMs = ts
			ts += benchStepMs
		}

		start := time.Now()
		resp, err := t.client.IngestBatch(ctx, w.req)
		lat[i] = time.Since(start)
		if err != nil {
			return fmt.Errorf("IngestBatch of %d events: %w", n, err)
		}
		w.sent += n
		w.accepted += resp.GetAcceptedEvents()
		w.dropped += resp.GetDroppedEvents()
		w.rejected += resp.GetRejectedFeatureValues()
	}
	return nil
}

// benchEntityIDs returns n distinct entity ids, the root package's.
func benchEntityIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "card-" + strconv.Itoa(1_000_000_000+i*7919)
	}
	return ids
}

// warmEngine registers feature ids 1 to 10 and ingests straight into e,
// the quick way to the state a server has after a long window of the
// benchmark's load: every entity touched once, then random entities until a
// whole long window of event time has passed, so rings have reached their
// steady size and buckets expire as fast as they are created.
func warmEngine(b *testing.B, e *streamfeat.Engine, ids []string, clock *atomic.Int64) {
	b.Helper()
	names := make([]string, benchFeatures)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i+1)
	}
	got, err := e.RegisterSchema(names)
	if err != nil {
		b.Fatal(err)
	}
	for i, name := range names {
		if got[name] != int32(i+1) {
			b.Fatalf("feature %s has id %d; want %d", name, got[name], i+1)
		}
	}

	const batch = 512
	rng := rand.New(rand.NewPCG(0, 2))
	values := make([]streamfeat.FeatureValue, batch*benchFeatures)
	events := make([]streamfeat.Event, batch)
	ctx := context.Background()
	end := clock.Load() + benchLongMs

	for start := 0; start < len(ids) || clock.Load() < end; start += batch {
		ts := clock.Add(batch*benchStepMs) - batch*benchStepMs
		for i := range events {
			id := ids[rng.IntN(len(ids))]
			if start < len(ids) {
				id = ids[(start+i)%len(ids)]
			}
			vals := values[i*benchFeatures : (i+1)*benchFeatures]
			for f := range vals {
				vals[f] = streamfeat.FeatureValue{FeatureID: int32(f + 1), Value: 100 + 10*rng.NormFloat64()}
			}
			events[i] = streamfeat.Event{EntityID: id, TimestampMs: ts + int64(i)*benchStepMs, Values: vals}
		}
		res, err := e.IngestWith(ctx, events, streamfeat.IngestOptions{WaitForCapacity: true})
		if err != nil {
			b.Fatal(err)
		}
		if res.DroppedEvents != 0 || res.RejectedValues != 0 {
			b.Fatalf("warm-up: %d events dropped, %d values rejected", res.DroppedEvents, res.RejectedValues)
		}
	}
	if _, err := e.PopulationStats(ctx, 1, streamfeat.Short); err != nil {
		b.Fatal(err)
	}
}

package grpcserver_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/grpcserver"
)

func TestRegisterSchema(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{MaxFeatures: 3})

	ids := h.register(t, "f1", "f2")
	if ids["f1"] != 1 || ids["f2"] != 2 || len(ids) != 2 {
		t.Fatalf("first registration = %v; want f1:1 f2:2", ids)
	}
	ids = h.register(t, "f2", "f3", "f3")
	if ids["f2"] != 2 || ids["f3"] != 3 || len(ids) != 2 {
		t.Fatalf("second registration = %v; want f2:2 f3:3", ids)
	}

	_, err := h.client.RegisterSchema(ctx(t), &pb.RegisterSchemaRequest{FeatureNames: []string{"f4"}})
	wantCode(t, "past MaxFeatures", err, codes.ResourceExhausted)
	_, err = h.client.RegisterSchema(ctx(t), &pb.RegisterSchemaRequest{})
	wantCode(t, "no names", err, codes.InvalidArgument)
	_, err = h.client.RegisterSchema(ctx(t), &pb.RegisterSchemaRequest{FeatureNames: []string{""}})
	wantCode(t, "empty name", err, codes.InvalidArgument)
}

// SF-16's data, and read-your-writes: every query sees the batch whose
// IngestBatch call returned just before it, on the same or another
// connection.
func TestReadYourWrites(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1")

	resp := h.ingest(t, ev("e1", t0, 1, 1.0), ev("e1", t0+1_000, 1, 3.0))
	if resp.GetAcceptedEvents() != 2 || resp.GetAcceptedFeatureValues() != 2 || resp.GetDroppedEvents() != 0 {
		t.Fatalf("ingest = %v; want 2 events and 2 values accepted", resp)
	}
	checkStats(t, "SF-16", h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT),
		want{count: 2, mean: f(2), pop: f(1), smp: f(2)}, 1e-12)

	for i := range 50 {
		h.ingest(t, ev("e2", t0+int64(i), 1, float64(i)))
		got := h.stats(t, "e2", 1, pb.Window_WINDOW_LONG)
		if got.GetCount() != int64(i+1) {
			t.Fatalf("after %d ingests: count = %d", i+1, got.GetCount())
		}
	}
}

func TestIngestCounts(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1")

	// Move event time 800 buckets past t0, so t0 is older than the long
	// window (720 buckets).
	h.ingest(t, ev("clock", t0+4_000_000, 1, 0))
	resp := h.ingest(t,
		ev("e1", t0+4_000_000, 1, 5),          // accepted
		ev("e1", t0, 1, 5),                    // too old
		ev("", t0+4_000_000, 1, 5),            // invalid entity
		ev("e1", t0+4_000_000, 9, 5),          // only value unregistered: invalid
		ev("e1", t0+4_000_000, 1, math.NaN()), // only value non-finite: invalid
		&pb.Event{EntityId: "e1", TimestampMs: t0 + 4_000_000, Values: []*pb.FeatureValue{
			{FeatureId: 1, Value: 7}, {FeatureId: 9, Value: 7}, // one of two rejected
		}},
	)
	want := &pb.IngestBatchResponse{
		AcceptedEvents:        2,
		DroppedEvents:         4,
		AcceptedFeatureValues: 2,
		DroppedTooOld:         1,
		DroppedInvalid:        3,
		RejectedFeatureValues: 3,
	}
	if !proto.Equal(resp, want) {
		t.Errorf("ingest = %v; want %v", resp, want)
	}
	checkStats(t, "e1", h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT),
		want2(2, 6, 1, 2), 1e-12)
}

func want2(count int64, mean, pop, smp float64) want {
	return want{count: count, mean: f(mean), pop: f(pop), smp: f(smp)}
}

// Undefined statistics are unset on the wire (SF-05, SF-12), and every
// response encodes to JSON.
func TestUndefinedStatsAreUnset(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1")

	checkStats(t, "unknown entity", h.stats(t, "nobody", 1, pb.Window_WINDOW_SHORT), want{}, 0)

	h.ingest(t, ev("e1", t0, 1, 42.5))
	one := h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT)
	checkStats(t, "SF-05", one, want{count: 1, mean: f(42.5), pop: f(0)}, 0)
	if _, err := protojson.Marshal(one); err != nil {
		t.Errorf("JSON of %v: %v", one, err)
	}

	d, err := h.client.GetDrift(ctx(t), &pb.GetDriftRequest{EntityId: "e1", FeatureId: 1})
	if err != nil {
		t.Fatalf("GetDrift: %v", err)
	}
	checkStats(t, "SF-05 drift short", d.GetShort(), want{count: 1, mean: f(42.5), pop: f(0)}, 0)
	checkStats(t, "SF-05 drift long", d.GetLong(), want{count: 1, mean: f(42.5), pop: f(0)}, 0)
	if d.GetMeanZScore() != 0 || d.GetVarianceRatio() != 0 || d.GetInverseVarianceRatio() != 0 ||
		d.GetMeanShift() || d.GetVarianceShift() {
		t.Errorf("SF-05 drift = %v; want zero scores and no flag", d)
	}
	if _, err := protojson.Marshal(d); err != nil {
		t.Errorf("JSON of %v: %v", d, err)
	}
}

func TestPopulation(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{Shards: 4})
	h.register(t, "f1")
	// Enough entities that they land on several shards.
	var events []*pb.Event
	for i := range 40 {
		events = append(events, ev(fmt.Sprintf("e%d", i), t0+int64(i), 1, float64(i%2*2+1)))
	}
	h.ingest(t, events...)

	resp, err := h.client.GetFeatureStats(ctx(t), &pb.GetFeatureStatsRequest{
		FeatureId: 1, Window: pb.Window_WINDOW_LONG, Population: true,
	})
	if err != nil {
		t.Fatalf("population stats: %v", err)
	}
	// Twenty 1s and twenty 3s: mean 2, M2 40.
	checkStats(t, "population", resp.GetStats(), want2(40, 2, 1, 40.0/39), 1e-12)
	checkStats(t, "one entity", h.stats(t, "e3", 1, pb.Window_WINDOW_LONG),
		want{count: 1, mean: f(3), pop: f(0)}, 0)

	d, err := h.client.GetDrift(ctx(t), &pb.GetDriftRequest{FeatureId: 1, Population: true})
	if err != nil {
		t.Fatalf("population drift: %v", err)
	}
	checkStats(t, "population drift short", d.GetShort(), want2(40, 2, 1, 40.0/39), 1e-12)
	if d.GetDrifted() || d.GetInsufficientData() {
		t.Errorf("population drift = %v; want no drift, enough data", d)
	}
}

// SF-14's data: one value in the short window against five in the long.
func TestDrift(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1")
	for i, v := range []float64{9, 11, 9, 11} {
		h.ingest(t, ev("e1", t0+int64(i)*60_000, 1, v))
	}
	h.ingest(t, ev("e1", t0+600_000, 1, 10))

	drift := func(req *pb.GetDriftRequest) *pb.GetDriftResponse {
		t.Helper()
		req.EntityId, req.FeatureId = "e1", 1
		resp, err := h.client.GetDrift(ctx(t), req)
		if err != nil {
			t.Fatalf("GetDrift(%v): %v", req, err)
		}
		return resp
	}

	d := drift(&pb.GetDriftRequest{})
	checkStats(t, "short", d.GetShort(), want{count: 1, mean: f(10), pop: f(0)}, 0)
	checkStats(t, "long", d.GetLong(), want2(5, 10, 0.8, 1), 1e-12)
	if !near(d.GetInverseVarianceRatio(), 894427190999.9159, 1e-12) || d.GetVarianceRatio() != 0 ||
		d.GetMeanZScore() != 0 {
		t.Errorf("scores = z %v, ratio %v, inverse %v; want 0, 0, 8.944e11",
			d.GetMeanZScore(), d.GetVarianceRatio(), d.GetInverseVarianceRatio())
	}
	if d.GetMeanShift() || !d.GetVarianceShift() || !d.GetDrifted() || d.GetInsufficientData() {
		t.Errorf("default flags = %v; want a variance shift only", d)
	}
	if d.GetMeanZThreshold() != 3 || d.GetVarianceRatioThreshold() != 2 {
		t.Errorf("thresholds = %v, %v; want the defaults 3, 2",
			d.GetMeanZThreshold(), d.GetVarianceRatioThreshold())
	}

	d = drift(&pb.GetDriftRequest{MinCount: 2})
	if !d.GetInsufficientData() || d.GetDrifted() || d.GetVarianceShift() {
		t.Errorf("min_count 2 = %v; want insufficient data and no flag", d)
	}

	d = drift(&pb.GetDriftRequest{ExcludeShortFromLong: true})
	checkStats(t, "baseline without short", d.GetLong(), want2(4, 10, 1, 4.0/3), 1e-12)
	if !near(d.GetInverseVarianceRatio(), 1e12, 1e-12) {
		t.Errorf("inverse ratio against baseline = %v; want 1e12", d.GetInverseVarianceRatio())
	}

	d = drift(&pb.GetDriftRequest{MeanZThreshold: proto.Float64(0), VarianceRatioThreshold: proto.Float64(1e15)})
	if d.GetMeanZThreshold() != math.SmallestNonzeroFloat64 || d.GetVarianceRatioThreshold() != 1e15 {
		t.Errorf("thresholds = %v, %v; want %v, 1e15",
			d.GetMeanZThreshold(), d.GetVarianceRatioThreshold(), math.SmallestNonzeroFloat64)
	}
	if d.GetVarianceShift() {
		t.Errorf("variance ratio threshold 1e15 = %v; want no variance shift", d)
	}

	// An explicit 0 variance threshold flags a change of spread, not every
	// comparison: the population's short and long windows here share one
	// standard deviation only if they hold the same values.
	d = drift(&pb.GetDriftRequest{VarianceRatioThreshold: proto.Float64(0)})
	if d.GetVarianceRatioThreshold() != 1 {
		t.Errorf("explicit 0 variance threshold became %v; want 1", d.GetVarianceRatioThreshold())
	}
	if want := d.GetVarianceRatio() > 1 || d.GetInverseVarianceRatio() > 1; d.GetVarianceShift() != want {
		t.Errorf("threshold 1 with ratios %v and %v: variance shift %v; want %v",
			d.GetVarianceRatio(), d.GetInverseVarianceRatio(), d.GetVarianceShift(), want)
	}
}

func TestStatusCodes(t *testing.T) {
	h := start(t, grpcserver.Config{MaxBatchEvents: 10}, streamfeat.Config{})
	h.register(t, "f1")
	c := h.client

	stats := func(req *pb.GetFeatureStatsRequest) error {
		_, err := c.GetFeatureStats(ctx(t), req)
		return err
	}
	drift := func(req *pb.GetDriftRequest) error {
		_, err := c.GetDrift(ctx(t), req)
		return err
	}
	ingest := func(events ...*pb.Event) error {
		_, err := c.IngestBatch(ctx(t), &pb.IngestBatchRequest{Events: events})
		return err
	}
	short := pb.Window_WINDOW_SHORT
	long := strings.Repeat("x", streamfeat.MaxEntityIDBytes+1)

	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"stats: unspecified window", stats(&pb.GetFeatureStatsRequest{EntityId: "e1", FeatureId: 1}),
			codes.InvalidArgument},
		{"stats: window 7", stats(&pb.GetFeatureStatsRequest{EntityId: "e1", FeatureId: 1, Window: 7}),
			codes.InvalidArgument},
		{"stats: feature 0", stats(&pb.GetFeatureStatsRequest{EntityId: "e1", Window: short}),
			codes.InvalidArgument},
		{"stats: feature -1", stats(&pb.GetFeatureStatsRequest{EntityId: "e1", FeatureId: -1, Window: short}),
			codes.InvalidArgument},
		{"stats: unregistered feature", stats(&pb.GetFeatureStatsRequest{EntityId: "e1", FeatureId: 2, Window: short}),
			codes.NotFound},
		{"stats: population feature unregistered",
			stats(&pb.GetFeatureStatsRequest{FeatureId: 2, Window: short, Population: true}), codes.NotFound},
		{"stats: population with entity",
			stats(&pb.GetFeatureStatsRequest{EntityId: "e1", FeatureId: 1, Window: short, Population: true}),
			codes.InvalidArgument},
		{"stats: empty entity", stats(&pb.GetFeatureStatsRequest{FeatureId: 1, Window: short}),
			codes.InvalidArgument},
		{"stats: oversize entity", stats(&pb.GetFeatureStatsRequest{EntityId: long, FeatureId: 1, Window: short}),
			codes.InvalidArgument},
		{"drift: feature 0", drift(&pb.GetDriftRequest{EntityId: "e1"}), codes.InvalidArgument},
		{"drift: unregistered feature", drift(&pb.GetDriftRequest{EntityId: "e1", FeatureId: 5}), codes.NotFound},
		{"drift: population with entity", drift(&pb.GetDriftRequest{EntityId: "e1", FeatureId: 1, Population: true}),
			codes.InvalidArgument},
		{"drift: empty entity", drift(&pb.GetDriftRequest{FeatureId: 1}), codes.InvalidArgument},
		{"drift: negative threshold",
			drift(&pb.GetDriftRequest{EntityId: "e1", FeatureId: 1, MeanZThreshold: proto.Float64(-1)}),
			codes.InvalidArgument},
		{"drift: NaN threshold",
			drift(&pb.GetDriftRequest{EntityId: "e1", FeatureId: 1, VarianceRatioThreshold: proto.Float64(math.NaN())}),
			codes.InvalidArgument},
		{"drift: infinite threshold",
			drift(&pb.GetDriftRequest{EntityId: "e1", FeatureId: 1, MeanZThreshold: proto.Float64(math.Inf(1))}),
			codes.InvalidArgument},
		{"drift: negative min count", drift(&pb.GetDriftRequest{EntityId: "e1", FeatureId: 1, MinCount: -1}),
			codes.InvalidArgument},
		{"ingest: feature 0", ingest(ev("e1", t0, 1, 1), ev("e1", t0, 0, 1)), codes.InvalidArgument},
		{"ingest: feature -3", ingest(ev("e1", t0, -3, 1)), codes.InvalidArgument},
	} {
		wantCode(t, tc.name, tc.err, tc.code)
	}

	// Nothing above reached the engine's state.
	if m := h.engine.Metrics(); m.EventsAccepted != 0 {
		t.Errorf("events accepted = %d; want 0", m.EventsAccepted)
	}
}

func TestBatchLimit(t *testing.T) {
	h := start(t, grpcserver.Config{MaxBatchEvents: 10}, streamfeat.Config{})
	h.register(t, "f1")

	events := make([]*pb.Event, 11)
	for i := range events {
		events[i] = ev("e1", t0+int64(i), 1, 1)
	}
	_, err := h.client.IngestBatch(ctx(t), &pb.IngestBatchRequest{Events: events})
	wantCode(t, "11 events", err, codes.InvalidArgument)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "11 events") || !strings.Contains(msg, "limit of 10") {
		t.Errorf("message %q; want it to name the count (11) and the limit (10)", msg)
	}
	checkStats(t, "after refused batch", h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT), want{}, 0)

	if got := h.ingest(t, events[:10]...).GetAcceptedEvents(); got != 10 {
		t.Errorf("10 events: accepted %d; want 10", got)
	}
}

// sf15Batch is SF-15's single request: 300,000 events for e1/f1 at t0+i,
// alternating 1.0 and 3.0.
func sf15Batch() *pb.IngestBatchRequest {
	events := make([]*pb.Event, 300_000)
	values := make([]pb.FeatureValue, len(events))
	evs := make([]pb.Event, len(events))
	for i := range events {
		values[i].FeatureId, values[i].Value = 1, float64(1+i%2*2)
		evs[i].EntityId, evs[i].TimestampMs = "e1", t0+int64(i)
		evs[i].Values = []*pb.FeatureValue{&values[i]}
		events[i] = &evs[i]
	}
	return &pb.IngestBatchRequest{Events: events}
}

func TestLargeBatchSF15(t *testing.T) {
	req := sf15Batch()
	if size := proto.Size(req); size <= 4<<20 {
		t.Fatalf("SF-15 request is %d bytes; the case needs more than gRPC's 4 MiB default", size)
	}

	t.Run("default limit admits it", func(t *testing.T) {
		h := start(t, grpcserver.Config{}, streamfeat.Config{})
		h.register(t, "f1")
		resp, err := h.client.IngestBatch(ctx(t), req)
		if err != nil {
			t.Fatalf("IngestBatch: %v", err)
		}
		if resp.GetAcceptedEvents() != 300_000 {
			t.Fatalf("accepted %d of 300000: %v", resp.GetAcceptedEvents(), resp)
		}
		checkStats(t, "SF-15", h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT),
			want2(300_000, 2, 1, 1.0000033333444445), 1e-9)
	})

	t.Run("over a lower limit it is refused whole", func(t *testing.T) {
		h := start(t, grpcserver.Config{MaxRecvMsgBytes: 4 << 20}, streamfeat.Config{})
		h.register(t, "f1")
		_, err := h.client.IngestBatch(ctx(t), req)
		wantCode(t, "over max receive size", err, codes.ResourceExhausted)
		checkStats(t, "SF-15 refused", h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT), want{}, 0)
		if m := h.engine.Metrics(); m.EventsAccepted != 0 {
			t.Errorf("events accepted = %d; want 0", m.EventsAccepted)
		}
	})
}

func TestHealthAndReflection(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})

	hc := healthpb.NewHealthClient(h.conn)
	for _, name := range []string{"", "streamfeat.v1.StreamFeat"} {
		resp, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatalf("health check %q: %v", name, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v; want SERVING", name, resp.GetStatus())
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctx(t))
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		t.Fatalf("reflection send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection recv: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, name := range []string{"streamfeat.v1.StreamFeat", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), name) {
			t.Errorf("reflection lists %v; want %s among them", names, name)
		}
	}
	stream.CloseSend()
}

// SF-16: an idle health Watch stream must not hold shutdown past the drain
// time, and it must see NOT_SERVING before it ends.
func TestShutdownWithIdleStreamSF16(t *testing.T) {
	const grace = time.Second
	h := start(t, grpcserver.Config{DrainTimeout: grace}, streamfeat.Config{})
	h.register(t, "f1")
	h.ingest(t, ev("e1", t0, 1, 1.0), ev("e1", t0+1_000, 1, 3.0))
	checkStats(t, "SF-16", h.stats(t, "e1", 1, pb.Window_WINDOW_SHORT), want2(2, 2, 1, 2), 1e-12)

	watch, err := healthpb.NewHealthClient(h.conn).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch update = %v, %v; want SERVING", first, err)
	}

	began := time.Now()
	err = h.srv.Shutdown(ctx(t))
	took := time.Since(began)
	if took > grace+2*time.Second {
		t.Errorf("Shutdown took %v; want at most %v", took, grace+2*time.Second)
	}
	if !errors.Is(err, grpcserver.ErrDrainTimeout) {
		t.Errorf("Shutdown = %v; want ErrDrainTimeout (the stream was still open)", err)
	}

	var seen []healthpb.HealthCheckResponse_ServingStatus
	for {
		resp, err := watch.Recv()
		if err != nil {
			if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled {
				t.Errorf("stream ended with %v; want UNAVAILABLE or CANCELLED", err)
			}
			break
		}
		seen = append(seen, resp.GetStatus())
	}
	if len(seen) == 0 || seen[len(seen)-1] != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch updates after shutdown began = %v; want NOT_SERVING", seen)
	}

	_, err = h.client.GetFeatureStats(ctx(t), &pb.GetFeatureStatsRequest{
		EntityId: "e1", FeatureId: 1, Window: pb.Window_WINDOW_SHORT,
	})
	wantCode(t, "query after shutdown", err, codes.Unavailable)
	if m := h.engine.Metrics(); m.EventsAccepted != 2 {
		t.Errorf("events accepted = %d; want 2", m.EventsAccepted)
	}
}

// Shutdown in the middle of a steady ingest loses no acknowledged batch:
// every batch a client saw accepted was applied before Shutdown returned.
func TestShutdownLosesNoAcceptedEvent(t *testing.T) {
	h := start(t, grpcserver.Config{DrainTimeout: time.Minute},
		streamfeat.Config{Shards: 2, QueueDepth: 4})
	h.register(t, "f1")

	const writers, batches, perBatch = 4, 200, 100
	var (
		mu           sync.Mutex
		ackedBatches int64
		ackedEvents  int64
		wg           sync.WaitGroup
		someAcked    = make(chan struct{})
		once         sync.Once
	)
	wctx := ctx(t)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				// One entity per batch, so each batch is one shard message.
				entity := fmt.Sprintf("w%d-b%d", w, b)
				events := make([]*pb.Event, perBatch)
				for i := range events {
					events[i] = ev(entity, t0+int64(i), 1, float64(i))
				}
				resp, err := h.client.IngestBatch(wctx, &pb.IngestBatchRequest{
					Events: events, WaitForCapacity: true,
				})
				if err != nil {
					if status.Code(err) != codes.Unavailable {
						t.Errorf("writer %d: %v; want UNAVAILABLE once shutdown began", w, err)
					}
					return
				}
				mu.Lock()
				ackedBatches++
				ackedEvents += resp.GetAcceptedEvents()
				if ackedBatches >= 20 {
					once.Do(func() { close(someAcked) })
				}
				mu.Unlock()
			}
		})
	}

	select {
	case <-someAcked:
	case <-ctx(t).Done():
		t.Fatal("no batch acknowledged")
	}
	if err := h.srv.Shutdown(ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()

	m := h.engine.Metrics()
	var applied int64
	for _, s := range m.Shards {
		applied += s.BatchesApplied
	}
	if m.EventsAccepted != ackedEvents || applied != ackedBatches {
		t.Errorf("engine accepted %d events and applied %d batches; clients saw %d events in %d batches",
			m.EventsAccepted, applied, ackedEvents, ackedBatches)
	}
	if ackedEvents != ackedBatches*perBatch {
		t.Errorf("acknowledged %d events in %d batches of %d; want every event accepted",
			ackedEvents, ackedBatches, perBatch)
	}
}

// A closed engine answers UNAVAILABLE, so clients retry elsewhere.
func TestClosedEngineIsUnavailable(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1")
	if err := h.engine.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := h.client.IngestBatch(ctx(t), &pb.IngestBatchRequest{Events: []*pb.Event{ev("e1", t0, 1, 1)}})
	wantCode(t, "ingest", err, codes.Unavailable)
	_, err = h.client.GetFeatureStats(ctx(t), &pb.GetFeatureStatsRequest{
		EntityId: "e1", FeatureId: 1, Window: pb.Window_WINDOW_SHORT,
	})
	wantCode(t, "stats", err, codes.Unavailable)
	_, err = h.client.RegisterSchema(ctx(t), &pb.RegisterSchemaRequest{FeatureNames: []string{"f2"}})
	wantCode(t, "register", err, codes.Unavailable)
}

func TestShutdownTwice(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1") // Serve is running
	for i := range 2 {
		if err := h.srv.Shutdown(ctx(t)); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	engine, err := streamfeat.New(streamfeat.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	for _, cfg := range []grpcserver.Config{
		{MaxRecvMsgBytes: -1}, {MaxBatchEvents: -1}, {DrainTimeout: -time.Second},
	} {
		if _, err := grpcserver.New(engine, cfg); err == nil {
			t.Errorf("New(%+v) succeeded; want an error", cfg)
		}
	}
	if _, err := grpcserver.New(nil, grpcserver.Config{}); err == nil {
		t.Error("New(nil engine) succeeded; want an error")
	}
	srv, err := grpcserver.New(engine, grpcserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Config()
	if got.MaxRecvMsgBytes != grpcserver.DefaultMaxRecvMsgBytes ||
		got.MaxBatchEvents != grpcserver.DefaultMaxBatchEvents ||
		got.DrainTimeout != grpcserver.DefaultDrainTimeout {
		t.Errorf("defaults = %+v", got)
	}
}

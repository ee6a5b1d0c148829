package grpcserver_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/grpcserver"
)

// The tests in this file cover the wire rows of docs/RELIABILITY.md's
// bad-input table that the other tests of the package leave out.

// TestBadInputIngestOnTheWire sends one kind of bad event per batch and
// checks the counts in each answer, then that the accepted extremes give
// finite statistics on the wire.
func TestBadInputIngestOnTheWire(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{Shards: 2})
	h.register(t, "f1")
	beyond := math.Nextafter(streamfeat.MaxAbsValue, math.Inf(1))

	for _, tc := range []struct {
		name   string
		events []*pb.Event
		want   *pb.IngestBatchResponse
	}{
		{"empty batch", nil, &pb.IngestBatchResponse{}},
		{"event without values", []*pb.Event{{EntityId: "e1", TimestampMs: t0}},
			&pb.IngestBatchResponse{DroppedEvents: 1, DroppedInvalid: 1}},
		{"oversize entity id", []*pb.Event{ev(strings.Repeat("x", streamfeat.MaxEntityIDBytes+1), t0, 1, 1)},
			&pb.IngestBatchResponse{DroppedEvents: 1, DroppedInvalid: 1}},
		{"non-finite and huge values", []*pb.Event{{EntityId: "e1", TimestampMs: t0, Values: []*pb.FeatureValue{
			{FeatureId: 1, Value: math.Inf(1)}, {FeatureId: 1, Value: math.Inf(-1)},
			{FeatureId: 1, Value: math.MaxFloat64}, {FeatureId: 1, Value: -math.MaxFloat64},
			{FeatureId: 1, Value: beyond}, {FeatureId: 1, Value: -beyond},
		}}}, &pb.IngestBatchResponse{DroppedEvents: 1, DroppedInvalid: 1, RejectedFeatureValues: 6}},
		{"duplicate feature ids", []*pb.Event{{EntityId: "dup", TimestampMs: t0, Values: []*pb.FeatureValue{
			{FeatureId: 1, Value: 1}, {FeatureId: 1, Value: 3},
		}}}, &pb.IngestBatchResponse{AcceptedEvents: 1, AcceptedFeatureValues: 2}},
		{"extremes that are accepted", []*pb.Event{{EntityId: "x", TimestampMs: t0, Values: []*pb.FeatureValue{
			{FeatureId: 1, Value: streamfeat.MaxAbsValue}, {FeatureId: 1, Value: -streamfeat.MaxAbsValue},
			{FeatureId: 1, Value: math.SmallestNonzeroFloat64}, {FeatureId: 1, Value: math.Copysign(0, -1)},
		}}}, &pb.IngestBatchResponse{AcceptedEvents: 1, AcceptedFeatureValues: 4}},
		{"timestamps at the int64 ends after t0", []*pb.Event{
			ev("e1", math.MinInt64, 1, 1), ev("e1", -1, 1, 1), ev("e1", 0, 1, 1),
		}, &pb.IngestBatchResponse{DroppedEvents: 3, DroppedTooOld: 3}},
	} {
		got := h.ingest(t, tc.events...)
		if !proto.Equal(got, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}

	checkStats(t, "duplicate ids", h.stats(t, "dup", 1, pb.Window_WINDOW_LONG), want2(2, 2, 1, 2), 0)
	x := h.stats(t, "x", 1, pb.Window_WINDOW_LONG)
	checkStats(t, "extremes", x, want{count: 4, mean: f(math.SmallestNonzeroFloat64 / 4),
		pop: f(streamfeat.MaxAbsValue * streamfeat.MaxAbsValue / 2),
		smp: f(streamfeat.MaxAbsValue * streamfeat.MaxAbsValue * 2 / 3)}, 1e-12)
	d, err := h.client.GetDrift(ctx(t), &pb.GetDriftRequest{EntityId: "x", FeatureId: 1})
	if err != nil {
		t.Fatalf("GetDrift: %v", err)
	}
	for _, v := range []float64{d.GetMeanZScore(), d.GetVarianceRatio(), d.GetInverseVarianceRatio(),
		d.GetShort().GetPopulationVariance(), d.GetLong().GetSampleVariance()} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("drift of the extremes = %v; want finite figures", d)
		}
	}
}

// TestBadInputTimestampsOnTheWire: with the wall clock's rules (a manual
// clock at t0), timestamps far ahead or at either end of int64 are dropped
// and counted; with the event clock, MaxInt64 is accepted and moves now to
// the end of time, after which anything earlier than the last hour is too
// old.
func TestBadInputTimestampsOnTheWire(t *testing.T) {
	t.Run("wall rules", func(t *testing.T) {
		h := start(t, grpcserver.Config{}, streamfeat.Config{Clock: streamfeat.NewManualClock(t0)})
		h.register(t, "f1")
		got := h.ingest(t, ev("e1", t0, 1, 1), ev("e1", t0+3_600_000, 1, 1), ev("e1", math.MaxInt64, 1, 1),
			ev("e1", math.MinInt64, 1, 1), ev("e1", -t0, 1, 1))
		want := &pb.IngestBatchResponse{AcceptedEvents: 1, AcceptedFeatureValues: 1, DroppedEvents: 4,
			DroppedTooNew: 2, DroppedTooOld: 2}
		if !proto.Equal(got, want) {
			t.Errorf("ingest = %v; want %v", got, want)
		}
	})
	t.Run("event clock", func(t *testing.T) {
		h := start(t, grpcserver.Config{}, streamfeat.Config{})
		h.register(t, "f1")
		got := h.ingest(t, ev("e1", math.MaxInt64, 1, 2), ev("e1", math.MaxInt64-3_000_000, 1, 4),
			ev("e1", t0, 1, 1), ev("e1", math.MinInt64, 1, 1))
		want := &pb.IngestBatchResponse{AcceptedEvents: 2, AcceptedFeatureValues: 2, DroppedEvents: 2,
			DroppedTooOld: 2}
		if !proto.Equal(got, want) {
			t.Errorf("ingest = %v; want %v", got, want)
		}
		checkStats(t, "at the end of time", h.stats(t, "e1", 1, pb.Window_WINDOW_LONG), want2(2, 3, 1, 2), 0)
	})
}

// TestBadInputRegisterSchemaOnTheWire: the names the engine refuses are
// INVALID_ARGUMENT on the wire.
func TestBadInputRegisterSchemaOnTheWire(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	for _, names := range [][]string{
		{strings.Repeat("n", streamfeat.MaxFeatureNameBytes+1)}, {"ok", ""},
	} {
		_, err := h.client.RegisterSchema(ctx(t), &pb.RegisterSchemaRequest{FeatureNames: names})
		wantCode(t, fmt.Sprintf("RegisterSchema(%.20q…)", names), err, codes.InvalidArgument)
	}
	ids := h.register(t, "ok", "ok", strings.Repeat("n", streamfeat.MaxFeatureNameBytes))
	if len(ids) != 2 || ids["ok"] != 1 {
		t.Fatalf("RegisterSchema after refused calls = %v; want ok=1 and one more", ids)
	}
}

// rawCodec sends and receives protobuf bytes as they are. It is named
// "proto", so the server decodes what it sends with its usual codec: the
// bytes reach gRPC's decoder exactly as a broken or hostile client would
// send them.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: marshal %T; want []byte", v)
	}
	return b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: unmarshal into %T; want *[]byte", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

// Hand-encoded messages, field numbers as in proto/streamfeat/v1.
func bytesField(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// rawEvent encodes an Event with one value of feature id (as a raw varint).
func rawEvent(entity string, featureID uint64, value float64) []byte {
	fv := varintField(1, featureID)
	fv = protowire.AppendTag(fv, 2, protowire.Fixed64Type)
	fv = protowire.AppendFixed64(fv, math.Float64bits(value))
	e := bytesField(1, []byte(entity))
	e = append(e, varintField(2, t0)...)
	return append(e, bytesField(3, fv)...)
}

// TestMalformedRequestBytes sends bytes that no generated client would send
// over a real connection, with a raw codec. What fails to decode is
// INVALID_ARGUMENT, and changes nothing. What decodes under protobuf's rules
// is served: an empty
// message, unknown fields, a known field sent with the wrong wire type
// (kept as an unknown field) and an int32 sent as a wider varint (cut to
// its low 32 bits). The server keeps serving on the same connection.
func TestMalformedRequestBytes(t *testing.T) {
	h := start(t, grpcserver.Config{}, streamfeat.Config{})
	h.register(t, "f1")
	const (
		ingest   = "/streamfeat.v1.StreamFeat/IngestBatch"
		stats    = "/streamfeat.v1.StreamFeat/GetFeatureStats"
		register = "/streamfeat.v1.StreamFeat/RegisterSchema"
	)
	invoke := func(method string, req []byte) ([]byte, error) {
		var resp []byte
		err := h.conn.Invoke(ctx(t), method, req, &resp, grpc.ForceCodec(rawCodec{}))
		return resp, err
	}

	for _, tc := range []struct {
		name   string
		method string
		req    []byte
	}{
		{"garbage", ingest, []byte{0xff, 0xff, 0xff, 0xff}},
		{"varint that never ends", ingest, []byte{0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}},
		{"length past the end", ingest, []byte{0x0a, 0x64, 0x0a, 0x01}},
		{"truncated fixed64", ingest, bytesField(1, []byte{0x19, 0x01, 0x02})},
		{"group never closed", ingest, protowire.AppendTag(nil, 9, protowire.StartGroupType)},
		{"entity id not UTF-8", ingest, bytesField(1, rawEvent("\xff\xfe", 1, 1))},
		{"feature name not UTF-8", register, bytesField(1, []byte("ok\xc3"))},
		{"stats: garbage", stats, []byte{0x1a, 0xff}},
		{"stats: entity id not UTF-8", stats, append(bytesField(1, []byte("\xc0\x80")), varintField(2, 1)...)},
	} {
		_, err := invoke(tc.method, tc.req)
		wantCode(t, tc.name, err, codes.InvalidArgument)
	}
	if m := h.engine.Metrics(); m.EventsAccepted+m.DroppedInvalid+m.ValuesRejected != 0 {
		t.Fatalf("metrics after undecodable requests: %+v; want nothing counted", m)
	}
	if got := len(h.engine.Schema()); got != 1 {
		t.Fatalf("schema holds %d names after undecodable requests; want 1", got)
	}

	for _, tc := range []struct {
		name string
		req  []byte
		want *pb.IngestBatchResponse
	}{
		{"empty message", nil, &pb.IngestBatchResponse{}},
		{"unknown field", varintField(15, 7), &pb.IngestBatchResponse{}},
		{"events field as a varint", varintField(1, 1), &pb.IngestBatchResponse{}},
		{"feature id 2^32+1 cut to 1", bytesField(1, rawEvent("wide", 1<<32+1, 5)),
			&pb.IngestBatchResponse{AcceptedEvents: 1, AcceptedFeatureValues: 1}},
	} {
		raw, err := invoke(ingest, tc.req)
		if err != nil {
			t.Errorf("%s: %v; want it served", tc.name, err)
			continue
		}
		got := new(pb.IngestBatchResponse)
		if err := proto.Unmarshal(raw, got); err != nil {
			t.Fatalf("%s: response: %v", tc.name, err)
		}
		if !proto.Equal(got, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
	checkStats(t, "feature id cut to 1", h.stats(t, "wide", 1, pb.Window_WINDOW_SHORT),
		want{count: 1, mean: f(5), pop: f(0)}, 0)

	// The connection that carried the garbage still serves.
	if got := h.ingest(t, ev("after", t0, 1, 1)).GetAcceptedEvents(); got != 1 {
		t.Fatalf("ingest after malformed requests accepted %d; want 1", got)
	}
	if _, err := h.client.GetFeatureStats(ctx(t), &pb.GetFeatureStatsRequest{
		EntityId: "after", FeatureId: 1, Window: pb.Window_WINDOW_SHORT,
	}); status.Code(err) != codes.OK {
		t.Fatalf("query after malformed requests: %v", err)
	}
}

// TestMalformedRequestsReachInterceptors: a request that does not decode
// still passes through the interceptors, with the method's name and the
// INVALID_ARGUMENT answer, so that metrics count it like any other call.
func TestMalformedRequestsReachInterceptors(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		mu.Lock()
		seen = append(seen, info.FullMethod+" "+status.Code(err).String())
		mu.Unlock()
		return resp, err
	}
	h := start(t, grpcserver.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{count}},
		streamfeat.Config{})

	const ingest = "/streamfeat.v1.StreamFeat/IngestBatch"
	var resp []byte
	err := h.conn.Invoke(ctx(t), ingest, []byte{0xff, 0xff}, &resp, grpc.ForceCodec(rawCodec{}))
	wantCode(t, "garbage", err, codes.InvalidArgument)
	h.register(t, "f1")

	mu.Lock()
	defer mu.Unlock()
	want := []string{ingest + " InvalidArgument", "/streamfeat.v1.StreamFeat/RegisterSchema OK"}
	if !slices.Equal(seen, want) {
		t.Errorf("interceptor saw %q; want %q", seen, want)
	}
}

package grpcserver_test

import (
	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/grpcserver"
)

// t0 is the cases' reference time: 2023-11-14T22:13:20Z, a bucket boundary.
const t0 = 1_700_000_000_000

// harness is a real server on a loopback port and a client connected to it.
type harness struct {
	engine *streamfeat.Engine
	srv    *grpcserver.Server
	conn   *grpc.ClientConn
	client pb.StreamFeatClient
}

// start serves a fresh engine on 127.0.0.1 and connects a client. The engine
// uses the event-time clock unless ecfg names another. Cleanup shuts the
// server down and checks that Serve returned cleanly.
func start(t *testing.T, scfg grpcserver.Config, ecfg streamfeat.Config) *harness {
	t.Helper()
	if ecfg.Clock == nil {
		ecfg.Clock = streamfeat.NewEventClock()
	}
	engine, err := streamfeat.New(ecfg)
	if err != nil {
		t.Fatalf("streamfeat.New: %v", err)
	}
	srv, err := grpcserver.New(engine, scfg)
	if err != nil {
		t.Fatalf("grpcserver.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := srv.Shutdown(ctx)
		if err != nil && !errors.Is(err, grpcserver.ErrDrainTimeout) {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{engine: engine, srv: srv, conn: conn, client: pb.NewStreamFeatClient(conn)}
}

// ctx returns a generous deadline for one test's calls.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func (h *harness) register(t *testing.T, names ...string) map[string]int32 {
	t.Helper()
	resp, err := h.client.RegisterSchema(ctx(t), &pb.RegisterSchemaRequest{FeatureNames: names})
	if err != nil {
		t.Fatalf("RegisterSchema(%q): %v", names, err)
	}
	return resp.GetFeatureIds()
}

func (h *harness) ingest(t *testing.T, events ...*pb.Event) *pb.IngestBatchResponse {
	t.Helper()
	resp, err := h.client.IngestBatch(ctx(t), &pb.IngestBatchRequest{Events: events})
	if err != nil {
		t.Fatalf("IngestBatch: %v", err)
	}
	return resp
}

func (h *harness) stats(t *testing.T, entity string, feature int32, w pb.Window) *pb.FeatureStats {
	t.Helper()
	resp, err := h.client.GetFeatureStats(ctx(t), &pb.GetFeatureStatsRequest{
		EntityId: entity, FeatureId: feature, Window: w,
	})
	if err != nil {
		t.Fatalf("GetFeatureStats(%s, %d, %v): %v", entity, feature, w, err)
	}
	return resp.GetStats()
}

// ev returns an event with one value.
func ev(entity string, ts int64, feature int32, value float64) *pb.Event {
	return &pb.Event{
		EntityId:    entity,
		TimestampMs: ts,
		Values:      []*pb.FeatureValue{{FeatureId: feature, Value: value}},
	}
}

// want describes expected FeatureStats; nil pointers mean "unset".
type want struct {
	count          int64
	mean, pop, smp *float64
}

func f(x float64) *float64 { return &x }

// checkStats compares got with w, each defined value within rel relative
// error (0 means exact).
func checkStats(t *testing.T, name string, got *pb.FeatureStats, w want, rel float64) {
	t.Helper()
	if got.GetCount() != w.count {
		t.Errorf("%s: count = %d; want %d", name, got.GetCount(), w.count)
	}
	for _, c := range []struct {
		field string
		got   *float64
		want  *float64
	}{
		{"mean", got.Mean, w.mean},
		{"population_variance", got.PopulationVariance, w.pop},
		{"sample_variance", got.SampleVariance, w.smp},
	} {
		switch {
		case c.want == nil && c.got != nil:
			t.Errorf("%s: %s = %v; want unset", name, c.field, *c.got)
		case c.want != nil && c.got == nil:
			t.Errorf("%s: %s unset; want %v", name, c.field, *c.want)
		case c.want != nil && !near(*c.got, *c.want, rel):
			t.Errorf("%s: %s = %v; want %v (relative tolerance %g)", name, c.field, *c.got, *c.want, rel)
		}
	}
}

func near(got, want, rel float64) bool {
	return got == want || math.Abs(got-want) <= rel*math.Abs(want)
}

// wantCode fails t unless err is a status with code.
func wantCode(t *testing.T, name string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: code %v (err %v); want %v", name, got, err, code)
	}
}

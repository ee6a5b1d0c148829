package promexport_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/grpcserver"
	"github.com/streamfeat/streamfeat/promexport"
)

// serveWith serves a fresh event-clock engine on 127.0.0.1 with m's
// interceptors, and returns a connection that the test's cleanup closes.
func serveWith(t *testing.T, m *promexport.RPCMetrics) *grpc.ClientConn {
	t.Helper()
	engine, err := streamfeat.New(streamfeat.Config{Clock: streamfeat.NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcserver.New(engine, grpcserver.Config{
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()},
		StreamInterceptors: []grpc.StreamServerInterceptor{m.StreamServerInterceptor()},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}

func TestRPCMetrics(t *testing.T) {
	m := promexport.NewRPCMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)

	// Every streamfeat method and code is there at zero before any call.
	if n := testutil.CollectAndCount(m, "grpc_server_handled_total"); n != 4*17 {
		t.Errorf("%d grpc_server_handled_total series before any call; want 4 methods × 17 codes", n)
	}

	conn := serveWith(t, m)
	client := pb.NewStreamFeatClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	if _, err := client.RegisterSchema(ctx, &pb.RegisterSchemaRequest{FeatureNames: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := client.IngestBatch(ctx, &pb.IngestBatchRequest{Events: []*pb.Event{
			{EntityId: "a", TimestampMs: 1_700_000_000_000, Values: []*pb.FeatureValue{{FeatureId: 1, Value: 2}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := client.GetFeatureStats(ctx, &pb.GetFeatureStatsRequest{Population: true, FeatureId: 1,
		Window: pb.Window_WINDOW_LONG})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.GetFeatureStats(ctx, &pb.GetFeatureStatsRequest{EntityId: "a", FeatureId: 9,
		Window: pb.Window_WINDOW_LONG})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown feature: %v; want NOT_FOUND", err)
	}
	if _, err := client.GetDrift(ctx, &pb.GetDriftRequest{EntityId: "a", FeatureId: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	if got := series(t, reg, "streamfeat_ingest_duration_seconds")[""]; got != 3 {
		t.Errorf("ingest latency: %v observations; want 3", got)
	}
	query := series(t, reg, "streamfeat_query_duration_seconds")
	for key, n := range map[string]float64{
		"GetFeatureStats/population": 1, "GetFeatureStats/entity": 1,
		"GetDrift/entity": 1, "GetDrift/population": 0,
	} {
		if query[key] != n {
			t.Errorf("query latency %s: %v observations; want %v", key, query[key], n)
		}
	}

	// Labels in name order: grpc_code, grpc_method, grpc_service, grpc_type.
	handled := series(t, reg, "grpc_server_handled_total")
	for key, n := range map[string]float64{
		"OK/RegisterSchema/streamfeat.v1.StreamFeat/unary":        1,
		"OK/IngestBatch/streamfeat.v1.StreamFeat/unary":           3,
		"OK/GetFeatureStats/streamfeat.v1.StreamFeat/unary":       1,
		"NotFound/GetFeatureStats/streamfeat.v1.StreamFeat/unary": 1,
		"OK/GetDrift/streamfeat.v1.StreamFeat/unary":              1,
		"OK/Check/grpc.health.v1.Health/unary":                    1,
		"Unavailable/IngestBatch/streamfeat.v1.StreamFeat/unary":  0,
	} {
		if v, ok := handled[key]; !ok || v != n {
			t.Errorf("grpc_server_handled_total %s = %v (present %v); want %v", key, v, ok, n)
		}
	}
}

// series gathers reg and returns the series of one family, keyed by their
// label values in label name order joined with "/": the value of a counter
// or gauge, the observation count of a histogram.
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			out[strings.Join(vals, "/")] = m.GetCounter().GetValue() + m.GetGauge().GetValue() +
				float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

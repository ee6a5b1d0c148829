package promexport

import (
	"context"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
)

// LatencyBuckets are the upper bounds, in seconds, of the RPC latency
// histograms: 10µs to 10s in 1-2.5-5 steps. A query of one entity takes a
// few microseconds and a 500,000-event ingest batch up to about a second.
var LatencyBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// Values of the labels rpc and scope on streamfeat_query_duration_seconds.
const (
	rpcStats = "GetFeatureStats"
	rpcDrift = "GetDrift"

	scopeEntity     = "entity"
	scopePopulation = "population"
)

// RPCMetrics measures a gRPC server: the latency of the streamfeat
// handlers, and RPCs by method and status code for every service. It is a
// prometheus.Collector, and safe for concurrent use.
type RPCMetrics struct {
	ingest prometheus.Histogram
	query  *prometheus.HistogramVec
	grpc   *grpcprom.ServerMetrics
}

// NewRPCMetrics returns metrics with every streamfeat method and status
// code already present at zero, so that rates exist from the first scrape.
func NewRPCMetrics() *RPCMetrics {
	m := &RPCMetrics{
		ingest: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "streamfeat_ingest_duration_seconds",
			Help:    "Time the IngestBatch handler took, validation and queueing included.",
			Buckets: LatencyBuckets,
		}),
		query: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "streamfeat_query_duration_seconds",
			Help: "Time the query handlers took, by rpc (GetFeatureStats, GetDrift) " +
				"and scope (entity, population).",
			Buckets: LatencyBuckets,
		}, []string{"rpc", "scope"}),
		grpc: grpcprom.NewServerMetrics(),
	}
	for _, rpc := range []string{rpcStats, rpcDrift} {
		for _, scope := range []string{scopeEntity, scopePopulation} {
			m.query.WithLabelValues(rpc, scope)
		}
	}
	m.grpc.InitializeMetrics(streamFeatInfo{})
	return m
}

// Describe sends the descriptors of every family.
func (m *RPCMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.ingest.Describe(ch)
	m.query.Describe(ch)
	m.grpc.Describe(ch)
}

// Collect sends the current values.
func (m *RPCMetrics) Collect(ch chan<- prometheus.Metric) {
	m.ingest.Collect(ch)
	m.query.Collect(ch)
	m.grpc.Collect(ch)
}

// UnaryServerInterceptor counts every unary RPC by method and code, and
// times the streamfeat handlers.
func (m *RPCMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	count := m.grpc.UnaryServerInterceptor()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := count(ctx, req, info, handler)
		m.observe(info.FullMethod, req, time.Since(start))
		return resp, err
	}
}

// StreamServerInterceptor counts every streaming RPC (the health service's
// Watch, reflection) by method and code.
func (m *RPCMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return m.grpc.StreamServerInterceptor()
}

// observe records one handler's latency in its histogram, if it has one.
func (m *RPCMetrics) observe(method string, req any, d time.Duration) {
	scope := func(population bool) string {
		if population {
			return scopePopulation
		}
		return scopeEntity
	}
	switch method {
	case pb.StreamFeat_IngestBatch_FullMethodName:
		m.ingest.Observe(d.Seconds())
	case pb.StreamFeat_GetFeatureStats_FullMethodName:
		r, _ := req.(*pb.GetFeatureStatsRequest) // nil reads as false
		m.query.WithLabelValues(rpcStats, scope(r.GetPopulation())).Observe(d.Seconds())
	case pb.StreamFeat_GetDrift_FullMethodName:
		r, _ := req.(*pb.GetDriftRequest)
		m.query.WithLabelValues(rpcDrift, scope(r.GetPopulation())).Observe(d.Seconds())
	}
}

// streamFeatInfo describes the streamfeat service to
// grpcprom.ServerMetrics.InitializeMetrics, which otherwise needs the
// *grpc.Server itself. Health and reflection appear at their first call.
type streamFeatInfo struct{}

func (streamFeatInfo) GetServiceInfo() map[string]grpc.ServiceInfo {
	desc := &pb.StreamFeat_ServiceDesc
	info := grpc.ServiceInfo{Metadata: desc.Metadata}
	for _, md := range desc.Methods {
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: md.MethodName})
	}
	for _, sd := range desc.Streams {
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: sd.StreamName,
			IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams})
	}
	return map[string]grpc.ServiceInfo{desc.ServiceName: info}
}

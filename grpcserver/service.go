package grpcserver

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
)

// service implements pb.StreamFeatServer on an engine.
type service struct {
	pb.UnimplementedStreamFeatServer

	engine backend
	cfg    Config
}

// backend is the part of *streamfeat.Engine that the service calls. Tests
// put a fake behind it for engine failures that a real engine shows only
// under timing they cannot control, such as a queue that stays full.
type backend interface {
	RegisterSchema(names []string) (map[string]int32, error)
	IngestWith(ctx context.Context, events []streamfeat.Event, opts streamfeat.IngestOptions) (
		streamfeat.IngestResult, error)
	Stats(ctx context.Context, entityID string, featureID int32, w streamfeat.Window) (
		streamfeat.Stats, error)
	PopulationStats(ctx context.Context, featureID int32, w streamfeat.Window) (streamfeat.Stats, error)
	Drift(ctx context.Context, entityID string, featureID int32, opts streamfeat.DriftOptions) (
		streamfeat.DriftReport, error)
	PopulationDrift(ctx context.Context, featureID int32, opts streamfeat.DriftOptions) (
		streamfeat.DriftReport, error)
}

func (s *service) RegisterSchema(ctx context.Context, req *pb.RegisterSchemaRequest) (*pb.RegisterSchemaResponse, error) {
	ids, err := s.engine.RegisterSchema(req.GetFeatureNames())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterSchemaResponse{FeatureIds: ids}, nil
}

func (s *service) IngestBatch(ctx context.Context, req *pb.IngestBatchRequest) (*pb.IngestBatchResponse, error) {
	buf := getBatchBuf()
	defer putBatchBuf(buf)
	events, err := s.events(req.GetEvents(), buf)
	if err != nil {
		return nil, err
	}

	opts := streamfeat.IngestOptions{WaitForCapacity: req.GetWaitForCapacity()}
	if opts.WaitForCapacity {
		var cancel context.CancelFunc
		ctx, cancel = beforeDeadline(ctx)
		defer cancel()
	}
	res, err := s.engine.IngestWith(ctx, events, opts)
	if err != nil {
		if errors.Is(err, streamfeat.ErrOverloaded) {
			// Shards that had room kept their share; say how much.
			return nil, status.Errorf(codes.ResourceExhausted,
				"%v (accepted %d of %d events before the deadline)",
				err, res.AcceptedEvents, len(events))
		}
		return nil, toStatus(err)
	}
	return &pb.IngestBatchResponse{
		AcceptedEvents:        res.AcceptedEvents,
		DroppedEvents:         res.DroppedEvents,
		AcceptedFeatureValues: res.AcceptedValues,
		DroppedTooOld:         res.DroppedTooOld,
		DroppedTooNew:         res.DroppedTooNew,
		DroppedInvalid:        res.DroppedInvalid,
		DroppedOverloaded:     res.DroppedOverloaded,
		RejectedFeatureValues: res.RejectedValues,
	}, nil
}

// maxDeadlineMargin caps how much earlier than the client's deadline a wait
// for queue space gives up.
const maxDeadlineMargin = 250 * time.Millisecond

// beforeDeadline returns a context that ends a little before ctx's deadline:
// a quarter of the time left, at most maxDeadlineMargin. A wait for queue
// space that used the whole deadline would end as the client gives up, and
// the client would see its own DEADLINE_EXCEEDED instead of the server's
// RESOURCE_EXHAUSTED, which says that the queues, not the network, were slow.
func beforeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(maxDeadlineMargin, time.Until(d)/4)
	return context.WithDeadline(ctx, d.Add(-margin))
}

// events checks a batch against the limits and converts it. One backing
// array holds every event's values, so a batch costs two allocations.
func (s *service) events(in []*pb.Event, buf *batchBuf) ([]streamfeat.Event, error) {
	if len(in) > s.cfg.MaxBatchEvents {
		return nil, status.Errorf(codes.InvalidArgument,
			"batch of %d events is over the limit of %d events per call (max batch events); "+
				"split it into smaller batches", len(in), s.cfg.MaxBatchEvents)
	}

	nValues := 0
	for _, ev := range in {
		nValues += len(ev.GetValues())
	}
	values := slices.Grow(buf.values[:0], nValues)
	out := slices.Grow(buf.events[:0], len(in))[:len(in)]
	buf.values, buf.events = values, out
	for i, ev := range in {
		first := len(values)
		for j, v := range ev.GetValues() {
			if v.GetFeatureId() < 1 {
				return nil, status.Errorf(codes.InvalidArgument,
					"event %d, value %d: feature id %d: ids start at 1 (is feature_id set?)",
					i, j, v.GetFeatureId())
			}
			values = append(values, streamfeat.FeatureValue{FeatureID: v.GetFeatureId(), Value: v.GetValue()})
		}
		out[i] = streamfeat.Event{
			EntityID:    ev.GetEntityId(),
			TimestampMs: ev.GetTimestampMs(),
			Values:      values[first:len(values):len(values)],
		}
	}
	return out, nil
}

// batchBuf holds the engine's form of one request's events. The engine
// keeps nothing of them once Ingest returns, so buffers are reused across
// calls: converting a 1000-event request would otherwise allocate 200 KB.
type batchBuf struct {
	events []streamfeat.Event
	values []streamfeat.FeatureValue
}

// maxPooledBatch bounds the buffers kept for reuse, so that one huge batch
// does not pin its memory.
const maxPooledBatch = 1 << 16

var batchBufs = sync.Pool{New: func() any { return new(batchBuf) }}

func getBatchBuf() *batchBuf { return batchBufs.Get().(*batchBuf) }

// putBatchBuf returns buf for reuse, without the entity ids, which point
// into the request.
func putBatchBuf(buf *batchBuf) {
	if cap(buf.events) > maxPooledBatch || cap(buf.values) > 16*maxPooledBatch {
		return
	}
	clear(buf.events)
	batchBufs.Put(buf)
}

func (s *service) GetFeatureStats(ctx context.Context, req *pb.GetFeatureStatsRequest) (*pb.GetFeatureStatsResponse, error) {
	w, err := window(req.GetWindow())
	if err != nil {
		return nil, err
	}
	if err := checkScope(req.GetPopulation(), req.GetEntityId()); err != nil {
		return nil, err
	}

	var st streamfeat.Stats
	if req.GetPopulation() {
		st, err = s.engine.PopulationStats(ctx, req.GetFeatureId(), w)
	} else {
		st, err = s.engine.Stats(ctx, req.GetEntityId(), req.GetFeatureId(), w)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetFeatureStatsResponse{Stats: featureStats(st)}, nil
}

func (s *service) GetDrift(ctx context.Context, req *pb.GetDriftRequest) (*pb.GetDriftResponse, error) {
	if err := checkScope(req.GetPopulation(), req.GetEntityId()); err != nil {
		return nil, err
	}
	opts := streamfeat.DriftOptions{
		MinCount:             req.GetMinCount(),
		ExcludeShortFromLong: req.GetExcludeShortFromLong(),
	}
	var err error
	if opts.MeanZThreshold, err = threshold("mean_z_threshold", req.MeanZThreshold, math.SmallestNonzeroFloat64); err != nil {
		return nil, err
	}
	if opts.VarianceRatioThreshold, err = threshold("variance_ratio_threshold", req.VarianceRatioThreshold, 1); err != nil {
		return nil, err
	}

	var r streamfeat.DriftReport
	if req.GetPopulation() {
		r, err = s.engine.PopulationDrift(ctx, req.GetFeatureId(), opts)
	} else {
		r, err = s.engine.Drift(ctx, req.GetEntityId(), req.GetFeatureId(), opts)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetDriftResponse{
		Short:                  featureStats(r.Short),
		Long:                   featureStats(r.Long),
		MeanZScore:             r.MeanZScore,
		VarianceRatio:          r.VarianceRatio,
		InverseVarianceRatio:   r.InverseVarianceRatio,
		MeanShift:              r.MeanShift,
		VarianceShift:          r.VarianceShift,
		Drifted:                r.Drifted,
		InsufficientData:       r.InsufficientData,
		MeanZThreshold:         r.MeanZThreshold,
		VarianceRatioThreshold: r.VarianceRatioThreshold,
	}, nil
}

// window converts a wire window. The zero value is an error, so a client that
// forgot the field hears about it instead of getting either window.
func window(w pb.Window) (streamfeat.Window, error) {
	switch w {
	case pb.Window_WINDOW_SHORT:
		return streamfeat.Short, nil
	case pb.Window_WINDOW_LONG:
		return streamfeat.Long, nil
	case pb.Window_WINDOW_UNSPECIFIED:
		return 0, status.Error(codes.InvalidArgument, "window is unspecified: want WINDOW_SHORT or WINDOW_LONG")
	}
	return 0, status.Errorf(codes.InvalidArgument, "window %d: want WINDOW_SHORT or WINDOW_LONG", int32(w))
}

// checkScope rejects a population query that also names an entity: the
// client meant one of the two, and guessing which would answer the wrong
// question. An entity query's id is checked by the engine.
func checkScope(population bool, entityID string) error {
	if population && entityID != "" {
		return status.Errorf(codes.InvalidArgument,
			"population query with entity id %q: leave entity_id empty to query all entities", entityID)
	}
	return nil
}

// threshold converts an optional drift threshold to the engine's form, where
// 0 means the default. An explicit 0 asks to flag any shift at all and
// becomes anyShift, the smallest threshold that does so: the smallest
// positive float64 for the z-score, 1 for the ratio of standard deviations
// (a ratio or its inverse is always at least 1, so below 1 every comparison
// would be flagged).
func threshold(name string, t *float64, anyShift float64) (float64, error) {
	switch {
	case t == nil:
		return 0, nil
	case *t == 0:
		return anyShift, nil
	case math.IsNaN(*t) || math.IsInf(*t, 0) || *t < anyShift:
		return 0, status.Errorf(codes.InvalidArgument,
			"%s %v: want 0 (any shift) or a finite number from %v up", name, *t, anyShift)
	}
	return *t, nil
}

// featureStats converts engine statistics, leaving undefined fields unset.
func featureStats(st streamfeat.Stats) *pb.FeatureStats {
	out := &pb.FeatureStats{Count: st.Count}
	if st.HasMean() {
		out.Mean = proto.Float64(st.Mean)
		out.PopulationVariance = proto.Float64(st.PopulationVariance)
	}
	if st.HasSampleVariance() {
		out.SampleVariance = proto.Float64(st.SampleVariance)
	}
	return out
}

// toStatus maps an engine error to a gRPC status by its sentinel. The
// message keeps the engine's wording, which names the offending value.
func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, streamfeat.ErrInvalidEntity),
		errors.Is(err, streamfeat.ErrInvalidFeature),
		errors.Is(err, streamfeat.ErrInvalidWindow),
		errors.Is(err, streamfeat.ErrInvalidOption):
		code = codes.InvalidArgument
	case errors.Is(err, streamfeat.ErrUnknownFeature):
		code = codes.NotFound
	case errors.Is(err, streamfeat.ErrTooManyFeatures),
		errors.Is(err, streamfeat.ErrOverloaded):
		code = codes.ResourceExhausted
	case errors.Is(err, streamfeat.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

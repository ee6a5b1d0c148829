package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/replay"
)

// remote is a replay.Backend that talks to a streamfeat server.
type remote struct {
	c       pb.StreamFeatClient
	timeout time.Duration
	noWait  bool // send without wait_for_capacity (load tests that measure drops)
}

// dialBackend connects to the server at target. The connection is
// plaintext: the server listens on loopback by default.
func dialBackend(_ context.Context, target string, timeout time.Duration) (replay.Backend, func(), error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", target, err)
	}
	return &remote{c: pb.NewStreamFeatClient(conn), timeout: timeout}, func() { conn.Close() }, nil
}

func (r *remote) RegisterSchema(ctx context.Context, names []string) (map[string]int32, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.RegisterSchema(ctx, &pb.RegisterSchemaRequest{FeatureNames: names})
	if err != nil {
		return nil, err
	}
	return resp.GetFeatureIds(), nil
}

// Ingest sends one batch, by default with wait_for_capacity, so the server
// waits for queue space up to the deadline instead of dropping.
func (r *remote) Ingest(ctx context.Context, events []streamfeat.Event) (streamfeat.IngestResult, error) {
	req := &pb.IngestBatchRequest{Events: make([]*pb.Event, len(events)), WaitForCapacity: !r.noWait}
	n := 0
	for _, ev := range events {
		n += len(ev.Values)
	}
	values := make([]pb.FeatureValue, n) // one allocation for the batch's values
	for i, ev := range events {
		pe := &pb.Event{EntityId: ev.EntityID, TimestampMs: ev.TimestampMs,
			Values: make([]*pb.FeatureValue, len(ev.Values))}
		for j, v := range ev.Values {
			pv := &values[0]
			values = values[1:]
			pv.FeatureId, pv.Value = v.FeatureID, v.Value
			pe.Values[j] = pv
		}
		req.Events[i] = pe
	}

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.IngestBatch(ctx, req)
	if err != nil {
		return streamfeat.IngestResult{}, err
	}
	return ingestResult(resp), nil
}

func ingestResult(resp *pb.IngestBatchResponse) streamfeat.IngestResult {
	return streamfeat.IngestResult{
		AcceptedEvents:    resp.GetAcceptedEvents(),
		DroppedEvents:     resp.GetDroppedEvents(),
		DroppedTooOld:     resp.GetDroppedTooOld(),
		DroppedTooNew:     resp.GetDroppedTooNew(),
		DroppedInvalid:    resp.GetDroppedInvalid(),
		DroppedOverloaded: resp.GetDroppedOverloaded(),
		AcceptedValues:    resp.GetAcceptedFeatureValues(),
		RejectedValues:    resp.GetRejectedFeatureValues(),
	}
}

func (r *remote) Drift(ctx context.Context, entity string, feature int32,
	opts streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	return r.drift(ctx, &pb.GetDriftRequest{EntityId: entity, FeatureId: feature}, opts)
}

func (r *remote) PopulationDrift(ctx context.Context, feature int32,
	opts streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	return r.drift(ctx, &pb.GetDriftRequest{FeatureId: feature, Population: true}, opts)
}

func (r *remote) drift(ctx context.Context, req *pb.GetDriftRequest,
	opts streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	if opts.MeanZThreshold != 0 {
		req.MeanZThreshold = &opts.MeanZThreshold
	}
	if opts.VarianceRatioThreshold != 0 {
		req.VarianceRatioThreshold = &opts.VarianceRatioThreshold
	}
	req.MinCount = opts.MinCount
	req.ExcludeShortFromLong = opts.ExcludeShortFromLong

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.GetDrift(ctx, req)
	if err != nil {
		return streamfeat.DriftReport{}, err
	}
	return streamfeat.DriftReport{
		Short:                  statsOf(resp.GetShort()),
		Long:                   statsOf(resp.GetLong()),
		MeanZScore:             resp.GetMeanZScore(),
		VarianceRatio:          resp.GetVarianceRatio(),
		InverseVarianceRatio:   resp.GetInverseVarianceRatio(),
		MeanShift:              resp.GetMeanShift(),
		VarianceShift:          resp.GetVarianceShift(),
		Drifted:                resp.GetDrifted(),
		InsufficientData:       resp.GetInsufficientData(),
		MeanZThreshold:         resp.GetMeanZThreshold(),
		VarianceRatioThreshold: resp.GetVarianceRatioThreshold(),
	}, nil
}

// statsOf converts wire stats; unset fields are the engine's zero values.
func statsOf(s *pb.FeatureStats) streamfeat.Stats {
	return streamfeat.Stats{
		Count:              s.GetCount(),
		Mean:               s.GetMean(),
		PopulationVariance: s.GetPopulationVariance(),
		SampleVariance:     s.GetSampleVariance(),
	}
}

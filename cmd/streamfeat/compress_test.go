package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
)

// TestGzipRequests: the binary accepts gzip-compressed requests, and a
// compressed batch that decompresses past the receive limit is refused
// like an uncompressed one.
func TestGzipRequests(t *testing.T) {
	addr, _ := startServer(t, streamfeat.Config{Clock: streamfeat.NewEventClock()})
	client := dial(t, addr, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if _, err := client.RegisterSchema(ctx, &pb.RegisterSchemaRequest{FeatureNames: []string{"f1"}}); err != nil {
		t.Fatalf("RegisterSchema: %v", err)
	}
	var events []*pb.Event
	for i := range 1000 {
		events = append(events, &pb.Event{EntityId: "e1", TimestampMs: 1_700_000_000_000 + int64(i),
			Values: []*pb.FeatureValue{{FeatureId: 1, Value: float64(i % 7)}}})
	}
	resp, err := client.IngestBatch(ctx, &pb.IngestBatchRequest{Events: events})
	if err != nil || resp.GetAcceptedEvents() != 1000 {
		t.Fatalf("compressed IngestBatch = %v, %v; want 1000 accepted", resp, err)
	}

	// 65 MiB of one repeated id compresses to a few hundred KiB.
	huge := &pb.IngestBatchRequest{Events: []*pb.Event{{EntityId: strings.Repeat("a", 65<<20),
		TimestampMs: 1_700_000_000_000, Values: []*pb.FeatureValue{{FeatureId: 1, Value: 1}}}}}
	_, err = client.IngestBatch(ctx, huge)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("IngestBatch decompressing past the limit: %v; want RESOURCE_EXHAUSTED", err)
	}
}

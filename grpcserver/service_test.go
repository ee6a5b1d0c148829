package grpcserver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
)

// fullQueues is an engine whose shard queues never have room: IngestWith
// waits, as the engine does, until ctx ends.
type fullQueues struct {
	backend // nil: only IngestWith is called
}

func (fullQueues) IngestWith(ctx context.Context, events []streamfeat.Event, opts streamfeat.IngestOptions) (
	streamfeat.IngestResult, error) {
	n := int64(len(events))
	if !opts.WaitForCapacity {
		return streamfeat.IngestResult{DroppedEvents: n, DroppedOverloaded: n}, nil
	}
	<-ctx.Done()
	return streamfeat.IngestResult{DroppedEvents: n, DroppedOverloaded: n},
		fmt.Errorf("%w: waiting for space in shard 0: %w", streamfeat.ErrOverloaded, ctx.Err())
}

// A wait for queue space that outlives the RPC deadline reaches the client
// as RESOURCE_EXHAUSTED, not as its own DEADLINE_EXCEEDED: the server gives
// up a little before the client does.
func TestWaitForCapacityDeadline(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterStreamFeatServer(gs, &service{engine: fullQueues{}, cfg: cfg})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := pb.NewStreamFeatClient(conn)
	batch := []*pb.Event{{EntityId: "e1", TimestampMs: 1, Values: []*pb.FeatureValue{{FeatureId: 1, Value: 1}}}}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := client.IngestBatch(ctx, &pb.IngestBatchRequest{Events: batch})
	if err != nil || resp.GetDroppedOverloaded() != 1 {
		t.Errorf("without waiting: %v, %v; want the event dropped as overloaded", resp, err)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = client.IngestBatch(ctx, &pb.IngestBatchRequest{Events: batch, WaitForCapacity: true})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("waiting past the deadline: %v; want RESOURCE_EXHAUSTED", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "accepted 0 of 1 events") {
		t.Errorf("message %q; want it to say how much was accepted", msg)
	}
}

func TestBeforeDeadline(t *testing.T) {
	parent, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	ctx, cancel := beforeDeadline(parent)
	defer cancel()
	pd, _ := parent.Deadline()
	d, ok := ctx.Deadline()
	if !ok || pd.Sub(d) != maxDeadlineMargin {
		t.Errorf("deadline %v before the parent's; want %v", pd.Sub(d), maxDeadlineMargin)
	}

	ctx, cancel = beforeDeadline(t.Context())
	defer cancel()
	if _, ok := ctx.Deadline(); ok {
		t.Error("no parent deadline, yet a deadline was set")
	}
}

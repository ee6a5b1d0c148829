package replay

import (
	"context"

	"github.com/streamfeat/streamfeat"
)

// A Backend is where a replay sends its events and asks about drift: the
// engine in this process, or a server. Implementations must be safe for
// concurrent use; the Detector asks several questions at once.
type Backend interface {
	// RegisterSchema registers feature names and returns their ids.
	RegisterSchema(ctx context.Context, names []string) (map[string]int32, error)

	// Ingest stores a batch, waiting for queue space rather than dropping
	// events for overload. It must not keep events after it returns.
	Ingest(ctx context.Context, events []streamfeat.Event) (streamfeat.IngestResult, error)

	// Drift compares an entity's short window with its long one.
	Drift(ctx context.Context, entity string, feature int32,
		opts streamfeat.DriftOptions) (streamfeat.DriftReport, error)

	// PopulationDrift is Drift over all entities together.
	PopulationDrift(ctx context.Context, feature int32,
		opts streamfeat.DriftOptions) (streamfeat.DriftReport, error)
}

// Local returns a Backend that drives e directly.
func Local(e *streamfeat.Engine) Backend { return local{e} }

type local struct{ e *streamfeat.Engine }

func (l local) RegisterSchema(_ context.Context, names []string) (map[string]int32, error) {
	return l.e.RegisterSchema(names)
}

func (l local) Ingest(ctx context.Context, events []streamfeat.Event) (streamfeat.IngestResult, error) {
	return l.e.IngestWith(ctx, events, streamfeat.IngestOptions{WaitForCapacity: true})
}

func (l local) Drift(ctx context.Context, entity string, feature int32,
	opts streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	return l.e.Drift(ctx, entity, feature, opts)
}

func (l local) PopulationDrift(ctx context.Context, feature int32,
	opts streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	return l.e.PopulationDrift(ctx, feature, opts)
}

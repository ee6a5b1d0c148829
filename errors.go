package streamfeat

import "errors"

// Sentinel errors. Callers test for them with errors.Is; the engine wraps them
// with the offending value.
var (
	// ErrClosed is returned by every call made after Close has begun.
	ErrClosed = errors.New("streamfeat: engine closed")

	// ErrInvalidConfig wraps every problem that New finds in a Config.
	ErrInvalidConfig = errors.New("streamfeat: invalid config")

	// ErrInvalidEntity is returned for an empty, oversize or non-UTF-8 entity id.
	ErrInvalidEntity = errors.New("streamfeat: invalid entity id")

	// ErrInvalidFeature is returned for a feature id below 1 or a bad feature name.
	ErrInvalidFeature = errors.New("streamfeat: invalid feature")

	// ErrUnknownFeature is returned by queries for a feature id that was never
	// registered.
	ErrUnknownFeature = errors.New("streamfeat: unknown feature")

	// ErrTooManyFeatures is returned by RegisterSchema when the call would take
	// the schema past Config.MaxFeatures.
	ErrTooManyFeatures = errors.New("streamfeat: too many features")

	// ErrInvalidWindow is returned for a Window other than Short or Long.
	ErrInvalidWindow = errors.New("streamfeat: invalid window")

	// ErrInvalidOption is returned for DriftOptions out of range.
	ErrInvalidOption = errors.New("streamfeat: invalid option")

	// ErrOverloaded is returned by Ingest when it waited for queue space and
	// the context ended first; the IngestResult says what was kept.
	ErrOverloaded = errors.New("streamfeat: shard queue full")
)

// Package streamfeat keeps rolling statistics of live feature values per
// entity and tells when their distribution drifts.
//
// Events (an entity id, a timestamp and a few feature values) go in through
// Engine.Ingest. For every entity and feature the engine keeps count, mean and
// variance over two rolling event-time windows, short (5 minutes) and long
// (1 hour) by default, built from 5-second buckets; the same figures over all
// entities together form the population scope. Drift compares the short
// window with the long one: the mean-shift z-score |mu_s - mu_l| / sigma_l and
// the ratio of standard deviations both ways.
//
// # Design
//
// State is split into shards by a hash of the entity id. Each shard is owned
// by one goroutine, its owner, and only the owner ever reads or writes the
// shard's state, so the update path takes no lock. Producers validate events
// on their own goroutine, split the batch by shard and hand each share to the
// shard's bounded queue (a buffered channel). When a queue is full the share
// is dropped and counted, so overload shows as a number instead of as memory
// or latency growing without bound; IngestWith can wait for space instead.
// Queries travel the same queue, behind the writes that came before them, so
// a query made after Ingest returned sees that batch. An owner whose queue
// ran empty after a query, and a query awaiting its answer, poll for a short
// while (Config.IdleSpin) before they park: waking a parked goroutine on an
// idle CPU costs more than the query itself.
//
// A shard stores, per entity, only the buckets that hold data: a small ring
// of rows, sorted by bucket, in an arena slab (package arena). A row holds
// one bucket's moments for each of the entity's features side by side, so
// an event writes one run of adjacent memory however many features it
// carries; an entity with more than 13 features has a ring per 13. The short
// window is the newest part of the long one at the same bucket width, so one
// ring serves both; a query merges the cells of its feature's column that
// fall in the window. Buckets older than the long window are dropped when
// the ring is next written, and by the periodic sweep. Each shard also keeps,
// per feature, a dense ring of population buckets; a population query merges
// every shard's.
//
// # Numerics
//
// A bucket holds Welford moments (count, mean, M2) relative to a shift, the
// bucket's first value; windows merge buckets with Chan's parallel formula,
// also relative to a shift. Deviations from a nearby shift are exact, so the
// variance of data like 1e12 + N(0, 1) keeps its precision where plain Welford
// loses most of it. Windows are rebuilt from their buckets at query time and
// never maintained by subtraction, so expired values leave no residue and a
// window of identical values has a variance of exactly 0.
//
// # Memory
//
// A cell is 32 bytes: bucket number and count (4 bytes each), shift, mean
// and M2 (8 bytes each). An entity holds one row per bucket it touched in the
// last hour, with a cell per feature, in a ring whose capacity in cells is
// a power of two or halfway between two, from 4 up, capped at 732 rows (the
// long window plus the wall clock's 12 future buckets); an entity fed every
// 5 seconds holds 720 rows. A feature missing from a bucket that others have
// leaves its cell empty: entities whose events carry varying subsets of
// their features pay for the cells of the absent ones. Rows that expired
// stay until their room is needed or the next sweep. Per entity there are
// about 130 bytes on top: the id's bytes, its index entry and a 96-byte
// entity record that holds the first ring's header, plus 64 bytes per
// further 13 features. Each shard also keeps a dense population ring per
// feature it has seen: 1024 buckets of 40 bytes. Entities idle for longer
// than EntityTTL are released by the sweep; when released space dominates,
// the shard compacts, copying its live state into fresh slabs and a fresh
// index so the old ones return to the Go heap.
// Memory therefore follows the number of recently active entities, not the
// number ever seen.
//
// # Time
//
// The window ends at the bucket holding the clock's now: the wall clock by
// default, or the event-time clock (NewEventClock), where now is the newest
// event accepted. An event older than the long window is dropped as too old;
// with the wall clock, one stamped more than MaxFutureSkew ahead is dropped as
// too new.
package streamfeat

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Event is one observation of an entity: feature values at a moment.
type Event struct {
	EntityID    string
	TimestampMs int64 // Unix milliseconds, event time
	Values      []FeatureValue
}

// FeatureValue is one value of a registered feature.
type FeatureValue struct {
	FeatureID int32
	Value     float64
}

// IngestResult counts what happened to the events of one Ingest call.
// AcceptedEvents + DroppedEvents is the number of events passed in, and
// DroppedEvents is the sum of the four Dropped fields.
type IngestResult struct {
	AcceptedEvents int64
	DroppedEvents  int64

	DroppedTooOld     int64 // older than the long window
	DroppedTooNew     int64 // more than MaxFutureSkew ahead of the wall clock
	DroppedInvalid    int64 // bad entity id, or no value left after rejections
	DroppedOverloaded int64 // the shard's queue was full

	AcceptedValues int64 // values of accepted events
	RejectedValues int64 // unregistered feature ids and non-finite or huge values
}

// IngestOptions changes how one Ingest call behaves.
type IngestOptions struct {
	// WaitForCapacity waits for queue space until ctx ends instead of
	// dropping a full shard's share of the batch. Use it for backfills that
	// must lose nothing.
	WaitForCapacity bool
}

// Engine holds the rolling statistics. All methods are safe for concurrent
// use by any number of goroutines.
type Engine struct {
	cfg    Config
	geo    geometry
	clock  Clock
	events *EventClock // cfg.Clock when it is the event-time clock, else nil
	schema schema
	shards []*shard

	counters counters
	routes   sync.Pool // *routing

	// phase orders Restore before intake: see beginIntake in snapshot.go.
	phase atomic.Int32

	// Close protocol: every call increments inflight before it looks at
	// closed and decrements it when it no longer touches a queue, so once
	// Close has set closed and seen inflight at zero no message can follow
	// the stop message into a queue.
	inflight atomic.Int64
	closed   atomic.Bool
	stopOnce sync.Once
	stopped  chan struct{}
}

// New starts an engine with cfg, whose zero fields take their defaults.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	geo, err := cfg.validate()
	if err != nil {
		return nil, err
	}

	e := &Engine{
		cfg:     cfg,
		geo:     geo,
		clock:   cfg.Clock,
		stopped: make(chan struct{}),
	}
	e.events, _ = cfg.Clock.(*EventClock)
	e.schema.max = cfg.MaxFeatures

	e.shards = make([]*shard, cfg.Shards)
	for i := range e.shards {
		s, err := newShard(i, geo, cfg)
		if err != nil {
			return nil, err
		}
		e.shards[i] = s
	}
	for _, s := range e.shards {
		go s.run(e)
	}
	return e, nil
}

// Close stops intake, applies every batch already queued, and stops the shard
// goroutines. Calls made after Close has begun, including a second Close,
// return ErrClosed.
func (e *Engine) Close() error {
	first := false
	e.stopOnce.Do(func() { first = true })
	if !first {
		<-e.stopped
		return ErrClosed
	}

	e.closed.Store(true)
	for e.inflight.Load() != 0 {
		time.Sleep(100 * time.Microsecond)
	}
	for _, s := range e.shards {
		s.queue <- &message{stop: true}
	}
	for _, s := range e.shards {
		<-s.done
	}
	close(e.stopped)
	return nil
}

// enter registers a call that may use the queues; it fails once Close began.
func (e *Engine) enter() error {
	e.inflight.Add(1)
	if e.closed.Load() {
		e.inflight.Add(-1)
		return ErrClosed
	}
	return nil
}

// leave ends a call registered by enter.
func (e *Engine) leave() { e.inflight.Add(-1) }

// shardOf maps an entity id to its shard: FNV-1a, mixed so that its high
// bits depend on every byte, reduced to the shard count by multiplication
// rather than modulo (Lemire's fast range).
//
// The hash is fixed rather than seeded so that two engines fed the same
// events split them the same way and give bit-identical population figures,
// which replays and their tests rely on. A caller who picks ids to crowd one
// shard only slows that shard; the index inside it hashes with a random seed.
func (e *Engine) shardOf(entity string) int {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(entity); i++ {
		h ^= uint64(entity[i])
		h *= prime
	}
	h ^= h >> 33 // finaliser from MurmurHash3's fmix64
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	hi, _ := bits.Mul64(h, uint64(len(e.shards)))
	return int(hi)
}

// nowMs reads the engine clock.
func (e *Engine) nowMs() int64 { return e.clock.NowMs() }

// Config returns the configuration in force: the one New was given, with
// every zero field set to its default.
func (e *Engine) Config() Config { return e.cfg }

// Geometry returns the window settings in force: bucket width and the number
// of buckets in the short and long windows.
func (e *Engine) Geometry() (width time.Duration, short, long int) {
	return time.Duration(e.geo.widthMs) * time.Millisecond, int(e.geo.short), int(e.geo.long)
}

// checkEntity validates an entity id.
func checkEntity(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidEntity)
	}
	if len(id) > MaxEntityIDBytes {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalidEntity, len(id), MaxEntityIDBytes)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidEntity, id)
	}
	return nil
}

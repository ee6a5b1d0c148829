package streamfeat

import (
	"fmt"
	"math"
	"time"
)

// Defaults for the zero fields of a Config.
const (
	DefaultShards        = 8
	DefaultQueueDepth    = 256
	DefaultEntityTTL     = 2 * time.Hour
	DefaultMaxFutureSkew = 60 * time.Second
	DefaultBucketWidth   = 5 * time.Second
	DefaultShortBuckets  = 60
	DefaultLongBuckets   = 720
	DefaultMaxFeatures   = 1024
	DefaultIdleSpin      = 50 * time.Microsecond

	// MaxEntityIDBytes and MaxFeatureNameBytes bound the identifiers the
	// engine accepts.
	MaxEntityIDBytes    = 256
	MaxFeatureNameBytes = 256

	// MaxAbsValue is the largest magnitude a feature value may have. Beyond
	// it a squared deviation summed over a window could overflow float64, so
	// such values are rejected like NaN and ±Inf.
	MaxAbsValue = 1e140
)

// Config sets up an Engine. The zero value of every field means its default,
// so Config{} is a valid configuration with the wall clock.
type Config struct {
	// Shards is the number of independent owner goroutines that hold the
	// state. Entities are spread over them by a hash of their id. Default 8;
	// one or two per core is plenty, more only spreads queue memory thinner.
	Shards int

	// QueueDepth is how many batches (ingest calls' shares or queries) each
	// shard's queue holds before Ingest drops, or waits. Default 256. Queued
	// memory is bounded by QueueDepth times the largest batch share, so deep
	// queues and huge batches multiply.
	QueueDepth int

	// Clock tells the engine what time it is. Nil means the wall clock;
	// NewEventClock gives the event-time clock used for replays and tests.
	Clock Clock

	// EntityTTL is how long, by the engine clock, an entity may go without an
	// event before its state is released. It must cover the long window so
	// that no query answer changes because of it. Default 2h.
	EntityTTL time.Duration

	// MaxFutureSkew is how far ahead of the wall clock an event may be
	// stamped and still be accepted. The event-time clock has no future.
	// Default 60s.
	MaxFutureSkew time.Duration

	// BucketWidth, ShortBuckets and LongBuckets set the window geometry:
	// the short window is the newest ShortBuckets buckets, the long window the
	// newest LongBuckets, both ending at the bucket that holds now.
	// Defaults 5s, 60 and 720 (5 minutes and 1 hour).
	BucketWidth  time.Duration
	ShortBuckets int
	LongBuckets  int

	// MaxFeatures caps the number of feature names RegisterSchema accepts.
	// Default 1024.
	MaxFeatures int

	// IdleSpin is how long a shard owner whose queue ran empty after a
	// query, and a query waiting for its answer, keep checking for work
	// (yielding the processor between checks) before they park. Waking a
	// parked goroutine on an idle CPU takes tens of microseconds on many
	// virtual machines, which would dominate query latency; the price is up
	// to IdleSpin of CPU per shard after each query. Ingest alone never
	// polls, nor do the owners of a query that asks more shards than
	// GOMAXPROCS (a population query of many shards): more pollers than
	// CPUs only take turns. Default 50µs; a negative value turns polling
	// off.
	IdleSpin time.Duration

	// WaitForCapacity makes every Ingest call wait for queue space until its
	// context ends instead of dropping the batch. IngestWith sets it per call.
	WaitForCapacity bool

	// growByDoubling grows rings one size class at a time instead of to
	// the size their rate predicts: the older policy, kept so that
	// BenchmarkMemory can measure both side by side.
	growByDoubling bool
}

// maxFeaturesLimit bounds Config.MaxFeatures, and with it the feature ids
// and the series per entity that a snapshot may hold.
const maxFeaturesLimit = 1<<16 - 1

// maxIdleSpin bounds Config.IdleSpin: beyond a millisecond, polling costs
// CPU without saving anything a park and wake would cost.
const maxIdleSpin = time.Millisecond

// geometry is the validated, integer form of the window settings.
type geometry struct {
	widthMs      int64
	short, long  int64
	futureBucket int64 // buckets ahead of now an event may be (wall clock only)
	ttlMs        int64
	skewMs       int64
	sweepMs      int64 // engine time between sweeps of idle state
	eventTime    bool  // the clock is an *EventClock

	growByDoubling bool // see Config.growByDoubling
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.Clock == nil {
		c.Clock = WallClock{}
	}
	if c.EntityTTL == 0 {
		c.EntityTTL = DefaultEntityTTL
	}
	if c.MaxFutureSkew == 0 {
		c.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if c.BucketWidth == 0 {
		c.BucketWidth = DefaultBucketWidth
	}
	if c.ShortBuckets == 0 {
		c.ShortBuckets = DefaultShortBuckets
	}
	if c.LongBuckets == 0 {
		c.LongBuckets = DefaultLongBuckets
	}
	if c.MaxFeatures == 0 {
		c.MaxFeatures = DefaultMaxFeatures
	}
	if c.IdleSpin == 0 {
		c.IdleSpin = DefaultIdleSpin
	}
	return c
}

// validate checks a defaulted Config and derives its geometry.
func (c Config) validate() (geometry, error) {
	bad := func(format string, args ...any) (geometry, error) {
		return geometry{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.Shards < 1 || c.Shards > 4096:
		return bad("shards %d: want 1 to 4096", c.Shards)
	case c.QueueDepth < 1 || c.QueueDepth > 1<<20:
		return bad("queue depth %d: want 1 to %d", c.QueueDepth, 1<<20)
	case c.BucketWidth < time.Millisecond || c.BucketWidth%time.Millisecond != 0:
		return bad("bucket width %v: want a whole number of milliseconds", c.BucketWidth)
	case c.ShortBuckets < 1 || c.LongBuckets < c.ShortBuckets:
		return bad("windows of %d and %d buckets: want 1 <= short <= long",
			c.ShortBuckets, c.LongBuckets)
	case c.LongBuckets > 1<<14:
		return bad("long window of %d buckets: want at most %d", c.LongBuckets, 1<<14)
	case c.MaxFutureSkew < 0:
		return bad("max future skew %v: must not be negative", c.MaxFutureSkew)
	case c.MaxFeatures < 1 || c.MaxFeatures > maxFeaturesLimit:
		return bad("max features %d: want 1 to %d", c.MaxFeatures, maxFeaturesLimit)
	case c.IdleSpin > maxIdleSpin:
		return bad("idle spin %v: want at most %v", c.IdleSpin, maxIdleSpin)
	}

	g := geometry{
		growByDoubling: c.growByDoubling,
		widthMs:        c.BucketWidth.Milliseconds(),
		short:          int64(c.ShortBuckets),
		long:           int64(c.LongBuckets),
		ttlMs:          c.EntityTTL.Milliseconds(),
		skewMs:         c.MaxFutureSkew.Milliseconds(),
	}
	if span := g.widthMs * g.long; g.ttlMs < span {
		return bad("entity ttl %v is shorter than the long window (%v): "+
			"state would vanish while queries still cover it",
			c.EntityTTL, time.Duration(span)*time.Millisecond)
	}
	// A sweep reads every entity, so it runs a few times per TTL: often
	// enough that idle state lingers at most a quarter TTL past its time.
	g.sweepMs = max(g.widthMs, g.ttlMs/4)
	_, g.eventTime = c.Clock.(*EventClock)
	if !g.eventTime {
		// Ceiling: an event up to skew ahead of now may sit in a bucket that
		// far ahead of now's bucket.
		g.futureBucket = (g.skewMs + g.widthMs - 1) / g.widthMs
		if g.futureBucket > 1<<12 {
			return bad("max future skew %v spans more than %d buckets",
				c.MaxFutureSkew, 1<<12)
		}
	}
	return g, nil
}

// bucketOf is floor(ts / width): floor, not truncation, so that negative
// timestamps fall in the bucket before zero rather than in bucket zero.
func (g geometry) bucketOf(ts int64) int64 {
	b := ts / g.widthMs
	if ts%g.widthMs < 0 {
		b--
	}
	return b
}

// oldestBucket returns the first bucket of the long window that ends at
// bucket nowB. It saturates at the int64 range: with 1 ms buckets a clock at
// its minimum (the event clock before its first event) has nowB = MinInt64,
// and nowB-long+1 would wrap around to a huge bucket that every event is
// older than.
func (g geometry) oldestBucket(nowB int64) int64 { return subSat(nowB, g.long-1) }

// liveSpan is the range of milliseconds [from, to) whose buckets lie in the
// long window ending at some bucket now. Checks made per event compare a
// time with it instead of dividing the time into its bucket, which costs
// tens of cycles; only times outside the span need the exact check.
type liveSpan struct{ from, to int64 }

// liveSpan returns the span of the long window ending at bucket nowB. It is
// empty when either end lies outside the int64 range.
func (g geometry) liveSpan(nowB int64) liveSpan {
	oldest := g.oldestBucket(nowB)
	if oldest < math.MinInt64/g.widthMs || nowB >= math.MaxInt64/g.widthMs {
		return liveSpan{from: math.MaxInt64, to: math.MinInt64}
	}
	return liveSpan{from: oldest * g.widthMs, to: (nowB + 1) * g.widthMs}
}

// holds reports whether ts falls in the span's buckets.
func (sp liveSpan) holds(ts int64) bool { return ts >= sp.from && ts < sp.to }

// expired reports whether bucket b lies before the long window ending at nowB.
func (g geometry) expired(b, nowB int64) bool { return b < g.oldestBucket(nowB) }

// unreachable reports whether an entity whose newest bucket is lastB holds
// nothing that a window ending at nowB can use: every bucket has expired, or
// the clock went back so far (a quarter of the 32-bit bucket-id range) that
// the entity's rings could no longer tell their buckets from nowB's.
func (g geometry) unreachable(lastB, nowB int64) bool {
	return g.expired(lastB, nowB) || (lastB > nowB && uint64(lastB-nowB) >= 1<<30)
}

// maxLive is the most buckets one series can hold at once: the long window
// plus the future buckets the wall clock admits.
func (g geometry) maxLive() int {
	return int(g.long + g.futureBucket)
}

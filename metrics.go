package streamfeat

import "sync/atomic"

// Metrics is a snapshot of the engine's counters and gauges.
type Metrics struct {
	EventsAccepted int64
	ValuesAccepted int64
	ValuesRejected int64

	DroppedTooOld     int64
	DroppedTooNew     int64
	DroppedInvalid    int64
	DroppedOverloaded int64

	// Totals over the shards.
	LiveEntities       int64
	TombstonedEntities int64
	ArenaBytes         int64
	ArenaInUseBytes    int64

	Shards []ShardMetrics
}

// ShardMetrics describes one shard.
type ShardMetrics struct {
	QueueDepth    int // messages waiting now
	QueueCapacity int

	LiveEntities       int64
	TombstonedEntities int64 // released slots not yet reused or compacted away
	ArenaBytes         int64 // bytes in slabs
	ArenaInUseBytes    int64 // bytes in blocks holding state

	BatchesApplied int64
	Sweeps         int64
	Compactions    int64
	BytesReclaimed int64 // slab bytes returned by compactions
	ExpiredInQueue int64 // accepted events already older than the window when applied
	LostValues     int64 // values not stored because the arena was exhausted

	BatchEvents  Histogram // events per batch share applied
	ApplySeconds Histogram // from handing a batch share to the queue to its being applied
}

// Metrics returns a snapshot. Each figure is read atomically, but the
// snapshot as a whole is not taken at one instant.
func (e *Engine) Metrics() Metrics {
	c := &e.counters
	m := Metrics{
		EventsAccepted:    c.acceptedEvents.Load(),
		ValuesAccepted:    c.acceptedValues.Load(),
		ValuesRejected:    c.rejectedValues.Load(),
		DroppedTooOld:     c.tooOld.Load(),
		DroppedTooNew:     c.tooNew.Load(),
		DroppedInvalid:    c.invalid.Load(),
		DroppedOverloaded: c.overloaded.Load(),
		Shards:            make([]ShardMetrics, len(e.shards)),
	}
	for i, s := range e.shards {
		p := &s.published
		sm := ShardMetrics{
			QueueDepth:         len(s.queue),
			QueueCapacity:      cap(s.queue),
			LiveEntities:       p.live.Load(),
			TombstonedEntities: p.tombstoned.Load(),
			ArenaBytes:         p.arenaBytes.Load(),
			ArenaInUseBytes:    p.arenaInUse.Load(),
			BatchesApplied:     p.batches.Load(),
			Sweeps:             p.sweeps.Load(),
			Compactions:        p.compactions.Load(),
			BytesReclaimed:     p.reclaimed.Load(),
			ExpiredInQueue:     p.expiredLate.Load(),
			LostValues:         p.lostValues.Load(),
			BatchEvents:        p.batchEvents.snapshot(),
			ApplySeconds:       p.applyLatency.snapshot(),
		}
		m.Shards[i] = sm
		m.LiveEntities += sm.LiveEntities
		m.TombstonedEntities += sm.TombstonedEntities
		m.ArenaBytes += sm.ArenaBytes
		m.ArenaInUseBytes += sm.ArenaInUseBytes
	}
	return m
}

// Histogram counts observations in buckets. Counts[i] counts those above
// Bounds[i-1] and at most Bounds[i]; the last count, Counts[len(Bounds)],
// counts those above every bound.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// histogram is a Histogram that one goroutine writes and any may read. It
// works in integer base units (events, nanoseconds) so that every update is
// a plain atomic add.
type histogram struct {
	bounds []int64 // upper bounds, ascending, in base units
	scale  float64 // converts base units to the unit Histogram reports
	counts []atomic.Uint64
	sum    atomic.Int64
}

func newHistogram(bounds []int64, scale float64) *histogram {
	return &histogram{bounds: bounds, scale: scale, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// observe records v. Bounds are few, so a linear scan beats a search.
func (h *histogram) observe(v int64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(v)
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{
		Bounds: make([]float64, len(h.bounds)),
		Counts: make([]uint64, len(h.counts)),
		Sum:    float64(h.sum.Load()) * h.scale,
	}
	for i, b := range h.bounds {
		out.Bounds[i] = float64(b) * h.scale
	}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	return out
}

// Bucket bounds of the shard histograms: batch shares in events, powers of
// two to 65536; time from enqueue to applied, 10 µs to 10 s.
var (
	batchEventBounds = func() []int64 {
		var b []int64
		for n := int64(1); n <= 1<<16; n *= 2 {
			b = append(b, n)
		}
		return b
	}()
	applyLatencyBounds = []int64{
		10e3, 25e3, 50e3, 100e3, 250e3, 500e3, 1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6,
		100e6, 250e6, 500e6, 1e9, 2.5e9, 5e9, 10e9,
	}
)

package streamfeat

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
		}
		m.Shards[i] = sm
		m.LiveEntities += sm.LiveEntities
		m.TombstonedEntities += sm.TombstonedEntities
		m.ArenaBytes += sm.ArenaBytes
		m.ArenaInUseBytes += sm.ArenaInUseBytes
	}
	return m
}

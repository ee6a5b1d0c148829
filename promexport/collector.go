package promexport

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamfeat/streamfeat"
)

// Drop reasons, the values of the label reason on
// streamfeat_events_dropped_total. They match the dropped_* fields of
// IngestBatchResponse.
const (
	ReasonTooOld     = "too_old"
	ReasonTooNew     = "too_new"
	ReasonInvalid    = "invalid"
	ReasonOverloaded = "overloaded"
)

// Engine-wide families.
var (
	eventsAcceptedDesc = prometheus.NewDesc("streamfeat_events_accepted_total",
		"Events accepted by Ingest and queued for their shard.", nil, nil)
	eventsDroppedDesc = prometheus.NewDesc("streamfeat_events_dropped_total",
		"Events dropped by Ingest, by reason: too_old (before the long window), "+
			"too_new (past the wall clock's skew), invalid (bad entity id or no valid value), "+
			"overloaded (the shard queue was full).", []string{"reason"}, nil)
	valuesAcceptedDesc = prometheus.NewDesc("streamfeat_feature_values_accepted_total",
		"Feature values accepted, in accepted events.", nil, nil)
	valuesRejectedDesc = prometheus.NewDesc("streamfeat_feature_values_rejected_total",
		"Feature values rejected: unregistered feature id, NaN, infinite or beyond ±1e140.",
		nil, nil)
)

// Per-shard families, each with the label shard.
var (
	shardLabel = []string{"shard"}

	queueDepthDesc = prometheus.NewDesc("streamfeat_queue_depth",
		"Messages (shares of ingest batches, and queries) waiting in the shard's queue.",
		shardLabel, nil)
	queueCapacityDesc = prometheus.NewDesc("streamfeat_queue_capacity",
		"Messages the shard's queue holds; ingest past it is dropped as overloaded.",
		shardLabel, nil)
	batchesAppliedDesc = prometheus.NewDesc("streamfeat_batches_applied_total",
		"Shares of ingest batches the shard has applied to its state.", shardLabel, nil)
	sweepsDesc = prometheus.NewDesc("streamfeat_sweeps_total",
		"Sweeps of the shard (release of idle entities, trimming of old buckets).",
		shardLabel, nil)
	compactionsDesc = prometheus.NewDesc("streamfeat_compactions_total",
		"Compactions of the shard's arena.", shardLabel, nil)
	reclaimedDesc = prometheus.NewDesc("streamfeat_compaction_reclaimed_bytes_total",
		"Slab bytes that compactions returned.", shardLabel, nil)
	liveEntitiesDesc = prometheus.NewDesc("streamfeat_live_entities",
		"Entities holding state in the shard.", shardLabel, nil)
	tombstonedDesc = prometheus.NewDesc("streamfeat_tombstoned_entities",
		"Released entity slots not yet reused or compacted away.", shardLabel, nil)
	arenaBytesDesc = prometheus.NewDesc("streamfeat_arena_bytes",
		"Bytes in the shard's arena slabs.", shardLabel, nil)
	arenaInUseDesc = prometheus.NewDesc("streamfeat_arena_in_use_bytes",
		"Bytes in arena blocks holding state.", shardLabel, nil)
	expiredDesc = prometheus.NewDesc("streamfeat_events_expired_in_queue_total",
		"Accepted events already older than the long window when the shard applied them.",
		shardLabel, nil)
	lostValuesDesc = prometheus.NewDesc("streamfeat_feature_values_lost_total",
		"Accepted values not stored because the shard's arena was exhausted.", shardLabel, nil)
	batchEventsDesc = prometheus.NewDesc("streamfeat_microbatch_events",
		"Events per batch share the shard applied at once.", shardLabel, nil)
	applyDurationDesc = prometheus.NewDesc("streamfeat_apply_duration_seconds",
		"Time from a batch share being handed to the shard's queue to its being applied.",
		shardLabel, nil)
)

// Snapshot duration and size are measured where snapshots are written, by
// the serve command's state directory, not by the engine, so they are not
// among this collector's families.

// Collector is a prometheus.Collector over an engine's Metrics snapshot.
// It is safe for concurrent use.
type Collector struct {
	metrics func() streamfeat.Metrics
}

// NewCollector returns a Collector that calls metrics, usually an engine's
// Metrics method, on every scrape.
func NewCollector(metrics func() streamfeat.Metrics) *Collector {
	return &Collector{metrics: metrics}
}

// Describe sends the descriptor of every family Collect sends.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		eventsAcceptedDesc, eventsDroppedDesc, valuesAcceptedDesc, valuesRejectedDesc,
		queueDepthDesc, queueCapacityDesc, batchesAppliedDesc, sweepsDesc,
		compactionsDesc, reclaimedDesc, liveEntitiesDesc, tombstonedDesc,
		arenaBytesDesc, arenaInUseDesc, expiredDesc, lostValuesDesc,
		batchEventsDesc, applyDurationDesc,
	} {
		ch <- d
	}
}

// Collect takes one snapshot and sends it as metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}

	counter(eventsAcceptedDesc, m.EventsAccepted)
	counter(eventsDroppedDesc, m.DroppedTooOld, ReasonTooOld)
	counter(eventsDroppedDesc, m.DroppedTooNew, ReasonTooNew)
	counter(eventsDroppedDesc, m.DroppedInvalid, ReasonInvalid)
	counter(eventsDroppedDesc, m.DroppedOverloaded, ReasonOverloaded)
	counter(valuesAcceptedDesc, m.ValuesAccepted)
	counter(valuesRejectedDesc, m.ValuesRejected)

	for i, s := range m.Shards {
		shard := strconv.Itoa(i)
		gauge(queueDepthDesc, int64(s.QueueDepth), shard)
		gauge(queueCapacityDesc, int64(s.QueueCapacity), shard)
		counter(batchesAppliedDesc, s.BatchesApplied, shard)
		counter(sweepsDesc, s.Sweeps, shard)
		counter(compactionsDesc, s.Compactions, shard)
		counter(reclaimedDesc, s.BytesReclaimed, shard)
		gauge(liveEntitiesDesc, s.LiveEntities, shard)
		gauge(tombstonedDesc, s.TombstonedEntities, shard)
		gauge(arenaBytesDesc, s.ArenaBytes, shard)
		gauge(arenaInUseDesc, s.ArenaInUseBytes, shard)
		counter(expiredDesc, s.ExpiredInQueue, shard)
		counter(lostValuesDesc, s.LostValues, shard)
		histogram(ch, batchEventsDesc, s.BatchEvents, shard)
		histogram(ch, applyDurationDesc, s.ApplySeconds, shard)
	}
}

// histogram sends an engine histogram as a Prometheus one, whose buckets
// are cumulative.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h streamfeat.Histogram, labels ...string) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
}

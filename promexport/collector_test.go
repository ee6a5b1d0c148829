package promexport_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/promexport"
)

// fixedMetrics is a snapshot with a distinct value in every field, so that
// a figure exported under the wrong name shows.
func fixedMetrics() streamfeat.Metrics {
	return streamfeat.Metrics{
		EventsAccepted: 100, ValuesAccepted: 250, ValuesRejected: 3,
		DroppedTooOld: 4, DroppedTooNew: 5, DroppedInvalid: 6, DroppedOverloaded: 7,
		Shards: []streamfeat.ShardMetrics{
			{QueueDepth: 2, QueueCapacity: 8, LiveEntities: 11, TombstonedEntities: 12,
				ArenaBytes: 4096, ArenaInUseBytes: 1024, BatchesApplied: 13, Sweeps: 14,
				Compactions: 15, BytesReclaimed: 16, ExpiredInQueue: 17, LostValues: 18,
				BatchEvents: streamfeat.Histogram{Bounds: []float64{1, 2, 4},
					Counts: []uint64{3, 0, 2, 1}, Count: 6, Sum: 20}},
			{QueueCapacity: 8, LiveEntities: 21},
		},
	}
}

func TestCollectorExportsEveryField(t *testing.T) {
	c := promexport.NewCollector(fixedMetrics)
	want := `
# HELP streamfeat_events_accepted_total Events accepted by Ingest and queued for their shard.
# TYPE streamfeat_events_accepted_total counter
streamfeat_events_accepted_total 100
# HELP streamfeat_feature_values_accepted_total Feature values accepted, in accepted events.
# TYPE streamfeat_feature_values_accepted_total counter
streamfeat_feature_values_accepted_total 250
# HELP streamfeat_feature_values_rejected_total Feature values rejected: unregistered feature id, NaN, infinite or beyond ±1e140.
# TYPE streamfeat_feature_values_rejected_total counter
streamfeat_feature_values_rejected_total 3
# HELP streamfeat_queue_depth Messages (shares of ingest batches, and queries) waiting in the shard's queue.
# TYPE streamfeat_queue_depth gauge
streamfeat_queue_depth{shard="0"} 2
streamfeat_queue_depth{shard="1"} 0
# HELP streamfeat_live_entities Entities holding state in the shard.
# TYPE streamfeat_live_entities gauge
streamfeat_live_entities{shard="0"} 11
streamfeat_live_entities{shard="1"} 21
`
	err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"streamfeat_events_accepted_total", "streamfeat_feature_values_accepted_total",
		"streamfeat_feature_values_rejected_total", "streamfeat_queue_depth",
		"streamfeat_live_entities")
	if err != nil {
		t.Error(err)
	}

	// The other families, by value on shard 0 (or their only series).
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "shard" && l.GetValue() != "0" {
					key = ""
				}
				if l.GetName() == "reason" {
					key += "/" + l.GetValue()
				}
			}
			if key != "" {
				got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			if h := m.GetHistogram(); key == "streamfeat_microbatch_events" && h != nil {
				// Prometheus buckets are cumulative: 3, 3, 5 below the
				// bounds 1, 2, 4, and the sixth observation above them.
				var cum []uint64
				for _, b := range h.GetBucket() {
					cum = append(cum, b.GetCumulativeCount())
				}
				if h.GetSampleCount() != 6 || h.GetSampleSum() != 20 ||
					fmt.Sprint(cum) != "[3 3 5]" {
					t.Errorf("microbatch histogram: count %d, sum %v, buckets %v; want 6, 20, [3 3 5]",
						h.GetSampleCount(), h.GetSampleSum(), cum)
				}
			}
		}
	}
	for name, v := range map[string]float64{
		"streamfeat_events_dropped_total/too_old":     4,
		"streamfeat_events_dropped_total/too_new":     5,
		"streamfeat_events_dropped_total/invalid":     6,
		"streamfeat_events_dropped_total/overloaded":  7,
		"streamfeat_queue_capacity":                   8,
		"streamfeat_tombstoned_entities":              12,
		"streamfeat_arena_bytes":                      4096,
		"streamfeat_arena_in_use_bytes":               1024,
		"streamfeat_batches_applied_total":            13,
		"streamfeat_sweeps_total":                     14,
		"streamfeat_compactions_total":                15,
		"streamfeat_compaction_reclaimed_bytes_total": 16,
		"streamfeat_events_expired_in_queue_total":    17,
		"streamfeat_feature_values_lost_total":        18,
	} {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v); want %v", name, g, ok, v)
		}
	}
	if len(got) != 21 {
		t.Errorf("got %d series on shard 0 or without a shard; want 21: %v", len(got), got)
	}
}

// The names follow Prometheus conventions, as promlint checks them.
func TestCollectorLint(t *testing.T) {
	for _, c := range []prometheus.Collector{
		promexport.NewCollector(fixedMetrics), promexport.NewRPCMetrics(),
	} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// A real engine's snapshot goes through unchanged.
func TestCollectorOnEngine(t *testing.T) {
	e, err := streamfeat.New(streamfeat.Config{Shards: 3, Clock: streamfeat.NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, err := e.RegisterSchema([]string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	values := []streamfeat.FeatureValue{{FeatureID: ids["x"], Value: 1}}
	_, err = e.Ingest(t.Context(), []streamfeat.Event{
		{EntityID: "a", TimestampMs: 1_700_000_000_000, Values: values},
		{EntityID: "", TimestampMs: 1_700_000_000_000, Values: values}, // invalid
	})
	if err != nil {
		t.Fatal(err)
	}

	c := promexport.NewCollector(e.Metrics)
	if n := testutil.CollectAndCount(c, "streamfeat_queue_capacity"); n != 3 {
		t.Errorf("%d queue capacity series; want one per shard, 3", n)
	}
	want := `
# HELP streamfeat_events_accepted_total Events accepted by Ingest and queued for their shard.
# TYPE streamfeat_events_accepted_total counter
streamfeat_events_accepted_total 1
`
	err = testutil.CollectAndCompare(c, strings.NewReader(want), "streamfeat_events_accepted_total")
	if err != nil {
		t.Error(err)
	}
}

package streamfeat

import (
	"context"
	"testing"
)

// TestShardHistograms: every applied batch share is counted once in both
// shard histograms, with its events in the right bucket.
func TestShardHistograms(t *testing.T) {
	e, err := New(Config{Shards: 1, Clock: NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, _ := e.RegisterSchema([]string{"f"})
	sizes := []int{1, 3, 200}
	for _, n := range sizes {
		batch := make([]Event, n)
		for i := range batch {
			batch[i] = Event{EntityID: "e", TimestampMs: 1000, Values: []FeatureValue{{ids["f"], 1}}}
		}
		ingestOK(t, e, batch...)
	}
	if _, err := e.PopulationStats(context.Background(), ids["f"], Short); err != nil {
		t.Fatal(err) // a barrier: every batch is applied once it returns
	}

	m := e.Metrics().Shards[0]
	be, ap := m.BatchEvents, m.ApplySeconds
	if be.Count != 3 || be.Sum != 204 || ap.Count != 3 || ap.Sum <= 0 {
		t.Fatalf("batch events %+v, apply seconds count %d sum %v; want 3 shares of 204 events",
			be, ap.Count, ap.Sum)
	}
	// 1 falls in the first bucket (<= 1), 3 in (2, 4], 200 in (128, 256].
	for _, c := range []struct {
		bound float64
		count uint64
	}{{1, 1}, {4, 1}, {256, 1}} {
		for i, b := range be.Bounds {
			if b == c.bound && be.Counts[i] != c.count {
				t.Errorf("bucket <= %v holds %d; want %d", b, be.Counts[i], c.count)
			}
		}
	}
	if len(be.Counts) != len(be.Bounds)+1 || len(ap.Counts) != len(ap.Bounds)+1 {
		t.Errorf("counts must have one more entry than bounds: %d/%d, %d/%d",
			len(be.Counts), len(be.Bounds), len(ap.Counts), len(ap.Bounds))
	}
}

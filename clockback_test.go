package streamfeat

import (
	"context"
	"testing"
	"time"
)

// TestQueryGivesUpWhileQueued cancels queries that wait behind a long queue.
// The shard answers them later; under -race this shows that a late answer
// writes nothing the caller still reads.
func TestQueryGivesUpWhileQueued(t *testing.T) {
	e, err := New(Config{Shards: 1, QueueDepth: 1 << 12, Clock: NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, err := e.RegisterSchema([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]Event, 2000)
	for i := range batch {
		batch[i] = Event{EntityID: "e" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)),
			TimestampMs: int64(i), Values: []FeatureValue{{ids["f"], float64(i)}}}
	}
	for range 100 {
		if _, err := e.IngestWith(context.Background(), batch, IngestOptions{WaitForCapacity: true}); err != nil {
			t.Fatal(err)
		}
	}
	gaveUp := 0
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Microsecond)
		if _, err := e.Stats(ctx, "eaa", ids["f"], Long); err != nil {
			gaveUp++
		}
		if _, err := e.PopulationStats(ctx, ids["f"], Long); err != nil {
			gaveUp++
		}
		cancel()
	}
	if gaveUp == 0 {
		t.Fatal("no query gave up: the test did not exercise the late-answer path")
	}
	// A query that waits sees everything, late answers included.
	st, err := e.PopulationStats(context.Background(), ids["f"], Long)
	if err != nil || st.Count != 100*2000 {
		t.Fatalf("population count %d, err %v; want %d", st.Count, err, 100*2000)
	}
}

// TestManualClockGoesBack: a wall-type clock that steps back (NTP, a
// ManualClock set back) must not make the shard drop events accepted at the
// new now: the caller queries at that now and must see them.
func TestManualClockGoesBack(t *testing.T) {
	const T = 1_700_000_000_000
	c := NewManualClock(T + 2*3600_000)
	e, err := New(Config{Shards: 1, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, _ := e.RegisterSchema([]string{"f"})
	ctx := context.Background()
	ingestOK(t, e, Event{EntityID: "a", TimestampMs: T + 2*3600_000, Values: []FeatureValue{{ids["f"], 1}}})
	c.Set(T)
	ingestOK(t, e, Event{EntityID: "b", TimestampMs: T, Values: []FeatureValue{{ids["f"], 5}}})
	for name, get := range map[string]func() (Stats, error){
		"entity":     func() (Stats, error) { return e.Stats(ctx, "b", ids["f"], Short) },
		"population": func() (Stats, error) { return e.PopulationStats(ctx, ids["f"], Short) },
	} {
		st, err := get()
		if err != nil || st.Count != 1 || st.Mean != 5 {
			t.Errorf("%s after the clock went back: %+v, %v; want the one value 5", name, st, err)
		}
	}
}

// TestClockBackByBucketIDRange: with 1 ms buckets, setting the clock back by
// 2^32 buckets would make a ring's 32-bit ids alias now's; the entity's data
// is out of reach instead of showing up as current.
func TestClockBackByBucketIDRange(t *testing.T) {
	const T = 1_700_000_000_000
	c := NewManualClock(T)
	e, err := New(Config{Shards: 1, Clock: c, BucketWidth: time.Millisecond,
		MaxFutureSkew: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, _ := e.RegisterSchema([]string{"f"})
	ingestOK(t, e, Event{EntityID: "a", TimestampMs: T, Values: []FeatureValue{{ids["f"], 7}}})
	c.Set(T - 1<<32)
	ctx := context.Background()
	for _, w := range []Window{Short, Long} {
		st, err := e.Stats(ctx, "a", ids["f"], w)
		if err != nil || st.Count != 0 {
			t.Errorf("%v window 2^32 buckets before the data: %+v, %v; want empty", w, st, err)
		}
	}
	// Writing at the old time restarts the entity rather than mixing eras.
	ingestOK(t, e, Event{EntityID: "a", TimestampMs: T - 1<<32, Values: []FeatureValue{{ids["f"], 3}}})
	if st, _ := e.Stats(ctx, "a", ids["f"], Long); st.Count != 1 || st.Mean != 3 {
		t.Errorf("after a write at the old time: %+v; want the one value 3", st)
	}
}

// ingestOK ingests events and fails the test unless all are accepted.
func ingestOK(t *testing.T, e *Engine, events ...Event) {
	t.Helper()
	res, err := e.Ingest(context.Background(), events)
	if err != nil || res.AcceptedEvents != int64(len(events)) {
		t.Fatalf("ingest: %+v, %v; want all %d accepted", res, err, len(events))
	}
}

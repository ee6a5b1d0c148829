package streamfeat

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestQueryGivesUpWhileQueued cancels queries that wait behind a shard held
// busy. The shard answers them after they gave up; under -race this shows
// that a late answer writes nothing the caller still reads.
func TestQueryGivesUpWhileQueued(t *testing.T) {
	e, err := New(Config{Shards: 1, Clock: NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, err := e.RegisterSchema([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	ingestOK(t, e, Event{EntityID: "a", TimestampMs: 1000, Values: []FeatureValue{{ids["f"], 1}}})

	release := make(chan struct{})
	e.shards[0].queue <- &message{run: func(*shard) { <-release }}
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		if _, err := e.Stats(ctx, "a", ids["f"], Long); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stats behind a busy shard: %v; want the deadline", err)
		}
		if _, err := e.PopulationStats(ctx, ids["f"], Long); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("PopulationStats behind a busy shard: %v; want the deadline", err)
		}
		cancel()
	}
	close(release)

	// A query that waits sees everything, behind the late answers.
	st, err := e.PopulationStats(context.Background(), ids["f"], Long)
	if err != nil || st.Count != 1 {
		t.Fatalf("population count %d, err %v; want 1", st.Count, err)
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

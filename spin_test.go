package streamfeat

import (
	"testing"
	"time"
)

// TestPoll: poll returns a value already waiting, gives up after its spin
// when none comes, and with no spin checks once without waiting.
func TestPoll(t *testing.T) {
	c := make(chan int, 1)
	c <- 7
	if v, ok := poll(c, 0); !ok || v != 7 {
		t.Errorf("poll of a waiting value = %d, %v; want 7, true", v, ok)
	}
	for _, d := range []time.Duration{0, -time.Second, 200 * time.Microsecond} {
		start := time.Now()
		if v, ok := poll(c, d); ok {
			t.Errorf("poll(%v) of an empty channel = %d, true; want false", d, v)
		}
		if took := time.Since(start); took < d {
			t.Errorf("poll(%v) gave up after %v, before its spin ended", d, took)
		}
	}

	go func() { c <- 9 }()
	v, ok := poll(c, time.Second)
	if !ok {
		v = <-c // the sender was not scheduled within the spin: still valid
	}
	if v != 9 {
		t.Errorf("poll received %d; want 9", v)
	}
}

// TestQueriesWithoutIdleSpin: with polling off or on, owners and queries
// give the same answers.
func TestQueriesWithoutIdleSpin(t *testing.T) {
	for _, spin := range []time.Duration{-1, DefaultIdleSpin} {
		e := newEventEngine(t, 1, Config{IdleSpin: spin, Shards: 2})
		res, err := e.Ingest(t.Context(), []Event{
			{EntityID: "a", TimestampMs: 1000, Values: []FeatureValue{{FeatureID: 1, Value: 2}}},
			{EntityID: "a", TimestampMs: 2000, Values: []FeatureValue{{FeatureID: 1, Value: 4}}},
		})
		if err != nil || res.AcceptedEvents != 2 {
			t.Fatalf("spin %v: Ingest = %+v, %v", spin, res, err)
		}
		s, err := e.Stats(t.Context(), "a", 1, Long)
		if err != nil || s.Count != 2 || s.Mean != 3 {
			t.Errorf("spin %v: Stats = %+v, %v; want count 2, mean 3", spin, s, err)
		}
	}
}

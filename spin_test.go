package streamfeat

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
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

// TestIdleOwnersPark: polling ends. Shortly after the last message every
// shard owner is parked on its queue, not polling, so an idle engine uses no
// CPU.
func TestIdleOwnersPark(t *testing.T) {
	e := newEventEngine(t, 1, Config{Shards: 4, IdleSpin: time.Millisecond})
	for i := range 4 {
		ev := Event{EntityID: strconv.Itoa(i), TimestampMs: 1000, Values: []FeatureValue{{1, 1}}}
		if _, err := e.Ingest(t.Context(), []Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		if _, err := e.Stats(t.Context(), strconv.Itoa(i), 1, Long); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.PopulationStats(t.Context(), 1, Long); err != nil {
		t.Fatal(err)
	}

	var parked, owners int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		parked, owners = ownerStates(e)
		if owners == len(e.shards) && parked == owners {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d of %d shard owners parked 10 s after the last message; want all %d",
		parked, owners, len(e.shards))
}

// ownerStates counts e's shard owner goroutines, and those of them parked on
// a channel receive, from a dump of every goroutine's stack. An owner's
// frame names its shard's address as the first argument.
func ownerStates(e *Engine) (parked, owners int) {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, s := range e.shards {
			if !strings.Contains(g, fmt.Sprintf("streamfeat.(*shard).run(%p,", s)) {
				continue
			}
			owners++
			if strings.Contains(g, "[chan receive") {
				parked++
			}
		}
	}
	return parked, owners
}

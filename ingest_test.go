package streamfeat

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// checkResult checks the bookkeeping every IngestResult must keep.
func checkResult(t testing.TB, res IngestResult, events int) {
	t.Helper()
	dropped := res.DroppedTooOld + res.DroppedTooNew + res.DroppedInvalid + res.DroppedOverloaded
	if res.DroppedEvents != dropped || res.AcceptedEvents+res.DroppedEvents != int64(events) {
		t.Fatalf("result %+v does not account for %d events", res, events)
	}
}

func TestIngestInvalidEntity(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	ctx := context.Background()
	bad := []string{"", strings.Repeat("x", MaxEntityIDBytes+1), "\xff", "ok\xc3", strings.Repeat("é", 128) + "x"}
	for _, id := range bad {
		res := ingest(t, e, ev(id, t0, 1))
		checkResult(t, res, 1)
		if res.DroppedInvalid != 1 || res.AcceptedValues != 0 {
			t.Errorf("entity %q: %+v; want the event dropped as invalid", id, res)
		}
		if _, err := e.Stats(ctx, id, 1, Short); !errors.Is(err, ErrInvalidEntity) {
			t.Errorf("Stats(%q) error %v; want ErrInvalidEntity", id, err)
		}
		if _, err := e.Drift(ctx, id, 1, DriftOptions{}); !errors.Is(err, ErrInvalidEntity) {
			t.Errorf("Drift(%q) error %v; want ErrInvalidEntity", id, err)
		}
	}
	// The limits themselves are fine: 256 bytes, of ASCII or of 2-byte runes.
	for _, id := range []string{strings.Repeat("x", MaxEntityIDBytes), strings.Repeat("é", 128), "é"} {
		ingestEach(t, e, ev(id, t0, 1))
		checkStats(t, "entity of "+describe("%d bytes", len(id)), stats(t, e, id, 1, Short),
			want{1, 1, 0, 0, 0}, exact)
	}
	m := e.Metrics()
	if m.DroppedInvalid != int64(len(bad)) || m.EventsAccepted != 3 {
		t.Fatalf("metrics %+v; want %d invalid and 3 accepted", m, len(bad))
	}
}

func TestIngestInvalidValues(t *testing.T) {
	e := newEventEngine(t, 2, Config{})
	ctx := context.Background()
	bad := []FeatureValue{
		fv(0, 1), fv(-1, 1), fv(math.MinInt32, 1), fv(3, 1), fv(math.MaxInt32, 1),
		fv(1, math.NaN()), fv(1, math.Inf(1)), fv(1, math.Inf(-1)),
		fv(1, math.Nextafter(MaxAbsValue, math.Inf(1))), fv(2, -math.Nextafter(MaxAbsValue, math.Inf(1))),
		fv(1, math.MaxFloat64),
	}
	good := []FeatureValue{
		fv(1, MaxAbsValue), fv(2, -MaxAbsValue), fv(1, math.SmallestNonzeroFloat64), fv(2, math.Copysign(0, -1)),
	}

	// Each bad value alone: rejected, and the event left empty is dropped.
	for _, v := range bad {
		x := Event{EntityID: "e", TimestampMs: t0, Values: []FeatureValue{v}}
		res := ingest(t, e, x)
		checkResult(t, res, 1)
		if res.RejectedValues != 1 || res.DroppedInvalid != 1 || res.AcceptedValues != 0 {
			t.Errorf("value %+v: %+v; want rejected and the event dropped as invalid", v, res)
		}
	}
	// No values at all.
	res := ingest(t, e, Event{EntityID: "e", TimestampMs: t0})
	if res.DroppedInvalid != 1 || res.RejectedValues != 0 {
		t.Errorf("event without values: %+v; want dropped as invalid", res)
	}
	checkStats(t, "after rejections", stats(t, e, "e", 1, Long), want{}, exact)

	// Good and bad mixed in one event: the good ones count.
	mixed := Event{EntityID: "e", TimestampMs: t0, Values: append(append([]FeatureValue{}, bad...), good...)}
	res = ingest(t, e, mixed)
	checkResult(t, res, 1)
	if res.AcceptedEvents != 1 || res.AcceptedValues != int64(len(good)) || res.RejectedValues != int64(len(bad)) {
		t.Fatalf("mixed event: %+v; want %d values accepted and %d rejected", res, len(good), len(bad))
	}
	s1 := stats(t, e, "e", 1, Long)
	if s1.Count != 2 || s1.Mean != MaxAbsValue/2 {
		t.Fatalf("feature 1 after the mixed event: %+v; want 1e140 and the smallest subnormal", s1)
	}
	s2 := stats(t, e, "e", 2, Long)
	if s2.Count != 2 || s2.Mean != -MaxAbsValue/2 || s2.PopulationVariance != MaxAbsValue*MaxAbsValue/4 {
		t.Fatalf("feature 2 after the mixed event: %+v; want -1e140 and -0", s2)
	}

	m := e.Metrics()
	wantRejected := int64(2 * len(bad))
	if m.ValuesRejected != wantRejected || m.ValuesAccepted != int64(len(good)) || m.DroppedInvalid != int64(len(bad)+1) {
		t.Fatalf("metrics %+v; want %d rejected, %d accepted values, %d invalid events",
			m, wantRejected, len(good), len(bad)+1)
	}

	// Queries with bad feature ids.
	for _, id := range []int32{0, -1, math.MinInt32} {
		checkQueryErrors(t, e, id, ErrInvalidFeature)
	}
	for _, id := range []int32{3, math.MaxInt32} {
		checkQueryErrors(t, e, id, ErrUnknownFeature)
	}
	for _, w := range []Window{0, 3, 255} {
		if _, err := e.Stats(ctx, "e", 1, w); !errors.Is(err, ErrInvalidWindow) {
			t.Errorf("Stats window %v: %v; want ErrInvalidWindow", w, err)
		}
		if _, err := e.PopulationStats(ctx, 1, w); !errors.Is(err, ErrInvalidWindow) {
			t.Errorf("PopulationStats window %v: %v; want ErrInvalidWindow", w, err)
		}
	}
}

func checkQueryErrors(t *testing.T, e *Engine, id int32, want error) {
	t.Helper()
	ctx := context.Background()
	_, err1 := e.Stats(ctx, "e", id, Long)
	_, err2 := e.Drift(ctx, "e", id, DriftOptions{})
	_, err3 := e.PopulationStats(ctx, id, Long)
	_, err4 := e.PopulationDrift(ctx, id, DriftOptions{})
	for i, err := range []error{err1, err2, err3, err4} {
		if !errors.Is(err, want) {
			t.Errorf("query %d with feature %d: %v; want %v", i, id, err, want)
		}
	}
	if _, err := e.FeatureName(id); !errors.Is(err, want) {
		t.Errorf("FeatureName(%d): %v; want %v", id, err, want)
	}
}

func TestIngestDuplicateFeatureCountsTwice(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	x := Event{EntityID: "e", TimestampMs: t0, Values: []FeatureValue{fv(1, 1), fv(1, 3)}}
	res := ingest(t, e, x)
	if res.AcceptedValues != 2 || res.AcceptedEvents != 1 {
		t.Fatalf("Ingest = %+v; want one event with two values", res)
	}
	checkStats(t, "duplicate ids", stats(t, e, "e", 1, Short), want{2, 2, 1, 2, 1}, exact)
}

func TestIngestEmptyBatches(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	for _, batch := range [][]Event{nil, {}} {
		res, err := e.Ingest(context.Background(), batch)
		if err != nil || res != (IngestResult{}) {
			t.Fatalf("Ingest(%v) = %+v, %v; want an empty result", batch, res, err)
		}
	}
	if m := e.Metrics(); m.EventsAccepted != 0 || m.DroppedInvalid != 0 {
		t.Fatalf("metrics after empty batches: %+v", m)
	}
}

// TestIngestCallerMayReuse changes the caller's events after Ingest returned.
func TestIngestCallerMayReuse(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	buf := []byte("entity-a")
	events := []Event{{EntityID: string(buf), TimestampMs: t0, Values: []FeatureValue{fv(1, 2)}}}
	ingest(t, e, events...)
	events[0].Values[0].Value = 100
	events[0].EntityID = "other"
	checkStats(t, "after reuse", stats(t, e, "entity-a", 1, Short), want{1, 2, 0, 0, 0}, exact)
}

func TestIngestTooOldAndTooNewWallRules(t *testing.T) {
	clock := NewManualClock(t0 + 2_500)
	e := newEngine(t, Config{Clock: clock, MaxFutureSkew: 10 * time.Second})
	registerN(t, e, 1)
	oldest := (t0/5000 - 719) * 5000
	cases := []struct {
		ts       int64
		accepted bool
		field    *int64
	}{
		{t0 + 2_500, true, nil},
		{t0 + 12_500, true, nil}, // exactly the skew ahead
		{oldest, true, nil},      // first ms of the long window
		{t0 + 12_501, false, new(int64)},
		{oldest - 1, false, new(int64)},
		{math.MaxInt64, false, new(int64)},
		{math.MinInt64, false, new(int64)},
	}
	for _, c := range cases {
		res := ingest(t, e, ev("e", c.ts, 1))
		checkResult(t, res, 1)
		tooNew := c.ts > t0
		switch {
		case c.accepted && res.AcceptedEvents != 1:
			t.Errorf("ts %d: %+v; want accepted", c.ts, res)
		case !c.accepted && tooNew && res.DroppedTooNew != 1:
			t.Errorf("ts %d: %+v; want dropped as too new", c.ts, res)
		case !c.accepted && !tooNew && res.DroppedTooOld != 1:
			t.Errorf("ts %d: %+v; want dropped as too old", c.ts, res)
		}
	}
	// The event ahead of now is not in any window yet.
	checkStats(t, "long", stats(t, e, "e", 1, Long), want{2, 1, 0, 0, 0}, exact)

	// Time passes: the future event comes into the window, and a quiet
	// entity's short window empties without any event.
	// Ten seconds on the oldest event has left the long window.
	clock.Advance(10 * time.Second)
	checkStats(t, "short later", stats(t, e, "e", 1, Short), want{2, 1, 0, 0, 0}, exact)
	checkStats(t, "long later", stats(t, e, "e", 1, Long), want{2, 1, 0, 0, 0}, exact)
	clock.Advance(5 * time.Minute)
	checkStats(t, "short after 5 minutes", stats(t, e, "e", 1, Short), want{}, exact)
	m := e.Metrics()
	if m.DroppedTooNew != 2 || m.DroppedTooOld != 2 || m.EventsAccepted != 3 {
		t.Fatalf("metrics %+v; want 2 too new, 2 too old, 3 accepted", m)
	}
}

func TestIngestWallClockDefault(t *testing.T) {
	e := newEngine(t, Config{})
	registerN(t, e, 1)
	now := time.Now().UnixMilli()
	res := ingest(t, e, ev("e", now, 1), ev("e", now+time.Hour.Milliseconds(), 2),
		ev("e", now-2*time.Hour.Milliseconds(), 3))
	if res.AcceptedEvents != 1 || res.DroppedTooNew != 1 || res.DroppedTooOld != 1 {
		t.Fatalf("Ingest = %+v; want one accepted, one too new, one too old", res)
	}
	if s := stats(t, e, "e", 1, Long); s.Count != 1 || s.Mean != 1 {
		t.Fatalf("stats %+v; want the one accepted value", s)
	}
}

// TestEventClockInOrder checks that events are validated in order within
// one call, each accepted event moving the clock before the next is checked.
func TestEventClockInOrder(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	if now := e.clock.NowMs(); now != math.MinInt64 {
		t.Fatalf("event clock before any event reads %d; want MinInt64", now)
	}
	hour := time.Hour.Milliseconds()
	res := ingest(t, e, ev("e", t0, 1), ev("e", t0+2*hour, 2), ev("e", t0, 3), ev("e", t0+2*hour-1000, 4))
	if res.AcceptedEvents != 3 || res.DroppedTooOld != 1 {
		t.Fatalf("Ingest = %+v; want the third event too old", res)
	}
	if now := e.clock.NowMs(); now != t0+2*hour {
		t.Fatalf("clock %d; want %d", now, t0+2*hour)
	}
	// No future with the event clock: a day ahead is fine and moves now.
	ingestEach(t, e, ev("e", t0+26*hour, 5))
	if now := e.clock.NowMs(); now != t0+26*hour {
		t.Fatalf("clock %d; want %d", now, t0+26*hour)
	}
	// A rejected or dropped event does not move the clock.
	ingest(t, e, ev("e", t0+27*hour, math.NaN()), ev("", t0+28*hour, 1))
	if now := e.clock.NowMs(); now != t0+26*hour {
		t.Fatalf("clock %d after dropped events; want %d", now, t0+26*hour)
	}
	checkStats(t, "long", stats(t, e, "e", 1, Long), want{1, 5, 0, 0, 0}, exact)
}

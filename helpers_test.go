package streamfeat

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"strconv"
	"testing"
)

// longTests turns on the long variants of tests that are too slow for every
// run.
var longTests = flag.Bool("streamfeat.long", false, "run the long variants of the engine tests")

// t0 is a Unix time in milliseconds that starts a bucket: 2023-11-14T22:13:20Z.
const t0 int64 = 1_700_000_000_000

// newEngine starts an engine for a test and closes it when the test ends.
func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// newEventEngine starts an engine on its own event-time clock with n
// features registered as f1..fn (ids 1..n). Ingest waits for queue space, so
// a test that sends many calls without a query in between loses nothing.
func newEventEngine(t testing.TB, n int, cfg Config) *Engine {
	t.Helper()
	cfg.Clock = NewEventClock()
	cfg.WaitForCapacity = true
	e := newEngine(t, cfg)
	registerN(t, e, n)
	return e
}

// registerN registers f1..fn and checks that fk gets id k.
func registerN(t testing.TB, e *Engine, n int) {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i+1)
	}
	ids, err := e.RegisterSchema(names)
	if err != nil {
		t.Fatalf("RegisterSchema: %v", err)
	}
	for i, name := range names {
		if ids[name] != int32(i+1) {
			t.Fatalf("RegisterSchema: %s got id %d; want %d", name, ids[name], i+1)
		}
	}
}

// fv builds a feature value.
func fv(id int32, v float64) FeatureValue { return FeatureValue{FeatureID: id, Value: v} }

// ev builds an event with values for features 1, 2, ... in order.
func ev(entity string, ts int64, values ...float64) Event {
	e := Event{EntityID: entity, TimestampMs: ts}
	for i, v := range values {
		e.Values = append(e.Values, fv(int32(i+1), v))
	}
	return e
}

// ingest sends events in one call and fails the test on an error.
func ingest(t testing.TB, e *Engine, events ...Event) IngestResult {
	t.Helper()
	res, err := e.Ingest(context.Background(), events)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	return res
}

// ingestEach sends every event in a call of its own and checks that each is
// accepted.
func ingestEach(t testing.TB, e *Engine, events ...Event) {
	t.Helper()
	for _, x := range events {
		if res := ingest(t, e, x); res.AcceptedEvents != 1 {
			t.Fatalf("Ingest(%+v) = %+v; want the event accepted", x, res)
		}
	}
}

func stats(t testing.TB, e *Engine, entity string, f int32, w Window) Stats {
	t.Helper()
	s, err := e.Stats(context.Background(), entity, f, w)
	if err != nil {
		t.Fatalf("Stats(%q, %d, %v): %v", entity, f, w, err)
	}
	checkWellFormed(t, s)
	return s
}

func popStats(t testing.TB, e *Engine, f int32, w Window) Stats {
	t.Helper()
	s, err := e.PopulationStats(context.Background(), f, w)
	if err != nil {
		t.Fatalf("PopulationStats(%d, %v): %v", f, w, err)
	}
	checkWellFormed(t, s)
	return s
}

// checkWellFormed checks the invariants every Stats must keep: no NaN or Inf,
// no negative variance, undefined fields at 0, and a JSON encoding.
func checkWellFormed(t testing.TB, s Stats) {
	t.Helper()
	for _, x := range []float64{s.Mean, s.PopulationVariance, s.SampleVariance} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			t.Fatalf("stats %+v hold a non-finite number", s)
		}
	}
	if s.PopulationVariance < 0 || s.SampleVariance < 0 {
		t.Fatalf("stats %+v hold a negative variance", s)
	}
	if s.Count < 0 {
		t.Fatalf("stats %+v have a negative count", s)
	}
	if !s.HasMean() && (s.Mean != 0 || s.PopulationVariance != 0) {
		t.Fatalf("stats %+v: undefined mean or variance is not 0", s)
	}
	if !s.HasSampleVariance() && s.SampleVariance != 0 {
		t.Fatalf("stats %+v: undefined sample variance is not 0", s)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatalf("json.Marshal(%+v): %v", s, err)
	}
}

// want describes expected Stats. Mean and the population figures are only
// defined when count > 0, the sample variance when count > 1; undefined
// fields must read 0.
type want struct {
	count                           int64
	mean, popVar, sampleVar, popStd float64
}

// tolerance is either exact (bit-exact, -0 accepted for 0) or relative.
type tolerance float64

const exact tolerance = 0

// near reports whether got is within tol of want. An expected 0 must be
// exactly 0 under either kind of tolerance.
func near(got, want float64, tol tolerance) bool {
	// == treats -0 and 0 alike and is bit equality otherwise.
	return got == want || math.Abs(got-want) <= float64(tol)*math.Abs(want)
}

// checkStats compares s with w under tol.
func checkStats(t testing.TB, what string, s Stats, w want, tol tolerance) {
	t.Helper()
	checkWellFormed(t, s)
	if s.Count != w.count {
		t.Errorf("%s: count %d; want %d", what, s.Count, w.count)
		return
	}
	fields := []struct {
		name      string
		got, want float64
		defined   bool
	}{
		{"mean", s.Mean, w.mean, w.count > 0},
		{"population variance", s.PopulationVariance, w.popVar, w.count > 0},
		{"sample variance", s.SampleVariance, w.sampleVar, w.count > 1},
		{"population std", s.StdDev(), w.popStd, w.count > 0},
	}
	for _, f := range fields {
		want := f.want
		if !f.defined {
			want = 0
		}
		if !near(f.got, want, tol) {
			t.Errorf("%s: %s %v (%s); want %v", what, f.name, f.got, hexf(f.got), want)
		}
	}
}

func hexf(x float64) string { return strconv.FormatFloat(x, 'x', -1, 64) }

// ulpDiff returns how many float64 steps apart a and b are.
func ulpDiff(a, b float64) uint64 {
	ia, ib := ordered(a), ordered(b)
	if ia > ib {
		return uint64(ia - ib)
	}
	return uint64(ib - ia)
}

// ordered maps a float64 to an integer that orders like the float.
func ordered(x float64) int64 {
	b := int64(math.Float64bits(x))
	if b < 0 {
		b = math.MinInt64 - b
	}
	return b
}

func describe(format string, args ...any) string { return fmt.Sprintf(format, args...) }

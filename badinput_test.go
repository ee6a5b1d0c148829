package streamfeat

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The tests in this file cover the rows of docs/RELIABILITY.md's bad-input
// table that no other test covers. Each names its rows.

// TestBadInputExtremeValuesStayFinite: values at the edge of the accepted
// range (±MaxAbsValue, subnormals, -0) go in, in the same buckets and in
// buckets of their own, on several shards, and every figure that comes out
// is finite and matches the exact answer. Values just past the edge,
// ±MaxFloat64 among them, are rejected. The bound exists so that a sum of
// squared deviations cannot overflow: n values of magnitude 1e140 give an
// M2 of at most n*4e280, finite for any count below 4e27.
func TestBadInputExtremeValuesStayFinite(t *testing.T) {
	e := newEventEngine(t, 3, Config{Shards: 3})
	ctx := context.Background()
	const perEntity = 2_000
	entities := []string{"a", "b", "c", "d"}
	tiny := []float64{
		math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64,
		0x1p-1060, -0x1p-1040, 0x1p-1023, // subnormals and the last of them
		math.Copysign(0, -1),
	}

	// Rejected at the edge: nothing from these reaches the state.
	var rejected []FeatureValue
	for _, x := range []float64{
		math.MaxFloat64, -math.MaxFloat64,
		math.Nextafter(MaxAbsValue, math.Inf(1)), math.Nextafter(-MaxAbsValue, math.Inf(-1)),
		math.Inf(1), math.Inf(-1), math.NaN(),
	} {
		rejected = append(rejected, fv(1, x), fv(2, x), fv(3, x))
	}
	res := ingest(t, e, Event{EntityID: "a", TimestampMs: t0, Values: rejected})
	checkResult(t, res, 1)
	if res.RejectedValues != int64(len(rejected)) || res.DroppedInvalid != 1 {
		t.Fatalf("values past the edge: %+v; want all %d rejected", res, len(rejected))
	}

	// Feature 1: ±1e140 alternating, one sign per bucket or both in one.
	// Feature 2: subnormals and -0 only. Feature 3: both kinds mixed.
	exact := map[string]*oracle{}
	for _, k := range []string{"1", "2", "3"} {
		exact["pop"+k] = new(oracle)
	}
	for _, id := range entities {
		o1, o2, o3 := new(oracle), new(oracle), new(oracle)
		exact[id+"1"], exact[id+"2"], exact[id+"3"] = o1, o2, o3
		batch := make([]Event, 0, perEntity)
		for i := range perEntity {
			sign := float64(1 - 2*(i%2))
			if id == "b" {
				sign = float64(1 - 2*(i/7%2)) // runs of one sign span buckets
			}
			x1, x2 := sign*MaxAbsValue, tiny[i%len(tiny)]
			x3 := x2
			if i%3 == 0 {
				x3 = -sign * MaxAbsValue
			}
			// 40 buckets of the short window, so merges cross signs too.
			ts := t0 + int64(i%40)*5000 + int64(i%5000)
			batch = append(batch, Event{EntityID: id, TimestampMs: ts,
				Values: []FeatureValue{fv(1, x1), fv(2, x2), fv(3, x3)}})
			o1.add(x1)
			o2.add(x2)
			o3.add(x3)
		}
		if res := ingest(t, e, batch...); res.AcceptedValues != 3*perEntity {
			t.Fatalf("entity %s: %+v; want every value accepted", id, res)
		}
		exact["pop1"].merge(o1)
		exact["pop2"].merge(o2)
		exact["pop3"].merge(o3)
	}

	for f := int32(1); f <= 3; f++ {
		k := strconv.Itoa(int(f))
		for _, w := range []Window{Short, Long} {
			for _, id := range entities {
				what := describe("entity %s feature %d %v", id, f, w)
				checkAgainst(t, what, stats(t, e, id, f, w), exact[id+k], 4, 1e-9)
			}
			checkAgainst(t, describe("population feature %d %v", f, w), popStats(t, e, f, w),
				exact["pop"+k], 4, 1e-9)
		}
		for _, id := range entities {
			rep, err := e.Drift(ctx, id, f, DriftOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkFiniteDrift(t, describe("drift of %s feature %d", id, f), rep)
		}
		rep, err := e.PopulationDrift(ctx, f, DriftOptions{ExcludeShortFromLong: true})
		if err != nil {
			t.Fatal(err)
		}
		checkFiniteDrift(t, describe("population drift of feature %d", f), rep)
	}
}

// checkFiniteDrift fails unless every figure of r is finite and its
// windows are well formed.
func checkFiniteDrift(t *testing.T, what string, r DriftReport) {
	t.Helper()
	checkWellFormed(t, r.Short)
	checkWellFormed(t, r.Long)
	for _, x := range []float64{r.MeanZScore, r.VarianceRatio, r.InverseVarianceRatio} {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			t.Fatalf("%s: %+v holds a non-finite or negative score", what, r)
		}
	}
}

// TestBadInputEventWithoutValues: an event whose Values is nil or empty is
// dropped as invalid, rejects no value and does not move the event clock.
func TestBadInputEventWithoutValues(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	ingestEach(t, e, ev("e", t0, 1))
	res := ingest(t, e,
		Event{EntityID: "e", TimestampMs: t0 + 10_000},
		Event{EntityID: "e", TimestampMs: t0 + 20_000, Values: []FeatureValue{}})
	checkResult(t, res, 2)
	if res.DroppedInvalid != 2 || res.RejectedValues != 0 || res.AcceptedValues != 0 {
		t.Fatalf("events without values: %+v; want both dropped as invalid", res)
	}
	if now := e.clock.NowMs(); now != t0 {
		t.Fatalf("clock %d after events without values; want %d", now, t0)
	}
}

// TestBadInputQueriesForUnknownEntity: a valid entity id that was never seen
// is not an error; its windows are empty and drift says so. A registered
// feature that never saw a value answers the same for the population.
func TestBadInputQueriesForUnknownEntity(t *testing.T) {
	e := newEventEngine(t, 2, Config{Shards: 2})
	ctx := context.Background()
	ingestEach(t, e, ev("known", t0, 1))
	for _, id := range []string{"nobody", "known\x00", strings.Repeat("z", MaxEntityIDBytes)} {
		for _, w := range []Window{Short, Long} {
			checkStats(t, "unknown "+id, stats(t, e, id, 1, w), want{}, exact)
		}
		rep, err := e.Drift(ctx, id, 1, DriftOptions{})
		if err != nil || !rep.InsufficientData || rep.Drifted || rep.Short.Count != 0 || rep.Long.Count != 0 {
			t.Fatalf("Drift(%q) = %+v, %v; want empty windows and insufficient data", id, rep, err)
		}
	}
	checkStats(t, "known entity, feature never fed", stats(t, e, "known", 2, Long), want{}, exact)
	checkStats(t, "population of a feature never fed", popStats(t, e, 2, Long), want{}, exact)
	rep, err := e.PopulationDrift(ctx, 2, DriftOptions{})
	if err != nil || !rep.InsufficientData || rep.Drifted {
		t.Fatalf("PopulationDrift of a feature never fed = %+v, %v; want insufficient data", rep, err)
	}
}

// TestBadInputRegisterSchemaEdges adds the RegisterSchema edges that
// TestRegisterSchema leaves out: one bad name spoils the whole call, repeats
// of a new name count once against the cap, the limits are in bytes, names
// are compared byte for byte, and concurrent calls agree on the ids.
func TestBadInputRegisterSchemaEdges(t *testing.T) {
	t.Run("one bad name registers nothing", func(t *testing.T) {
		e := newEngine(t, Config{})
		for _, names := range [][]string{
			{"ok", "\xff"}, {"ok", ""}, {"ok", strings.Repeat("é", 128) + "x"},
		} {
			if _, err := e.RegisterSchema(names); !errors.Is(err, ErrInvalidFeature) {
				t.Errorf("RegisterSchema(%q): %v; want ErrInvalidFeature", names, err)
			}
		}
		if got := e.Schema(); len(got) != 0 {
			t.Fatalf("Schema() = %v after refused calls; want it empty", got)
		}
	})
	t.Run("repeats count once against the cap", func(t *testing.T) {
		e := newEngine(t, Config{MaxFeatures: 2})
		if _, err := e.RegisterSchema([]string{"a", "a", "a"}); err != nil {
			t.Fatal(err)
		}
		ids, err := e.RegisterSchema([]string{"b", "b", "a", "b"})
		if err != nil || !maps.Equal(ids, map[string]int32{"a": 1, "b": 2}) {
			t.Fatalf("RegisterSchema(b, b, a, b) at the cap = %v, %v; want a=1 b=2", ids, err)
		}
		if _, err := e.RegisterSchema([]string{"c", "c"}); !errors.Is(err, ErrTooManyFeatures) {
			t.Fatalf("RegisterSchema(c, c) past the cap: %v; want ErrTooManyFeatures", err)
		}
	})
	t.Run("a cap of one", func(t *testing.T) {
		e := newEngine(t, Config{MaxFeatures: 1})
		if _, err := e.RegisterSchema([]string{"a", "b"}); !errors.Is(err, ErrTooManyFeatures) {
			t.Fatalf("two names under a cap of one: %v; want ErrTooManyFeatures", err)
		}
		if got := e.Schema(); len(got) != 0 {
			t.Fatalf("Schema() = %v; want nothing registered", got)
		}
		if ids, err := e.RegisterSchema([]string{"b"}); err != nil || ids["b"] != 1 {
			t.Fatalf("RegisterSchema(b) = %v, %v; want b=1", ids, err)
		}
	})
	t.Run("names are bytes", func(t *testing.T) {
		e := newEngine(t, Config{})
		// Composed and decomposed é, a blank, a NUL and a 256-byte name of
		// 2-byte runes are all valid and all distinct.
		names := []string{"\u00e9", "e\u0301", " ", "\x00", strings.Repeat("é", 128)}
		ids, err := e.RegisterSchema(names)
		if err != nil || len(ids) != len(names) {
			t.Fatalf("RegisterSchema(%q) = %v, %v; want %d distinct ids", names, ids, err, len(names))
		}
	})
	t.Run("concurrent calls agree", func(t *testing.T) {
		e := newEngine(t, Config{})
		names := []string{"x", "y", "z", "w"}
		got := make([]map[string]int32, 8)
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() {
				// Each caller lists the names in its own order.
				own := slices.Concat(names[i%len(names):], names[:i%len(names)])
				ids, err := e.RegisterSchema(own)
				if err != nil {
					t.Errorf("RegisterSchema: %v", err)
				}
				got[i] = ids
			})
		}
		wg.Wait()
		for i := range got {
			if !maps.Equal(got[i], got[0]) {
				t.Fatalf("caller %d got %v, caller 0 %v; want the same ids", i, got[i], got[0])
			}
		}
		if len(e.Schema()) != len(names) {
			t.Fatalf("Schema() = %v; want %d names", e.Schema(), len(names))
		}
	})
}

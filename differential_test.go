package streamfeat

import (
	"context"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

// model is the reference the engine is compared with: a plain list of the
// accepted observations, with every window recomputed from it per query by
// the rules of the spec.
type model struct {
	nFeatures int32
	now       int64 // newest accepted event time
	started   bool
	obs       []observation
}

type observation struct {
	entity  string
	feature int32
	ts      int64
	x       float64
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// ingest applies one call's events in order and returns what the engine
// should report for it.
func (m *model) ingest(events []Event) IngestResult {
	var res IngestResult
	for _, ev := range events {
		if !validEntity(ev.EntityID) {
			res.DroppedInvalid++
			continue
		}
		if m.started && floorDiv(ev.TimestampMs, 5000) < floorDiv(m.now, 5000)-719 {
			res.DroppedTooOld++
			continue
		}
		var kept []observation
		for _, v := range ev.Values {
			if v.FeatureID < 1 || v.FeatureID > m.nFeatures || math.IsNaN(v.Value) ||
				math.IsInf(v.Value, 0) || math.Abs(v.Value) > MaxAbsValue {
				res.RejectedValues++
				continue
			}
			kept = append(kept, observation{ev.EntityID, v.FeatureID, ev.TimestampMs, v.Value})
		}
		if len(kept) == 0 {
			res.DroppedInvalid++
			continue
		}
		m.obs = append(m.obs, kept...)
		res.AcceptedEvents++
		res.AcceptedValues += int64(len(kept))
		if !m.started || ev.TimestampMs > m.now {
			m.now, m.started = ev.TimestampMs, true
		}
	}
	res.DroppedEvents = res.DroppedInvalid + res.DroppedTooOld
	return res
}

// window returns the oracle of entity's feature (all entities for "") over
// the buckets from now's bucket back: [b_now-n+1, b_now], less the newest
// skip buckets.
func (m *model) window(entity string, feature int32, n, skip int64) *oracle {
	o := new(oracle)
	nowB := floorDiv(m.now, 5000)
	for _, ob := range m.obs {
		b := floorDiv(ob.ts, 5000)
		if ob.feature != feature || (entity != "" && ob.entity != entity) {
			continue
		}
		if b <= nowB-skip && b > nowB-n {
			o.add(ob.x)
		}
	}
	return o
}

// TestDifferential drives the engine and the model with the same random
// stream of calls, interleaving every kind of query, and compares.
func TestDifferential(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	calls := 3000
	if testing.Short() {
		seeds, calls = seeds[:1], 400
	}
	if *longTests {
		calls = 10_000
	}
	for _, seed := range seeds {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			runDifferential(t, seed, calls, 4, 5)
		})
	}
	// Wide events: entities with more features than one ring row holds
	// (groupWidth), gaining them a few at a time in any order.
	t.Run("wide", func(t *testing.T) { runDifferential(t, 7, calls, 3*groupWidth, 3*groupWidth) })
}

// runDifferential compares engine and model over calls random calls whose
// events carry up to maxValues values of nFeatures features.
func runDifferential(t *testing.T, seed uint64, calls int, nFeatures int32, maxValues int) {
	r := rand.New(rand.NewPCG(seed, 99))
	e := newEventEngine(t, int(nFeatures), Config{Shards: 3})
	m := &model{nFeatures: nFeatures}
	entities := []string{"a", "b", "c", "d", "e", "f", "", "\xff"}
	offsets := []float64{0, 1e9, -1e12, 5}
	scales := []float64{1, 1e-3, 1, 0} // feature 4 is constant: variance exactly 0
	clock := t0

	value := func(f int32) float64 {
		switch r.IntN(200) {
		case 0:
			return math.NaN()
		case 1:
			return math.Inf(1)
		}
		return offsets[(f-1)%4] + scales[(f-1)%4]*math.Round(r.NormFloat64()*64)/64
	}
	var total IngestResult
	queries := 0
	defer func() {
		t.Logf("%d observations kept, %d queries; totals %+v", len(m.obs), queries, total)
	}()
	for call := range calls {
		// A batch of events, mostly near the clock, going back and forth
		// within the long window, sometimes past it or far ahead.
		var batch []Event
		for range 1 + r.IntN(6) {
			switch r.IntN(20) {
			case 0:
				clock += r.Int64N(3_600_000) // a jump, sometimes past the window
			case 1, 2, 3, 4, 5:
				clock += r.Int64N(20_000)
			}
			ts := clock - r.Int64N(4_000_000) + 50_000
			if r.IntN(3) == 0 {
				ts = clock - r.Int64N(400_000)
			}
			ev := Event{EntityID: entities[r.IntN(len(entities))], TimestampMs: ts}
			for range r.IntN(maxValues) {
				f := int32(1 + r.IntN(int(nFeatures)))
				if r.IntN(30) == 0 {
					f = int32(r.IntN(2)) * (nFeatures + 1) // 0 or one past the last: not registered
				}
				ev.Values = append(ev.Values, fv(f, value(max(1, min(f, nFeatures)))))
			}
			batch = append(batch, ev)
		}
		want := m.ingest(batch)
		got := ingest(t, e, batch...)
		if got != want {
			t.Fatalf("call %d: Ingest = %+v; model says %+v", call, got, want)
		}
		total.AcceptedEvents += got.AcceptedEvents
		total.DroppedTooOld += got.DroppedTooOld
		total.DroppedInvalid += got.DroppedInvalid
		total.RejectedValues += got.RejectedValues
		if now := e.clock.NowMs(); m.started && now != m.now {
			t.Fatalf("call %d: clock %d; model says %d", call, now, m.now)
		}
		if !m.started || r.IntN(3) != 0 {
			continue
		}

		queries++
		f := int32(1 + r.IntN(int(nFeatures)))
		ent := entities[r.IntN(6)]
		what := describe("call %d, entity %q, feature %d", call, ent, f)
		compareQuery(t, e, m, r.IntN(4), ent, f, what)
		if t.Failed() {
			t.FailNow()
		}
	}
}

// checkDriftAgainst compares a drift report with the exact windows: the
// windows' figures, the metrics within a tight tolerance, and the flags with
// the report's own metrics.
func checkDriftAgainst(t *testing.T, what string, r DriftReport, short, long *oracle) {
	t.Helper()
	checkAgainst(t, what+" short", r.Short, short, 4, 1e-9)
	checkAgainst(t, what+" long", r.Long, long, 4, 1e-9)
	var z, ratio, inverse float64
	if short.n > 0 && long.n > 0 {
		// Exact mean difference, then the float sigmas of the oracle.
		diff, _ := new(big.Rat).Sub(short.exactMean(), long.exactMean()).Float64()
		ws, wl := short.want(), long.want()
		z = math.Abs(diff) / max(wl.popStd, driftEps)
		ratio = ws.popStd / max(wl.popStd, driftEps)
		inverse = wl.popStd / max(ws.popStd, driftEps)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"z", r.MeanZScore, z}, {"ratio", r.VarianceRatio, ratio}, {"inverse", r.InverseVarianceRatio, inverse}} {
		if math.Abs(c.got-c.want) > 1e-9*(1+math.Abs(c.want)) {
			t.Errorf("%s: %s %v; want %v", what, c.name, c.got, c.want)
		}
	}
	insufficient := short.n == 0 || long.n == 0
	if r.InsufficientData != insufficient {
		t.Errorf("%s: insufficient %v; want %v", what, r.InsufficientData, insufficient)
	}
	mean := !insufficient && r.MeanZScore > DefaultMeanZThreshold
	vari := !insufficient && (r.VarianceRatio > DefaultVarianceRatioThreshold ||
		r.InverseVarianceRatio > DefaultVarianceRatioThreshold)
	if r.MeanShift != mean || r.VarianceShift != vari || r.Drifted != (mean || vari) {
		t.Errorf("%s: flags %+v disagree with the metrics", what, r)
	}
}

// compareQuery runs one kind of query (0: entity stats, 1: population stats,
// 2: entity drift against the baseline, 3: population drift) on the engine
// and compares it with the model.
func compareQuery(t *testing.T, e *Engine, m *model, kind int, ent string, f int32, what string) {
	t.Helper()
	ctx := context.Background()
	switch kind {
	case 0:
		checkAgainst(t, what+" short", stats(t, e, ent, f, Short), m.window(ent, f, 60, 0), 4, 1e-9)
		checkAgainst(t, what+" long", stats(t, e, ent, f, Long), m.window(ent, f, 720, 0), 4, 1e-9)
	case 1:
		checkAgainst(t, what+" population short", popStats(t, e, f, Short), m.window("", f, 60, 0), 4, 1e-9)
		checkAgainst(t, what+" population long", popStats(t, e, f, Long), m.window("", f, 720, 0), 4, 1e-9)
	case 2:
		rep, err := e.Drift(ctx, ent, f, DriftOptions{ExcludeShortFromLong: true})
		if err != nil {
			t.Fatal(err)
		}
		checkDriftAgainst(t, what+" drift", rep, m.window(ent, f, 60, 0), m.window(ent, f, 720, 60))
	case 3:
		rep, err := e.PopulationDrift(ctx, f, DriftOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkDriftAgainst(t, what+" population drift", rep, m.window("", f, 60, 0), m.window("", f, 720, 0))
	}
}

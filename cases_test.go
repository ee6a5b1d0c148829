package streamfeat

import (
	"context"
	"math"
	"testing"
)

// The cases below are faults reported against other rolling-statistics and
// drift systems, with answers computed exactly. Every event goes in through a
// call of its own, in order, on the event-time clock. When a case asks at a
// time later than its last event, an event of another entity and feature
// (entity "clock", feature 2) moves the clock there first.

type statsCheck struct {
	entity string
	window Window
	want   want
	tol    tolerance
}

type driftCheck struct {
	entity       string
	opts         DriftOptions
	short, long  want // count, mean and popStd are compared
	z, ratio     float64
	inverse      float64
	meanShift    bool
	varShift     bool
	insufficient bool
	tol          tolerance
}

type engineCase struct {
	name   string
	events []Event
	nowMs  int64 // 0: the newest event's time
	stats  []statsCheck
	drifts []driftCheck
}

var (
	nan  = math.NaN()
	pinf = math.Inf(1)
)

func engineCases() []engineCase {
	const identical = 1.5990505637277868
	return []engineCase{{
		name: "SF-01 identical values over merged buckets have variance exactly 0",
		events: []Event{
			ev("e1", t0, identical), ev("e1", t0+10_000, identical), ev("e1", t0+20_000, identical),
		},
		nowMs: t0 + 20_000,
		stats: []statsCheck{{"e1", Short, want{3, identical, 0, 0, 0}, exact}},
	}, {
		name: "SF-02 zeros left after a large value expires have variance exactly 0",
		events: []Event{
			ev("e1", t0, 1), ev("e1", t0+5_000, 1e-7), ev("e1", t0+9_000, 0),
			ev("e1", t0+100_000, 0), ev("e1", t0+200_000, 0), ev("e1", t0+300_000, 0),
			ev("e1", t0+310_000, 0),
		},
		nowMs: t0 + 310_000,
		stats: []statsCheck{{"e1", Short, want{4, 0, 0, 0, 0}, exact}},
	}, {
		name: "SF-03 offset 1e12 inside one bucket",
		events: []Event{
			ev("e1", t0, 1e12), ev("e1", t0+500, 1e12+1), ev("e1", t0+1_000, 1e12+2),
			ev("e1", t0+1_500, 1e12+3), ev("e1", t0+2_000, 1e12+4), ev("e1", t0+2_500, 1e12+5),
			ev("e1", t0+3_000, 1e12+6),
		},
		nowMs: t0 + 3_000,
		stats: []statsCheck{{"e1", Short, want{7, 1e12 + 3, 4, 4.666666666666667, 2}, 1e-12}},
	}, {
		name:   "SF-05 one value: sample variance undefined",
		events: []Event{ev("e1", t0, 42.5)},
		stats:  []statsCheck{{"e1", Short, want{1, 42.5, 0, 0, 0}, exact}},
		drifts: []driftCheck{{
			entity: "e1",
			short:  want{count: 1, mean: 42.5}, long: want{count: 1, mean: 42.5},
			tol: exact,
		}},
	}, {
		name: "SF-06 merge of buckets with unequal counts",
		events: []Event{
			ev("e1", t0, 0), ev("e1", t0+5_000, 4), ev("e1", t0+6_000, 4), ev("e1", t0+7_000, 4),
		},
		nowMs: t0 + 7_000,
		stats: []statsCheck{{"e1", Short, want{4, 3, 3, 4, 1.7320508075688772}, 1e-12}},
	}, {
		name: "SF-08 NaN and Inf rejected, expired bucket leaves no trace",
		events: []Event{
			ev("e1", t0, 5), ev("e1", t0+1_000, nan), ev("e1", t0+2_000, pinf),
			ev("e1", t0+3_000, 7), ev("e1", t0+400_000, 1), ev("e1", t0+410_000, 3),
		},
		nowMs: t0 + 410_000,
		stats: []statsCheck{
			{"e1", Short, want{2, 2, 1, 2, 1}, 1e-12},
			{"e1", Long, want{4, 4, 5, 6.666666666666667, 2.23606797749979}, 1e-12},
		},
	}, {
		name:   "SF-09 negative timestamps use floor division",
		events: []Event{ev("e1", -4_999, 30), ev("e1", -1, 10), ev("e1", 299_999, 20)},
		nowMs:  299_999,
		stats: []statsCheck{
			{"e1", Short, want{1, 20, 0, 0, 0}, 1e-12},
			{"e1", Long, want{3, 20, 66.66666666666667, 100, 8.16496580927726}, 1e-12},
		},
	}, {
		name: "SF-10 an event exactly W old is out, one at now is in",
		events: []Event{
			ev("e1", t0-3_300_000, 50), ev("e1", t0, 5), ev("e1", t0+5_000, 1),
			ev("e1", t0+300_000, 3),
		},
		nowMs: t0 + 300_000,
		stats: []statsCheck{
			{"e1", Short, want{2, 2, 1, 2, 1}, 1e-12},
			{"e1", Long, want{3, 3, 2.6666666666666665, 4, 1.632993161855452}, 1e-12},
		},
	}, {
		name: "SF-12 an idle entity's buckets expire at query time and on a jump",
		events: []Event{
			ev("e1", t0, 1), ev("e1", t0+5_000, 2), ev("e1", t0+10_000, 3), ev("e1", t0+15_000, 4),
			ev("e3", t0, 1), ev("e3", t0+5_000, 2), ev("e3", t0+10_000, 3), ev("e3", t0+15_000, 4),
			ev("e2", t0+330_000, 0), ev("e3", t0+330_000, 10),
		},
		nowMs: t0 + 330_000,
		stats: []statsCheck{
			{"e1", Short, want{}, exact},
			{"e1", Long, want{4, 2.5, 1.25, 1.6666666666666667, 1.118033988749895}, exact},
			{"e3", Short, want{1, 10, 0, 0, 0}, exact},
			{"e3", Long, want{5, 4, 10, 12.5, 3.1622776601683795}, exact},
		},
	}, {
		name: "SF-14 one value in the short window",
		events: []Event{
			ev("e1", t0, 9), ev("e1", t0+60_000, 11), ev("e1", t0+120_000, 9),
			ev("e1", t0+180_000, 11), ev("e1", t0+600_000, 10),
		},
		nowMs: t0 + 600_000,
		drifts: []driftCheck{{
			entity:  "e1",
			short:   want{count: 1, mean: 10},
			long:    want{count: 5, mean: 10, popStd: 0.8944271909999159},
			inverse: 894427190999.9159,
			// The formula as specified flags a variance drop.
			varShift: true,
			tol:      1e-12,
		}, {
			// With a minimum count the same figures raise no flag.
			entity:       "e1",
			opts:         DriftOptions{MinCount: 2},
			short:        want{count: 1, mean: 10},
			long:         want{count: 5, mean: 10, popStd: 0.8944271909999159},
			inverse:      894427190999.9159,
			insufficient: true,
			tol:          1e-12,
		}},
	}}
}

func TestCases(t *testing.T) {
	for _, c := range engineCases() {
		t.Run(c.name, func(t *testing.T) {
			e := newEventEngine(t, 2, Config{})
			runCase(t, e, c)
		})
	}
}

func runCase(t *testing.T, e *Engine, c engineCase) {
	last := int64(math.MinInt64)
	for _, x := range c.events {
		res := ingest(t, e, x)
		finite := !math.IsNaN(x.Values[0].Value) && !math.IsInf(x.Values[0].Value, 0)
		switch {
		case finite && res.AcceptedEvents != 1:
			t.Fatalf("Ingest(%+v) = %+v; want it accepted", x, res)
		case !finite && (res.DroppedInvalid != 1 || res.RejectedValues != 1):
			t.Fatalf("Ingest(%+v) = %+v; want the value rejected and the event dropped", x, res)
		}
		last = max(last, x.TimestampMs)
	}
	if c.nowMs != 0 && c.nowMs > last {
		ingestEach(t, e, Event{EntityID: "clock", TimestampMs: c.nowMs, Values: []FeatureValue{fv(2, 0)}})
	}
	wantNow := c.nowMs
	if wantNow == 0 {
		wantNow = last
	}
	if got := e.clock.NowMs(); got != wantNow {
		t.Fatalf("clock at %d; want %d", got, wantNow)
	}

	for _, q := range c.stats {
		s := stats(t, e, q.entity, 1, q.window)
		checkStats(t, describe("%s %v", q.entity, q.window), s, q.want, q.tol)
	}
	for _, d := range c.drifts {
		r, err := e.Drift(context.Background(), d.entity, 1, d.opts)
		if err != nil {
			t.Fatalf("Drift: %v", err)
		}
		checkDrift(t, r, d)
	}
}

func checkDrift(t *testing.T, r DriftReport, d driftCheck) {
	t.Helper()
	for _, w := range []struct {
		name string
		got  Stats
		want want
	}{{"short", r.Short, d.short}, {"long", r.Long, d.long}} {
		checkWellFormed(t, w.got)
		if w.got.Count != w.want.count || !near(w.got.Mean, w.want.mean, d.tol) ||
			!near(w.got.StdDev(), w.want.popStd, d.tol) {
			t.Errorf("drift %s window: %+v (std %v); want count %d, mean %v, std %v",
				w.name, w.got, w.got.StdDev(), w.want.count, w.want.mean, w.want.popStd)
		}
	}
	if !near(r.MeanZScore, d.z, d.tol) || !near(r.VarianceRatio, d.ratio, d.tol) ||
		!near(r.InverseVarianceRatio, d.inverse, d.tol) {
		t.Errorf("drift metrics z %v, ratio %v, inverse %v; want %v, %v, %v",
			r.MeanZScore, r.VarianceRatio, r.InverseVarianceRatio, d.z, d.ratio, d.inverse)
	}
	if r.MeanShift != d.meanShift || r.VarianceShift != d.varShift ||
		r.Drifted != (d.meanShift || d.varShift) || r.InsufficientData != d.insufficient {
		t.Errorf("drift flags %+v; want mean shift %v, variance shift %v, insufficient %v",
			r, d.meanShift, d.varShift, d.insufficient)
	}
}

// TestCaseLargeBatch is SF-15 in process: 300,000 events in one Ingest call
// are kept whole.
func TestCaseLargeBatch(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	events := make([]Event, 300_000)
	values := make([]FeatureValue, len(events))
	for i := range events {
		values[i] = fv(1, 1+2*float64(i%2))
		events[i] = Event{EntityID: "e1", TimestampMs: t0 + int64(i), Values: values[i : i+1]}
	}
	res := ingest(t, e, events...)
	if res.AcceptedEvents != 300_000 || res.AcceptedValues != 300_000 || res.DroppedEvents != 0 {
		t.Fatalf("Ingest = %+v; want all 300000 accepted", res)
	}
	s := stats(t, e, "e1", 1, Short)
	checkStats(t, "e1 short", s, want{300_000, 2, 1, 1.0000033333444445, 1}, 1e-9)
	checkStats(t, "population short", popStats(t, e, 1, Short),
		want{300_000, 2, 1, 1.0000033333444445, 1}, 1e-9)
}

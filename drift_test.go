package streamfeat

import (
	"context"
	"errors"
	"math"
	"testing"
)

func drifted(t *testing.T, e *Engine, entity string, opts DriftOptions) DriftReport {
	t.Helper()
	r, err := e.Drift(context.Background(), entity, 1, opts)
	if err != nil {
		t.Fatalf("Drift(%q, %+v): %v", entity, opts, err)
	}
	checkWellFormed(t, r.Short)
	checkWellFormed(t, r.Long)
	for _, x := range []float64{r.MeanZScore, r.VarianceRatio, r.InverseVarianceRatio} {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			t.Fatalf("drift metric %v in %+v", x, r)
		}
	}
	if r.Drifted != (r.MeanShift || r.VarianceShift) {
		t.Fatalf("Drifted %v with shifts %v, %v", r.Drifted, r.MeanShift, r.VarianceShift)
	}
	return r
}

func TestDriftEmptyWindows(t *testing.T) {
	e := newEventEngine(t, 2, Config{})
	// Unknown entity: both windows empty.
	r := drifted(t, e, "nobody", DriftOptions{})
	want := DriftReport{InsufficientData: true, MeanZThreshold: 3, VarianceRatioThreshold: 2}
	if r != want {
		t.Fatalf("drift of an unknown entity: %+v; want %+v", r, want)
	}
	// Short window empty, long one not: metrics 0, no flag.
	ingestEach(t, e, ev("e", t0, 1), ev("e", t0+5000, 100))
	ingestEach(t, e, Event{EntityID: "clock", TimestampMs: t0 + 600_000, Values: []FeatureValue{fv(2, 0)}})
	r = drifted(t, e, "e", DriftOptions{})
	if r.Short.Count != 0 || r.Long.Count != 2 || !r.InsufficientData || r.Drifted ||
		r.MeanZScore != 0 || r.VarianceRatio != 0 || r.InverseVarianceRatio != 0 {
		t.Fatalf("drift with an empty short window: %+v", r)
	}
	// With the short window excluded from the baseline, an entity whose
	// values are all recent has an empty baseline.
	ingestEach(t, e, ev("new", t0+600_000, 3), ev("new", t0+600_000, 5))
	r = drifted(t, e, "new", DriftOptions{ExcludeShortFromLong: true})
	if r.Short.Count != 2 || r.Long.Count != 0 || !r.InsufficientData || r.Drifted || r.MeanZScore != 0 {
		t.Fatalf("drift with an empty baseline: %+v", r)
	}
	// Population drift of a feature nobody sent.
	pr, err := e.PopulationDrift(context.Background(), 1, DriftOptions{})
	if err != nil || pr.Short.Count != 2 || pr.Long.Count != 4 || pr.InsufficientData {
		t.Fatalf("population drift: %+v, %v; want both windows filled", pr, err)
	}
}

func TestDriftZeroAndTinyVariance(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	// Constant values: both sigmas are 0, so every ratio is 0/eps = 0.
	for b := range 100 {
		ingestEach(t, e, ev("flat", t0+int64(b)*5000, 7.25))
	}
	r := drifted(t, e, "flat", DriftOptions{})
	if r.MeanZScore != 0 || r.VarianceRatio != 0 || r.InverseVarianceRatio != 0 || r.Drifted || r.InsufficientData {
		t.Fatalf("constant values: %+v; want no drift and metrics 0", r)
	}
	if r.Short.PopulationVariance != 0 || r.Long.PopulationVariance != 0 {
		t.Fatalf("constant values: variances %v, %v; want exactly 0", r.Short.PopulationVariance,
			r.Long.PopulationVariance)
	}

	// A constant baseline and a short window one value off: the z-score is
	// the difference over eps, a mean shift; the ratios stay 0.
	ingestEach(t, e, ev("flat", t0+100*5000, 7.5))
	r = drifted(t, e, "flat", DriftOptions{ExcludeShortFromLong: true})
	// The short window is buckets 41..100: 59 values of 7.25 and one 7.5.
	wantZ := (7.5 - 7.25) / 60 / 1e-12
	if r.Long.PopulationVariance != 0 || !near(r.MeanZScore, wantZ, 1e-12) || !r.MeanShift {
		t.Fatalf("shift against a flat baseline: %+v; want z %v and a mean shift", r, wantZ)
	}
	if r.VarianceRatio != r.Short.StdDev()/1e-12 || !r.VarianceShift {
		t.Fatalf("spread against a flat baseline: %+v; want ratio sigma_s/eps", r)
	}

	// Tiny spreads around a large value: 1e9 + k*1e-6, with a doubled
	// spread in the short window. Deviations this small still give the
	// exact ratio.
	var short, long oracle
	for b := range 720 {
		k := float64(b%4) - 1.5
		if b >= 660 {
			k *= 2
		}
		x := 1e9 + k*(1<<10)*0x1p-30 // steps of 2^-20, exact at 1e9's scale
		ingestEach(t, e, ev("tiny", t0+int64(b)*5000, x))
		long.add(x)
		if b >= 660 {
			short.add(x)
		}
	}
	r = drifted(t, e, "tiny", DriftOptions{})
	ws, wl := short.want(), long.want()
	checkStats(t, "tiny short", r.Short, ws, 1e-9)
	checkStats(t, "tiny long", r.Long, wl, 1e-9)
	if !near(r.VarianceRatio, ws.popStd/wl.popStd, 1e-9) {
		t.Fatalf("tiny ratio %v; want %v", r.VarianceRatio, ws.popStd/wl.popStd)
	}
	// sigma_s / sigma_l = sqrt(4 var_l,base ... ) is about 1.9: no flag at
	// the default threshold of 2, one at 1.5.
	if r.VarianceShift || !drifted(t, e, "tiny", DriftOptions{VarianceRatioThreshold: 1.5}).VarianceShift {
		t.Fatalf("tiny ratio %v: flags at thresholds 2 and 1.5 wrong", r.VarianceRatio)
	}
}

func TestDriftThresholdsAndMinCount(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	// Baseline: 0, 2, 0, 2 ... (mean 1, sigma 1) an hour ago; then 4 values
	// of 3.5 in the short window.
	for b := range 600 {
		ingestEach(t, e, ev("e", t0+int64(b)*5000, float64(2*(b%2))))
	}
	for i := range 4 {
		ingestEach(t, e, ev("e", t0+int64(700+i)*5000, 3.5))
	}
	base := DriftOptions{ExcludeShortFromLong: true}
	r := drifted(t, e, "e", base)
	if r.Long.Count != 600 || r.Short.Count != 4 || !near(r.MeanZScore, 2.5, 1e-12) {
		t.Fatalf("drift %+v; want z 2.5 against the baseline", r)
	}
	if r.MeanShift || r.MeanZThreshold != DefaultMeanZThreshold {
		t.Fatalf("z 2.5 flagged at the default threshold: %+v", r)
	}
	if !r.VarianceShift || !near(r.InverseVarianceRatio, 1e12, 1e-12) {
		t.Fatalf("constant short window against sigma 1: %+v; want inverse ratio 1e12 and a flag", r)
	}

	cases := []struct {
		opts                 DriftOptions
		mean, vari, insuffic bool
	}{
		{DriftOptions{MeanZThreshold: 2.4}, true, true, false},
		{DriftOptions{MeanZThreshold: 2.6}, false, true, false},
		{DriftOptions{MeanZThreshold: 2.4, VarianceRatioThreshold: 1e13}, true, false, false},
		{DriftOptions{MeanZThreshold: 2.4, MinCount: 4}, true, true, false},
		{DriftOptions{MeanZThreshold: 2.4, MinCount: 5}, false, false, true},
		{DriftOptions{MinCount: 601}, false, false, true},
	}
	for _, c := range cases {
		c.opts.ExcludeShortFromLong = true
		r := drifted(t, e, "e", c.opts)
		if r.MeanShift != c.mean || r.VarianceShift != c.vari || r.InsufficientData != c.insuffic {
			t.Errorf("options %+v: %+v; want mean %v, variance %v, insufficient %v",
				c.opts, r, c.mean, c.vari, c.insuffic)
		}
		if !near(r.MeanZScore, 2.5, 1e-12) {
			t.Errorf("options %+v: z %v; metrics must not depend on the options", c.opts, r.MeanZScore)
		}
		if c.opts.MeanZThreshold != 0 && r.MeanZThreshold != c.opts.MeanZThreshold {
			t.Errorf("options %+v: report shows threshold %v", c.opts, r.MeanZThreshold)
		}
	}

	// Without ExcludeShortFromLong the short values pull the long mean.
	r = drifted(t, e, "e", DriftOptions{})
	if r.Long.Count != 604 || r.MeanZScore >= 2.5 {
		t.Fatalf("drift against the whole long window: %+v", r)
	}
}

func TestDriftInvalidOptions(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	for _, o := range []DriftOptions{
		{MeanZThreshold: -1}, {MeanZThreshold: math.NaN()}, {MeanZThreshold: math.Inf(1)},
		{VarianceRatioThreshold: -0.5}, {VarianceRatioThreshold: math.NaN()},
		{VarianceRatioThreshold: math.Inf(1)}, {MinCount: -1}, {MeanZThreshold: math.Inf(-1)},
		{VarianceRatioThreshold: 0.5}, {VarianceRatioThreshold: math.Nextafter(1, 0)},
	} {
		if _, err := e.Drift(context.Background(), "e", 1, o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("Drift(%+v): %v; want ErrInvalidOption", o, err)
		}
		if _, err := e.PopulationDrift(context.Background(), 1, o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("PopulationDrift(%+v): %v; want ErrInvalidOption", o, err)
		}
	}
}

func TestPopulationDrift(t *testing.T) {
	e := newEventEngine(t, 1, Config{Shards: 4})
	// 40 entities around 10 for 50 minutes, then around 20 for 5 minutes.
	var short, base oracle
	for b := range 660 {
		for i := range 40 {
			x := 10 + float64((i+b)%5) - 2
			if b >= 600 {
				x += 10
			}
			ingestEach(t, e, ev("p"+string(rune('A'+i)), t0+int64(b)*5000, x))
			if b >= 600 {
				short.add(x)
			} else {
				base.add(x)
			}
		}
	}
	r, err := e.PopulationDrift(context.Background(), 1, DriftOptions{ExcludeShortFromLong: true})
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, "population short", r.Short, short.want(), 1e-12)
	checkStats(t, "population baseline", r.Long, base.want(), 1e-12)
	if !r.MeanShift || r.VarianceShift || !r.Drifted {
		t.Fatalf("population drift %+v; want a mean shift only", r)
	}
	// One entity alone drifts the same way.
	er := drifted(t, e, "pA", DriftOptions{ExcludeShortFromLong: true})
	if !er.MeanShift {
		t.Fatalf("entity drift %+v; want a mean shift", er)
	}
}

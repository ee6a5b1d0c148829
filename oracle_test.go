package streamfeat

import (
	"context"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// oracle keeps the exact sum and sum of squares of the exact binary values
// of float64 inputs, so count, mean and M2 follow without any rounding:
// M2 = S2 - S1²/n. Each figure is rounded to float64 once, at the end.
type oracle struct {
	n       int64
	s1, s2  big.Rat
	scratch big.Rat
}

func (o *oracle) add(x float64) {
	o.n++
	o.scratch.SetFloat64(x)
	o.s1.Add(&o.s1, &o.scratch)
	o.scratch.Mul(&o.scratch, &o.scratch)
	o.s2.Add(&o.s2, &o.scratch)
}

func (o *oracle) merge(p *oracle) {
	o.n += p.n
	o.s1.Add(&o.s1, &p.s1)
	o.s2.Add(&o.s2, &p.s2)
}

// exactMean returns the exact mean; n must be positive.
func (o *oracle) exactMean() *big.Rat {
	return new(big.Rat).Quo(&o.s1, new(big.Rat).SetInt64(o.n))
}

// exactM2 returns the exact sum of squared deviations from the mean.
func (o *oracle) exactM2() *big.Rat {
	m2 := new(big.Rat).Mul(&o.s1, &o.s1)
	m2.Quo(m2, new(big.Rat).SetInt64(o.n))
	return m2.Sub(&o.s2, m2)
}

// want rounds the exact figures once to float64.
func (o *oracle) want() want {
	if o.n == 0 {
		return want{}
	}
	m2 := o.exactM2()
	mean, _ := o.exactMean().Float64()
	pop, _ := new(big.Rat).Quo(m2, new(big.Rat).SetInt64(o.n)).Float64()
	w := want{count: o.n, mean: mean, popVar: pop, popStd: math.Sqrt(pop)}
	if o.n > 1 {
		w.sampleVar, _ = new(big.Rat).Quo(m2, new(big.Rat).SetInt64(o.n-1)).Float64()
	}
	return w
}

// checkAgainst compares s with the oracle: the count exactly, the mean
// within meanUlps of the exact mean, and both variances within relVar.
func checkAgainst(t testing.TB, what string, s Stats, o *oracle, meanUlps uint64, relVar float64) {
	t.Helper()
	checkWellFormed(t, s)
	w := o.want()
	if s.Count != w.count {
		t.Errorf("%s: count %d; want %d", what, s.Count, w.count)
		return
	}
	if w.count == 0 {
		return
	}
	// The mean may be meanUlps ulps off, plus 1e-13 σ. For data like
	// 1e12 + N(0, 1) the second term is far below one ulp of the mean, so
	// the mean must be within a few ulps; for data centred near 0, where a
	// running mean's rounding grows with the square root of the count, the
	// second term dominates.
	if d := math.Abs(s.Mean - w.mean); d > float64(meanUlps)*ulp(math.Abs(w.mean))+1e-13*w.popStd {
		t.Errorf("%s: mean %v is %d ulps from the exact %v (σ %v)", what, s.Mean,
			ulpDiff(s.Mean, w.mean), w.mean, w.popStd)
	}
	if !nearVariance(s.PopulationVariance, w.popVar, relVar) {
		t.Errorf("%s: population variance %v; want %v (relative error %.3g)", what,
			s.PopulationVariance, w.popVar, relErr(s.PopulationVariance, w.popVar))
	}
	if !nearVariance(s.SampleVariance, w.sampleVar, relVar) {
		t.Errorf("%s: sample variance %v; want %v (relative error %.3g)", what,
			s.SampleVariance, w.sampleVar, relErr(s.SampleVariance, w.sampleVar))
	}
}

// nearVariance reports whether a variance is within relVar of the exact
// one, or a few subnormal steps from it. Below the normal range floats are
// spaced a fixed 2^-1074 apart, so a variance there has no relative
// precision to speak of: the fuzzer found a window whose exact variance,
// 3 × 2^-1074, computes as 2 × 2^-1074
// (testdata/fuzz/FuzzEngineDifferential/16a25436daad0b59).
func nearVariance(got, want, relVar float64) bool {
	return near(got, want, tolerance(relVar)) || math.Abs(got-want) <= 4*math.SmallestNonzeroFloat64
}

// ulp returns the gap between x >= 0 and the next float64 above it.
func ulp(x float64) float64 { return math.Nextafter(x, math.Inf(1)) - x }

func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}

// distribution draws test values.
type distribution struct {
	name         string
	offset, sdev float64
}

var hardDistributions = []distribution{
	{"1e12+N(0,1)", 1e12, 1},
	{"1e9+N(0,1e-3)", 1e9, 1e-3},
	{"-1e12+N(0,1)", -1e12, 1},
	{"1e6+N(0,1e-6)", 1e6, 1e-6},
	{"N(0,1)", 0, 1},
	{"3+N(0,1e3)", 3, 1e3},
}

func (d distribution) draw(r *rand.Rand) float64 { return d.offset + d.sdev*r.NormFloat64() }

// TestOracleSelfCheck makes sure the oracle itself is right on a few sets
// worked out by hand.
func TestOracleSelfCheck(t *testing.T) {
	var o oracle
	for _, x := range []float64{1e12, 1e12 + 1, 1e12 + 2, 1e12 + 3, 1e12 + 4, 1e12 + 5, 1e12 + 6} {
		o.add(x)
	}
	if got := o.exactM2(); got.Cmp(big.NewRat(28, 1)) != 0 {
		t.Fatalf("oracle M2 = %v; want 28", got)
	}
	if got := o.exactMean(); got.Cmp(new(big.Rat).SetFloat64(1e12+3)) != 0 {
		t.Fatalf("oracle mean = %v; want 1e12+3", got)
	}
	w := o.want()
	if w.popVar != 4 || w.sampleVar != 28.0/6 {
		t.Fatalf("oracle figures %+v; want variance 4 and 14/3", w)
	}
}

// TestMergeEquivalence splits values into buckets at random, merges the
// buckets in random groupings and orders, and checks every result against
// the exact oracle, as well as one pass over all the values in one bucket.
func TestMergeEquivalence(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range hardDistributions {
		for trial := range 20 {
			n := 1 + r.IntN(400)
			values := make([]float64, n)
			var o oracle
			for i := range values {
				values[i] = d.draw(r)
				o.add(values[i])
			}

			var one bucket
			for _, x := range values {
				one.observe(x)
			}
			var onePass moments
			onePass.merge(int64(one.n), one.shift, one.mean, one.m2)
			what := describe("%s trial %d one pass", d.name, trial)
			checkAgainst(t, what, onePass.stats(), &o, 2, 1e-10)

			buckets := splitIntoBuckets(r, values)
			for grouping := range 5 {
				m := mergeRandomly(r, buckets)
				what := describe("%s trial %d grouping %d (%d buckets)", d.name, trial, grouping, len(buckets))
				checkAgainst(t, what, m.stats(), &o, 2, 1e-10)
			}
		}
	}
}

// splitIntoBuckets cuts values into consecutive runs of random length, each
// observed into a bucket.
func splitIntoBuckets(r *rand.Rand, values []float64) []bucket {
	var out []bucket
	for len(values) > 0 {
		k := 1 + r.IntN(min(len(values), 1+r.IntN(40)))
		var b bucket
		for _, x := range values[:k] {
			b.observe(x)
		}
		out = append(out, b)
		values = values[k:]
	}
	return out
}

// mergeRandomly merges buckets as a random tree: shuffle, cut into groups,
// merge each group, then merge the groups' results in turn.
func mergeRandomly(r *rand.Rand, buckets []bucket) moments {
	parts := make([]moments, len(buckets))
	for i, b := range buckets {
		parts[i].merge(int64(b.n), b.shift, b.mean, b.m2)
	}
	for len(parts) > 1 {
		r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		var next []moments
		for len(parts) > 0 {
			k := 1 + r.IntN(min(len(parts), 4))
			var m moments
			for _, p := range parts[:k] {
				m.add(p)
			}
			next = append(next, m)
			parts = parts[k:]
		}
		parts = next
	}
	return parts[0]
}

// TestNumericsThroughEngine feeds values with large offsets, spread over the
// whole long window in random order, through the engine and checks every
// merge path against the oracle: entity short and long windows, population
// windows, and the drift baselines that leave the short window out.
func TestNumericsThroughEngine(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dists := hardDistributions
	nf := len(dists)
	clockFeature := int32(nf + 1)
	e := newEventEngine(t, nf+1, Config{Shards: 4})

	// Fix now first, so every later event is inside the long window.
	end := t0 + 719*5000 + 4999
	nowB := end / 5000
	ingestEach(t, e, Event{EntityID: "clock", TimestampMs: end, Values: []FeatureValue{fv(clockFeature, 0)}})

	entities := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	type key struct {
		entity  string
		feature int
	}
	// Per window: 0 short, 1 baseline (long without short).
	ents := map[key]*[2]oracle{}
	pop := make([][2]oracle, nf)
	for _, ent := range entities {
		for f := range nf {
			ents[key{ent, f}] = new([2]oracle)
		}
	}

	perEntity := 1500
	if testing.Short() {
		perEntity = 300
	}
	var batch []Event
	for range perEntity * len(entities) {
		ent := entities[r.IntN(len(entities))]
		ts := t0 + r.Int64N(end-t0+1)
		w := 1
		if ts/5000 > nowB-60 {
			w = 0
		}
		x := Event{EntityID: ent, TimestampMs: ts}
		for f, d := range dists {
			v := d.draw(r)
			x.Values = append(x.Values, fv(int32(f+1), v))
			ents[key{ent, f}][w].add(v)
			pop[f][w].add(v)
		}
		batch = append(batch, x)
		if len(batch) == 64 {
			if res := ingest(t, e, batch...); res.AcceptedEvents != int64(len(batch)) {
				t.Fatalf("Ingest = %+v; want all %d accepted", res, len(batch))
			}
			batch = batch[:0]
		}
	}
	ingest(t, e, batch...)

	const relVar, meanUlps = 1e-9, 4
	ctx := context.Background()
	excl := DriftOptions{ExcludeShortFromLong: true}
	for f, d := range dists {
		id := int32(f + 1)
		for _, ent := range entities {
			o := ents[key{ent, f}]
			var long oracle
			long.merge(&o[0])
			long.merge(&o[1])
			what := describe("%s entity %s", d.name, ent)
			checkAgainst(t, what+" short", stats(t, e, ent, id, Short), &o[0], meanUlps, relVar)
			checkAgainst(t, what+" long", stats(t, e, ent, id, Long), &long, meanUlps, relVar)
			rep, err := e.Drift(ctx, ent, id, excl)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainst(t, what+" drift short", rep.Short, &o[0], meanUlps, relVar)
			checkAgainst(t, what+" drift baseline", rep.Long, &o[1], meanUlps, relVar)
		}

		var long oracle
		long.merge(&pop[f][0])
		long.merge(&pop[f][1])
		what := describe("%s population", d.name)
		checkAgainst(t, what+" short", popStats(t, e, id, Short), &pop[f][0], meanUlps, relVar)
		checkAgainst(t, what+" long", popStats(t, e, id, Long), &long, meanUlps, relVar)
		rep, err := e.PopulationDrift(ctx, id, excl)
		if err != nil {
			t.Fatal(err)
		}
		checkAgainst(t, what+" drift baseline", rep.Long, &pop[f][1], meanUlps, relVar)
		rep, err = e.PopulationDrift(ctx, id, DriftOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkAgainst(t, what+" drift long", rep.Long, &long, meanUlps, relVar)
	}
}

package streamfeat

import (
	"context"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

// onOwner runs fn on the goroutine that owns entity's shard, so a test may
// look at shard state without a data race.
func onOwner(t testing.TB, e *Engine, entity string, fn func(s *shard)) {
	t.Helper()
	run := func(s *shard) windowSet { fn(s); return windowSet{} }
	if _, err := e.onShards(context.Background(), []int{e.shardOf(entity)}, run); err != nil {
		t.Fatalf("onShards: %v", err)
	}
}

// seriesState returns the ring class and row count of the group that holds
// entity's feature f, and whether the entity is known.
func seriesState(t testing.TB, e *Engine, entity string, f int32) (class, n int, known bool) {
	t.Helper()
	class = -1
	onOwner(t, e, entity, func(s *shard) {
		idx, ok := s.index.Get(entity)
		if !ok {
			return
		}
		known = true
		if g, _ := s.columnOf(&s.entities[idx], 0, f); g != nil {
			n = int(g.n)
			if g.block != 0 {
				class = int(g.class)
			}
		}
	})
	return class, n, known
}

func TestBucketOfIsFloorDivision(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	edges := []int64{0, 1, -1, 4999, 5000, 5001, -4999, -5000, -5001, math.MaxInt64, math.MinInt64,
		math.MinInt64 + 1, math.MaxInt64 - 1, t0, -t0}
	for _, width := range []int64{1, 2, 7, 1000, 5000, 86_400_000} {
		g := geometry{widthMs: width}
		check := func(ts int64) {
			q, m := new(big.Int), new(big.Int)
			q.DivMod(big.NewInt(ts), big.NewInt(width), m) // Euclidean: floor for width > 0
			if got := g.bucketOf(ts); got != q.Int64() {
				t.Fatalf("bucketOf(%d) with width %d = %d; want %d", ts, width, got, q.Int64())
			}
		}
		for _, ts := range edges {
			check(ts)
		}
		for range 2000 {
			check(int64(r.Uint64()))
			check(r.Int64N(1_000_000) - 500_000)
		}
	}
}

// oracleOf returns the exact figures of values.
func oracleOf(values ...float64) want {
	var o oracle
	for _, x := range values {
		o.add(x)
	}
	return o.want()
}

// TestWindowEdges checks the first and last millisecond of each window.
func TestWindowEdges(t *testing.T) {
	e := newEventEngine(t, 2, Config{})
	now := t0 + 123_456 // inside bucket b0+24
	nowB := now / 5000
	shortStart := (nowB - 59) * 5000
	longStart := (nowB - 719) * 5000
	ingestEach(t, e, Event{EntityID: "clock", TimestampMs: now, Values: []FeatureValue{fv(2, 0)}})

	ingestEach(t, e,
		ev("e", now, 1),          // at now: in both windows
		ev("e", shortStart, 2),   // first ms of the short window
		ev("e", shortStart-1, 4), // last ms before it: long only
		ev("e", longStart, 8),    // first ms of the long window
		// Less than 5 minutes old, but in the bucket before the short
		// window: windows are made of whole buckets.
		ev("e", now-300_000+1, 16),
	)
	res := ingest(t, e, ev("e", longStart-1, 32))
	if res.DroppedTooOld != 1 || res.DroppedEvents != 1 || res.AcceptedEvents != 0 {
		t.Fatalf("event one ms before the long window: %+v; want dropped as too old", res)
	}
	checkStats(t, "short", stats(t, e, "e", 1, Short), oracleOf(1, 2), exact)
	checkStats(t, "long", stats(t, e, "e", 1, Long), oracleOf(1, 2, 4, 8, 16), 1e-15)
}

// TestNegativeTimestamps spreads events around zero and checks which window
// each lands in.
func TestNegativeTimestamps(t *testing.T) {
	e := newEventEngine(t, 1, Config{BucketWidth: time.Second, ShortBuckets: 2, LongBuckets: 4,
		EntityTTL: time.Minute})
	// With 1 s buckets: -3000 is in bucket -3, -1001 in -2, -1000 and -1 in
	// -1. Truncating division would put -1000 and -1 in bucket 0.
	ingestEach(t, e, ev("e", -3000, 8), ev("e", -1001, 4), ev("e", -1000, 2), ev("e", -1, 1))
	checkStats(t, "short at -1", stats(t, e, "e", 1, Short), oracleOf(4, 2, 1), 1e-15)
	checkStats(t, "long at -1", stats(t, e, "e", 1, Long), oracleOf(8, 4, 2, 1), 1e-15)

	ingestEach(t, e, ev("e", 0, 16))
	checkStats(t, "short at 0", stats(t, e, "e", 1, Short), oracleOf(2, 1, 16), 1e-15)
	checkStats(t, "long at 0", stats(t, e, "e", 1, Long), oracleOf(8, 4, 2, 1, 16), 1e-15)

	// An event older than the long window at now = 0 (bucket -4).
	if res := ingest(t, e, ev("e", -3001, 64)); res.DroppedTooOld != 1 {
		t.Fatalf("ts -3001 at now 0: %+v; want too old", res)
	}
}

// TestGapLongerThanWindow lets the clock jump past the whole long window.
func TestGapLongerThanWindow(t *testing.T) {
	e := newEventEngine(t, 2, Config{})
	ingestEach(t, e, ev("e", t0, 1), ev("e", t0+5_000, 2), ev("e", t0+10_000, 3))
	jump := t0 + 10_000 + 720*5000 // e's newest bucket is now one past the long window
	ingestEach(t, e, Event{EntityID: "clock", TimestampMs: jump, Values: []FeatureValue{fv(2, 0)}})
	for _, w := range []Window{Short, Long} {
		checkStats(t, "after the gap "+w.String(), stats(t, e, "e", 1, w), want{}, exact)
	}
	checkStats(t, "population after the gap", popStats(t, e, 1, Long), want{}, exact)

	ingestEach(t, e, ev("e", jump, 7))
	checkStats(t, "new value after the gap", stats(t, e, "e", 1, Long), want{1, 7, 0, 0, 0}, exact)
	checkStats(t, "population after the gap", popStats(t, e, 1, Long), want{1, 7, 0, 0, 0}, exact)

	// A jump of exactly 2^32 buckets: the ring's 32-bit bucket ids of the old
	// and new buckets are equal, yet they must not be merged.
	far := jump + (1<<32)*5000
	ingestEach(t, e, ev("e", far, 9))
	checkStats(t, "after a 2^32-bucket jump", stats(t, e, "e", 1, Long), want{1, 9, 0, 0, 0}, exact)
	checkStats(t, "population after a 2^32-bucket jump", popStats(t, e, 1, Long), want{1, 9, 0, 0, 0}, exact)
}

// TestRingWrapsManyTimes writes one value per bucket for ten long windows
// and checks both windows against the exact figures along the way.
func TestRingWrapsManyTimes(t *testing.T) {
	e := newEventEngine(t, 1, Config{Shards: 2})
	r := rand.New(rand.NewPCG(7, 8))
	const buckets = 10 * 720
	values := make([]float64, buckets)
	for b := range buckets {
		values[b] = 1e9 + r.NormFloat64()
		// Two values per bucket for some, at random offsets within it.
		x := ev("e", t0+int64(b)*5000+r.Int64N(5000), values[b])
		ingestEach(t, e, x)
		if b%997 == 0 || b == buckets-1 {
			lo := max(0, b-59)
			checkStats(t, describe("short at bucket %d", b), stats(t, e, "e", 1, Short),
				oracleOf(values[lo:b+1]...), 1e-9)
			lo = max(0, b-719)
			checkStats(t, describe("long at bucket %d", b), stats(t, e, "e", 1, Long),
				oracleOf(values[lo:b+1]...), 1e-9)
			checkStats(t, describe("population long at bucket %d", b), popStats(t, e, 1, Long),
				oracleOf(values[lo:b+1]...), 1e-9)
		}
	}
	class, n, _ := seriesState(t, e, "e", 1)
	if n > 720 {
		t.Fatalf("ring holds %d records; want at most 720", n)
	}
	t.Logf("ring class %d, %d records", class, n)
}

// TestTooOldNeverAliases sends events whose bucket would share a ring slot
// with the current bucket (1024 buckets back in the population ring, 2^32 in
// the entity ring's 32-bit ids); they are too old and must leave no trace.
func TestTooOldNeverAliases(t *testing.T) {
	e := newEventEngine(t, 1, Config{})
	now := t0 + 2_000
	ingestEach(t, e, ev("e", now, 5))
	for _, back := range []int64{720, 1024, 2048, 1 << 32} {
		res := ingest(t, e, ev("e", now-back*5000, 1000))
		if res.DroppedTooOld != 1 || res.AcceptedEvents != 0 {
			t.Fatalf("event %d buckets back: %+v; want dropped as too old", back, res)
		}
	}
	for _, w := range []Window{Short, Long} {
		checkStats(t, "entity "+w.String(), stats(t, e, "e", 1, w), want{1, 5, 0, 0, 0}, exact)
		checkStats(t, "population "+w.String(), popStats(t, e, 1, w), want{1, 5, 0, 0, 0}, exact)
	}
}

// testShard builds a shard that no goroutine runs, for tests that apply
// messages by hand.
func testShard(t *testing.T) *shard {
	t.Helper()
	return testShardWith(t, Config{Clock: NewEventClock(), MaxFeatures: 4})
}

// testShardWith is testShard for the configuration cfg.
func testShardWith(t *testing.T, cfg Config) *shard {
	t.Helper()
	cfg = cfg.withDefaults()
	geo, err := cfg.validate()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newShard(0, geo, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// applyOne applies a message of one event whose producer saw the clock at
// nowMs.
func applyOne(s *shard, entity string, ts, nowMs int64, x float64) {
	m := &message{values: []FeatureValue{fv(1, x)}, nowMs: nowMs}
	m.events = []queued{{entity: entity, ts: ts, first: 0, n: 1}}
	s.apply(m)
	s.appliedNow = max(s.appliedNow, m.nowMs)
}

// TestStaleEventAtApply covers events that were accepted against the clock
// their producer read, but that reach the shard after another producer's
// newer events: they must never push a live bucket out of a ring, nor land
// in a slot that aliases one.
func TestStaleEventAtApply(t *testing.T) {
	t.Run("within one call", func(t *testing.T) {
		s := testShard(t)
		// A call accepted an event and then one a window and more later.
		m := &message{values: []FeatureValue{fv(1, 99), fv(1, 1)}, nowMs: t0}
		m.events = []queued{{entity: "e", ts: t0 - 1024*5000, first: 0, n: 1}, {entity: "e", ts: t0, first: 1, n: 1}}
		s.apply(m)
		if got := s.published.expiredLate.Load(); got != 1 {
			t.Fatalf("expired in queue = %d; want 1", got)
		}
		checkStats(t, "entity", s.entityWindows("e", 1, t0).long.stats(), want{1, 1, 0, 0, 0}, exact)
		checkStats(t, "population", s.popWindows(1, t0).long.stats(), want{1, 1, 0, 0, 0}, exact)
	})
	t.Run("behind a newer producer", func(t *testing.T) {
		s := testShard(t)
		// Producer B fills every bucket of the long window ending an hour
		// after t0; producer A, which read the clock at t0, is applied after
		// it with an event 708 buckets before t0, inside A's window.
		end := t0 + 720*5000
		for b := int64(1); b <= 720; b++ {
			applyOne(s, "e", t0+b*5000, t0+b*5000, 1)
		}
		applyOne(s, "e", t0-708*5000, t0, 1000)
		applyOne(s, "other", t0-1024*5000+720*5000, t0, 1000) // aliases the newest population slot
		checkStats(t, "entity", s.entityWindows("e", 1, end).long.stats(), want{720, 1, 0, 0, 0}, exact)
		checkStats(t, "population", s.popWindows(1, end).long.stats(), want{720, 1, 0, 0, 0}, exact)
	})
}

// TestOutOfOrderWithinWindow writes buckets newest first and revisits older
// buckets after newer ones.
func TestOutOfOrderWithinWindow(t *testing.T) {
	e := newEventEngine(t, 1, Config{BucketWidth: time.Second, ShortBuckets: 3, LongBuckets: 8,
		EntityTTL: time.Minute})
	base := int64(1_000_000)
	order := []struct {
		b int64
		x float64
	}{{7, 1}, {5, 2}, {7, 3}, {1, 4}, {5, 5}, {0, 6}, {3, 7}, {6, 8}, {1, 9}, {2, 10}, {4, 11}, {0, 12}}
	byBucket := map[int64][]float64{}
	for i, o := range order {
		ingestEach(t, e, ev("e", base+o.b*1000+int64(i), o.x))
		byBucket[o.b] = append(byBucket[o.b], o.x)
	}
	var short, long []float64
	for b := int64(0); b <= 7; b++ {
		long = append(long, byBucket[b]...)
		if b >= 5 {
			short = append(short, byBucket[b]...)
		}
	}
	checkStats(t, "short", stats(t, e, "e", 1, Short), oracleOf(short...), 1e-14)
	checkStats(t, "long", stats(t, e, "e", 1, Long), oracleOf(long...), 1e-14)
	if _, n, _ := seriesState(t, e, "e", 1); n != 8 {
		t.Fatalf("ring holds %d records; want 8, one per bucket", n)
	}

	// Move on by one bucket: bucket 0 leaves the long window.
	ingestEach(t, e, ev("e", base+8*1000, 13))
	long = append(long[len(byBucket[0]):], 13)
	checkStats(t, "long after a step", stats(t, e, "e", 1, Long), oracleOf(long...), 1e-14)
}

// TestRingGrowsAndShrinks fills a ring bucket by bucket, watching it move
// up the size classes, then lets most of it expire and checks that a sweep
// trims it into a smaller block without changing any answer.
func TestRingGrowsAndShrinks(t *testing.T) {
	// A TTL of one hour sweeps every 90 buckets of engine time.
	e := newEventEngine(t, 2, Config{Shards: 1, EntityTTL: time.Hour})
	prevClass := -1
	var values []float64
	for b := range 300 {
		x := float64(b % 7)
		values = append(values, x)
		ingestEach(t, e, ev("e", t0+int64(b)*5000, x))
		class, n, _ := seriesState(t, e, "e", 1)
		if n != b+1 {
			t.Fatalf("after %d buckets the ring holds %d records", b+1, n)
		}
		if class < prevClass {
			t.Fatalf("ring class went from %d to %d while growing", prevClass, class)
		}
		prevClass = class
	}
	grown, _, _ := seriesState(t, e, "e", 1)
	if grown < 5 {
		t.Fatalf("ring class %d after 300 buckets; want it to have grown", grown)
	}

	// Another entity moves the clock on, bucket by bucket, until a sweep
	// runs when at most 120 of e's buckets are left in the long window.
	lastB := t0/5000 + 299
	sweeps := e.Metrics().Shards[0].Sweeps
	for k := int64(600); ; k++ {
		if k == 720 {
			t.Fatal("no sweep ran in 120 buckets of engine time")
		}
		ingestEach(t, e, Event{EntityID: "other", TimestampMs: (lastB + k) * 5000,
			Values: []FeatureValue{fv(2, 1)}})
		class, n, _ := seriesState(t, e, "e", 1) // also waits for the batch
		if e.Metrics().Shards[0].Sweeps == sweeps {
			continue
		}
		left := int(720 - k)
		if n != left || class >= grown {
			t.Fatalf("after a sweep %d buckets on, the ring is class %d with %d records; "+
				"want %d records in a class below %d", k, class, n, left, grown)
		}
		checkStats(t, "long after shrink", stats(t, e, "e", 1, Long), oracleOf(values[300-left:]...), 1e-14)
		checkStats(t, "short after shrink", stats(t, e, "e", 1, Short), want{}, exact)
		break
	}
}

// TestInt64Extremes sends events stamped at the ends of int64, on both
// clocks and with the narrowest buckets: nothing may panic, and the answers
// must follow the window rules.
func TestInt64Extremes(t *testing.T) {
	for _, width := range []time.Duration{time.Millisecond, 5 * time.Second} {
		t.Run("event clock/"+width.String(), func(t *testing.T) {
			e := newEventEngine(t, 1, Config{BucketWidth: width})
			res := ingest(t, e, ev("e", math.MinInt64, 1))
			if res.AcceptedEvents != 1 {
				t.Fatalf("first event at MinInt64: %+v; want accepted", res)
			}
			checkStats(t, "at MinInt64", stats(t, e, "e", 1, Long), want{1, 1, 0, 0, 0}, exact)
			checkStats(t, "population at MinInt64", popStats(t, e, 1, Long), want{1, 1, 0, 0, 0}, exact)

			ingestEach(t, e, ev("e", math.MaxInt64, 2))
			checkStats(t, "at MaxInt64", stats(t, e, "e", 1, Long), want{1, 2, 0, 0, 0}, exact)
			checkStats(t, "population at MaxInt64", popStats(t, e, 1, Long), want{1, 2, 0, 0, 0}, exact)
			if res := ingest(t, e, ev("e", math.MinInt64, 3)); res.DroppedTooOld != 1 {
				t.Fatalf("MinInt64 after MaxInt64: %+v; want too old", res)
			}
			ingestEach(t, e, ev("e", math.MaxInt64-1, 4))
			checkStats(t, "two at the top", stats(t, e, "e", 1, Short), oracleOf(2, 4), exact)
		})
	}
	t.Run("event clock/1ms/first event", func(t *testing.T) {
		// Before its first event the event clock reads MinInt64; with 1 ms
		// buckets that is bucket MinInt64, the bottom of the range.
		e := newEventEngine(t, 1, Config{BucketWidth: time.Millisecond})
		ingestEach(t, e, ev("e", t0, 1))
		checkStats(t, "first event", stats(t, e, "e", 1, Short), want{1, 1, 0, 0, 0}, exact)
	})
	t.Run("manual clock", func(t *testing.T) {
		for _, now := range []int64{math.MinInt64, math.MaxInt64} {
			clock := NewManualClock(now)
			e := newEngine(t, Config{Clock: clock, BucketWidth: time.Millisecond, MaxFutureSkew: time.Second})
			registerN(t, e, 1)
			ingestEach(t, e, ev("e", now, 1))
			checkStats(t, "entity", stats(t, e, "e", 1, Short), want{1, 1, 0, 0, 0}, exact)
			checkStats(t, "population", popStats(t, e, 1, Short), want{1, 1, 0, 0, 0}, exact)
			if now == math.MinInt64 {
				if res := ingest(t, e, ev("e", 1000, 1)); res.DroppedTooNew != 1 {
					t.Fatalf("far future at MinInt64: %+v; want too new", res)
				}
			} else if res := ingest(t, e, ev("e", -1, 1)); res.DroppedTooOld != 1 {
				t.Fatalf("far past at MaxInt64: %+v; want too old", res)
			}
		}
	})
}

// TestLanesAdversarial merges buckets the way a query does, in lanes, on
// data chosen to make merging lose precision: a lane's first bucket far out
// in the tail of 200,000 values, offsets of 1e12 with a spread of 1e-3, a
// jump of 2e12 and identical values, and checks the result against the
// exact oracle.
func TestLanesAdversarial(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	cases := []struct {
		name    string
		buckets int
		value   func(b, i int) float64
		per     int
	}{
		{"reference 1000 sigma out", 720, func(b, i int) float64 {
			if b == 0 {
				return 1e9 + 1e3
			}
			return 1e9 + r.NormFloat64()
		}, 300},
		{"offset 1e12, spread 1e-3", 720, func(b, i int) float64 { return 1e12 + 1e-3*r.NormFloat64() }, 50},
		{"jump of 1e12 mid-window", 720, func(b, i int) float64 {
			if b < 360 {
				return -1e12 + r.NormFloat64()
			}
			return 1e12 + r.NormFloat64()
		}, 20},
		{"identical", 720, func(b, i int) float64 { return 0.1 }, 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var l lanes
			var all []float64
			for b := range c.buckets {
				n := c.per
				if b == 0 {
					n = 1
				}
				bk := bucket{id: uint32(b)}
				for i := range n {
					x := c.value(b, i)
					bk.observe(x)
					all = append(all, x)
				}
				l[b%len(l)].merge(int64(bk.n), bk.shift, bk.mean, bk.m2)
			}
			tol := tolerance(1e-9)
			if c.name == "identical" {
				tol = exact
			}
			checkStats(t, c.name, l.sum().stats(), oracleOf(all...), tol)
		})
	}
}

// TestLongWindowPrecisionWithOutlier puts about a million N(0, 1) values in
// one query lane (every fourth bucket of the baseline) and, in the lane's
// newest bucket, one value 1000 standard deviations out, through the engine,
// and holds the long window's variance to the exact oracle's within 1e-9,
// for the entity and the population.
func TestLongWindowPrecisionWithOutlier(t *testing.T) {
	if raceEnabled {
		t.Skip("a million values through the engine: the run without -race checks this")
	}
	e := newEventEngine(t, 2, Config{Shards: 1})
	r := rand.New(rand.NewPCG(5, 1))
	o := new(oracle)
	base := t0/5000 + 4 - (t0/5000)%4 // every fourth bucket from here: one lane
	batch := make([]Event, 6100)
	for j := range int64(164) {
		for i := range batch {
			x := r.NormFloat64()
			batch[i] = Event{EntityID: "e", TimestampMs: (base + 4*j) * 5000, Values: []FeatureValue{fv(1, x)}}
			o.add(x)
		}
		ingest(t, e, batch...)
	}
	const outlier = 14124.140511973656
	ingest(t, e, Event{EntityID: "e", TimestampMs: (base + 656) * 5000, Values: []FeatureValue{fv(1, outlier)}})
	o.add(outlier)
	// Another entity moves the clock to the end of the long window.
	ingest(t, e, Event{EntityID: "z", TimestampMs: (base + 716) * 5000, Values: []FeatureValue{fv(2, 0)}})

	w := o.want()
	for name, s := range map[string]Stats{"entity": stats(t, e, "e", 1, Long), "population": popStats(t, e, 1, Long)} {
		if s.Count != w.count {
			t.Fatalf("%s: count %d; want %d", name, s.Count, w.count)
		}
		if err := math.Abs(s.PopulationVariance-w.popVar) / w.popVar; err > 1e-9 {
			t.Errorf("%s: variance %v, exact %v: relative error %.3g", name, s.PopulationVariance, w.popVar, err)
		}
	}
}

// TestStaleRingNeverAliases: an entity kept alive by feature 1, in its first
// ring, never writes feature 14, in its second, again. 2^32 buckets later
// the second ring's old row must not pass for a current one, whose 32-bit
// id it shares.
func TestStaleRingNeverAliases(t *testing.T) {
	s := testShardWith(t, Config{Shards: 1, Clock: NewEventClock(), BucketWidth: time.Millisecond,
		ShortBuckets: 1, LongBuckets: 1 << 14, EntityTTL: 1000 * time.Hour, MaxFeatures: 14})
	send := func(ts int64, values []FeatureValue) { // as the owner applies a one-event call
		m := &message{values: values, nowMs: ts}
		m.events = []queued{{entity: "a", ts: ts, first: 0, n: uint32(len(values))}}
		s.apply(m)
		s.appliedNow = max(s.appliedNow, m.nowMs)
		s.maybeSweep()
	}
	const t0 = int64(1) << 40
	var all []FeatureValue
	for f := int32(1); f <= 14; f++ {
		all = append(all, fv(f, 7))
	}
	send(t0, all)
	step := int64(1<<14 - 1) // inside the long window: the entity never goes idle
	for ts := t0 + step; ts < t0+1<<32; ts += step {
		send(ts, []FeatureValue{fv(1, 1)})
	}
	now := t0 + 1<<32
	send(now, []FeatureValue{fv(1, 1)})
	if st := s.entityWindows("a", 14, now).long.stats(); st.Count != 0 {
		t.Fatalf("feature 14, last written 2^32 buckets ago: %+v; want an empty window", st)
	}
}

package streamfeat

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dolthub/swiss"
)

// The ingest benchmarks share one shape of load: entity ids drawn uniformly
// at random per event (the cache-hostile case), an event-time clock that
// moves a step per event (see benchEntityGapMs), and F features per event. Ingest waits for
// queue space, so each figure is what the shards sustain end to end rather
// than how fast a producer can fill queues and drop.
//
// Warm-up runs a whole long window of event time, so that rings have reached
// their steady size, buckets expire as fast as they are created and the
// arena's free lists feed every new bucket: the timed part is the steady
// state, where ingest allocates nothing.

const (
	benchT0     = 1_700_000_000_000 // a round start time for generated events
	benchHourMs = 3_600_000

	// benchEntityGapMs is the mean event time between two events of one
	// entity: the clock moves benchEntityGapMs/entities per event. It keeps
	// every entity well inside EntityTTL and makes the state sparse (a few
	// buckets per series), the cache-hostile case.
	benchEntityGapMs = 1_000_000
)

// entityIDs returns n distinct, realistic-length entity ids.
func entityIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "card-" + strconv.Itoa(1_000_000_000+i*7919)
	}
	return ids
}

// eventGen produces batches of random events; it reuses its buffers, as a
// real producer would.
type eventGen struct {
	rng      *rand.Rand
	ids      []string
	features int
	ts       int64
	stepMs   int64
	events   []Event
	values   []FeatureValue
}

func newEventGen(ids []string, features, batch int, seed uint64) *eventGen {
	g := &eventGen{
		rng:      rand.New(rand.NewPCG(seed, 1)),
		ids:      ids,
		features: features,
		ts:       benchT0,
		stepMs:   max(1, benchEntityGapMs/int64(len(ids))),
		events:   make([]Event, batch),
		values:   make([]FeatureValue, batch*features),
	}
	for i := range g.events {
		g.events[i].Values = g.values[i*features : (i+1)*features : (i+1)*features]
	}
	return g
}

// next fills and returns the next batch.
func (g *eventGen) next() []Event {
	for i := range g.events {
		ev := &g.events[i]
		ev.EntityID = g.ids[g.rng.IntN(len(g.ids))]
		ev.TimestampMs = g.ts
		g.ts += g.stepMs
		for f := range ev.Values {
			ev.Values[f] = FeatureValue{FeatureID: int32(f + 1), Value: 100 + 10*g.rng.NormFloat64()}
		}
	}
	return g.events
}

// newBenchEngine starts an event-time engine with features registered.
func newBenchEngine(b *testing.B, shards, features int) *Engine {
	b.Helper()
	return newBenchEngineWith(b, Config{Shards: shards}, features)
}

// newBenchEngineWith is newBenchEngine with more of the Config set.
func newBenchEngineWith(b *testing.B, cfg Config, features int) *Engine {
	b.Helper()
	cfg.Clock, cfg.WaitForCapacity = NewEventClock(), true
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, features)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i+1)
	}
	if _, err := e.RegisterSchema(names); err != nil {
		b.Fatal(err)
	}
	return e
}

// closeBench closes an engine once its benchmark round is measured: the
// framework runs a benchmark several times, and engines left running would
// make later rounds pay for their heap at every collection.
func closeBench(b *testing.B, e *Engine) {
	b.Helper()
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
}

// barrier waits until every shard has applied everything queued before it.
func barrier(b *testing.B, e *Engine) {
	b.Helper()
	if _, err := e.PopulationStats(context.Background(), 1, Short); err != nil {
		b.Fatal(err)
	}
}

// warm touches every entity once, then keeps ingesting until a whole long
// window of event time has passed.
func warm(b *testing.B, e *Engine, g *eventGen, ids []string) {
	b.Helper()
	ctx := context.Background()
	batch := len(g.events)
	end := g.ts + benchHourMs
	for start := 0; start < len(ids) || g.ts < end; start += batch {
		evs := g.next()
		if start < len(ids) {
			for i := range evs {
				evs[i].EntityID = ids[(start+i)%len(ids)]
			}
		}
		if _, err := e.Ingest(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	barrier(b, e)
}

func BenchmarkIngest(b *testing.B) {
	entityCounts := []int{1000, 100_000, 1_000_000}
	if testing.Short() {
		entityCounts = []int{1000, 100_000}
	}
	for _, n := range entityCounts {
		ids := entityIDs(n)
		for _, features := range []int{1, 10} {
			for _, batch := range []int{1, 64, 512} {
				for _, shards := range []int{1, 2, 8} {
					name := fmt.Sprintf("entities=%d/features=%d/batch=%d/shards=%d", n, features, batch, shards)
					b.Run(name, func(b *testing.B) { benchIngest(b, ids, features, batch, shards) })
				}
			}
		}
	}
}

func benchIngest(b *testing.B, ids []string, features, batch, shards int) {
	e := newBenchEngine(b, shards, features)
	g := newEventGen(ids, features, batch, 1)
	defer closeBench(b, e)
	warm(b, e, g, ids)
	ctx := context.Background()
	var dropped int64
	runtime.GC()

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res, err := e.Ingest(ctx, g.next())
		if err != nil {
			b.Fatal(err)
		}
		dropped += res.DroppedEvents
	}
	barrier(b, e)
	b.StopTimer()

	reportRates(b, b.N*batch, features)
	if dropped != 0 {
		b.Fatalf("%d events dropped", dropped)
	}
}

// reportRates reports events/s and values/s for events ingested in the
// benchmark's elapsed time.
func reportRates(b *testing.B, events, features int) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/sec, "events/s")
	b.ReportMetric(float64(events*features)/sec, "values/s")
	b.ReportMetric(0, "ns/op") // per-call time depends on the batch size: events/s says it
	b.ReportMetric(sec*1e9/float64(events), "ns/event")
}

func BenchmarkIngestParallel(b *testing.B) {
	const features, batch = 10, 64
	ids := entityIDs(100_000)
	for _, shards := range []int{2, 8} {
		b.Run(fmt.Sprintf("entities=100000/features=10/batch=64/shards=%d", shards), func(b *testing.B) {
			e := newBenchEngine(b, shards, features)
			defer closeBench(b, e)
			warm(b, e, newEventGen(ids, features, batch, 1), ids)
			runtime.GC()
			seeds := make(chan uint64, 1024)
			for i := range cap(seeds) {
				seeds <- uint64(i + 2)
			}

			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := newEventGen(ids, features, batch, <-seeds)
				for pb.Next() {
					if _, err := e.Ingest(context.Background(), g.next()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			barrier(b, e)
			b.StopTimer()
			reportRates(b, b.N*batch, features)
		})
	}
}

// fullEntity builds an engine of 2 shards whose entity "e" has a value in
// every bucket of the long window for feature 1, and entities more entities
// spread over the shards for the population.
func fullEntity(b *testing.B, entities int, idleSpin time.Duration) *Engine {
	return fullEntityOn(b, 2, entities, idleSpin)
}

// fullEntityOn is fullEntity with the number of shards.
func fullEntityOn(b *testing.B, shards, entities int, idleSpin time.Duration) *Engine {
	e := newBenchEngineWith(b, Config{Shards: shards, IdleSpin: idleSpin}, 1)
	_, _, long := e.Geometry()
	width := e.geo.widthMs
	rng := rand.New(rand.NewPCG(7, 7))
	ids := entityIDs(entities)
	var evs []Event
	for bkt := range int64(long) {
		ts := benchT0 + bkt*width
		evs = append(evs[:0], Event{EntityID: "e", TimestampMs: ts,
			Values: []FeatureValue{{1, rng.NormFloat64()}}})
		for i := range 4 {
			evs = append(evs, Event{EntityID: ids[rng.IntN(len(ids))], TimestampMs: ts + int64(i),
				Values: []FeatureValue{{1, rng.NormFloat64()}}})
		}
		if _, err := e.Ingest(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	barrier(b, e)
	return e
}

func BenchmarkStats(b *testing.B) {
	e := fullEntity(b, 10_000, 0)
	defer closeBench(b, e)
	ctx := context.Background()
	b.Run("scope=entity/window=long", func(b *testing.B) {
		benchLatency(b, func() error {
			s, err := e.Stats(ctx, "e", 1, Long)
			if err == nil && s.Count != int64(e.geo.long) {
				err = fmt.Errorf("count %d, want %d", s.Count, e.geo.long)
			}
			return err
		})
	})
	b.Run("scope=population/window=long", func(b *testing.B) {
		benchLatency(b, func() error { _, err := e.PopulationStats(ctx, 1, Long); return err })
	})
}

func BenchmarkDrift(b *testing.B) {
	e := fullEntity(b, 10_000, 0)
	defer closeBench(b, e)
	ctx := context.Background()
	b.Run("scope=entity", func(b *testing.B) {
		benchLatency(b, func() error { _, err := e.Drift(ctx, "e", 1, DriftOptions{}); return err })
	})
	b.Run("scope=population", func(b *testing.B) {
		benchLatency(b, func() error { _, err := e.PopulationDrift(ctx, 1, DriftOptions{}); return err })
	})
}

// BenchmarkIdleSpin is the before/after of polling before parking: the
// long-window entity query of BenchmarkStats with Config.IdleSpin at its
// default (on) and turned off, as it was before. The population query over
// 1024 shards, more than there are CPUs, checks that such queries, whose
// owners do not poll, lose nothing to the callers' polling.
func BenchmarkIdleSpin(b *testing.B) {
	ctx := context.Background()
	spins := []struct {
		name string
		spin time.Duration
	}{{"on", 0}, {"off", -1}}
	for _, c := range spins {
		b.Run("idle-spin="+c.name, func(b *testing.B) {
			e := fullEntity(b, 10_000, c.spin)
			defer closeBench(b, e)
			benchLatency(b, func() error { _, err := e.Stats(ctx, "e", 1, Long); return err })
		})
	}
	for _, c := range spins {
		b.Run("scope=population/shards=1024/idle-spin="+c.name, func(b *testing.B) {
			e := fullEntityOn(b, 1024, 10_000, c.spin)
			defer closeBench(b, e)
			benchLatency(b, func() error { _, err := e.PopulationStats(ctx, 1, Long); return err })
		})
	}
}

// benchLatency times each call of query and reports the median and p99
// beside the mean that ns/op gives.
func benchLatency(b *testing.B, query func() error) {
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := query(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkRoofline measures what the machine does with no engine around the
// arithmetic: per event one lookup of a random entity among 1e5 and F Welford
// updates into a preallocated slice. kind=welford leaves out the lookup (a
// random slice index instead); kind=swiss+welford is the single-core roofline
// that BenchmarkIngest is compared with.
func BenchmarkRoofline(b *testing.B) {
	const entities = 100_000
	ids := entityIDs(entities)
	index := swiss.NewMap[string, uint32](entities)
	for i, id := range ids {
		index.Put(id, uint32(i))
	}
	for _, features := range []int{1, 10} {
		state := make([]bucket, entities*features)
		for _, kind := range []string{"welford", "swiss+welford"} {
			b.Run(fmt.Sprintf("kind=%s/features=%d", kind, features), func(b *testing.B) {
				g := newEventGen(ids, features, 512, 1)
				rng := rand.New(rand.NewPCG(3, 3))
				b.ResetTimer()
				n := 0
				for n < b.N {
					for _, ev := range g.next() {
						var idx uint32
						if kind == "welford" {
							idx = uint32(rng.IntN(entities))
						} else {
							idx, _ = index.Get(ev.EntityID)
						}
						row := state[int(idx)*features : (int(idx)+1)*features]
						for f, v := range ev.Values {
							row[f].observe(v.Value)
						}
					}
					n += 512
				}
				b.StopTimer()
				reportRates(b, n, features)
			})
		}
	}
}

// BenchmarkEntityIndex keeps the choice of dolthub/swiss for the entity index
// measured against Go's builtin map: random lookups of present string keys.
func BenchmarkEntityIndex(b *testing.B) {
	for _, n := range []int{1000, 100_000, 1_000_000} {
		ids := entityIDs(n)
		order := rand.New(rand.NewPCG(5, 5)).Perm(n)
		sw := swiss.NewMap[string, uint32](uint32(n))
		builtin := make(map[string]uint32, n)
		for i, id := range ids {
			sw.Put(id, uint32(i))
			builtin[id] = uint32(i)
		}
		b.Run(fmt.Sprintf("map=swiss/keys=%d", n), func(b *testing.B) {
			var sum uint32
			for i := range b.N {
				v, _ := sw.Get(ids[order[i%n]])
				sum += v
			}
			runtime.KeepAlive(sum)
		})
		b.Run(fmt.Sprintf("map=builtin/keys=%d", n), func(b *testing.B) {
			var sum uint32
			for i := range b.N {
				sum += builtin[ids[order[i%n]]]
			}
			runtime.KeepAlive(sum)
		})
	}
}

// BenchmarkMemory measures the live heap the state takes after an hour of
// event time, per entity and per touched (bucket, feature) pair, for dense
// traffic (an event per entity per bucket) and sparse (an event a minute).
// x-min is the heap over the arithmetic minimum: 32 bytes per touched
// bucket-feature plus the entity ids' bytes. growth=double is the ring
// growth policy before prediction (one size class at a time), kept to show
// what prediction saves.
func BenchmarkMemory(b *testing.B) {
	cases := []struct {
		entities int
		traffic  string
	}{
		{1000, "dense"}, {1000, "sparse"}, {10_000, "dense"}, {10_000, "sparse"},
		{100_000, "dense"}, {100_000, "sparse"}, {1_000_000, "sparse"},
	}
	for _, c := range cases {
		if testing.Short() && c.entities > 10_000 {
			continue
		}
		for _, growth := range []string{"predict", "double"} {
			name := fmt.Sprintf("entities=%d/traffic=%s/growth=%s", c.entities, c.traffic, growth)
			b.Run(name, func(b *testing.B) {
				for range b.N {
					benchMemory(b, c.entities, c.traffic, growth == "double")
				}
			})
		}
	}
}

func benchMemory(b *testing.B, entities int, traffic string, doubling bool) {
	everyMs := int64(5_000)
	if traffic == "sparse" {
		everyMs = 60_000
	}
	ids := entityIDs(entities)
	base := liveHeap()
	e, err := New(Config{Shards: 2, Clock: NewEventClock(), WaitForCapacity: true,
		growByDoubling: doubling})
	if err != nil {
		b.Fatal(err)
	}
	defer closeBench(b, e)
	if _, err := e.RegisterSchema([]string{"f1"}); err != nil {
		b.Fatal(err)
	}

	// Each entity gets an event every everyMs, at an offset of its own, for
	// one hour of event time.
	ctx := context.Background()
	evs := make([]Event, 0, 512)
	vals := make([]FeatureValue, 512)
	for t := int64(0); t < 3_600_000; t += everyMs {
		for i, id := range ids {
			ts := benchT0 + t + int64(i)%everyMs
			vals[len(evs)] = FeatureValue{1, float64(i)}
			evs = append(evs, Event{EntityID: id, TimestampMs: ts, Values: vals[len(evs) : len(evs)+1]})
			if len(evs) == cap(evs) {
				if _, err := e.Ingest(ctx, evs); err != nil {
					b.Fatal(err)
				}
				evs = evs[:0]
			}
		}
	}
	if _, err := e.Ingest(ctx, evs); err != nil {
		b.Fatal(err)
	}
	barrier(b, e)

	heap := liveHeap() - base
	pairs := int64(entities) * (3_600_000 / everyMs)
	keyBytes := int64(0)
	for _, id := range ids {
		keyBytes += int64(len(id))
	}
	b.ReportMetric(float64(heap)/float64(entities), "bytes/entity")
	b.ReportMetric(float64(heap)/float64(pairs), "bytes/bucket-feature")
	b.ReportMetric(float64(heap)/float64(32*pairs+keyBytes), "x-min")
	runtime.KeepAlive(ids)
	runtime.KeepAlive(e)
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

package streamfeat

import (
	"context"
	"flag"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakFor sets how long TestSoakOverload loads the engine. The default run
// is short enough for every `go test`; docs/RELIABILITY.md gives the
// figures of a longer one.
var soakFor = flag.Duration("streamfeat.soak", 0,
	"how long TestSoakOverload runs its load (0: one second, or 300ms with -short)")

// Soak bounds. They are generous on purpose: the test catches growth without
// bound and stalls, not slow machines. The heap bound is the most state the
// documented memory model allows (every entity with a full ring per
// feature: rings grow to the size their rate predicts, and a soak's rate is
// high) plus 32 MiB for everything else.
const (
	soakEntities     = 500
	soakHeapBound    = soakEntities*2*(DefaultLongBuckets+12)*32 + 32<<20 // HeapAlloc after a GC
	soakQueryBound   = 5 * time.Second                                    // the slowest query under load
	soakProducers    = 4
	soakBatch        = 64
	soakTimeSpanMs   = 60_000 // event times stay in [t0, t0+60s): inside every window
	soakInvalidEvery = 50     // one event in 50 has an empty entity id
	soakNaNEvery     = 40     // one event in 40 has NaN as its second value
)

// soakProducer is what one producer sent and was told.
type soakProducer struct {
	sent, invalid, nan int64
	res                IngestResult
}

// TestSoakOverload lets producers outrun the shards: several goroutines
// call Ingest without waiting into two shards with queues two batches deep,
// while a querier keeps asking and a sampler watches the heap. Afterwards
// every event must be accounted for exactly, every accepted value must be
// in the state, the heap must have stayed bounded, every query must have
// answered within soakQueryBound, and Close must leave no goroutine behind.
func TestSoakOverload(t *testing.T) {
	d := *soakFor
	if d == 0 {
		d = time.Second
		if testing.Short() {
			d = 300 * time.Millisecond
		}
	}
	base := runtime.NumGoroutine()
	e, err := New(Config{Clock: NewEventClock(), Shards: 2, QueueDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	registerN(t, e, 2)

	load, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	producers := make([]soakProducer, soakProducers)
	var pw sync.WaitGroup
	for p := range producers {
		pw.Go(func() { soakProduce(t, load, e, uint64(p), &producers[p]) })
	}
	var bg sync.WaitGroup
	var maxLatency, queries, slow atomic.Int64
	bg.Go(func() { soakQuery(t, load, e, &maxLatency, &queries, &slow) })
	var maxHeap atomic.Uint64
	bg.Go(func() { soakSample(load, &maxHeap) })
	pw.Wait()
	bg.Wait()

	// Accounting: per producer, in total and in Metrics.
	var total IngestResult
	var sent, invalid, nan int64
	for _, p := range producers {
		addResult(&total, p.res)
		sent, invalid, nan = sent+p.sent, invalid+p.invalid, nan+p.nan
	}
	checkResult(t, total, int(sent))
	if total.DroppedInvalid != invalid || total.RejectedValues != nan ||
		total.DroppedTooOld+total.DroppedTooNew != 0 {
		t.Fatalf("totals %+v; want %d invalid events, %d rejected values, none too old or new",
			total, invalid, nan)
	}
	if total.DroppedOverloaded == 0 {
		t.Errorf("no batch was dropped as overloaded: the producers never outran the shards")
	}
	m := e.Metrics()
	if m.EventsAccepted != total.AcceptedEvents || m.ValuesAccepted != total.AcceptedValues ||
		m.DroppedOverloaded != total.DroppedOverloaded || m.DroppedInvalid != total.DroppedInvalid ||
		m.ValuesRejected != total.RejectedValues {
		t.Fatalf("metrics %+v; results add up to %+v", m, total)
	}

	// Every accepted value is in the state: feature 1 once per accepted
	// event, in the population and summed over the entities.
	p1, p2 := popStats(t, e, 1, Long), popStats(t, e, 2, Long)
	if p1.Count != total.AcceptedEvents || p1.Count+p2.Count != total.AcceptedValues {
		t.Fatalf("population counts %d and %d; want %d events and %d values accepted",
			p1.Count, p2.Count, total.AcceptedEvents, total.AcceptedValues)
	}
	var perEntity int64 // summed over every entity the producers use
	for i := range soakEntities {
		perEntity += stats(t, e, "ent-"+strconv.Itoa(i), 1, Long).Count
	}
	if perEntity != total.AcceptedEvents {
		t.Fatalf("entities hold %d values of feature 1; %d events were accepted", perEntity, total.AcceptedEvents)
	}
	for i, s := range m.Shards {
		if s.ExpiredInQueue != 0 || s.LostValues != 0 {
			t.Fatalf("shard %d: %+v; want nothing expired in the queue or lost", i, s)
		}
	}

	if h := maxHeap.Load(); h > soakHeapBound {
		t.Errorf("heap after GC reached %d MiB; want at most %d MiB", h>>20, uint64(soakHeapBound)>>20)
	}
	if l := time.Duration(maxLatency.Load()); l > soakQueryBound {
		t.Errorf("slowest query under load took %v; want at most %v", l, soakQueryBound)
	}
	t.Logf("%v: %d events sent (%.0f/s), %d accepted, %d dropped as overloaded (%.1f%%), %d invalid; "+
		"%d queries, %d over 100ms, slowest %v; heap after GC at most %.1f MiB",
		d, sent, float64(sent)/d.Seconds(), total.AcceptedEvents, total.DroppedOverloaded,
		100*float64(total.DroppedOverloaded)/float64(max(sent, 1)), total.DroppedInvalid,
		queries.Load(), slow.Load(), time.Duration(maxLatency.Load()), float64(maxHeap.Load())/(1<<20))

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
}

// soakProduce sends batches without waiting until ctx ends.
func soakProduce(t *testing.T, ctx context.Context, e *Engine, seed uint64, p *soakProducer) {
	r := rand.New(rand.NewPCG(seed, 1))
	batch := make([]Event, soakBatch)
	values := make([]FeatureValue, 2*soakBatch)
	for ctx.Err() == nil {
		for i := range batch {
			v := values[2*i : 2*i+2 : 2*i+2]
			v[0], v[1] = fv(1, r.NormFloat64()), fv(2, 100+r.NormFloat64())
			id := "ent-" + strconv.Itoa(r.IntN(soakEntities))
			switch {
			case r.IntN(soakInvalidEvery) == 0:
				id = ""
				p.invalid++
			case r.IntN(soakNaNEvery) == 0:
				v[1].Value = math.NaN()
				p.nan++
			}
			batch[i] = Event{EntityID: id, TimestampMs: t0 + r.Int64N(soakTimeSpanMs), Values: v}
		}
		res, err := e.IngestWith(context.Background(), batch, IngestOptions{})
		if err != nil {
			t.Errorf("Ingest: %v", err)
			return
		}
		p.sent += int64(len(batch))
		addResult(&p.res, res)
	}
}

// soakQuery asks entity, population and drift questions until ctx ends and
// records the slowest answer.
func soakQuery(t *testing.T, ctx context.Context, e *Engine, maxLatency, n, slow *atomic.Int64) {
	r := rand.New(rand.NewPCG(99, 1))
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(context.Background(), 10*soakQueryBound)
		began := time.Now()
		id := "ent-" + strconv.Itoa(r.IntN(soakEntities))
		var err error
		switch r.IntN(3) {
		case 0:
			_, err = e.Stats(qctx, id, 1, Long)
		case 1:
			_, err = e.PopulationStats(qctx, 2, Short)
		case 2:
			_, err = e.Drift(qctx, id, 2, DriftOptions{MinCount: 10})
		}
		took := int64(time.Since(began))
		cancel()
		if err != nil {
			t.Errorf("query under load: %v", err)
			return
		}
		n.Add(1)
		if took > int64(100*time.Millisecond) {
			slow.Add(1)
		}
		for cur := maxLatency.Load(); took > cur && !maxLatency.CompareAndSwap(cur, took); {
			cur = maxLatency.Load()
		}
	}
}

// soakSample records the largest heap seen after a collection, every 100ms
// until ctx ends, and once more at the end.
func soakSample(ctx context.Context, maxHeap *atomic.Uint64) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > maxHeap.Load() {
			maxHeap.Store(ms.HeapAlloc)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
